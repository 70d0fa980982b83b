//! Previewing a draft audience or computed trait: the reference evaluation
//! over every profile's events read from the log, at the engine's "now".

use std::sync::RwLock;

use kairos_core::identity::Identifier;
use kairos_core::identity::graph::ProfileId;
use kairos_store::Store;

use crate::ShardView;
use crate::router::Router;
use crate::runtime::READ_BATCH_EVENTS;
use crate::types;

/// A definition not saved yet.
pub enum Draft {
    Audience(kairos_core::audience::Expr),
    ComputedTrait(kairos_core::audience::ValueExpr),
}

/// What a draft would hold now.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AudiencePreview {
    /// Members of a draft audience; profiles with a value of a draft
    /// computed trait.
    pub size: usize,
    pub profiles_evaluated: usize,
    pub events_read: usize,
    /// The first members (or profiles with a value) in profile order:
    /// `{id, identities}` and the value (computed traits).
    pub sample: Vec<(String, Vec<Identifier>, Option<serde_json::Value>)>,
}

pub(crate) fn preview(
    store: &Store,
    router: &RwLock<Router>,
    shards: &[ShardView],
    draft: &Draft,
    now: jiff::Timestamp,
    sample: usize,
) -> Result<AudiencePreview, kairos_store::StoreError> {
    use kairos_core::audience::eval::{EventFact, evaluate, value};
    let mut histories: std::collections::HashMap<ProfileId, Vec<EventFact>> = Default::default();
    let upto = store.writer.committed_seq();
    let (mut after, mut events_read) = (0, 0);
    while after < upto {
        let events = store.log.read_after(after, upto, READ_BATCH_EVENTS, None)?;
        let Some(last) = events.last() else {
            break;
        };
        after = last.seq;
        events_read += events.len();
        let router = router.read().expect("router lock");
        for stored in &events {
            let event = stored.decode()?;
            let (Some(fact), Some(profile)) =
                (EventFact::of(&event), router.current_profile(&event))
            else {
                continue;
            };
            histories.entry(profile).or_default().push(fact);
        }
    }
    let mut members = Vec::new();
    let mut profiles_evaluated = 0;
    for shard in shards {
        let state = shard.state.read().expect("shard lock");
        state.each_profile(|profile, identities, facts| {
            profiles_evaluated += 1;
            let history = histories.get(&profile).map(Vec::as_slice).unwrap_or(&[]);
            let found = match draft {
                Draft::Audience(expr) => evaluate(expr, history, &facts, now).then_some(None),
                Draft::ComputedTrait(expr) => value(expr, history, &facts, now).map(Some),
            };
            if let Some(found) = found {
                members.push((profile, identities.to_vec(), found));
            }
        });
    }
    members.sort_by_key(|(profile, _, _)| *profile);
    Ok(AudiencePreview {
        size: members.len(),
        profiles_evaluated,
        events_read,
        sample: members
            .into_iter()
            .take(sample)
            .map(|(profile, identities, found)| (types::profile_key(profile), identities, found))
            .collect(),
    })
}
