//! Table tests of routing's decisions, at fixed times.

use super::*;
use crate::event::JournalEntry;

fn content(t: &str) -> Rendered {
    Rendered {
        title: t.into(),
        description: format!("{t} body"),
        ..Rendered::default()
    }
}

fn route_plan(route: &str, verdict: Verdict) -> RoutePlan {
    RoutePlan {
        route: route.into(),
        verdict,
        actions: vec!["a".into(), "b".into()],
        serialize: false,
        dedup: None,
        aggregate: None,
    }
}

fn event(id: &str, routes: Vec<RoutePlan>) -> EventPlan {
    EventPlan {
        id: id.into(),
        entry: JournalEntry {
            route: None,
            received_at_ms: 1,
            body: "{}".into(),
        },
        routes,
        failure: None,
    }
}

fn hold(event: &str, expires: u64) -> DedupHold {
    DedupHold {
        event_id: event.into(),
        expires_at_ms: expires,
    }
}

#[test]
fn dedup_decisions_at_fixed_times() {
    // (existing hold, ttl s, now, expected)
    let cases: &[(Option<DedupHold>, u64, u64, DedupDecision)] = &[
        (None, 0, 1_000, DedupDecision::Hold(hold("e", 0))),
        (None, 60, 1_000, DedupDecision::Hold(hold("e", 61_000))),
        (
            Some(hold("old", 0)),
            60,
            1_000,
            DedupDecision::Duplicate { of: "old".into() },
        ),
        (
            Some(hold("old", 5_000)),
            60,
            4_999,
            DedupDecision::Duplicate { of: "old".into() },
        ),
        // Expired exactly at its time.
        (
            Some(hold("old", 5_000)),
            60,
            5_000,
            DedupDecision::Hold(hold("e", 65_000)),
        ),
        (
            Some(hold("old", 5_000)),
            0,
            9_000,
            DedupDecision::Hold(hold("e", 0)),
        ),
    ];
    for (i, (existing, ttl, now, want)) in cases.iter().enumerate() {
        assert_eq!(dedup(existing.as_ref(), "e", *ttl, *now), *want, "case {i}");
    }
}

#[test]
fn count_aggregation_sends_every_n_newest_first() {
    let mut s = AggState::default();
    let item = |id: &str| AggItem {
        event_id: id.into(),
        content: content(id),
    };
    assert!(aggregate(&mut s, Aggregate::Count(3), item("1"), 10).is_none());
    assert_eq!(s.window_started_ms, 10);
    assert!(aggregate(&mut s, Aggregate::Count(3), item("2"), 20).is_none());
    let batch = aggregate(&mut s, Aggregate::Count(3), item("3"), 30).unwrap();
    let ids: Vec<&str> = batch.iter().map(|i| i.event_id.as_str()).collect();
    assert_eq!(ids, ["3", "2", "1"]);
    assert!(s.items.is_empty());
    // The next queue starts its own window.
    assert!(aggregate(&mut s, Aggregate::Count(3), item("4"), 40).is_none());
    assert_eq!(s.window_started_ms, 40);
}

#[test]
fn window_aggregation_ends_at_the_window_and_never_when_empty() {
    let mut s = AggState::default();
    let item = AggItem {
        event_id: "1".into(),
        content: content("1"),
    };
    assert!(aggregate(&mut s, Aggregate::Window(1_000), item, 5_000).is_none());
    // (now, ended)
    for (now, want) in [
        (5_000, false),
        (5_999, false),
        (6_000, true),
        (99_999, true),
    ] {
        assert_eq!(window_ended(&s, 1_000, now), want, "at {now}");
    }
    assert!(!window_ended(&AggState::default(), 1_000, 99_999));
}

#[test]
fn serialized_chains_queue_one_action_at_a_time() {
    let actions = vec!["a".to_string(), "b".to_string(), "c".to_string()];
    let t = RouteTarget {
        route: "r",
        actions: &actions,
        serialize: true,
    };
    let (queued, records) = deliveries("e", &t, &content("x"), Some("k"), 100);
    assert_eq!(queued.len(), 1);
    assert_eq!(records.len(), 3);
    assert_eq!(queued[0].then, ["b", "c"]);
    let b = next_in_chain(&queued[0], 200).unwrap();
    assert_eq!((b.action.as_str(), b.due_at_ms, b.attempts), ("b", 200, 0));
    assert_eq!(b.id, "e:r:b");
    assert_eq!(b.dedup_key.as_deref(), Some("k"));
    let c = next_in_chain(&b, 300).unwrap();
    assert!(c.then.is_empty());
    assert!(next_in_chain(&c, 400).is_none());
    let parallel = RouteTarget {
        serialize: false,
        ..t
    };
    assert_eq!(
        deliveries("e", &parallel, &content("x"), None, 1).0.len(),
        3
    );
}

#[test]
fn a_batch_dedups_within_itself_and_against_the_store() {
    let mut queues = BTreeMap::new();
    let with_key = |id: &str| {
        let mut rp = route_plan("r", Verdict::Rendered(content(id)));
        rp.dedup = Some(("r\u{0}k".into(), 0));
        event(id, vec![rp])
    };
    let d = decide_batch(
        vec![with_key("e1"), with_key("e2")],
        HashMap::new(),
        &mut queues,
        1_000,
    );
    assert_eq!(d.commit.queued.len(), 2, "e1 to both actions");
    assert_eq!(d.commit.holds, vec![("r\u{0}k".to_string(), hold("e1", 0))]);
    let e2 = &d.commit.events[1].0.routes[0];
    assert!(
        e2.note
            .as_deref()
            .unwrap()
            .contains("duplicate of event e1")
    );
    // Held in the store by an earlier event.
    let store: HashMap<_, _> = [("r\u{0}k".to_string(), hold("e0", 0))].into();
    let d = decide_batch(vec![with_key("e3")], store, &mut queues, 2_000);
    assert!(d.commit.queued.is_empty());
    assert!(d.commit.holds.is_empty());
}

#[test]
fn failures_are_recorded_and_counted_not_dropped() {
    let mut queues = BTreeMap::new();
    let plans = vec![
        event(
            "e1",
            vec![
                route_plan("no", Verdict::NoMatch),
                route_plan(
                    "cond",
                    Verdict::ConditionFailed("condition failed: t".into()),
                ),
                route_plan("tpl", Verdict::RenderFailed("template `x`: boom".into())),
            ],
        ),
        EventPlan::failed(
            "e2".into(),
            JournalEntry {
                route: None,
                received_at_ms: 2,
                body: "{\"a\":1}".into(),
            },
            "routing panicked: oops".into(),
        ),
    ];
    let d = decide_batch(plans, HashMap::new(), &mut queues, 5);
    assert_eq!((d.condition_errors, d.render_errors, d.failed), (1, 1, 1));
    let e1 = &d.commit.events[0].0;
    assert_eq!(
        e1.routes.len(),
        2,
        "the route that did not match is left out"
    );
    assert_eq!(e1.routes[0].note.as_deref(), Some("condition failed: t"));
    assert!(!e1.routes[0].matched);
    assert!(
        e1.routes[1]
            .actions
            .iter()
            .all(|a| a.status == Status::Dead)
    );
    assert_eq!(d.commit.dead.len(), 2, "one dead letter per action");
    assert_eq!(
        d.commit.dead[0].delivery.unrendered,
        Some(Unrendered::Event)
    );
    assert_eq!(d.commit.dead[0].error, "template `x`: boom");
    let (e2, body) = &d.commit.events[1];
    assert_eq!(e2.error.as_deref(), Some("routing panicked: oops"));
    assert_eq!(body, "{\"a\":1}");
}

#[test]
fn aggregation_batches_are_committed_rendered_or_dead() {
    let mut queues = BTreeMap::new();
    let agg = |id: &str| {
        let mut rp = route_plan("r", Verdict::Rendered(content(id)));
        rp.aggregate = Some(Aggregate::Count(2));
        event(id, vec![rp])
    };
    let mut d = decide_batch(vec![agg("e1"), agg("e2")], HashMap::new(), &mut queues, 7);
    assert!(d.commit.queued.is_empty());
    assert_eq!(d.ready.len(), 1);
    assert!(d.commit.aggregation["r"].items.is_empty(), "queue emptied");
    let batch = d.ready.pop().unwrap();
    let mut ok = RoutingCommit::default();
    commit_batch(&mut ok, batch.clone(), Ok(content("both")), "b1", 8);
    assert_eq!(ok.queued.len(), 2);
    assert_eq!(ok.queued[0].event_id, "b1");
    assert_eq!(ok.events[0].1, r#"{"aggregated":["e2","e1"]}"#);
    let mut failed = RoutingCommit::default();
    commit_batch(&mut failed, batch, Err("bad".into()), "b2", 8);
    assert!(failed.queued.is_empty());
    assert_eq!(failed.dead.len(), 2);
    assert_eq!(failed.dead[0].error, "aggregation of 2 events failed: bad");
    match &failed.dead[0].delivery.unrendered {
        Some(Unrendered::Aggregation { items }) => assert_eq!(items[0].title, "e2"),
        other => panic!("{other:?}"),
    }
}
