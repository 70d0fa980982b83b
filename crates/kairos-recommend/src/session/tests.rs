use super::*;

fn never(_: ItemKey) -> bool {
    false
}

fn items_of(answer: &[Scored]) -> Vec<ItemKey> {
    answer.iter().map(|scored| scored.item).collect()
}

/// Sessions 1..=3 click 10 then 20; session 4 clicks 10 then 30.
fn small_index(config: SessionConfig) -> SessionIndex {
    let mut index = SessionIndex::new(config);
    let mut time_ms = 0;
    for (session, items) in [(1, [10, 20]), (2, [10, 20]), (3, [10, 20]), (4, [10, 30])] {
        for item in items {
            time_ms += 1000;
            index.record(session, item, time_ms);
        }
    }
    index
}

fn no_reminders() -> SessionConfig {
    SessionConfig {
        remind_weight: 0.0,
        ..SessionConfig::default()
    }
}

#[test]
fn recommends_what_similar_sessions_clicked_next() {
    let index = small_index(no_reminders());
    let answer = index.recommend(&[10], 5, &never);
    assert_eq!(items_of(&answer), vec![20, 30]);
    assert!(answer[0].score > answer[1].score);
    assert_eq!(
        answer[0].neighbours.len(),
        3,
        "the three sessions that went on to 20"
    );
    assert_eq!(answer[1].neighbours, vec![4]);
}

#[test]
fn incremental_updates_change_the_answer() {
    let mut index = small_index(no_reminders());
    assert_eq!(items_of(&index.recommend(&[10], 1, &never)), vec![20]);
    for session in 5..=9 {
        index.record(session, 10, 100_000 + session as i64);
        index.record(session, 30, 100_001 + session as i64);
    }
    assert_eq!(items_of(&index.recommend(&[10], 1, &never)), vec![30]);
}

#[test]
fn skip_is_honoured_and_limit_still_filled() {
    let mut index = small_index(no_reminders());
    for (offset, item) in (40..60).enumerate() {
        index.record(4, item, 50_000 + offset as i64);
    }
    let skip = |item: ItemKey| item == 20 || item % 2 == 1;
    let answer = index.recommend(&[10], 5, &skip);
    assert_eq!(answer.len(), 5);
    assert!(answer.iter().all(|scored| !skip(scored.item)));
}

#[test]
fn forget_session_removes_its_influence() {
    let mut index = small_index(no_reminders());
    index.forget_session(4);
    assert_eq!(items_of(&index.recommend(&[10], 5, &never)), vec![20]);
    assert_eq!(index.session_items(4), None);
    assert!(!index.item_sessions(10).contains(&4));
    assert_eq!(index.items(), 2, "item 30 had only session 4");
    assert_eq!(index.sessions(), 3);
}

#[test]
fn recommend_for_never_uses_the_session_itself() {
    let mut index = small_index(no_reminders());
    index.record(99, 30, 200_000);
    index.record(99, 77, 200_001);
    // Only session 99 clicked 77: without itself it has no neighbour via 77.
    let answer = index.recommend_for(99, 5, &never);
    assert!(!items_of(&answer).contains(&77));
    assert_eq!(items_of(&answer), vec![10]);
}

#[test]
fn reminders_bring_back_the_sessions_own_items() {
    let index = small_index(SessionConfig::default());
    let answer = index.recommend(&[10], 5, &never);
    assert!(items_of(&answer).contains(&10));
    let answer = index.recommend(&[10], 5, &|item| item == 10);
    assert!(!items_of(&answer).contains(&10));
}

#[test]
fn bounds_hold_when_recording_past_every_cap() {
    let config = SessionConfig {
        sessions_per_item: 4,
        items_per_session: 3,
        max_sessions: 5,
        ..SessionConfig::default()
    };
    let mut index = SessionIndex::new(config);
    let mut time_ms = 0;
    for session in 0..20u64 {
        for item in 0..10u32 {
            time_ms += 1;
            index.record(session, item % 6, time_ms);
            assert!(index.sessions() <= 5);
            assert!(index.session_items(session).unwrap().len() <= 3);
        }
    }
    for item in 0..6 {
        assert!(index.item_sessions(item).len() <= 4);
    }
    // The newest sessions are the ones kept.
    let mut held: Vec<_> = (0..20)
        .filter(|s| index.session_items(*s).is_some())
        .collect();
    held.sort();
    assert_eq!(held, vec![15, 16, 17, 18, 19]);
    assert_internally_consistent(&index);
}

#[test]
fn a_live_session_keeps_only_its_last_clicks() {
    let mut index = SessionIndex::new(SessionConfig {
        items_per_session: 3,
        ..SessionConfig::default()
    });
    for item in 0..100 {
        index.record(1, item, item as i64);
    }
    assert_eq!(index.session_items(1).unwrap(), &[97, 98, 99]);
    assert_eq!(
        index.items(),
        3,
        "items only the dropped clicks held are gone"
    );
    assert_internally_consistent(&index);
}

#[test]
fn skipping_the_sessions_items_gives_the_ranking_without_reminders() {
    let mut reminding = small_index(SessionConfig::default());
    let mut plain = small_index(no_reminders());
    for index in [&mut reminding, &mut plain] {
        index.record(5, 20, 60_000);
        index.record(5, 30, 61_000);
        index.record(5, 40, 62_000);
    }
    let evolving = [10, 20];
    let skip = |item: ItemKey| evolving.contains(&item);
    assert_eq!(
        reminding.recommend(&evolving, 5, &skip),
        plain.recommend(&evolving, 5, &never)
    );
    assert_eq!(
        items_of(&plain.recommend(&evolving, 5, &never)),
        vec![30, 40]
    );
}

#[test]
fn reasons_name_sessions_by_key_after_slots_are_reused() {
    let mut index = small_index(no_reminders());
    index.forget_session(1);
    index.record(777, 10, 70_000);
    index.record(777, 55, 70_001);
    let answer = index.recommend(&[10], 5, &never);
    let item_55 = answer
        .iter()
        .find(|scored| scored.item == 55)
        .expect("55 recommended");
    assert_eq!(item_55.neighbours, vec![777]);
}

#[test]
fn serde_round_trip_keeps_answers_and_eviction_order() {
    let mut index = small_index(SessionConfig {
        max_sessions: 4,
        ..SessionConfig::default()
    });
    let json = serde_json::to_string(&index).unwrap();
    let mut back: SessionIndex = serde_json::from_str(&json).unwrap();
    assert_eq!(
        back.recommend(&[10, 20], 10, &never),
        index.recommend(&[10, 20], 10, &never)
    );
    assert_eq!(back.config(), index.config());
    assert_internally_consistent(&back);
    // Both evict session 1 (the least recently active) next.
    index.record(50, 10, 1_000_000);
    back.record(50, 10, 1_000_000);
    assert_eq!(back.session_items(1), None);
    assert_eq!(
        serde_json::to_string(&back).unwrap(),
        serde_json::to_string(&index).unwrap()
    );
}

#[test]
fn validate_names_the_field_at_fault() {
    assert_eq!(SessionConfig::default().validate(), Ok(()));
    let error = SessionConfig {
        neighbours: 0,
        ..SessionConfig::default()
    }
    .validate()
    .unwrap_err();
    assert!(
        error.starts_with("neighbours must be at least 1 (the default is 100)"),
        "{error}"
    );
    let error = SessionConfig {
        position_decay: 0.0,
        ..SessionConfig::default()
    }
    .validate()
    .unwrap_err();
    assert!(
        error.starts_with("position_decay must be a positive"),
        "{error}"
    );
    let error = SessionConfig {
        remind_weight: f64::NAN,
        ..SessionConfig::default()
    }
    .validate()
    .unwrap_err();
    assert!(
        error.starts_with("remind_weight must be a finite number"),
        "{error}"
    );
}

#[test]
fn memory_estimate_grows_with_content() {
    let empty = SessionIndex::default().memory_bytes();
    let index = small_index(SessionConfig::default());
    assert!(index.memory_bytes() > empty);
}

#[test]
fn random_records_and_erasures_keep_the_index_consistent() {
    let config = SessionConfig {
        sessions_per_item: 3,
        items_per_session: 4,
        max_sessions: 6,
        ..SessionConfig::default()
    };
    let mut index = SessionIndex::new(config);
    let mut seed = 7u64;
    for time_ms in 0..2000 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let session = (seed >> 33) % 10;
        let item = ((seed >> 17) % 8) as ItemKey;
        if (seed >> 50).is_multiple_of(50) {
            index.forget_session(session);
        } else {
            index.record(session, item, time_ms);
        }
        assert_internally_consistent(&index);
    }
}

/// Every listed session holds the item; every count and order agrees.
fn assert_internally_consistent(index: &SessionIndex) {
    assert_eq!(index.by_activity.len(), index.slot_of.len());
    for (touch, slot) in &index.by_activity {
        assert_eq!(index.slots[*slot as usize].touch, *touch);
    }
    for (key, slot) in &index.slot_of {
        assert_eq!(index.slots[*slot as usize].key, *key);
        assert!(!index.slots[*slot as usize].items.is_empty());
    }
    for slot in &index.free {
        assert!(
            index.slots[*slot as usize].items.is_empty(),
            "a free slot holds clicks"
        );
    }
    let mut total = 0;
    for (item, state) in &index.items {
        assert!(
            !state.sessions.is_empty(),
            "item {item} held without a session"
        );
        assert!(state.sessions.len() <= index.config.sessions_per_item);
        for slot in &state.sessions {
            let held = &index.slots[*slot as usize].items;
            assert!(
                held.contains(item),
                "slot {slot} listed for {item} it no longer holds"
            );
        }
        let mut distinct = state.sessions.clone().into_iter().collect::<Vec<_>>();
        distinct.sort();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            state.sessions.len(),
            "a session listed twice for {item}"
        );
        total += state.clicks;
    }
    assert_eq!(total, index.total_clicks);
    for state in &index.slots {
        assert!(state.items.len() <= index.config.items_per_session);
    }
}
