//! Checkpoints of the engine's state: the router's identity graph and each
//! shard's profiles, features, scores and audience state, at one log
//! position, so a start loads the newest and replays only the log after it.
//!
//! **Taking one** happens on the router thread between two events: it
//! sends every shard a `Checkpoint` operation in the global order (each
//! encodes its state at exactly that position), encodes the graph, then —
//! off the router thread — waits until every announcement the shards sent
//! up to that point is durable in the log, and writes the parts
//! ([`kairos_store::checkpoint`] seals them and makes the write atomic).
//! Waiting for the announcements is what keeps them exactly once: after a
//! restore, a shard takes its memberships at the checkpoint as "announced"
//! (the log holds those announcements, at or after the position), notes
//! the announcements the tail replays, and reconciles when live, exactly
//! as a full replay would.
//!
//! **Restoring** refuses a checkpoint taken under other settings (shard
//! count, identity rules, retention, source precedence, definitions) or
//! before an erasure (the suppression count grew since): those starts
//! replay the whole log. Models served differently only re-score.

use std::sync::Arc;

use jiff::Timestamp;
use kairos_core::audience::incremental::{PersonId, PersonState, Program};
use kairos_core::identity::Identifier;
use kairos_core::identity::graph::ProfileId;
use kairos_store::Store;
use serde::{Deserialize, Serialize};

use crate::shard::ShardProfile;
use crate::types::EngineSettings;

/// Version of the encoding below; another version is not restored.
/// 2: the router's part holds the recommender.
const FORMAT: u32 = 2;

/// What a checkpoint was taken under, and where.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Header {
    format: u32,
    /// The log position every part reflects.
    pub(crate) seq: u64,
    settings: u64,
    program: u64,
    /// Identifiers suppressed when it was taken.
    suppressed: u64,
    /// The models every profile was scored with (see
    /// [`Restored::scored_under`]): models served later score a person
    /// only at their next event, so a restore re-scores unless these are
    /// the models served at the start.
    models: Vec<(String, u32)>,
    pub(crate) taken_at: Timestamp,
}

/// The router's part: the header, the identity graph and the recommender.
#[derive(Deserialize)]
pub(crate) struct RouterPart {
    pub(crate) header: Header,
    pub(crate) suppressed_events: u64,
    pub(crate) last_profile: ProfileId,
    pub(crate) members: Vec<(ProfileId, Vec<Identifier>)>,
    pub(crate) recommender: kairos_recommend::Recommender,
}

/// The router's part as taken (the same encoding as [`RouterPart`]).
#[derive(Serialize)]
pub(crate) struct RouterPartRef<'a> {
    pub(crate) header: Header,
    pub(crate) suppressed_events: u64,
    pub(crate) last_profile: ProfileId,
    pub(crate) members: Vec<(ProfileId, Vec<Identifier>)>,
    pub(crate) recommender: &'a kairos_recommend::Recommender,
}

/// A shard's part, as restored.
#[derive(Deserialize)]
pub(crate) struct ShardPart {
    pub(crate) aged_day: i64,
    pub(crate) profiles: Vec<(ProfileId, ShardProfile)>,
    pub(crate) audiences: Vec<(PersonId, PersonState)>,
}

/// A shard's part encoded in one go (borrowing the shard's state; the
/// same encoding as [`ShardPart`]): what a shard's part encoded a slice at
/// a time (`shard_checkpoint`) must equal, byte for byte.
#[cfg(test)]
#[derive(Serialize)]
pub(crate) struct ShardPartRef<'a> {
    pub(crate) aged_day: i64,
    pub(crate) profiles: Vec<(ProfileId, &'a ShardProfile)>,
    pub(crate) audiences: Vec<(PersonId, &'a PersonState)>,
}

/// A checkpoint accepted for this start.
pub(crate) struct Restored {
    pub(crate) router: RouterPart,
    pub(crate) shards: Vec<ShardPart>,
    /// The models served now differ from the checkpoint's: re-score.
    pub(crate) rescore: bool,
}

pub(crate) fn encode<T: Serialize>(part: &T) -> Vec<u8> {
    rmp_serde::to_vec(part).expect("engine state encodes")
}

/// The header of a checkpoint taken now, at `seq`, of profiles all scored
/// with `scored_under`.
pub(crate) fn header(
    store: &Store,
    settings: &EngineSettings,
    program: &Program,
    seq: u64,
    now: Timestamp,
    scored_under: Vec<(String, u32)>,
) -> Header {
    Header {
        format: FORMAT,
        seq,
        settings: settings_fingerprint(settings),
        program: program.fingerprint(),
        suppressed: store.privacy.suppressed_count() as u64,
        models: scored_under,
        taken_at: now,
    }
}

/// The newest checkpoint usable under these settings and definitions;
/// `None` (the whole log is replayed) when there is none or it does not fit.
pub(crate) fn load(
    store: &Store,
    settings: &EngineSettings,
    program: &Program,
) -> Option<Restored> {
    let checkpoint = match store.checkpoints.latest() {
        Ok(found) => found?,
        Err(error) => {
            tracing::warn!(%error, "checkpoints unreadable; replaying the whole log");
            return None;
        }
    };
    let started = std::time::Instant::now();
    let mut parts = checkpoint.parts.into_iter();
    let router: RouterPart = match rmp_serde::from_slice(&parts.next()?) {
        Ok(router) => router,
        Err(error) => {
            tracing::warn!(%error, "checkpoint does not decode; replaying the whole log");
            return None;
        }
    };
    let expected = header(
        store,
        settings,
        program,
        router.header.seq,
        router.header.taken_at,
        served_models(settings),
    );
    if let Some(reason) = mismatch(&router.header, &expected, parts.len(), settings) {
        tracing::info!(reason, "checkpoint not used; replaying the whole log");
        return None;
    }
    let shards = decode_shards(parts.collect())?;
    tracing::info!(
        seq = router.header.seq,
        profiles = router.members.len(),
        took_ms = started.elapsed().as_millis() as u64,
        "checkpoint loaded; replaying the log after it"
    );
    let rescore = router.header.models != expected.models;
    Some(Restored {
        router,
        shards,
        rescore,
    })
}

/// Why a checkpoint cannot be used, if it cannot.
fn mismatch(
    found: &Header,
    expected: &Header,
    shard_parts: usize,
    settings: &EngineSettings,
) -> Option<&'static str> {
    if found.format != FORMAT {
        return Some("written by another version");
    }
    if shard_parts != settings.shards.max(1) {
        return Some("taken with another number of shards");
    }
    if found.settings != expected.settings {
        return Some("taken under other identity rules, retention or source precedence");
    }
    if found.program != expected.program {
        return Some("taken under other audience or computed-trait definitions");
    }
    if found.suppressed != expected.suppressed {
        return Some("taken before an erasure");
    }
    None
}

/// Decodes the shards' parts in parallel (they are most of the state).
fn decode_shards(parts: Vec<Vec<u8>>) -> Option<Vec<ShardPart>> {
    let decoded: Vec<Result<ShardPart, rmp_serde::decode::Error>> = std::thread::scope(|scope| {
        let handles: Vec<_> = parts
            .iter()
            .map(|part| scope.spawn(move || rmp_serde::from_slice::<ShardPart>(part)))
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("decoding a checkpoint part"))
            .collect()
    });
    decoded
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .inspect_err(|error| {
            tracing::warn!(%error, "checkpoint part does not decode; replaying the whole log")
        })
        .ok()
}

/// The models served now, by name and version.
pub(crate) fn served_models(settings: &EngineSettings) -> Vec<(String, u32)> {
    settings
        .models
        .read()
        .map(|models| {
            models
                .served()
                .into_iter()
                .map(|(name, version, _)| (name, version))
                .collect()
        })
        .unwrap_or_default()
}

/// The settings a profile's state depends on (FNV-1a of their debug form:
/// the same in every build of one version, which is all a checkpoint
/// needs — another version's checkpoint is refused by `FORMAT` anyway or,
/// at worst, replayed past).
fn settings_fingerprint(settings: &EngineSettings) -> u64 {
    // Switching recommendations on replays the log, so they learn it all.
    let described = format!(
        "{:?}|{:?}|{:?}|{}|{}",
        settings.rules,
        settings.retention,
        settings.source_precedence,
        settings.shards,
        settings.recommendations
    );
    described
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        })
}

/// What must be durable before a checkpoint is written.
pub(crate) struct After {
    /// Announcements sent up to the checkpoint's position.
    pub(crate) announced: u64,
    /// The effects stage's decisions up to the checkpoint's position: a
    /// restore replays only the log after it, so an input the stage has not
    /// decided on yet would never be handed to it again.
    pub(crate) effects_through: Option<(tokio::sync::watch::Receiver<u64>, u64)>,
}

/// Scheduling priority of the thread that seals and writes a checkpoint
/// (hundreds of megabytes encrypted and flushed): background work that
/// must not take the CPU from the shards and ingest on a busy machine.
const WRITER_NICE: i32 = 10;

/// Lowers the calling thread's scheduling priority to `nice`.
fn lower_priority(nice: i32) {
    // SAFETY: setpriority on the calling thread's id; no memory is touched.
    unsafe {
        let thread = libc::gettid() as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, thread, nice);
    }
}

/// Writes a captured checkpoint once the announcements and decisions it
/// counts on are durable; runs off the router thread.
pub(crate) async fn finish(
    store: Arc<Store>,
    announcer: Option<crate::announcer::Announcer>,
    after: After,
    generation: u64,
    parts: Vec<Vec<u8>>,
) -> Result<bool, crate::EngineError> {
    if let Some(announcer) = announcer {
        announcer.durable_through(after.announced).await;
    }
    if let Some((mut committed, seq)) = after.effects_through {
        committed
            .wait_for(|through| *through >= seq)
            .await
            .map_err(|_| crate::EngineError::Stopped)?;
    }
    let bytes: usize = parts.iter().map(Vec::len).sum();
    let started = std::time::Instant::now();
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("kairos-checkpoint".into())
        .spawn(move || {
            lower_priority(WRITER_NICE);
            let _ = sender.send(store.checkpoints.write(generation, &parts));
        })
        .map_err(|_| crate::EngineError::Stopped)?;
    let written = receiver.await.map_err(|_| crate::EngineError::Stopped)??;
    if written {
        tracing::info!(
            generation,
            bytes,
            took_ms = started.elapsed().as_millis() as u64,
            "checkpoint written"
        );
    }
    Ok(written)
}
