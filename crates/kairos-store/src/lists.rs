//! Named lists of identifiers (`lists` keyspace): people a journey's
//! `add_to_list` step collected ("call back", "vip-invite"), and
//! suppression lists — identifiers never to contact, filled by journeys or
//! through the API (an email provider's bounces). Members are identifiers
//! (`email:ann@example.com`), not profile ids: identifiers survive merges,
//! and an address can be suppressed before anyone with it exists.
//!
//! Key: `<list>\0<identifier>` → [`ListMember`] (JSON). Erasure removes a
//! person's memberships ([`Lists::forget`]).

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::StoreError;
use crate::pseudonym::Pseudonyms;

const KEYSPACE: &str = "lists";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListMember {
    /// `type:value`.
    pub identifier: String,
    pub added_at: Timestamp,
    /// Who added it and why (`journey welcome`, `api: hard bounce`).
    pub reason: String,
}

pub struct Lists {
    db: Database,
    members: Keyspace,
    /// Members are keyed by the pseudonym of their identifier (erasure
    /// leaves no identifier in a tombstone).
    pseudonyms: Pseudonyms,
}

impl Lists {
    pub(crate) fn open(db: Database, pseudonyms: Pseudonyms) -> Result<Lists, StoreError> {
        let members = db.keyspace(KEYSPACE, KeyspaceCreateOptions::default)?;
        Ok(Lists {
            db,
            members,
            pseudonyms,
        })
    }

    pub(crate) fn keyspace(&self) -> &Keyspace {
        &self.members
    }

    /// Adds identifiers (already members keep their first entry); durable
    /// when it returns. Returns how many were new.
    pub fn add(
        &self,
        list: &str,
        identifiers: &[String],
        reason: &str,
        at: Timestamp,
    ) -> Result<usize, StoreError> {
        let mut batch = self.db.batch();
        let mut added = 0;
        for identifier in identifiers {
            let key = self.member_key(list, identifier);
            if self.members.get(&key)?.is_some() {
                continue;
            }
            let member = ListMember {
                identifier: identifier.clone(),
                added_at: at,
                reason: reason.to_string(),
            };
            batch.insert(
                &self.members,
                key,
                serde_json::to_vec(&member).expect("a member serializes"),
            );
            added += 1;
        }
        if added > 0 {
            batch.commit()?;
            self.db.persist(PersistMode::SyncData)?;
        }
        Ok(added)
    }

    /// A journey's addition, in the batch of the step that decided it:
    /// an identifier already on the list keeps its first entry.
    pub(crate) fn write_member(
        &self,
        batch: &mut fjall::OwnedWriteBatch,
        list: &str,
        member: &ListMember,
    ) -> Result<(), StoreError> {
        let key = self.member_key(list, &member.identifier);
        if self.members.get(&key)?.is_none() {
            batch.insert(
                &self.members,
                key,
                serde_json::to_vec(member).expect("a member serializes"),
            );
        }
        Ok(())
    }

    /// Removes one identifier; whether it was there.
    pub fn remove(&self, list: &str, identifier: &str) -> Result<bool, StoreError> {
        let key = self.member_key(list, identifier);
        if self.members.get(&key)?.is_none() {
            return Ok(false);
        }
        self.members.remove(key)?;
        self.db.persist(PersistMode::SyncData)?;
        Ok(true)
    }

    /// Members in a stable order (of their pseudonyms), after the member
    /// `after` (paging).
    pub fn members(
        &self,
        list: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ListMember>, StoreError> {
        let start = match after {
            Some(after) => {
                let mut key = self.member_key(list, after);
                key.push(0); // strictly after
                key
            }
            None => format!("{list}\0").into_bytes(),
        };
        let end = {
            let mut key = list.as_bytes().to_vec();
            key.push(1);
            key
        };
        let mut found = Vec::new();
        for guard in self.members.range(start..end).take(limit) {
            found.push(decode(&guard.value()?)?);
        }
        Ok(found)
    }

    /// Every list with its size.
    pub fn lists(&self) -> Result<Vec<(String, usize)>, StoreError> {
        let mut lists: Vec<(String, usize)> = Vec::new();
        for guard in self.members.iter() {
            let key = guard.key()?;
            let name = key.split(|byte| *byte == 0).next().unwrap_or_default();
            let name = String::from_utf8_lossy(name);
            match lists.last_mut() {
                Some((last, count)) if *last == name => *count += 1,
                _ => lists.push((name.into_owned(), 1)),
            }
        }
        Ok(lists)
    }

    /// The first of `lists` holding one of `identifiers`, with that
    /// identifier.
    pub fn find(
        &self,
        lists: &[String],
        identifiers: &[String],
    ) -> Result<Option<(String, String)>, StoreError> {
        for list in lists {
            for identifier in identifiers {
                if self
                    .members
                    .get(self.member_key(list, identifier))?
                    .is_some()
                {
                    return Ok(Some((list.clone(), identifier.clone())));
                }
            }
        }
        Ok(None)
    }

    /// Erasure: removes the identifiers from every list.
    pub fn forget(&self, identifiers: &[String]) -> Result<(), StoreError> {
        let names: Vec<String> = self.lists()?.into_iter().map(|(name, _)| name).collect();
        let mut batch = self.db.batch();
        for name in &names {
            for identifier in identifiers {
                batch.remove(&self.members, self.member_key(name, identifier));
            }
        }
        batch.commit()?;
        self.db.persist(PersistMode::SyncData)?;
        Ok(())
    }
}

impl Lists {
    fn member_key(&self, list: &str, identifier: &str) -> Vec<u8> {
        format!("{list}\0{}", self.pseudonyms.of(identifier)).into_bytes()
    }
}

fn decode(bytes: &[u8]) -> Result<ListMember, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|error| StoreError::Corrupt(format!("list member: {error}")))
}
