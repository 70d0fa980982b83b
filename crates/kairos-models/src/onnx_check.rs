//! Refusing ONNX models whose tensors live outside the file.
//!
//! An ONNX tensor may say `data_location: EXTERNAL` and name a file
//! (`external_data: {location: "..."}`); ONNX Runtime then reads that file
//! relative to the working directory, so an uploaded model could read any
//! file Kairos can and return its bytes as scores. Kairos stores models as
//! one self-contained file, so such tensors are refused at registration.
//!
//! This is a minimal walk of the protobuf wire format over exactly the
//! fields that can hold a tensor (initializers, constant attributes,
//! subgraphs of `Loop`/`If`/`Scan`, functions, training info), rather than a
//! protobuf dependency for one check.

/// Subgraphs nested deeper than this are refused: real models nest a few
/// levels (a `Loop` in an `If`), and the walk must not recurse unboundedly.
pub const ONNX_NESTING_MAX: usize = 64;

/// The messages walked, and the fields of each that lead to a tensor.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Message {
    Model,
    Graph,
    Node,
    Attribute,
    Tensor,
    SparseTensor,
    Function,
    TrainingInfo,
}

impl Message {
    /// The message a length-delimited field holds, if it can lead to a tensor.
    fn child(self, field: u64) -> Option<Message> {
        use Message::*;
        match (self, field) {
            (Model, 7) => Some(Graph),
            (Model, 20) => Some(TrainingInfo),
            (Model, 25) => Some(Function),
            (TrainingInfo, 1 | 2) => Some(Graph),
            (Graph, 1) => Some(Node),
            (Graph, 5) => Some(Tensor),
            (Graph, 15) => Some(SparseTensor),
            (Function, 7) => Some(Node),
            (Function, 11) => Some(Attribute),
            (Node, 5) => Some(Attribute),
            (Attribute, 5 | 10) => Some(Tensor),
            (Attribute, 6 | 11) => Some(Graph),
            (Attribute, 22 | 23) => Some(SparseTensor),
            (SparseTensor, 1 | 2) => Some(Tensor),
            _ => None,
        }
    }
}

/// TensorProto.external_data (repeated StringStringEntryProto).
const TENSOR_EXTERNAL_DATA: u64 = 13;
/// TensorProto.data_location; `EXTERNAL` is 1.
const TENSOR_DATA_LOCATION: u64 = 14;
const DATA_LOCATION_EXTERNAL: u64 = 1;

/// Checks that no tensor in the model refers to external data.
pub fn refuse_external_data(bytes: &[u8]) -> Result<(), String> {
    walk(bytes, Message::Model, 0)
}

fn walk(mut bytes: &[u8], message: Message, depth: usize) -> Result<(), String> {
    if depth > ONNX_NESTING_MAX {
        return Err(format!(
            "model: the ONNX graph nests subgraphs more than {ONNX_NESTING_MAX} deep (ONNX_NESTING_MAX)"
        ));
    }
    while !bytes.is_empty() {
        let key = varint(&mut bytes)?;
        let (field, wire_type) = (key >> 3, key & 7);
        match wire_type {
            0 => {
                let value = varint(&mut bytes)?;
                if message == Message::Tensor
                    && field == TENSOR_DATA_LOCATION
                    && value == DATA_LOCATION_EXTERNAL
                {
                    return Err(external());
                }
            }
            1 => bytes = skip(bytes, 8)?,
            5 => bytes = skip(bytes, 4)?,
            2 => {
                let length = usize::try_from(varint(&mut bytes)?).map_err(|_| malformed())?;
                let (inner, rest) = (bytes.get(..length).ok_or_else(malformed)?, &bytes[length..]);
                if message == Message::Tensor && field == TENSOR_EXTERNAL_DATA {
                    return Err(external());
                }
                if let Some(child) = message.child(field) {
                    walk(inner, child, depth + 1)?;
                }
                bytes = rest;
            }
            _ => return Err(malformed()),
        }
    }
    Ok(())
}

fn external() -> String {
    "model: the ONNX file refers to external data (a tensor with data_location EXTERNAL); Kairos serves self-contained models only: save it with onnx.save_model(model, path, save_as_external_data=False)".into()
}

fn malformed() -> String {
    "model: not an ONNX file (its protobuf encoding is malformed); export it again".into()
}

fn varint(bytes: &mut &[u8]) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first().ok_or_else(malformed)?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(malformed())
}

fn skip(bytes: &[u8], count: usize) -> Result<&[u8], String> {
    bytes.get(count..).ok_or_else(malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(number: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = encode_varint(number << 3 | 2);
        out.extend(encode_varint(payload.len() as u64));
        out.extend_from_slice(payload);
        out
    }

    fn varint_field(number: u64, value: u64) -> Vec<u8> {
        let mut out = encode_varint(number << 3);
        out.extend(encode_varint(value));
        out
    }

    fn encode_varint(mut value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    fn model_with_initializer(tensor: &[u8]) -> Vec<u8> {
        let mut graph = field(2, b"graph-name");
        graph.extend(field(5, tensor));
        let mut model = varint_field(1, 8); // ir_version
        model.extend(field(7, &graph));
        model
    }

    #[test]
    fn a_self_contained_initializer_passes() {
        let mut tensor = field(8, b"weights");
        tensor.extend(field(9, &[0, 0, 128, 63]));
        tensor.extend(varint_field(TENSOR_DATA_LOCATION, 0));
        assert_eq!(
            refuse_external_data(&model_with_initializer(&tensor)),
            Ok(())
        );
    }

    #[test]
    fn external_initializers_are_refused_by_location_or_entries() {
        let by_location = varint_field(TENSOR_DATA_LOCATION, DATA_LOCATION_EXTERNAL);
        let by_entry = field(TENSOR_EXTERNAL_DATA, &field(1, b"location"));
        for tensor in [by_location, by_entry] {
            let error = refuse_external_data(&model_with_initializer(&tensor)).unwrap_err();
            assert!(error.contains("external data"), "{error}");
        }
    }

    #[test]
    fn an_external_tensor_inside_a_loop_body_is_found() {
        let tensor = varint_field(TENSOR_DATA_LOCATION, DATA_LOCATION_EXTERNAL);
        // Loop node → attribute `body` (a graph) → Constant node → tensor `value`.
        let constant_attribute = field(5, &tensor);
        let constant_node = field(5, &constant_attribute);
        let body = field(1, &constant_node);
        let body_attribute = field(6, &body);
        let loop_node = field(5, &body_attribute);
        let graph = field(1, &loop_node);
        let model = field(7, &graph);
        assert!(refuse_external_data(&model).is_err());
    }

    #[test]
    fn truncated_or_absurdly_nested_files_are_refused() {
        let model = model_with_initializer(&field(8, b"w"));
        assert!(refuse_external_data(&model[..model.len() - 1]).is_err());
        let mut graph = Vec::new();
        for _ in 0..(ONNX_NESTING_MAX + 2) {
            // graph → node → attribute g → graph …
            graph = field(1, &field(5, &field(6, &graph)));
        }
        assert!(refuse_external_data(&field(7, &graph)).is_err());
    }
}
