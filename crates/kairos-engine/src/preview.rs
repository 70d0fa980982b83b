//! Previewing a draft audience: the reference evaluation over every
//! profile's events read from the log, at the engine's "now".

use std::sync::RwLock;

use kairos_core::identity::Identifier;
use kairos_core::identity::graph::ProfileId;
use kairos_store::Store;

use crate::ShardView;
use crate::router::Router;
use crate::runtime::READ_BATCH_EVENTS;
use crate::types;

/// What a draft audience would hold now.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AudiencePreview {
    pub size: usize,
    pub profiles_evaluated: usize,
    pub events_read: usize,
    /// The first members in profile order: `{id, identities}`.
    pub sample: Vec<(String, Vec<Identifier>)>,
}

pub(crate) fn preview(
    store: &Store,
    router: &RwLock<Router>,
    shards: &[ShardView],
    expr: &kairos_core::audience::Expr,
    now: jiff::Timestamp,
    sample: usize,
) -> Result<AudiencePreview, kairos_store::StoreError> {
    use kairos_core::audience::eval::{EventFact, PersonFacts, evaluate};
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
            let (Some(name), Some(profile)) = (event.event.clone(), router.current_profile(&event))
            else {
                continue;
            };
            let properties = event
                .field("properties")
                .and_then(|raw| serde_json::from_str(raw.get()).ok())
                .unwrap_or_default();
            histories.entry(profile).or_default().push(EventFact {
                name,
                at: event.timestamp,
                properties,
            });
        }
    }
    let mut members = Vec::new();
    let mut profiles_evaluated = 0;
    for shard in shards {
        let state = shard.state.read().expect("shard lock");
        state.each_profile(|profile, traits, identities, audiences| {
            profiles_evaluated += 1;
            let facts = PersonFacts {
                traits: traits.clone(),
                audiences: audiences.into_iter().collect(),
                ..PersonFacts::default()
            };
            let history = histories.get(&profile).map(Vec::as_slice).unwrap_or(&[]);
            if evaluate(expr, history, &facts, now) {
                members.push((profile, identities.to_vec()));
            }
        });
    }
    members.sort_by_key(|(profile, _)| *profile);
    Ok(AudiencePreview {
        size: members.len(),
        profiles_evaluated,
        events_read,
        sample: members
            .into_iter()
            .take(sample)
            .map(|(profile, identities)| (types::profile_key(profile), identities))
            .collect(),
    })
}
