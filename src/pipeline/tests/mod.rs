//! Component tests of the pipeline's tasks: a temp store, a fake clock, recording actions,
//! tiny limits to drive the read-back paths, and injected faults (compiled only in tests).

pub(crate) mod faults;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::*;
use crate::actions::{Action, ActionError};
use crate::app::BuiltAction;
use crate::config::RetryPolicy;
use crate::event::FakeClock;
use crate::message::Message;
use crate::routing::{Aggregate, Condition, Route};
use crate::templates::Registry;

const T0: u64 = 1_700_000_000_000;

/// Records what it is asked to send; fails the first `fail_first` sends (transiently).
struct Recorder {
    name: String,
    sent: Arc<Mutex<Vec<Message>>>,
    fail_first: AtomicU32,
}

#[async_trait]
impl Action for Recorder {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "recorder"
    }
    async fn send(&self, msg: &Message) -> Result<(), ActionError> {
        faults::sending(&msg.content.description);
        let left = self.fail_first.load(Ordering::SeqCst);
        if left > 0 {
            self.fail_first.store(left - 1, Ordering::SeqCst);
            return Err(ActionError::transient("503 from the recorder"));
        }
        self.sent.lock().unwrap().push(msg.clone());
        Ok(())
    }
    fn preview(&self, _: &Message) -> serde_json::Value {
        serde_json::Value::Null
    }
}

struct Harness {
    dir: tempfile::TempDir,
    pipeline: Arc<Pipeline>,
    sent: Arc<Mutex<Vec<Message>>>,
    clock: Arc<FakeClock>,
}

/// One route over every event, rendering `postee.rawmessage.json`, to a recorder; with
/// `aggregate`, batches with the bundled HTML aggregation.
fn app(sent: &Arc<Mutex<Vec<Message>>>, fail_first: u32, aggregate: Option<Aggregate>) -> App {
    let package = if aggregate.is_some() {
        "postee.vuls.html"
    } else {
        "postee.rawmessage.json"
    };
    app_with(sent, fail_first, aggregate, package)
}

fn app_with(
    sent: &Arc<Mutex<Vec<Message>>>,
    fail_first: u32,
    aggregate: Option<Aggregate>,
    package: &str,
) -> App {
    let reg = Registry::new(std::path::Path::new("/nonexistent-postee-templates")).unwrap();
    let template = Arc::new(reg.package_template("t", package).unwrap());
    let agg = aggregate.map(|m| {
        let at = template.aggregation_template(&reg).unwrap().unwrap();
        (m, Arc::new(at))
    });
    let route = Route {
        name: "all".into(),
        condition: Condition::match_all(),
        template,
        actions: vec!["rec".into()],
        serialize: false,
        dedup_props: Vec::new(),
        dedup_ttl: 0,
        aggregate: agg,
        action_keys: Vec::new(),
    };
    let recorder = Recorder {
        name: "rec".into(),
        sent: sent.clone(),
        fail_first: AtomicU32::new(fail_first),
    };
    let retry = RetryPolicy {
        max_attempts: 3,
        max_age: Duration::from_secs(3600),
        initial_delay: Duration::from_secs(10),
        max_delay: Duration::from_secs(10),
    };
    App {
        routes: vec![Arc::new(route)],
        actions: BTreeMap::from([(
            "rec".to_string(),
            BuiltAction {
                action: Arc::new(recorder),
                retry,
                concurrency: 4,
            },
        )]),
        aqua_server: String::new(),
    }
}

fn test_limits() -> Limits {
    Limits {
        restart_delay: Duration::from_millis(20),
        flush_every: Duration::from_millis(20),
        ..Limits::default()
    }
}

fn upkeep() -> Upkeep {
    Upkeep {
        retention: Duration::from_secs(3600),
        max_db_size: None,
        verify_interval: Duration::from_secs(3600),
    }
}

impl Harness {
    fn start(limits: Limits, fail_first: u32, aggregate: Option<Aggregate>) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let clock = Arc::new(FakeClock::at(T0));
        let pipeline = Self::open(&dir, &sent, &clock, limits, fail_first, aggregate);
        Harness {
            dir,
            pipeline,
            sent,
            clock,
        }
    }

    fn open(
        dir: &tempfile::TempDir,
        sent: &Arc<Mutex<Vec<Message>>>,
        clock: &Arc<FakeClock>,
        limits: Limits,
        fail_first: u32,
        aggregate: Option<Aggregate>,
    ) -> Arc<Pipeline> {
        let app = app(sent, fail_first, aggregate);
        Self::open_app(dir, clock, limits, app)
    }

    fn open_app(
        dir: &tempfile::TempDir,
        clock: &Arc<FakeClock>,
        limits: Limits,
        app: App,
    ) -> Arc<Pipeline> {
        let store = Arc::new(Store::open(&dir.path().join("db")).unwrap());
        Pipeline::start(Arc::new(app), store, upkeep(), clock.clone(), limits).unwrap()
    }

    /// Stops and starts again on the same store (once the old pipeline has let go of it).
    async fn restart(&mut self, limits: Limits) {
        let app = app(&self.sent, 0, None);
        self.restart_with(limits, app).await;
    }

    async fn restart_with(&mut self, limits: Limits, app: App) {
        self.pipeline.shutdown(Duration::from_secs(5)).await;
        let placeholder = Harness::start(test_limits(), 0, None).pipeline;
        let old = std::mem::replace(&mut self.pipeline, placeholder);
        let weak = Arc::downgrade(&old.shared);
        drop(old);
        let released = wait_for(|| async { (weak.strong_count() == 0).then_some(()) }).await;
        assert!(released.is_some(), "the old pipeline let go of the store");
        let fresh = Self::open_app(&self.dir, &self.clock, limits, app);
        std::mem::replace(&mut self.pipeline, fresh)
            .shutdown(Duration::from_secs(5))
            .await;
    }

    async fn post(&self, body: &str) -> String {
        let entry = JournalEntry {
            route: None,
            received_at_ms: T0,
            body: body.to_string(),
        };
        let input = crate::event::parse(body.as_bytes()).unwrap();
        self.pipeline.accept(entry, input).await.unwrap()
    }

    fn sent_bodies(&self) -> Vec<String> {
        let sent = self.sent.lock().unwrap();
        sent.iter().map(|m| m.content.description.clone()).collect()
    }

    async fn routed(&self, id: &str) -> crate::store::EventRecord {
        let found = wait_for(|| async {
            match self.pipeline.event(id.to_string()).await.unwrap() {
                Some(EventView::Routed(r)) => Some(r),
                _ => None,
            }
        })
        .await;
        found.unwrap_or_else(|| panic!("event {id} was not routed"))
    }
}

/// Polls `f` for up to 20 s.
async fn wait_for<T, F, Fut>(f: F) -> Option<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..1000 {
        if let Some(v) = f().await {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

async fn wait_sent(h: &Harness, n: usize) {
    let ok = wait_for(|| async { (h.sent.lock().unwrap().len() >= n).then_some(()) }).await;
    assert!(ok.is_some(), "sent {} of {n}", h.sent.lock().unwrap().len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_whose_planning_panics_is_recorded_and_the_batch_goes_on() {
    let h = Harness::start(test_limits(), 0, None);
    let bad = h.post(r#"{"x":"fault:plan"}"#).await;
    let good = h.post(r#"{"x":"fine"}"#).await;
    wait_sent(&h, 1).await;
    let rec = h.routed(&bad).await;
    assert!(
        rec.error
            .as_deref()
            .unwrap()
            .contains("injected planning fault"),
        "{rec:?}"
    );
    assert!(h.routed(&good).await.error.is_none());
    assert_eq!(
        h.pipeline
            .counters()
            .routing_failures
            .load(Ordering::Relaxed),
        1
    );
    assert_eq!(h.sent_bodies().len(), 1);
    h.pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_that_panics_is_shown_down_restarted_and_loses_nothing() {
    let limits = Limits {
        restart_delay: Duration::from_millis(500),
        ..test_limits()
    };
    let h = Harness::start(limits, 0, None);
    let id = h.post(r#"{"x":"fault:router-once:a"}"#).await;
    let down = wait_for(|| async {
        let p = h.pipeline.problems();
        (!p.is_empty()).then_some(p)
    })
    .await
    .expect("the router is shown down");
    assert!(
        down[0].starts_with("router: panicked: injected router fault"),
        "{down:?}"
    );
    wait_sent(&h, 1).await;
    assert!(
        h.pipeline.problems().is_empty(),
        "up again after the restart"
    );
    assert_eq!(h.pipeline.restarts(), 1);
    assert!(h.routed(&id).await.error.is_none());
    assert_eq!(h.sent_bodies().len(), 1, "routed once, sent once");
    h.pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_keeps_failing_stops_the_service() {
    let h = Harness::start(test_limits(), 0, None);
    h.post(r#"{"x":"fault:router-always"}"#).await;
    let why = tokio::time::timeout(Duration::from_secs(20), h.pipeline.fatal())
        .await
        .expect("given up on");
    assert!(
        why.contains("router: panicked") && why.contains("giving up"),
        "{why}"
    );
    assert!(!h.pipeline.problems().is_empty(), "healthz stays failing");
    h.pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_writer_that_panics_is_restarted_and_the_delivery_is_recorded() {
    let h = Harness::start(test_limits(), 0, None);
    let id = h.post(r#"{"x":"fault:outcome-once:b"}"#).await;
    let restarted = wait_for(|| async { (h.pipeline.restarts() >= 1).then_some(()) }).await;
    assert!(restarted.is_some(), "the outcome writer was restarted");
    // The attempt whose outcome was lost stays due; the lane looks again a second later.
    h.clock.advance(1_001);
    let done = wait_for(|| async {
        let r = h.routed(&id).await;
        r.finished().then_some(r)
    })
    .await
    .expect("recorded after the restart");
    assert_eq!(
        done.routes[0].actions[0].status,
        crate::store::Status::Delivered
    );
    assert!(h.pipeline.restarts() >= 1);
    // At least once: the attempt whose outcome was lost is sent again.
    assert!(!h.sent_bodies().is_empty());
    h.pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_that_panics_is_sent_again_not_stuck() {
    let h = Harness::start(test_limits(), 0, None);
    let id = h.post(r#"{"x":"fault:send-once:c"}"#).await;
    let failed = wait_for(|| async {
        let r = h.routed(&id).await;
        r.routes[0].actions[0].last_error.clone()
    })
    .await
    .expect("the panic is recorded as a failed attempt");
    assert!(
        failed.contains("the action panicked: injected send fault"),
        "{failed}"
    );
    h.clock.advance(10_001);
    wait_sent(&h, 1).await;
    // The recorder counts a send before its outcome is committed: wait for the commit.
    let delivered = wait_for(|| async {
        let r = h.routed(&id).await;
        (r.routes[0].actions[0].status == crate::store::Status::Delivered).then_some(())
    })
    .await;
    assert!(delivered.is_some(), "{:?}", h.routed(&id).await.routes);
    h.pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_wait_for_the_clock() {
    let h = Harness::start(test_limits(), 1, None);
    let id = h.post(r#"{"x":1}"#).await;
    let pending = wait_for(|| async {
        let r = h.routed(&id).await;
        let a = &r.routes[0].actions[0];
        (a.attempts == 1).then(|| a.clone())
    })
    .await
    .expect("first attempt recorded");
    assert_eq!(pending.last_error.as_deref(), Some("503 from the recorder"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(h.sent_bodies().is_empty(), "not due before the clock moves");
    h.clock.advance(10_001);
    wait_sent(&h, 1).await;
    h.pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_window_batch_is_sent_when_the_clock_passes_the_window() {
    let h = Harness::start(test_limits(), 0, Some(Aggregate::Window(60_000)));
    let scan = include_str!("../../../tests/fixtures/events/aqua-scan.json");
    for _ in 0..3 {
        h.post(scan).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(h.sent_bodies().is_empty(), "window still open");
    h.clock.advance(60_000);
    wait_sent(&h, 1).await;
    let sent = h.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "one batch");
    let batch = h.routed(&sent[0].event_id).await;
    assert_eq!(
        batch.routes[0].note.as_deref(),
        Some("aggregation of 3 events")
    );
    h.pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_read_back_from_the_journal_and_the_outbox_arrive_once_each() {
    // Tiny memory bounds force every event through the journal file and every delivery
    // through the outbox, with a clean restart in the middle.
    let tiny = Limits {
        handoff_bytes: 1,
        lane_max: 3,
        ..test_limits()
    };
    let mut h = Harness::start(tiny.clone(), 0, None);
    for i in 0..300 {
        h.post(&format!(r#"{{"n":{i}}}"#)).await;
    }
    h.restart(tiny).await;
    for i in 300..600 {
        h.post(&format!(r#"{{"n":{i}}}"#)).await;
    }
    wait_sent(&h, 600).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut bodies = h.sent_bodies();
    bodies.sort();
    let dups: Vec<String> = bodies
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0].clone())
        .collect();
    let before = bodies.len();
    bodies.dedup();
    assert_eq!(before, 600, "each event arrives once; sent twice: {dups:?}");
    assert_eq!(bodies.len(), 600);
    h.pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_template_is_a_dead_letter_sent_once_the_template_is_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let sent = Arc::new(Mutex::new(Vec::new()));
    let clock = Arc::new(FakeClock::at(T0));
    // postee.vuls.html needs an Aqua scan: a Trivy report makes it fail.
    let broken = app_with(&sent, 0, None, "postee.vuls.html");
    let pipeline = Harness::open_app(&dir, &clock, test_limits(), broken);
    let mut h = Harness {
        dir,
        pipeline,
        sent,
        clock,
    };
    let trivy = include_str!("../../../tests/fixtures/events/trivy-report.json");
    let id = h.post(trivy).await;
    let rec = h.routed(&id).await;
    let a = &rec.routes[0].actions[0];
    assert_eq!(a.status, crate::store::Status::Dead, "{rec:?}");
    assert!(
        a.last_error.as_deref().unwrap().contains("template"),
        "{a:?}"
    );
    // The router counts the failure just after its commit: wait for it.
    let counted = wait_for(|| async {
        let n = h.pipeline.counters().render_errors.load(Ordering::Relaxed);
        (n == 1).then_some(())
    })
    .await;
    assert!(
        counted.is_some(),
        "render_errors: {:?}",
        h.pipeline.counters()
    );
    let dead = h.pipeline.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1);
    // Replaying with the template still broken leaves it dead, with the error.
    let r = h.pipeline.replay(None).await.unwrap();
    assert_eq!(r.replayed.len(), 1);
    let again = wait_for(|| async {
        let d = h.pipeline.dead_letters().await.unwrap();
        (d.len() == 1).then(|| d[0].error.clone())
    })
    .await
    .unwrap();
    assert!(again.contains("template still fails"), "{again}");
    assert!(h.sent_bodies().is_empty());
    // "Fix" the template (the route now renders raw JSON), restart, replay: sent.
    let fixed = app_with(&h.sent, 0, None, "postee.rawmessage.json");
    h.restart_with(test_limits(), fixed).await;
    let r = h.pipeline.replay(None).await.unwrap();
    assert_eq!(r.replayed.len(), 1);
    wait_sent(&h, 1).await;
    assert!(
        h.sent_bodies()[0].contains("ArtifactName"),
        "rendered from the event's body"
    );
    assert!(h.pipeline.dead_letters().await.unwrap().is_empty());
    h.pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_aggregation_is_a_dead_letter_that_a_replay_renders_again() {
    let h = Harness::start(test_limits(), 0, Some(Aggregate::Count(2)));
    let scan = include_str!("../../../tests/fixtures/events/aqua-scan.json");
    // The aggregation of a batch holding this marker fails (once).
    let marked = scan.replacen("all-in-one:3.5.19223", "fault:aggregate-once:d", 1);
    h.post(scan).await;
    h.post(&marked).await;
    let dead = wait_for(|| async {
        let d = h.pipeline.dead_letters().await.unwrap();
        (!d.is_empty()).then_some(d)
    })
    .await
    .expect("the failed batch is a dead letter");
    assert!(
        dead[0].error.contains("aggregation of 2 events failed"),
        "{}",
        dead[0].error
    );
    assert_eq!(
        h.pipeline.counters().render_errors.load(Ordering::Relaxed),
        0
    );
    let batch = h.routed(&dead[0].delivery.event_id).await;
    assert!(batch.routes[0].note.as_deref().unwrap().contains("failed"));
    assert!(h.sent_bodies().is_empty());
    h.pipeline.replay(None).await.unwrap();
    wait_sent(&h, 1).await;
    let sent = h.sent.lock().unwrap().clone();
    assert_eq!(sent[0].event_id, dead[0].delivery.event_id);
    assert!(
        sent[0].content.description.contains("<p>"),
        "the HTML aggregation"
    );
    h.pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_503_naming_a_task_that_is_down() {
    crate::install_crypto_provider();
    let h = Harness::start(test_limits(), 0, None);
    let intake = crate::intake::Intake::new(h.pipeline.clone(), "k".into(), 1 << 20);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, crate::intake::router(intake))
            .await
            .unwrap()
    });
    let url = format!("http://{addr}/healthz");
    let ok = reqwest::get(&url).await.unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    h.post(r#"{"x":"fault:router-always"}"#).await;
    tokio::time::timeout(Duration::from_secs(20), h.pipeline.fatal())
        .await
        .expect("given up on");
    let down = reqwest::get(&url).await.unwrap();
    assert_eq!(down.status().as_u16(), 503);
    assert_eq!(down.headers()["retry-after"], "5");
    let body: serde_json::Value = down.json().await.unwrap();
    assert_eq!(body["status"], "failing");
    assert!(
        body["problems"][0]
            .as_str()
            .unwrap()
            .starts_with("router: panicked: injected router fault"),
        "{body}"
    );
    server.abort();
    h.pipeline.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lane_limit_starts_at_one_grows_under_a_backlog_and_every_slot_comes_back() {
    let h = Harness::start(test_limits(), 0, None);
    let idle = Concurrency {
        limit: 1,
        max: 4,
        in_flight: 0,
    };
    assert_eq!(h.pipeline.concurrency()["rec"], idle);
    // 300 events at once: one or two group commits, so the lane gets a backlog.
    let posts = (0..300).map(|i| {
        let h = &h;
        async move { h.post(&format!(r#"{{"n":{i}}}"#)).await }
    });
    futures_util::future::join_all(posts).await;
    wait_sent(&h, 300).await;
    let settled = wait_for(|| async {
        let c = h.pipeline.concurrency()["rec"];
        (c.in_flight == 0).then_some(c)
    })
    .await
    .expect("every slot is freed once the deliveries are recorded");
    assert_eq!(settled.max, 4);
    assert!((2..=4).contains(&settled.limit), "{settled:?}");
    h.pipeline.shutdown(Duration::from_secs(5)).await;
}
