//! Dangling references, refused the same way everywhere: what a journey,
//! an audience sync or a definition names (an audience, a computed trait, a
//! model's score) must exist when it is created — 400 saying what is
//! missing and how to fix it — and cannot be deleted while something still
//! names it — 409 listing who does.

use std::collections::BTreeSet;

use kairos_core::audience::References;
use kairos_store::DefinitionKind;

use crate::AppState;
use crate::problem::Problem;

/// Every score a registered model version puts on profiles (any mode: an
/// audience may be written while its model is still in shadow).
pub(crate) fn known_scores(state: &AppState) -> BTreeSet<String> {
    crate::models::specs(state)
        .iter()
        .flat_map(kairos_models::ModelSpec::outputs)
        .collect()
}

/// The first `score X` no registered model produces, said with how to fix
/// it (`None`: every score exists).
pub(crate) fn missing_score(state: &AppState, references: &References) -> Option<String> {
    let known = known_scores(state);
    let missing = references
        .scores
        .iter()
        .find(|score| !known.contains(*score))?;
    let registered = if known.is_empty() {
        "no model is registered".to_string()
    } else {
        let known: Vec<&String> = known.iter().collect();
        format!("registered models' scores: {known:?}")
    };
    Some(format!(
        "`score {missing}`: no such model score ({registered}); register the model first with POST /v1/models (docs/models.md)"
    ))
}

/// The first audience or computed trait in `references` that does not
/// exist (except `owned`, which is being created with it), or a missing
/// score; said with how to fix it.
pub(crate) fn missing(
    state: &AppState,
    references: &References,
    owned: Option<&str>,
) -> Option<String> {
    let definitions = &state.store.definitions;
    let audiences: BTreeSet<String> = names(state, DefinitionKind::Audience);
    if let Some(audience) = references
        .audiences
        .iter()
        .find(|name| Some(name.as_str()) != owned && !audiences.contains(*name))
    {
        let by_id = definitions
            .get(DefinitionKind::Audience, audience)
            .map(|record| format!(" (that is the id of {:?}; use its name)", record.name))
            .unwrap_or_default();
        return Some(format!(
            "no audience {audience:?}{by_id}; create it with POST /v1/audiences, or list them with GET /v1/audiences"
        ));
    }
    let computed = names(state, DefinitionKind::ComputedTrait);
    if let Some(name) = references
        .computed
        .iter()
        .find(|name| !computed.contains(*name))
    {
        return Some(format!(
            "`computed {name}`: no such computed trait; create it with POST /v1/computed-traits"
        ));
    }
    missing_score(state, references)
}

fn names(state: &AppState, kind: DefinitionKind) -> BTreeSet<String> {
    state
        .store
        .definitions
        .list(kind)
        .into_iter()
        .map(|record| record.name)
        .collect()
}

/// What is being deleted, for [`users`].
pub(crate) enum Target<'a> {
    Audience(&'a str),
    ComputedTrait(&'a str),
    /// A model: every score its versions produce.
    Model(&'a str),
}

/// Who names `target`: journeys, audience syncs, and (for a model)
/// audiences and computed traits. Definitions naming an audience or a
/// computed trait are found by compiling without it
/// (`definitions::program_without`).
pub(crate) fn users(state: &AppState, target: &Target) -> Vec<String> {
    let scores: BTreeSet<String> = match target {
        Target::Model(name) => crate::models::specs(state)
            .iter()
            .filter(|spec| spec.name == *name)
            .flat_map(kairos_models::ModelSpec::outputs)
            .collect(),
        _ => BTreeSet::new(),
    };
    let names_it = |references: &References| match target {
        Target::Audience(name) => references.audiences.contains(*name),
        Target::ComputedTrait(name) => references.computed.contains(*name),
        Target::Model(_) => !references.scores.is_disjoint(&scores),
    };
    let mut users: Vec<String> = kairos_deliver::active_journeys(&state.store)
        .iter()
        .filter(|journey| names_it(&journey.references()))
        .map(|journey| format!("journey {:?}", journey.name))
        .collect();
    if let Target::Audience(name) = target {
        users.extend(
            state
                .store
                .outbox
                .syncs()
                .into_iter()
                .filter(|sync| sync.audience == *name)
                .map(|sync| format!("audience sync {:?}", sync.name)),
        );
    }
    if let Target::Model(_) = target {
        users.extend(definition_users(state, &names_it));
    }
    users
}

/// Audiences and computed traits whose definitions name the target.
fn definition_users(state: &AppState, names_it: &dyn Fn(&References) -> bool) -> Vec<String> {
    let mut users = Vec::new();
    for kind in [DefinitionKind::Audience, DefinitionKind::ComputedTrait] {
        for record in state.store.definitions.list(kind) {
            let references = match kind {
                DefinitionKind::Audience => kairos_core::audience::parse(&record.definition)
                    .map(|expr| References::of(&expr)),
                DefinitionKind::ComputedTrait => {
                    kairos_core::audience::parse_value(&record.definition)
                        .map(|expr| References::of_value(&expr))
                }
            };
            if references.is_ok_and(|references| names_it(&references)) {
                users.push(format!("{} {:?}", kind.noun(), record.name));
            }
        }
    }
    users
}

/// 409: `what` is still named by `users`.
pub(crate) fn in_use(code: &'static str, what: &str, users: &[String]) -> Problem {
    Problem::conflict(
        code,
        format!(
            "{what} is used by {}; delete or change them first",
            users.join(", ")
        ),
    )
}
