//! Privacy operations (GDPR, CCPA) and consent.
//!
//! - `GET /v1/profiles/{type}:{value}/export`: everything held about a
//!   person (right of access);
//! - `DELETE /v1/profiles/{type}:{value}`: erase a person (right to
//!   erasure): the profile and identities leave the engine, the keys their
//!   events are sealed under are destroyed, quarantined events naming them
//!   are deleted, their identifiers are suppressed, and a receipt goes to
//!   the audit log (`GET /v1/admin/audit`);
//! - `PUT /v1/profiles/{type}:{value}/consent`: consent per purpose from an
//!   API, recorded as an event in the log like consent from the SDKs.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use kairos_core::identity::Identifier;
use kairos_store::ErasureReceipt;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::admin::JsonBody;
use crate::auth::Admin;
use crate::internal::append_internal;
use crate::problem::Problem;
use crate::profiles::{identifier, unknown};

/// Source name of the events the consent API writes.
pub const CONSENT_SOURCE: &str = "kairos-consent-api";

/// `DELETE /v1/profiles/{type}:{value}`
pub async fn erase_profile(
    _: Admin,
    State(state): State<AppState>,
    Path(path): Path<String>,
) -> Result<Response, Problem> {
    let identifier = identifier(&path)?;
    let requested_at = state.clock.now();
    let erased = state
        .engine
        .erase(identifier.clone())
        .await?
        .ok_or_else(|| unknown(&identifier))?;
    let subjects: Vec<_> = erased
        .identities
        .iter()
        .map(|identity| state.store.vault.subject(identity))
        .collect();
    let values: Vec<String> = erased
        .identities
        .iter()
        .map(|identity| identity.value.clone())
        .collect();
    let quarantined = state.store.quarantine.naming(&subjects, &values)?;
    let listed: Vec<String> = erased
        .identities
        .iter()
        .map(|identity| format!("{}:{}", identity.kind, identity.value))
        .collect();
    state.store.lists.forget(&listed)?;
    // From here until the purge ends, a crash leaves it to the next start.
    state.store.purge_pending()?;
    // Journeys, waits and messages about the person end here: nothing
    // already decided is sent, and open in-app pages close.
    let outbox_erased = state.store.outbox.forget(&listed)?;
    if let Some(deliverer) = &state.deliverer {
        deliverer.hub().close_identifiers(&listed);
    }
    let mut identities = BTreeMap::new();
    for identity in &erased.identities {
        *identities.entry(identity.kind.clone()).or_insert(0) += 1;
    }
    let receipt = ErasureReceipt {
        id: String::new(),
        profile_id: erased.profile_id.clone(),
        requested_at,
        completed_at: requested_at,
        identities,
        keys_destroyed: 0,
        events_erased: erased.events,
        quarantine_purged: quarantined.len(),
        effective_after_seq: erased.applied_seq,
        outbox_erased,
    };
    let receipt = state
        .store
        .writer
        .erase(
            subjects.clone(),
            subjects,
            erased.applied_seq,
            receipt,
            quarantined,
        )
        .await?;
    // No checkpoint may keep the person: a fresh one replaces them (their
    // keys are deleted, and compacted away below).
    state.engine.checkpoint_without_erased().await?;
    // Compact before answering, so a receipt means the data is gone from
    // the files too (not only unreadable).
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || store.purge_erased())
        .await
        .map_err(|error| Problem::internal("purging erased data", error))??;
    tracing::info!(receipt = %receipt.id, profile = %receipt.profile_id, "person erased");
    Ok(axum::Json(receipt).into_response())
}

/// `GET /v1/profiles/{type}:{value}/export`
pub async fn export_profile(
    _: Admin,
    State(state): State<AppState>,
    Path(path): Path<String>,
) -> Result<Response, Problem> {
    let identifier = identifier(&path)?;
    let export = state
        .engine
        .export(identifier.clone())
        .await?
        .ok_or_else(|| unknown(&identifier))?;
    let store = state.store.clone();
    let identities: Vec<String> = export
        .profile
        .identities
        .iter()
        .map(|identity| format!("{}:{}", identity.kind, identity.value))
        .collect();
    let (events, decisions) = tokio::task::spawn_blocking(move || -> Result<_, Problem> {
        let mut events = Vec::with_capacity(export.seqs.len());
        for seq in &export.seqs {
            if let Some(stored) = store.log.get(*seq)? {
                events.push(stored.to_json());
            }
        }
        // The decisions made about them (docs/decisions.md), kept for the
        // retention window.
        let mut decisions = Vec::new();
        for identity in &identities {
            for id in store.outbox.decision_ids_of(identity)? {
                decisions.extend(store.outbox.decision(&id)?);
            }
        }
        decisions.sort_by(|a, b| a.at.cmp(&b.at).then(a.id.cmp(&b.id)));
        Ok((events, decisions))
    })
    .await
    .map_err(|error| Problem::internal("reading the events to export", error))??;
    let body = format!(
        "{{\"exported_at\":{},\"profile\":{},\"decisions\":{},\"events\":[{}]}}",
        serde_json::to_string(&state.clock.now()).expect("a timestamp serializes"),
        serde_json::to_string(&export.profile).expect("a profile serializes"),
        serde_json::to_string(&decisions).expect("decisions serialize"),
        events.join(","),
    );
    let file_name = format!("attachment; filename=\"{}.json\"", export.profile.id);
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/json".to_string(),
            ),
            (axum::http::header::CONTENT_DISPOSITION, file_name),
        ],
        body,
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct AuditQuery {
    limit: Option<usize>,
}

/// `GET /v1/admin/audit`: erasure receipts, newest first.
pub async fn list_audit(
    _: Admin,
    State(state): State<AppState>,
    Query(query): Query<AuditQuery>,
) -> Result<Response, Problem> {
    let limit = crate::problem::limit_param(query.limit, 100, 1000)?;
    let receipts = state.store.privacy.audit(limit)?;
    Ok(axum::Json(json!({ "erasures": receipts })).into_response())
}

/// Segment's consent object: purpose (category) → granted.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConsentUpdate {
    category_preferences: BTreeMap<String, bool>,
}

/// `PUT /v1/profiles/{type}:{value}/consent`: records the person's consent
/// per purpose as a `Consent Updated` event (Segment's consent format in
/// `context.consent`), so it is durable, ordered with the person's other
/// events and replayed like them; answers the updated profile.
pub async fn update_consent(
    _: Admin,
    State(state): State<AppState>,
    Path(path): Path<String>,
    JsonBody(update): JsonBody<ConsentUpdate>,
) -> Result<Response, Problem> {
    let identifier = identifier(&path)?;
    if update.category_preferences.is_empty() {
        return Err(Problem::bad_request(
            "consent_empty",
            "send {\"categoryPreferences\": {\"Advertising\": false, \"Analytics\": true}}",
        ));
    }
    // The person must exist: consent for nobody would create a profile.
    state
        .engine
        .profile(identifier.clone())
        .await?
        .ok_or_else(|| unknown(&identifier))?;
    let mut event = addressed_to(&identifier);
    event["type"] = json!("track");
    event["event"] = json!("Consent Updated");
    event["context"]["consent"] = json!({ "categoryPreferences": update.category_preferences });
    let outcome = append_internal(&state, CONSENT_SOURCE, vec![event]).await?;
    if let Some(rejected) = outcome.rejected.first() {
        return Err(Problem::bad_request(
            "consent_invalid",
            format!("the consent update is invalid: {}", rejected.errors),
        ));
    }
    let view = state
        .engine
        .profile(identifier.clone())
        .await?
        .ok_or_else(|| unknown(&identifier))?;
    Ok(axum::Json(view).into_response())
}

/// An event skeleton naming the person by one identifier of any type.
pub fn addressed_to(identifier: &Identifier) -> Value {
    match identifier.kind.as_str() {
        "user_id" => json!({ "userId": identifier.value, "context": {} }),
        "anonymous_id" => json!({ "anonymousId": identifier.value, "context": {} }),
        kind => json!({
            "context": { "externalIds": [{ "id": identifier.value, "type": kind, "collection": "users", "encoding": "none" }] }
        }),
    }
}
