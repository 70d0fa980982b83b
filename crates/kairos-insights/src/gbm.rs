//! Gradient-boosted decision trees for binary log-loss.
//!
//! Training bins every feature into at most 255 quantile bins once, then
//! grows each tree leaf by leaf (best gain first) from gradient/hessian
//! histograms; a child's histogram is its parent's minus its sibling's, so
//! only the smaller child is ever scanned. Missing values (NaN) have a bin
//! of their own and every split learns which side they go to.
//!
//! The trained [`Gbm`] keeps all trees in flat arrays and compares raw
//! feature values against thresholds, so prediction needs no binning and no
//! allocation: a few hundred trees take microseconds per row.

use serde::{Deserialize, Serialize};

use crate::rng::SplitMix64;

/// Bin reserved for missing values; real bins are `0..MISSING_BIN`.
const MISSING_BIN: u8 = 255;
/// `feature` value that marks a leaf in the flat node arrays.
const LEAF: u32 = u32::MAX;

/// Training settings. Defaults suit tabular data of a few thousand rows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GbmParams {
    pub trees: usize,
    /// Shrinkage: each tree's output is scaled by this.
    pub learning_rate: f64,
    pub max_depth: usize,
    pub max_leaves: usize,
    /// Least hessian sum (about "rows × p(1−p)") a child may have.
    pub min_child_weight: f64,
    /// L2 penalty on leaf values.
    pub lambda_l2: f64,
    /// Least loss reduction for a split to be made.
    pub min_split_gain: f64,
    /// Share of rows each tree sees.
    pub subsample: f64,
    /// Share of features each tree may split on.
    pub colsample: f64,
    pub max_bins: usize,
    pub seed: u64,
}

impl Default for GbmParams {
    fn default() -> GbmParams {
        GbmParams {
            trees: 300,
            learning_rate: 0.05,
            max_depth: 6,
            max_leaves: 31,
            min_child_weight: 1.0,
            lambda_l2: 1.0,
            min_split_gain: 0.0,
            subsample: 0.8,
            colsample: 1.0,
            max_bins: 255,
            seed: 42,
        }
    }
}

/// A trained model: trees stored node by node in parallel arrays.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Gbm {
    pub feature_count: usize,
    /// Log-odds every prediction starts from (the training base rate).
    pub base_margin: f64,
    /// Index of each tree's root node.
    pub tree_roots: Vec<u32>,
    /// Split feature, or `u32::MAX` for a leaf.
    pub feature: Vec<u32>,
    /// Rows with `value <= threshold` go left.
    pub threshold: Vec<f64>,
    pub left: Vec<u32>,
    pub right: Vec<u32>,
    pub missing_left: Vec<bool>,
    /// Leaf output (already scaled by the learning rate).
    pub value: Vec<f64>,
}

impl Gbm {
    /// Log-odds of the positive class.
    pub fn predict_margin(&self, features: &[f64]) -> f64 {
        debug_assert_eq!(features.len(), self.feature_count);
        let mut margin = self.base_margin;
        for &root in &self.tree_roots {
            margin += self.value[self.leaf_of(root as usize, features)];
        }
        margin
    }

    pub fn predict_proba(&self, features: &[f64]) -> f64 {
        sigmoid(self.predict_margin(features))
    }

    fn leaf_of(&self, root: usize, features: &[f64]) -> usize {
        let mut node = root;
        while self.feature[node] != LEAF {
            let x = features[self.feature[node] as usize];
            let go_left = if x.is_nan() {
                self.missing_left[node]
            } else {
                x <= self.threshold[node]
            };
            node = if go_left {
                self.left[node]
            } else {
                self.right[node]
            } as usize;
        }
        node
    }

    /// One model whose margin is the mean of the given models' margins
    /// (seed bagging: models fitted on different subsamples average out
    /// each other's noise). Trees are concatenated, leaves scaled by 1/k.
    pub fn average(models: &[Gbm]) -> Gbm {
        assert!(!models.is_empty(), "nothing to average");
        let share = 1.0 / models.len() as f64;
        let mut merged = Gbm {
            feature_count: models[0].feature_count,
            base_margin: models.iter().map(|model| model.base_margin).sum::<f64>() * share,
            tree_roots: vec![],
            feature: vec![],
            threshold: vec![],
            left: vec![],
            right: vec![],
            missing_left: vec![],
            value: vec![],
        };
        for model in models {
            assert_eq!(model.feature_count, merged.feature_count, "same features");
            let offset = merged.feature.len() as u32;
            merged
                .tree_roots
                .extend(model.tree_roots.iter().map(|root| root + offset));
            merged.feature.extend(&model.feature);
            merged.threshold.extend(&model.threshold);
            merged
                .left
                .extend(model.left.iter().map(|child| child + offset));
            merged
                .right
                .extend(model.right.iter().map(|child| child + offset));
            merged.missing_left.extend(&model.missing_left);
            merged
                .value
                .extend(model.value.iter().map(|value| value * share));
        }
        merged
    }

    /// Checks a model that came from outside (the model registry): every
    /// column as long as the others, features in range, and every child
    /// after its parent — so a walk from a root always ends at a leaf and
    /// a hostile model cannot make scoring loop or read out of bounds.
    pub fn check(&self) -> Result<(), String> {
        let nodes = self.feature.len();
        let columns = [
            self.threshold.len(),
            self.left.len(),
            self.right.len(),
            self.missing_left.len(),
            self.value.len(),
        ];
        if columns.iter().any(|&length| length != nodes) {
            return Err(format!(
                "gbm: feature, threshold, left, right, missing_left and value must have one entry per node ({nodes} nodes; found {columns:?})"
            ));
        }
        if let Some(root) = self.tree_roots.iter().find(|&&root| root as usize >= nodes) {
            return Err(format!("gbm: tree root {root} is not a node (0..{nodes})"));
        }
        for node in 0..nodes {
            if self.feature[node] == LEAF {
                continue;
            }
            if self.feature[node] as usize >= self.feature_count {
                return Err(format!(
                    "gbm: node {node} splits on feature {} of {}",
                    self.feature[node], self.feature_count
                ));
            }
            for child in [self.left[node], self.right[node]] {
                if child as usize <= node || child as usize >= nodes {
                    return Err(format!(
                        "gbm: node {node} has child {child}; children must come after their parent and be nodes"
                    ));
                }
            }
        }
        if !self.base_margin.is_finite() || self.value.iter().any(|value| !value.is_finite()) {
            return Err("gbm: base_margin and leaf values must be finite numbers".into());
        }
        Ok(())
    }

    /// Keeps the first `tree_count` trees (cross-validation picks the count).
    pub fn truncate(&mut self, tree_count: usize) {
        if tree_count >= self.tree_roots.len() {
            return;
        }
        let node_count = self.tree_roots[tree_count] as usize;
        self.tree_roots.truncate(tree_count);
        for column in [&mut self.threshold, &mut self.value] {
            column.truncate(node_count);
        }
        self.feature.truncate(node_count);
        self.left.truncate(node_count);
        self.right.truncate(node_count);
        self.missing_left.truncate(node_count);
    }

    /// Mean log-loss on `rows` after 1, 2, … trees: what picks the tree count.
    pub fn staged_log_loss(&self, rows: &[Vec<f64>], labels: &[bool]) -> Vec<f64> {
        let mut margins = vec![self.base_margin; rows.len()];
        let mut losses = Vec::with_capacity(self.tree_roots.len());
        for &root in &self.tree_roots {
            let mut total = 0.0;
            for ((margin, row), &label) in margins.iter_mut().zip(rows).zip(labels) {
                *margin += self.value[self.leaf_of(root as usize, row)];
                total += log_loss(*margin, label);
            }
            losses.push(total / rows.len() as f64);
        }
        losses
    }

    /// Trains on row-major `rows` with binary `labels`.
    pub fn fit(rows: &[Vec<f64>], labels: &[bool], params: &GbmParams) -> Gbm {
        assert!(!rows.is_empty(), "no training rows");
        assert_eq!(rows.len(), labels.len(), "one label per row");
        assert!(
            (1..=255).contains(&params.max_bins),
            "at most 255 bins (one is kept for missing values)"
        );
        let binned = BinnedMatrix::new(rows, params.max_bins.min(255));
        let positives = labels.iter().filter(|&&label| label).count() as f64;
        let rate = (positives / labels.len() as f64).clamp(1e-6, 1.0 - 1e-6);
        let mut model = Gbm {
            feature_count: binned.feature_count,
            base_margin: (rate / (1.0 - rate)).ln(),
            tree_roots: Vec::new(),
            feature: Vec::new(),
            threshold: Vec::new(),
            left: Vec::new(),
            right: Vec::new(),
            missing_left: Vec::new(),
            value: Vec::new(),
        };
        let mut margins = vec![model.base_margin; rows.len()];
        let mut gradients = vec![(0.0, 0.0); rows.len()];
        let mut rng = SplitMix64::new(params.seed);
        for _ in 0..params.trees {
            for ((pair, &margin), &label) in gradients.iter_mut().zip(&margins).zip(labels) {
                let p = sigmoid(margin);
                *pair = (p - f64::from(u8::from(label)), (p * (1.0 - p)).max(1e-16));
            }
            let sample = sample_rows(rows.len(), params.subsample, &mut rng);
            let features = sample_features(binned.feature_count, params.colsample, &mut rng);
            let tree = TreeBuilder {
                binned: &binned,
                gradients: &gradients,
                params,
                features: &features,
            }
            .grow(sample);
            model.append(&tree, &binned);
            let root = *model.tree_roots.last().expect("a tree was just appended") as usize;
            for (margin, row) in margins.iter_mut().zip(rows) {
                *margin += model.value[model.leaf_of(root, row)];
            }
        }
        model
    }

    fn append(&mut self, tree: &[BuiltNode], binned: &BinnedMatrix) {
        let offset = self.feature.len() as u32;
        self.tree_roots.push(offset);
        for node in tree {
            match node.split {
                Some(split) => {
                    self.feature.push(split.feature as u32);
                    self.threshold
                        .push(binned.edges[split.feature][split.bin as usize]);
                    self.missing_left.push(split.missing_left);
                }
                None => {
                    self.feature.push(LEAF);
                    self.threshold.push(0.0);
                    self.missing_left.push(false);
                }
            }
            self.left.push(offset + node.children[0]);
            self.right.push(offset + node.children[1]);
            self.value.push(node.value);
        }
    }
}

pub fn sigmoid(margin: f64) -> f64 {
    1.0 / (1.0 + (-margin).exp())
}

fn log_loss(margin: f64, label: bool) -> f64 {
    // log(1 + e^-m) for a positive, log(1 + e^m) for a negative, computed stably.
    let signed = if label { -margin } else { margin };
    signed.max(0.0) + (-signed.abs()).exp().ln_1p()
}

fn sample_rows(row_count: usize, share: f64, rng: &mut SplitMix64) -> Vec<u32> {
    (0..row_count as u32)
        .filter(|_| share >= 1.0 || rng.next_f64() < share)
        .collect()
}

fn sample_features(feature_count: usize, share: f64, rng: &mut SplitMix64) -> Vec<usize> {
    let mut features: Vec<usize> = (0..feature_count).collect();
    if share < 1.0 {
        rng.shuffle(&mut features);
        features.truncate(((feature_count as f64 * share).ceil() as usize).max(1));
        features.sort_unstable();
    }
    features
}

/// Every feature cut into quantile bins, stored column by column.
struct BinnedMatrix {
    row_count: usize,
    feature_count: usize,
    /// Per feature: upper edge of each bin but the last (`x <= edges[b]` ⇔ bin ≤ b).
    edges: Vec<Vec<f64>>,
    bins: Vec<u8>,
}

impl BinnedMatrix {
    fn new(rows: &[Vec<f64>], max_bins: usize) -> BinnedMatrix {
        let feature_count = rows[0].len();
        let mut edges = Vec::with_capacity(feature_count);
        let mut bins = vec![0u8; rows.len() * feature_count];
        for feature in 0..feature_count {
            let mut values: Vec<f64> = rows
                .iter()
                .map(|row| row[feature])
                .filter(|x| !x.is_nan())
                .collect();
            values.sort_by(f64::total_cmp);
            let feature_edges = bin_edges(&values, max_bins);
            let column = &mut bins[feature * rows.len()..(feature + 1) * rows.len()];
            for (bin, row) in column.iter_mut().zip(rows) {
                let x = row[feature];
                *bin = if x.is_nan() {
                    MISSING_BIN
                } else {
                    feature_edges.partition_point(|&edge| edge < x) as u8
                };
            }
            edges.push(feature_edges);
        }
        BinnedMatrix {
            row_count: rows.len(),
            feature_count,
            edges,
            bins,
        }
    }

    fn column(&self, feature: usize) -> &[u8] {
        &self.bins[feature * self.row_count..(feature + 1) * self.row_count]
    }
}

/// Edges between consecutive distinct values when there are few of them,
/// otherwise at quantiles (so each bin holds about the same number of rows).
fn bin_edges(sorted_values: &[f64], max_bins: usize) -> Vec<f64> {
    let mut distinct = sorted_values.to_vec();
    distinct.dedup();
    if distinct.len() <= max_bins {
        return distinct
            .windows(2)
            .map(|pair| (pair[0] + pair[1]) / 2.0)
            .collect();
    }
    let mut edges: Vec<f64> = (1..max_bins)
        .map(|q| sorted_values[q * sorted_values.len() / max_bins])
        .collect();
    edges.dedup();
    // A top edge equal to the maximum would leave an empty last bin.
    edges.retain(|&edge| edge < distinct[distinct.len() - 1]);
    edges
}

#[derive(Debug, Clone, Copy)]
struct Split {
    feature: usize,
    bin: u8,
    missing_left: bool,
    gain: f64,
}

/// One node of a tree being built; `children` index into the same vector.
struct BuiltNode {
    split: Option<Split>,
    children: [u32; 2],
    value: f64,
}

/// (gradient sum, hessian sum) per bin, per feature: `feature * 256 + bin`.
type Histogram = Vec<(f64, f64)>;

struct Leaf {
    node: usize,
    rows: Vec<u32>,
    depth: usize,
    histogram: Histogram,
    sums: (f64, f64),
    best: Option<Split>,
}

struct TreeBuilder<'a> {
    binned: &'a BinnedMatrix,
    gradients: &'a [(f64, f64)],
    params: &'a GbmParams,
    features: &'a [usize],
}

impl TreeBuilder<'_> {
    fn grow(&self, rows: Vec<u32>) -> Vec<BuiltNode> {
        let histogram = self.histogram(&rows);
        let sums = rows.iter().fold((0.0, 0.0), |(g, h), &row| {
            let (gradient, hessian) = self.gradients[row as usize];
            (g + gradient, h + hessian)
        });
        let mut nodes = vec![BuiltNode {
            split: None,
            children: [0, 0],
            value: self.leaf_value(sums),
        }];
        let mut leaves = vec![self.leaf(0, rows, 0, histogram, sums)];
        while leaves.len() < self.params.max_leaves {
            let Some(position) = best_leaf(&leaves) else {
                break;
            };
            let leaf = leaves.swap_remove(position);
            let split = leaf.best.expect("best_leaf only returns splittable leaves");
            let (left, right) = self.split_leaf(leaf, split, &mut nodes);
            leaves.push(left);
            leaves.push(right);
        }
        nodes
    }

    fn leaf(
        &self,
        node: usize,
        rows: Vec<u32>,
        depth: usize,
        histogram: Histogram,
        sums: (f64, f64),
    ) -> Leaf {
        let best = if depth < self.params.max_depth {
            self.best_split(&histogram, sums)
        } else {
            None
        };
        Leaf {
            node,
            rows,
            depth,
            histogram,
            sums,
            best,
        }
    }

    fn split_leaf(&self, leaf: Leaf, split: Split, nodes: &mut Vec<BuiltNode>) -> (Leaf, Leaf) {
        let column = self.binned.column(split.feature);
        let goes_left = |row: &u32| {
            let bin = column[*row as usize];
            if bin == MISSING_BIN {
                split.missing_left
            } else {
                bin <= split.bin
            }
        };
        let (left_rows, right_rows): (Vec<u32>, Vec<u32>) =
            leaf.rows.iter().partition(|row| goes_left(row));
        // Scan the smaller child; the larger one's histogram is the difference.
        let (small_rows, small_is_left) = if left_rows.len() <= right_rows.len() {
            (&left_rows, true)
        } else {
            (&right_rows, false)
        };
        let small = self.histogram(small_rows);
        let large: Histogram = leaf
            .histogram
            .iter()
            .zip(&small)
            .map(|(p, s)| (p.0 - s.0, p.1 - s.1))
            .collect();
        let (left_histogram, right_histogram) = if small_is_left {
            (small, large)
        } else {
            (large, small)
        };
        let left_sums = totals(&left_histogram, self.features[0]);
        let right_sums = (leaf.sums.0 - left_sums.0, leaf.sums.1 - left_sums.1);
        let left_node = nodes.len();
        nodes.push(BuiltNode {
            split: None,
            children: [0, 0],
            value: self.leaf_value(left_sums),
        });
        nodes.push(BuiltNode {
            split: None,
            children: [0, 0],
            value: self.leaf_value(right_sums),
        });
        nodes[leaf.node].split = Some(split);
        nodes[leaf.node].children = [left_node as u32, left_node as u32 + 1];
        let depth = leaf.depth + 1;
        (
            self.leaf(left_node, left_rows, depth, left_histogram, left_sums),
            self.leaf(
                left_node + 1,
                right_rows,
                depth,
                right_histogram,
                right_sums,
            ),
        )
    }

    fn histogram(&self, rows: &[u32]) -> Histogram {
        let mut histogram = vec![(0.0, 0.0); self.binned.feature_count * 256];
        for &feature in self.features {
            let column = self.binned.column(feature);
            let slots = &mut histogram[feature * 256..(feature + 1) * 256];
            for &row in rows {
                let (gradient, hessian) = self.gradients[row as usize];
                let slot = &mut slots[column[row as usize] as usize];
                slot.0 += gradient;
                slot.1 += hessian;
            }
        }
        histogram
    }

    fn best_split(&self, histogram: &Histogram, sums: (f64, f64)) -> Option<Split> {
        let lambda = self.params.lambda_l2;
        let score = |g: f64, h: f64| g * g / (h + lambda);
        let parent = score(sums.0, sums.1);
        let mut best: Option<Split> = None;
        for &feature in self.features {
            let slots = &histogram[feature * 256..(feature + 1) * 256];
            let missing = slots[MISSING_BIN as usize];
            let bin_count = self.binned.edges[feature].len() + 1;
            let (mut g_left, mut h_left) = (0.0, 0.0);
            for (bin, slot) in slots.iter().enumerate().take(bin_count - 1) {
                g_left += slot.0;
                h_left += slot.1;
                for missing_left in [false, true] {
                    let (g, h) = if missing_left {
                        (g_left + missing.0, h_left + missing.1)
                    } else {
                        (g_left, h_left)
                    };
                    let (g_right, h_right) = (sums.0 - g, sums.1 - h);
                    if h < self.params.min_child_weight || h_right < self.params.min_child_weight {
                        continue;
                    }
                    let gain = score(g, h) + score(g_right, h_right) - parent;
                    if gain > self.params.min_split_gain && best.is_none_or(|b| gain > b.gain) {
                        best = Some(Split {
                            feature,
                            bin: bin as u8,
                            missing_left,
                            gain,
                        });
                    }
                }
            }
        }
        best
    }

    fn leaf_value(&self, (gradient, hessian): (f64, f64)) -> f64 {
        -gradient / (hessian + self.params.lambda_l2) * self.params.learning_rate
    }
}

fn best_leaf(leaves: &[Leaf]) -> Option<usize> {
    leaves
        .iter()
        .enumerate()
        .filter_map(|(position, leaf)| leaf.best.map(|split| (position, split.gain)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(position, _)| position)
}

/// Gradient and hessian sums of a node, read off any one feature's bins.
fn totals(histogram: &Histogram, feature: usize) -> (f64, f64) {
    histogram[feature * 256..(feature + 1) * 256]
        .iter()
        .fold((0.0, 0.0), |(g, h), slot| (g + slot.0, h + slot.1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::roc_auc;

    /// A nonlinear problem no linear model can solve: the XOR of two signs,
    /// plus a feature that is missing half the time and carries signal.
    fn synthetic(n: usize, seed: u64) -> (Vec<Vec<f64>>, Vec<bool>) {
        let mut rng = SplitMix64::new(seed);
        (0..n)
            .map(|_| {
                let (a, b) = (rng.next_f64() - 0.5, rng.next_f64() - 0.5);
                let noise = rng.next_f64();
                let missing = rng.next_f64() < 0.5;
                let label = ((a > 0.0) != (b > 0.0)) ^ (noise < 0.1);
                let c = if missing {
                    f64::NAN
                } else {
                    f64::from(u8::from(label)) + rng.next_f64()
                };
                (vec![a, b, c, rng.next_f64()], label)
            })
            .unzip()
    }

    #[test]
    fn learns_xor_and_uses_missing_values() {
        let (rows, labels) = synthetic(4000, 1);
        let params = GbmParams {
            trees: 60,
            learning_rate: 0.2,
            max_depth: 4,
            ..GbmParams::default()
        };
        let model = Gbm::fit(&rows, &labels, &params);
        let (test_rows, test_labels) = synthetic(2000, 2);
        let scores: Vec<f64> = test_rows
            .iter()
            .map(|row| model.predict_proba(row))
            .collect();
        let auc = roc_auc(&test_labels, &scores).unwrap();
        // 10% label noise caps the attainable AUC near 0.9; a linear model gets about 0.5.
        assert!(auc > 0.85, "auc {auc}");
        let losses = model.staged_log_loss(&test_rows, &test_labels);
        assert!(losses[59] < losses[0], "boosting lowers held-out loss");
    }

    #[test]
    fn truncate_equals_training_fewer_trees() {
        let (rows, labels) = synthetic(500, 3);
        let params = GbmParams {
            trees: 20,
            subsample: 1.0,
            ..GbmParams::default()
        };
        let mut long = Gbm::fit(&rows, &labels, &params);
        let short = Gbm::fit(&rows, &labels, &GbmParams { trees: 7, ..params });
        long.truncate(7);
        for row in &rows[..50] {
            assert_eq!(long.predict_margin(row), short.predict_margin(row));
        }
    }

    #[test]
    fn serialized_model_predicts_the_same() {
        let (rows, labels) = synthetic(300, 4);
        let model = Gbm::fit(
            &rows,
            &labels,
            &GbmParams {
                trees: 5,
                ..GbmParams::default()
            },
        );
        let copy: Gbm = serde_json::from_str(&serde_json::to_string(&model).unwrap()).unwrap();
        assert_eq!(model.predict_proba(&rows[0]), copy.predict_proba(&rows[0]));
    }

    #[test]
    fn averaged_models_score_the_mean_margin_and_outside_models_are_checked() {
        let (rows, labels) = synthetic(400, 5);
        let fits: Vec<Gbm> = (0..3)
            .map(|seed| {
                let params = GbmParams {
                    trees: 20,
                    subsample: 0.7,
                    seed,
                    ..GbmParams::default()
                };
                Gbm::fit(&rows, &labels, &params)
            })
            .collect();
        let averaged = Gbm::average(&fits);
        assert_eq!(averaged.tree_roots.len(), 60);
        assert!(averaged.check().is_ok());
        for row in rows.iter().take(50) {
            let mean = fits.iter().map(|fit| fit.predict_margin(row)).sum::<f64>() / 3.0;
            assert!((averaged.predict_margin(row) - mean).abs() < 1e-9);
        }
        // A child pointing back to its parent would loop forever: refused.
        let mut cyclic = fits[0].clone();
        let split = (0..cyclic.feature.len())
            .find(|&node| cyclic.feature[node] != LEAF)
            .expect("a split");
        cyclic.left[split] = split as u32;
        assert!(cyclic.check().unwrap_err().contains("after their parent"));
        let mut wide = fits[0].clone();
        wide.feature[split] = 99;
        assert!(wide.check().unwrap_err().contains("feature 99"));
        let mut short = fits[0].clone();
        short.value.pop();
        assert!(short.check().is_err());
    }

    #[test]
    fn bin_edges_split_between_distinct_values() {
        assert_eq!(bin_edges(&[1.0, 1.0, 2.0, 4.0], 255), vec![1.5, 3.0]);
        let many: Vec<f64> = (0..10_000).map(f64::from).collect();
        let edges = bin_edges(&many, 255);
        assert!(edges.len() <= 254 && edges.len() > 200);
    }
}
