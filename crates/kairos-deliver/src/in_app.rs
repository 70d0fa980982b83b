//! In-app messages: pushed over Server-Sent Events to whoever is on the
//! site as the person right now (`GET /v1/in-app/stream`). A browser
//! subscribes under every identifier of its profile; the worker of an
//! in-app destination publishes each message to its person's identifier
//! and counts it delivered once a connected page took it — nobody there,
//! it is retried on the schedule (and sent at once when they connect).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::mpsc;

/// Messages a slow page may have waiting before it is dropped.
const PAGE_QUEUE_MAX: usize = 64;

/// The pages connected now, by identifier (`type:value`).
#[derive(Clone, Default)]
pub struct InAppHub {
    pages: Arc<Mutex<HashMap<String, Vec<mpsc::Sender<Value>>>>>,
    connected: Arc<tokio::sync::Notify>,
}

impl InAppHub {
    /// A page of the person known by `identifiers`; messages arrive on the
    /// receiver until it is dropped.
    pub fn subscribe(&self, identifiers: &[String]) -> mpsc::Receiver<Value> {
        let (sender, receiver) = mpsc::channel(PAGE_QUEUE_MAX);
        let mut pages = self.pages.lock().expect("in-app hub lock");
        let unique: std::collections::BTreeSet<&String> = identifiers.iter().collect();
        for identifier in unique {
            let list = pages.entry(identifier.clone()).or_default();
            list.retain(|page| !page.is_closed());
            list.push(sender.clone());
        }
        drop(pages);
        self.connected.notify_waiters();
        receiver
    }

    /// Hands a message to every open page of the person; whether one took it.
    pub fn publish(&self, identifier: &str, message: &Value) -> bool {
        let mut pages = self.pages.lock().expect("in-app hub lock");
        let Some(list) = pages.get_mut(identifier) else {
            return false;
        };
        list.retain(|page| !page.is_closed());
        let mut taken = false;
        for page in list.iter() {
            taken |= page.try_send(message.clone()).is_ok();
        }
        if list.is_empty() {
            pages.remove(identifier);
        }
        taken
    }

    /// Resolves when a page connects (the in-app worker then tries its
    /// pending messages at once).
    pub async fn connected(&self) {
        self.connected.notified().await;
    }
}
