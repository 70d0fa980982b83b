//! In-app messages: pushed over Server-Sent Events to whoever is on the
//! site as the person right now (`GET /v1/in-app/stream`).
//!
//! Who may listen: a write key is public (it sits in every page), so it
//! never opens a person's stream on its own. A page listens as
//! `anonymous_id:<its own cookie id>` — a random id only that browser
//! knows — or as any other identifier with an **identity token**, the
//! HMAC-SHA256 of `type:value` under the source's identity secret, which
//! the site's backend mints for the person who logged in (the way
//! Intercom's identity verification works). A verified page also takes
//! the messages addressed to the profile's other identifiers; an
//! anonymous one only those addressed to its own id.
//!
//! The worker of an in-app destination publishes each message to its
//! person's identifier and counts it delivered once a connected page took
//! it; nobody there is not a failure — the message waits for them
//! (docs/journeys.md). Rotating a source's keys, or erasing the person,
//! closes the streams concerned.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::mpsc;

/// Messages a slow page may have waiting before it is dropped.
const PAGE_QUEUE_MAX: usize = 64;
/// Pages connected at once, over every person: past it new pages are
/// refused (each holds a queue and a connection).
pub const PAGES_MAX: usize = 10_000;
/// Identifiers one page listens under (a profile's identities).
const PAGE_IDENTIFIERS_MAX: usize = 64;

/// The hex identity token of `identifier` (`type:value`) under `secret`.
pub fn identity_token(secret: &str, identifier: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(identifier.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Whether `token` is `identifier`'s identity token under `secret`
/// (compared in constant time).
pub fn token_is_valid(secret: &str, identifier: &str, token: &str) -> bool {
    let Some(bytes) = decode_hex(token.trim()) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(identifier.as_bytes());
    !secret.is_empty() && mac.verify_slice(&bytes).is_ok()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).ok())
        .collect()
}

/// One open page: the source it came through and what it listens under.
struct Page {
    sender: mpsc::Sender<Value>,
    source_id: String,
    identifiers: Vec<String>,
}

#[derive(Default)]
struct Pages {
    /// Page id → the page.
    open: HashMap<u64, Page>,
    /// Identifier (`type:value`) → the pages listening under it.
    by_identifier: HashMap<String, BTreeSet<u64>>,
}

/// The pages connected now, by identifier (`type:value`).
#[derive(Clone, Default)]
pub struct InAppHub {
    pages: Arc<Mutex<Pages>>,
    next_page: Arc<AtomicU64>,
}

/// A page's subscription: messages arrive on `receiver`; dropping the
/// subscription (the stream ended) forgets the page.
pub struct Subscription {
    pub receiver: mpsc::Receiver<Value>,
    page: u64,
    hub: InAppHub,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.forget(self.page);
    }
}

/// Why a page could not subscribe.
#[derive(Debug, PartialEq, Eq)]
pub enum SubscribeError {
    /// [`PAGES_MAX`] pages are connected.
    Full,
}

impl InAppHub {
    /// A page of the person known by `identifiers`, opened through
    /// `source_id`.
    pub fn subscribe(
        &self,
        source_id: &str,
        identifiers: &[String],
    ) -> Result<Subscription, SubscribeError> {
        let (sender, receiver) = mpsc::channel(PAGE_QUEUE_MAX);
        let page = self.next_page.fetch_add(1, Ordering::Relaxed);
        let mut pages = self.pages.lock().expect("in-app hub lock");
        if pages.open.len() >= PAGES_MAX {
            return Err(SubscribeError::Full);
        }
        let unique: BTreeSet<&String> = identifiers.iter().take(PAGE_IDENTIFIERS_MAX).collect();
        for identifier in &unique {
            pages
                .by_identifier
                .entry((*identifier).clone())
                .or_default()
                .insert(page);
        }
        pages.open.insert(
            page,
            Page {
                sender,
                source_id: source_id.to_string(),
                identifiers: unique.into_iter().cloned().collect(),
            },
        );
        drop(pages);
        Ok(Subscription {
            receiver,
            page,
            hub: self.clone(),
        })
    }

    /// Hands a message to every open page of the person; whether one took it.
    pub fn publish(&self, identifier: &str, message: &Value) -> bool {
        let pages = self.pages.lock().expect("in-app hub lock");
        let Some(listening) = pages.by_identifier.get(identifier) else {
            return false;
        };
        let mut taken = false;
        for page in listening {
            if let Some(page) = pages.open.get(page) {
                taken |= page.sender.try_send(message.clone()).is_ok();
            }
        }
        taken
    }

    /// Whether a page listens under `identifier` now.
    pub fn is_connected(&self, identifier: &str) -> bool {
        let pages = self.pages.lock().expect("in-app hub lock");
        pages.by_identifier.contains_key(identifier)
    }

    /// Closes every page opened through `source_id` (its keys rotated).
    pub fn close_source(&self, source_id: &str) {
        let mut pages = self.pages.lock().expect("in-app hub lock");
        let closing: Vec<u64> = pages
            .open
            .iter()
            .filter(|(_, page)| page.source_id == source_id)
            .map(|(id, _)| *id)
            .collect();
        for page in closing {
            remove_page(&mut pages, page);
        }
    }

    /// Closes every page listening under one of `identifiers` (the person
    /// was erased).
    pub fn close_identifiers(&self, identifiers: &[String]) {
        let mut pages = self.pages.lock().expect("in-app hub lock");
        let closing: BTreeSet<u64> = identifiers
            .iter()
            .filter_map(|identifier| pages.by_identifier.get(identifier))
            .flatten()
            .copied()
            .collect();
        for page in closing {
            remove_page(&mut pages, page);
        }
    }

    /// Pages connected now.
    pub fn page_count(&self) -> usize {
        self.pages.lock().expect("in-app hub lock").open.len()
    }

    fn forget(&self, page: u64) {
        let mut pages = self.pages.lock().expect("in-app hub lock");
        remove_page(&mut pages, page);
    }
}

/// Drops a page's sender (its stream then ends) and its index entries.
fn remove_page(pages: &mut Pages, page: u64) {
    let Some(removed) = pages.open.remove(&page) else {
        return;
    };
    for identifier in removed.identifiers {
        if let Some(listening) = pages.by_identifier.get_mut(&identifier) {
            listening.remove(&page);
            if listening.is_empty() {
                pages.by_identifier.remove(&identifier);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_for_their_identifier_and_secret() {
        let token = identity_token("ivs_secret", "user_id:u1");
        assert_eq!(token.len(), 64);
        assert!(token_is_valid("ivs_secret", "user_id:u1", &token));
        assert!(!token_is_valid("ivs_secret", "user_id:u2", &token));
        assert!(!token_is_valid("ivs_other", "user_id:u1", &token));
        assert!(!token_is_valid(
            "",
            "user_id:u1",
            &identity_token("", "user_id:u1")
        ));
        assert!(!token_is_valid("ivs_secret", "user_id:u1", "zz"));
    }

    #[test]
    fn ended_and_closed_pages_leave_nothing_behind() {
        let hub = InAppHub::default();
        let first = hub.subscribe("src_a", &["user_id:u1".into()]).unwrap();
        let second = hub
            .subscribe("src_b", &["user_id:u1".into(), "email:a@b.c".into()])
            .unwrap();
        assert!(hub.publish("user_id:u1", &Value::Null));
        drop(first);
        assert_eq!(hub.page_count(), 1);
        hub.close_source("src_b");
        assert_eq!(hub.page_count(), 0);
        assert!(!hub.publish("email:a@b.c", &Value::Null));
        assert!(hub.pages.lock().unwrap().by_identifier.is_empty());
        drop(second);
        let third = hub.subscribe("src_a", &["user_id:u9".into()]).unwrap();
        hub.close_identifiers(&["user_id:u9".into()]);
        assert!(!hub.is_connected("user_id:u9"));
        drop(third);
    }
}
