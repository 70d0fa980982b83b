//! The config file's `[[offers]]`, applied at start once the engine runs:
//! each is created, or changed to the file's content — a new version only
//! when it differs from the stored one — through the same functions as
//! `POST` / `PUT /v1/offers`, so the file gets the API's checks (its
//! experiment exists, what its eligibility names exists) and its owned
//! eligibility audience. Offers made through the API and absent from the
//! file stay. A refused offer stops the start, naming the entry.

use anyhow::bail;
use kairos_http::AppState;
use serde_json::Value;

/// Applies `offers` (compiled by the configuration already) in file order.
pub async fn apply(state: &AppState, offers: &[Value]) -> anyhow::Result<()> {
    for (index, definition) in offers.iter().enumerate() {
        let name = definition["name"].as_str().unwrap_or_default().trim();
        let applied = match state.store.outbox.offer(name) {
            Some(record) if record.definition == *definition => continue,
            Some(record) => {
                kairos_http::decisions::change(state, &record, definition.clone()).await
            }
            None => kairos_http::decisions::create(state, definition.clone()).await,
        };
        match applied {
            Ok(record) => tracing::info!(
                offer = %record.name,
                version = record.version,
                "offer from the config file applied"
            ),
            // The detail names the field (and line and column) at fault.
            Err(problem) => bail!("config file: offers[{index}] {name:?}: {}", problem.detail),
        }
    }
    Ok(())
}
