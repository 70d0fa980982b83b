//! What audiences and computed traits share: checking a submitted
//! definition (size, parse errors with line and column) and compiling every
//! stored definition together with a change, so a change that does not fit
//! (an unknown or circular reference) is refused before anything is saved.

use kairos_core::audience::References;
use kairos_core::audience::incremental::Program;
use kairos_core::audience::{DefinitionError, Expr, ValueExpr, parse, parse_value};
use kairos_store::{DefinitionKind, DefinitionRecord};

use crate::AppState;
use crate::problem::Problem;
use crate::references;

pub(crate) const NAME_BYTES_MAX: usize = 200;
pub(crate) const DEFINITION_BYTES_MAX: usize = 64 * 1024;

/// A definition's text, parsed.
#[derive(Clone)]
pub(crate) enum Parsed {
    Audience(Expr),
    ComputedTrait(ValueExpr),
}

impl Parsed {
    /// Its JSON form (the syntax tree's serde form).
    pub(crate) fn json(&self) -> serde_json::Value {
        match self {
            Parsed::Audience(expr) => serde_json::to_value(expr),
            Parsed::ComputedTrait(expr) => serde_json::to_value(expr),
        }
        .unwrap_or_default()
    }
}

/// Parses a definition of `kind`, or says where and why it does not parse.
pub(crate) fn checked(kind: DefinitionKind, text: &str) -> Result<Parsed, Problem> {
    if text.len() > DEFINITION_BYTES_MAX {
        return Err(Problem::bad_request(
            "definition_invalid",
            format!("a definition may be at most {DEFINITION_BYTES_MAX} bytes"),
        ));
    }
    match kind {
        DefinitionKind::Audience => parse(text).map(Parsed::Audience),
        DefinitionKind::ComputedTrait => parse_value(text).map(Parsed::ComputedTrait),
    }
    .map_err(definition_problem)
}

/// Refuses `score X` when no registered model produces X, as `computed
/// nope` is refused (docs/audiences.md).
fn checked_scores(state: &AppState, parsed: &Parsed) -> Result<(), Problem> {
    let references = match parsed {
        Parsed::Audience(expr) => References::of(expr),
        Parsed::ComputedTrait(expr) => References::of_value(expr),
    };
    match references::missing_score(state, &references) {
        Some(missing) => Err(Problem::bad_request("definition_invalid", missing)),
        None => Ok(()),
    }
}

pub(crate) fn checked_name(kind: DefinitionKind, name: &str) -> Result<(), Problem> {
    if name.is_empty() || name.len() > NAME_BYTES_MAX {
        return Err(Problem::bad_request(
            "name_invalid",
            format!(
                "a {} needs a name of 1 to {NAME_BYTES_MAX} bytes",
                kind.noun()
            ),
        ));
    }
    if kind == DefinitionKind::ComputedTrait
        && !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(Problem::bad_request(
            "name_invalid",
            "a computed trait's name is letters, digits and `_` (e.g. orders_90d): audiences refer to it as `computed orders_90d`",
        ));
    }
    Ok(())
}

pub(crate) fn definition_problem(error: DefinitionError) -> Problem {
    let mut problem = Problem::bad_request("definition_invalid", error.to_string());
    problem.position = Some((error.line as u32, error.column as u32));
    problem
}

/// A change to the stored definitions, to compile before it is saved.
pub(crate) struct Edit<'a> {
    /// Added or replacing the record of the same name and kind.
    pub(crate) upsert: Option<(&'a str, Parsed)>,
    /// A record (by id) left out.
    pub(crate) without: Option<&'a str>,
}

/// Every stored definition compiled together with `edit`; a problem if
/// they do not fit together.
pub(crate) fn program(state: &AppState, edit: Edit) -> Result<Program, Problem> {
    let mut audiences = Vec::new();
    let mut computed = Vec::new();
    let (upsert_name, upsert_kind) = match &edit.upsert {
        Some((name, Parsed::Audience(_))) => (Some(*name), Some(DefinitionKind::Audience)),
        Some((name, Parsed::ComputedTrait(_))) => {
            (Some(*name), Some(DefinitionKind::ComputedTrait))
        }
        None => (None, None),
    };
    let kept = |kind: DefinitionKind, record: &DefinitionRecord| {
        Some(record.id.as_str()) != edit.without
            && !(upsert_kind == Some(kind) && upsert_name == Some(record.name.as_str()))
    };
    for record in state.store.definitions.list(DefinitionKind::Audience) {
        if kept(DefinitionKind::Audience, &record) {
            audiences.push((
                record.name,
                parse(&record.definition).map_err(definition_problem)?,
            ));
        }
    }
    for record in state.store.definitions.list(DefinitionKind::ComputedTrait) {
        if kept(DefinitionKind::ComputedTrait, &record) {
            let expr = parse_value(&record.definition).map_err(definition_problem)?;
            computed.push((record.name, expr));
        }
    }
    match edit.upsert {
        Some((name, Parsed::Audience(expr))) => audiences.push((name.to_string(), expr)),
        Some((name, Parsed::ComputedTrait(expr))) => computed.push((name.to_string(), expr)),
        None => {}
    }
    Program::compile_all(&audiences, &computed)
        .map_err(|message| Problem::bad_request("definition_invalid", message))
}

/// The program without a record, or 409 while others still refer to it.
pub(crate) fn program_without(
    state: &AppState,
    kind: DefinitionKind,
    record: &DefinitionRecord,
) -> Result<Program, Problem> {
    program(
        state,
        Edit {
            upsert: None,
            without: Some(&record.id),
        },
    )
    .map_err(|problem| {
        let reference = match kind {
            DefinitionKind::Audience => format!("`in audience \"{}\"`", record.name),
            DefinitionKind::ComputedTrait => format!("`computed {}`", record.name),
        };
        Problem::conflict(
            "definition_in_use",
            format!(
                "{} (delete or change the definitions that use {reference} first)",
                problem.detail
            ),
        )
    })
}

/// A stored definition by id or name, or 404 saying where to list them.
pub(crate) fn existing(
    state: &AppState,
    kind: DefinitionKind,
    id: &str,
) -> Result<DefinitionRecord, Problem> {
    state.store.definitions.get(kind, id).ok_or_else(|| {
        let path = match kind {
            DefinitionKind::Audience => "/v1/audiences",
            DefinitionKind::ComputedTrait => "/v1/computed-traits",
        };
        Problem::not_found(format!(
            "no {} {id}; list them with GET {path}",
            kind.noun()
        ))
    })
}

/// Checks and stores a new definition; the program to install with it.
pub(crate) fn create(
    state: &AppState,
    kind: DefinitionKind,
    name: &str,
    text: &str,
) -> Result<(Program, DefinitionRecord), Problem> {
    checked_name(kind, name)?;
    let parsed = checked(kind, text)?;
    checked_scores(state, &parsed)?;
    if state.store.definitions.get(kind, name).is_some() {
        return Err(kairos_store::StoreError::NameTaken {
            thing: kind.noun(),
            name: name.to_string(),
        }
        .into());
    }
    let program = program(
        state,
        Edit {
            upsert: Some((name, parsed)),
            without: None,
        },
    )?;
    let record = state
        .store
        .definitions
        .create(kind, name, text, state.clock.now())?;
    Ok((program, record))
}

/// Checks and stores a new text for an existing definition; the program
/// to install with it.
pub(crate) fn change(
    state: &AppState,
    kind: DefinitionKind,
    id: &str,
    text: &str,
) -> Result<(Program, DefinitionRecord), Problem> {
    let record = existing(state, kind, id)?;
    let parsed = checked(kind, text)?;
    checked_scores(state, &parsed)?;
    let program = program(
        state,
        Edit {
            upsert: Some((&record.name, parsed)),
            without: None,
        },
    )?;
    let record = state
        .store
        .definitions
        .change(kind, &record.id, text)?
        .ok_or_else(|| Problem::not_found(format!("no {} {id}", kind.noun())))?;
    Ok((program, record))
}

/// `DELETE` of an audience or computed trait: refused (409) while a
/// journey, an audience sync or another definition names it.
pub(crate) async fn delete_unused(
    state: &AppState,
    kind: DefinitionKind,
    id: &str,
) -> Result<serde_json::Value, Problem> {
    let record = existing(state, kind, id)?;
    let target = match kind {
        DefinitionKind::Audience => references::Target::Audience(&record.name),
        DefinitionKind::ComputedTrait => references::Target::ComputedTrait(&record.name),
    };
    let users = references::users(state, &target);
    if !users.is_empty() {
        let what = format!("the {} {:?}", kind.noun(), record.name);
        return Err(references::in_use("definition_in_use", &what, &users));
    }
    delete(state, kind, &record.id).await
}

/// Deletes a definition no other one refers to, and installs the rest.
pub(crate) async fn delete(
    state: &AppState,
    kind: DefinitionKind,
    id: &str,
) -> Result<serde_json::Value, Problem> {
    let record = existing(state, kind, id)?;
    let program = program_without(state, kind, &record)?;
    state.store.definitions.delete(kind, &record.id)?;
    install(state, program).await?;
    Ok(serde_json::json!({"id": record.id, "deleted": true}))
}

/// Installs definitions: the engine backfills them from the log before
/// answering. Returns the backfill report `{events, seconds}`.
pub(crate) async fn install(
    state: &AppState,
    program: Program,
) -> Result<serde_json::Value, Problem> {
    let started = std::time::Instant::now();
    let replayed = state.engine.set_audiences(program).await?;
    Ok(serde_json::json!({"events": replayed, "seconds": started.elapsed().as_secs_f64()}))
}
