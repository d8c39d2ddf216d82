//! The store's operations round trip, at fixed times.

use std::collections::HashSet;

use super::*;
use crate::event::JournalEntry;
use crate::message::{Delivery, Rendered};
use crate::routing::decide::{RouteTarget, deliveries, next_in_chain};

const NOW: u64 = 1_000_000;

fn content() -> Rendered {
    Rendered {
        title: "t".into(),
        description: "d".into(),
        ..Rendered::default()
    }
}

/// A routing commit of one event matched by route `r`, delivered to `actions`.
fn commit(id: &str, actions: &[&str], serialize: bool, checkpoint: Option<u64>) -> RoutingCommit {
    let actions: Vec<String> = actions.iter().map(|s| s.to_string()).collect();
    let t = RouteTarget {
        route: "r",
        actions: &actions,
        serialize,
    };
    let (queued, records) = deliveries(id, &t, &content(), None, NOW);
    let record = EventRecord {
        id: id.into(),
        received_at_ms: 1,
        tenant: None,
        body: String::new(),
        routed_at_ms: NOW,
        routes: vec![RouteRecord {
            route: "r".into(),
            matched: true,
            note: None,
            actions: records,
        }],
        error: None,
    };
    RoutingCommit {
        checkpoint,
        events: vec![(record, "{}".into())],
        queued,
        ..RoutingCommit::default()
    }
}

fn due(s: &Store, action: &str, now: u64) -> Vec<Delivery> {
    s.due_scan(action, now, 10, &HashSet::new()).unwrap().due
}

fn outcome(s: &Store, d: &Delivery, o: Outcome, now: u64) {
    let next = match o {
        Outcome::Retry { .. } => None,
        _ => next_in_chain(d, now),
    };
    let c = OutcomeCommit {
        delivery: d.clone(),
        outcome: o,
        next,
    };
    s.record_outcomes(&[c], now).unwrap();
}

/// Deliveries not finished yet (all actions).
fn outbox_len(s: &Store) -> u64 {
    use redb::{ReadableDatabase, ReadableTableMetadata};
    s.db.begin_read()
        .unwrap()
        .open_table(OUTBOX)
        .unwrap()
        .len()
        .unwrap()
}

fn routed(s: &Store, id: &str) -> EventRecord {
    match s.event(id).unwrap() {
        Some(EventView::Routed(r)) => r,
        other => panic!("{other:?}"),
    }
}

#[test]
fn journal_routing_outbox_and_outcomes_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("db")).unwrap();
    s.commit_routing(&commit("e1", &["a", "b"], false, Some(77)))
        .unwrap();
    assert_eq!(s.checkpoint().unwrap(), 77);
    assert_eq!(routed(&s, "e1").body, "{}");
    let a = due(&s, "a", NOW);
    assert_eq!(a.len(), 1);
    let mut d = a[0].clone();
    d.attempts = 1;
    let retry = Outcome::Retry {
        next_at: NOW + 60_000,
        error: "503".into(),
    };
    outcome(&s, &d, retry, NOW);
    assert!(due(&s, "a", NOW).is_empty());
    let next = s.due_scan("a", NOW, 10, &HashSet::new()).unwrap().next_at;
    assert_eq!(next, Some(NOW + 60_000));
    let mut d = due(&s, "a", NOW + 120_000).remove(0);
    assert_eq!(d.last_error.as_deref(), Some("503"));
    d.attempts = 2;
    outcome(&s, &d, Outcome::Delivered, NOW);
    let b = due(&s, "b", NOW).remove(0);
    outcome(
        &s,
        &b,
        Outcome::Dead {
            error: "400 bad".into(),
        },
        NOW,
    );
    assert_eq!(outbox_len(&s), 0);
    let ev = routed(&s, "e1");
    assert!(ev.finished());
    assert_eq!(ev.routes[0].actions[0].status, Status::Delivered);
    assert_eq!(ev.routes[0].actions[0].attempts, 2);
    assert_eq!(ev.routes[0].actions[1].status, Status::Dead);
    assert_eq!(s.dead_letters().unwrap().len(), 1);
    assert_eq!(s.replay(None, &|_| false, NOW).unwrap().skipped.len(), 1);
    let r = s
        .replay(Some(&["nope".to_string()]), &|_| true, NOW)
        .unwrap();
    assert_eq!(r.unknown, vec!["nope".to_string()]);
    let replayed = s.replay(None, &|_| true, NOW + 5).unwrap().replayed;
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0].attempts, 0);
    assert_eq!(replayed[0].created_at_ms, NOW + 5);
    assert!(s.dead_letters().unwrap().is_empty());
    assert_eq!(due(&s, "b", NOW + 5).len(), 1);
}

#[test]
fn an_event_in_the_journal_shows_as_queued_until_routed() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("db")).unwrap();
    let mut w = s.open_journal().unwrap();
    let e = JournalEntry {
        route: None,
        received_at_ms: 5,
        body: "{\"k\":1}".into(),
    };
    w.write(&[("e9", &e)]).unwrap();
    // Written, not acknowledged yet: not shown.
    assert!(s.event("e9").unwrap().is_none());
    w.file().sync_data().unwrap();
    s.set_journal_end(w.end());
    assert_eq!(
        s.event("e9").unwrap(),
        Some(EventView::Queued {
            id: "e9".into(),
            entry: e.clone()
        })
    );
    assert!(s.journal_bytes().unwrap() > 0);
    let (recs, next) = s.read_journal(0, 10).unwrap();
    assert_eq!((recs.len(), next), (1, w.end()));
    s.commit_routing(&commit("e9", &["a"], false, Some(w.end())))
        .unwrap();
    assert_eq!(s.journal_bytes().unwrap(), 0);
    assert!(!routed(&s, "e9").finished());
}

#[test]
fn a_dead_delivery_releases_its_dedup_hold_only_when_all_are_dead() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("db")).unwrap();
    let mut c = commit("e1", &["a", "b"], false, None);
    for d in &mut c.queued {
        d.dedup_key = Some("r\u{0}k".into());
    }
    let hold = DedupHold {
        event_id: "e1".into(),
        expires_at_ms: 0,
    };
    c.holds.push(("r\u{0}k".into(), hold.clone()));
    s.commit_routing(&c).unwrap();
    assert_eq!(s.dedup_holds(["r\u{0}k"]).unwrap()["r\u{0}k"], hold);
    let a = due(&s, "a", NOW).remove(0);
    outcome(&s, &a, Outcome::Dead { error: "x".into() }, NOW);
    assert_eq!(
        s.dedup_holds(["r\u{0}k"]).unwrap().len(),
        1,
        "b still pending"
    );
    let b = due(&s, "b", NOW).remove(0);
    outcome(&s, &b, Outcome::Dead { error: "y".into() }, NOW);
    assert!(s.dedup_holds(["r\u{0}k"]).unwrap().is_empty(), "released");
}

#[test]
fn serialized_actions_are_queued_one_after_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("db")).unwrap();
    s.commit_routing(&commit("e1", &["a", "b"], true, None))
        .unwrap();
    assert!(due(&s, "b", NOW).is_empty());
    let a = due(&s, "a", NOW).remove(0);
    outcome(&s, &a, Outcome::Dead { error: "x".into() }, NOW);
    let b = due(&s, "b", NOW).remove(0);
    outcome(&s, &b, Outcome::Delivered, NOW);
    assert!(routed(&s, "e1").finished());
    assert_eq!(outbox_len(&s), 0);
}

#[test]
fn maintenance_expires_holds_and_trims_history_at_its_time() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("db")).unwrap();
    let mut c = commit("e1", &["a"], false, None);
    c.holds.push((
        "r\u{0}k".into(),
        DedupHold {
            event_id: "e1".into(),
            expires_at_ms: NOW + 10,
        },
    ));
    s.commit_routing(&c).unwrap();
    let m = s.maintain(1_000, None, NOW + 9).unwrap();
    assert_eq!((m.dedup_expired, m.history_trimmed), (0, 0));
    let m = s.maintain(1_000, None, NOW + 10).unwrap();
    assert_eq!(m.dedup_expired, 1);
    assert_eq!(m.history_trimmed, 0, "unfinished history stays");
    let a = due(&s, "a", NOW).remove(0);
    outcome(&s, &a, Outcome::Delivered, NOW);
    assert_eq!(
        s.maintain(1_000, None, NOW + 999).unwrap().history_trimmed,
        0
    );
    assert_eq!(
        s.maintain(1_000, None, NOW + 1_000)
            .unwrap()
            .history_trimmed,
        1
    );
}

#[test]
fn aggregation_queues_are_kept_and_removed_when_empty() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("db")).unwrap();
    let mut c = RoutingCommit::default();
    let q = AggState {
        items: vec![AggItem {
            event_id: "e1".into(),
            content: content(),
        }],
        window_started_ms: 3,
    };
    c.aggregation.insert("r".into(), q.clone());
    s.commit_routing(&c).unwrap();
    assert_eq!(s.aggregation_states().unwrap()["r"], q);
    c.aggregation.insert("r".into(), AggState::default());
    s.commit_routing(&c).unwrap();
    assert!(s.aggregation_states().unwrap().is_empty());
}

#[test]
fn the_store_is_full_only_with_undelivered_work() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("db")).unwrap();
    // Over a 1-byte limit with nothing to trim: database overhead, not full.
    assert!(!s.maintain(u64::MAX, Some(1), NOW).unwrap().over_limit);
    s.commit_routing(&commit("e1", &["a"], false, None))
        .unwrap();
    assert!(s.maintain(u64::MAX, Some(1), NOW).unwrap().over_limit);
    let d = due(&s, "a", NOW).remove(0);
    outcome(&s, &d, Outcome::Delivered, NOW);
    let m = s.maintain(u64::MAX, Some(1), NOW).unwrap();
    assert_eq!(m.history_trimmed, 1);
    assert!(!m.over_limit);
}

#[test]
fn orphans_are_the_deliveries_of_unknown_actions() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("db")).unwrap();
    s.commit_routing(&commit("e1", &["a", "gone"], false, None))
        .unwrap();
    let known: HashSet<String> = ["a".to_string()].into();
    let o = s.orphans(&known).unwrap();
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].action, "gone");
}

#[test]
fn a_second_process_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("db");
    let _s = Store::open(&p).unwrap();
    let err = Store::open(&p).err().unwrap();
    assert!(matches!(err, StoreError::InUse(_)), "{err}");
    assert!(err.to_string().contains("in use"), "{err}");
}

#[test]
fn the_api_key_is_made_once_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("db")).unwrap();
    let k = s.api_key(None).unwrap();
    assert_eq!(k.len(), 64);
    assert_eq!(s.api_key(None).unwrap(), k);
    assert_eq!(s.api_key(Some("mine")).unwrap(), "mine");
}
