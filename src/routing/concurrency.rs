//! Adaptive concurrency: how many deliveries an action may have in flight now, learnt from the
//! target's round-trip times and back-pressure (AIMD, after Vector's Adaptive Request
//! Concurrency). Pure: the time is an input (µs from any fixed origin), so tests drive it with
//! a fake clock.
//!
//! The rules, decided once per RTT window (a window lasts about one baseline round trip, at
//! least `MIN_WINDOW_US`; it is judged at the first answer after its end, which then counts in
//! the next window):
//! - **Increase by 1** when, in the window, the limit was used (all slots busy at some point),
//!   nothing pushed back, and the window's mean RTT was not above the baseline.
//! - **Decrease ×0.9** (at least by 1) when something pushed back in the window (a transient
//!   failure: connect error, timeout, 408, 429, 5xx), or the window's mean RTT rose above the
//!   baseline by more than `DEVIATION_SCALE` deviations (and at least `MIN_RISE` of it).
//! - Otherwise hold. Permanent failures (other 4xx, a failed script or template) say nothing
//!   about load: they neither move the limit nor feed the RTT statistics.
//!
//! The baseline is an exponentially weighted mean (and deviation) of the windows' mean RTTs, so
//! it follows a target whose normal latency changes, while a sudden rise (requests queueing at
//! the target) shows as RTT above it. The limit stays within `1..=ceiling` (`concurrency`).

/// The limit a new (or restarted) action starts with: nothing is known about the target yet.
pub const INITIAL_LIMIT: usize = 1;
/// Multiplicative decrease factor (Vector's `decrease_ratio`).
pub const DECREASE_RATIO: f64 = 0.9;
/// Weight of the newest window in the RTT baseline (Vector's `ewma_alpha`).
pub const EWMA_ALPHA: f64 = 0.4;
/// How many deviations above the baseline count as "RTT rose" (Vector's
/// `rtt_deviation_scale`).
pub const DEVIATION_SCALE: f64 = 2.5;
/// A rise of less than this fraction of the baseline is never significant. Without it a target
/// with very steady latency (deviation near 0, as in the first windows) would turn any jitter
/// into a decrease.
pub const MIN_RISE: f64 = 0.05;
/// The shortest window (µs). On loopback an RTT is a few hundred µs: deciding that often would
/// judge windows of one or two samples, and nothing gains from adjusting faster.
pub const MIN_WINDOW_US: u64 = 1_000;

/// What one finished attempt tells the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// The target took it: the RTT is a sample of its service time.
    Delivered,
    /// A transient failure (connect error, timeout, 408, 429, 5xx): the target, or the way to
    /// it, pushes back.
    BackPressure,
    /// A permanent failure: a verdict on the content, not on the load.
    Permanent,
}

/// One finished attempt: how long the send took (µs) and how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub rtt_us: u64,
    pub signal: Signal,
}

/// The exponentially weighted mean and variance of the windows' mean RTTs (µs).
#[derive(Debug, Clone, Copy)]
struct Baseline {
    mean: f64,
    var: f64,
}

impl Baseline {
    fn update(&mut self, x: f64) {
        let diff = x - self.mean;
        let incr = EWMA_ALPHA * diff;
        self.mean += incr;
        self.var = (1.0 - EWMA_ALPHA) * (self.var + diff * incr);
    }

    /// Above this, a window's mean RTT counts as a rise.
    fn high(&self) -> f64 {
        self.mean + (DEVIATION_SCALE * self.var.sqrt()).max(MIN_RISE * self.mean)
    }
}

/// What happened in the current window.
#[derive(Debug, Clone, Copy, Default)]
struct Window {
    /// When it ends (µs).
    ends_at: u64,
    rtt_sum_us: u64,
    samples: u64,
    /// Every slot was busy at some point.
    reached: bool,
    back_pressure: bool,
}

/// One action's adaptive limit, and its deliveries in flight.
#[derive(Debug, Clone)]
pub struct Controller {
    ceiling: usize,
    limit: usize,
    in_flight: usize,
    baseline: Option<Baseline>,
    window: Window,
}

impl Controller {
    /// A controller for an action whose `concurrency` (the ceiling) is `ceiling` (at least 1).
    pub fn new(ceiling: usize) -> Controller {
        let ceiling = ceiling.max(1);
        Controller {
            ceiling,
            limit: INITIAL_LIMIT.min(ceiling),
            in_flight: 0,
            baseline: None,
            window: Window::default(),
        }
    }

    /// The most deliveries that may be in flight now.
    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn ceiling(&self) -> usize {
        self.ceiling
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// How many more may start now.
    pub fn free(&self) -> usize {
        self.limit.saturating_sub(self.in_flight)
    }

    /// `n` deliveries start (the caller keeps within [`Controller::free`]).
    pub fn on_start(&mut self, n: usize) {
        self.in_flight += n;
        if n > 0 && self.in_flight >= self.limit {
            self.window.reached = true;
        }
    }

    /// A delivery ended without a result (its task was cancelled): its slot is free, and
    /// nothing is learnt.
    pub fn on_cancel(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// A delivery ended at `now_us` with `sample`. Returns the limit from now on.
    pub fn on_done(&mut self, now_us: u64, sample: Sample) -> usize {
        self.in_flight = self.in_flight.saturating_sub(1);
        // An answer after the window's end belongs to the next window: the one that ended is
        // judged on what it saw. (After a pause, a slow first answer is not averaged with the
        // fast ones from before the pause.)
        let learning = self.baseline.is_none();
        if !learning && now_us >= self.window.ends_at {
            self.close_window(now_us);
        }
        let w = &mut self.window;
        match sample.signal {
            Signal::Delivered => {
                w.rtt_sum_us = w.rtt_sum_us.saturating_add(sample.rtt_us);
                w.samples += 1;
            }
            Signal::BackPressure => w.back_pressure = true,
            Signal::Permanent => {}
        }
        // Until there is a baseline, every answer is a window of its own.
        if learning {
            self.close_window(now_us);
        }
        self.limit
    }

    /// Decides on the window that ended, folds its RTT into the baseline, starts the next.
    fn close_window(&mut self, now_us: u64) {
        let w = self.window;
        let current = (w.samples > 0).then(|| w.rtt_sum_us as f64 / w.samples as f64);
        if w.back_pressure {
            self.decrease();
        } else if let Some(rtt) = current {
            // The first window is its own baseline: as good as it gets.
            let base = self.baseline.unwrap_or(Baseline {
                mean: rtt,
                var: 0.0,
            });
            if rtt > base.high() {
                self.decrease();
            } else if w.reached && rtt <= base.mean {
                self.limit = (self.limit + 1).min(self.ceiling);
            }
        }
        if let Some(rtt) = current {
            match &mut self.baseline {
                Some(b) => b.update(rtt),
                None => {
                    self.baseline = Some(Baseline {
                        mean: rtt,
                        var: 0.0,
                    })
                }
            }
        }
        let length = self
            .baseline
            .map_or(0, |b| (b.mean as u64).max(MIN_WINDOW_US));
        self.window = Window {
            ends_at: now_us + length,
            // Slots still all busy: the new window uses the limit from its start.
            reached: self.in_flight >= self.limit,
            ..Window::default()
        };
    }

    fn decrease(&mut self) {
        self.limit = ((self.limit as f64 * DECREASE_RATIO) as usize).max(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000;

    fn ok(rtt_us: u64) -> Sample {
        Sample {
            rtt_us,
            signal: Signal::Delivered,
        }
    }

    fn failed(signal: Signal) -> Sample {
        Sample {
            rtt_us: 2 * MS,
            signal,
        }
    }

    /// Drives a controller against a target with a backlog that never runs dry: every free
    /// slot is filled at once, each delivery takes `rtt(in flight)` (µs) and ends as
    /// `signal(end)`. A tiny discrete-event simulation on a fake clock.
    struct Sim {
        c: Controller,
        now: u64,
        /// (ends at, rtt) of each delivery in flight.
        flying: Vec<(u64, u64)>,
    }

    impl Sim {
        fn new(ceiling: usize) -> Sim {
            Sim {
                c: Controller::new(ceiling),
                now: 0,
                flying: Vec::new(),
            }
        }

        /// Runs until `until` (µs); returns the limit after each completion.
        fn run(
            &mut self,
            until: u64,
            rtt: impl Fn(usize) -> u64,
            signal: impl Fn(u64) -> Signal,
        ) -> Vec<usize> {
            let mut limits = Vec::new();
            while self.now < until {
                let free = self.c.free();
                for _ in 0..free {
                    self.c.on_start(1);
                    let r = rtt(self.c.in_flight());
                    self.flying.push((self.now + r, r));
                }
                let Some(i) = (0..self.flying.len()).min_by_key(|&i| self.flying[i].0) else {
                    break;
                };
                let (end, r) = self.flying.swap_remove(i);
                self.now = end;
                let s = Sample {
                    rtt_us: r,
                    signal: signal(end),
                };
                limits.push(self.c.on_done(end, s));
            }
            limits
        }
    }

    #[test]
    fn starts_at_one_and_grows_toward_the_ceiling_on_a_fast_steady_target() {
        let mut sim = Sim::new(64);
        assert_eq!(sim.c.limit(), 1);
        // 2 ms per request whatever the load: the target keeps up.
        let limits = sim.run(100 * MS, |_| 2 * MS, |_| Signal::Delivered);
        // +1 per 2 ms window: about 50 windows in 100 ms.
        let at_100ms = *limits.last().unwrap();
        assert!((45..=51).contains(&at_100ms), "{at_100ms}");
        // Additive: never more than +1 per completion.
        assert!(limits.windows(2).all(|p| p[1] <= p[0] + 1));
        // Then it reaches the ceiling and stays there.
        let limits = sim.run(300 * MS, |_| 2 * MS, |_| Signal::Delivered);
        assert_eq!(*limits.last().unwrap(), 64);
        assert!(limits.iter().all(|&l| l <= 64));
        assert_eq!(sim.c.in_flight(), 63, "all slots but the one just freed");
    }

    #[test]
    fn stays_near_the_ceiling_on_a_fast_target_with_jittery_latency() {
        // 2 ms ± 0.5 ms, pseudo-random (xorshift): ordinary jitter is not a rise.
        let seed = std::cell::Cell::new(0x9e37_79b9_7f4a_7c15_u64);
        let jitter = |_: usize| {
            let mut x = seed.get();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            seed.set(x);
            1_500 + x % 1_001
        };
        let mut sim = Sim::new(64);
        let limits = sim.run(1_000 * MS, jitter, |_| Signal::Delivered);
        let late = &limits[limits.len() / 2..];
        let min = *late.iter().min().unwrap();
        // A rare window of unlucky samples may cost one ×0.9 step, no more.
        assert!(min >= 57, "fell to {min} on jitter alone");
        let avg = late.iter().sum::<usize>() as f64 / late.len() as f64;
        assert!(avg >= 62.0, "{avg}");
        assert_eq!(*late.iter().max().unwrap(), 64);
    }

    #[test]
    fn does_not_grow_when_the_limit_is_not_used() {
        let mut c = Controller::new(16);
        // One delivery at a time (limit 1, used): grows to 2.
        c.on_start(1);
        assert_eq!(c.on_done(2 * MS, ok(2 * MS)), 2);
        // Then only one at a time while 2 are allowed: the limit is not the bottleneck.
        let mut now = 2 * MS;
        for _ in 0..50 {
            c.on_start(1);
            now += 2 * MS;
            c.on_done(now, ok(2 * MS));
        }
        assert_eq!(c.limit(), 2);
    }

    #[test]
    fn a_burst_of_429s_cuts_the_limit_once_per_window_then_it_recovers() {
        let mut sim = Sim::new(64);
        sim.run(300 * MS, |_| 2 * MS, |_| Signal::Delivered);
        assert_eq!(sim.c.limit(), 64);
        // 429s for 14 ms: about 7 windows of 2 ms, each ×0.9: 64 → ~30 ("halves-ish"), not to 1
        // though 64 × 7 answers pushed back.
        let until = sim.now + 14 * MS;
        let limits = sim.run(until, |_| 2 * MS, |_| Signal::BackPressure);
        let low = *limits.iter().min().unwrap();
        assert!((26..=38).contains(&low), "{low}");
        assert_eq!(*limits.last().unwrap(), low);
        // At most one cut per window: never more than one ×0.9 step between completions.
        for p in limits.windows(2) {
            assert!(p[1] >= (p[0] as f64 * 0.9) as usize, "{p:?}");
        }
        let cuts = limits.windows(2).filter(|p| p[1] < p[0]).count();
        assert!(
            (5..=8).contains(&cuts),
            "{cuts} cuts in 14 ms of 2 ms windows"
        );
        // The target recovers: +1 per window again, back to the ceiling.
        let until = sim.now + 40 * MS;
        let limits = sim.run(until, |_| 2 * MS, |_| Signal::Delivered);
        let back = *limits.last().unwrap();
        assert!(back >= low + 15, "{low} → {back}");
        let until = sim.now + 200 * MS;
        sim.run(until, |_| 2 * MS, |_| Signal::Delivered);
        assert_eq!(sim.c.limit(), 64);
    }

    #[test]
    fn decreases_at_most_once_per_window() {
        let mut c = Controller::new(100);
        // A baseline of 10 ms and a limit of 50; the last answer (at `now`) opened a window
        // that ends at now + 10 ms.
        let mut now = 0;
        while c.limit() < 50 {
            c.on_start(c.free());
            now += 10 * MS;
            c.on_done(now, ok(10 * MS));
        }
        assert_eq!(c.limit(), 50);
        c.on_start(c.free());
        // 40 back-pressure answers within that window: nothing until it ends...
        for i in 0..40 {
            assert_eq!(
                c.on_done(now + MS + i * 200, failed(Signal::BackPressure)),
                50
            );
        }
        // ...then one cut (50 → 45) for the whole window, at the first answer after its end.
        assert_eq!(c.on_done(now + 10 * MS, failed(Signal::BackPressure)), 45);
        for i in 0..20 {
            assert_eq!(
                c.on_done(now + 11 * MS + i * 100, failed(Signal::BackPressure)),
                45
            );
        }
        // The next window had back-pressure too: one more cut (45 → 40).
        assert_eq!(c.on_done(now + 20 * MS, failed(Signal::BackPressure)), 40);
    }

    #[test]
    fn shrinks_when_the_rtt_climbs_and_does_not_grow_while_it_stays_high() {
        // A target that serves 8 at a time in 10 ms; more wait in its queue: RTT = 10 ms ×
        // ceil(in flight / 8). Sending more than 8 only adds latency.
        let queueing = |n: usize| 10 * MS * n.div_ceil(8) as u64;
        let mut sim = Sim::new(256);
        let limits = sim.run(5_000 * MS, queueing, |_| Signal::Delivered);
        let late = &limits[limits.len() / 2..];
        let max = *late.iter().max().unwrap();
        let min = *late.iter().min().unwrap();
        // It finds the knee (8) and stays at it (+1: the probe that shows the rise), far from
        // the ceiling.
        assert!(max <= 10, "limit went up to {max}");
        assert!(min >= 8, "limit fell to {min}");
        // The same target suddenly 5× slower (50 ms a request): the limit is cut, and does
        // not grow while the RTT stays above its baseline.
        let before = sim.c.limit();
        let until = sim.now + 200 * MS;
        let limits = sim.run(
            until,
            |n| 50 * MS * n.div_ceil(8) as u64,
            |_| Signal::Delivered,
        );
        let after = *limits.iter().min().unwrap();
        assert!(after < before, "{before} → {after}");
        let first_cut = limits.iter().position(|&l| l < before).unwrap();
        let peak_after_cut = *limits[first_cut..].iter().max().unwrap();
        assert!(peak_after_cut < before, "{limits:?}");
    }

    #[test]
    fn permanent_errors_neither_shrink_nor_grow_the_limit() {
        let mut sim = Sim::new(64);
        sim.run(60 * MS, |_| 2 * MS, |_| Signal::Delivered);
        let before = sim.c.limit();
        assert!(before > 20, "{before}");
        let until = sim.now + 100 * MS;
        let limits = sim.run(until, |_| 2 * MS, |_| Signal::Permanent);
        // The window that still holds the last successes may add 1 when it is judged; then
        // 100 ms (50 windows) of permanent failures move nothing: no cut, no growth.
        assert!(
            limits.iter().all(|&l| l == before || l == before + 1),
            "{before} → {limits:?}"
        );
        assert!(limits.windows(2).filter(|p| p[0] != p[1]).count() <= 1);
    }

    #[test]
    fn never_below_one_nor_above_the_ceiling() {
        let mut c = Controller::new(3);
        let mut now = 0;
        for _ in 0..100 {
            c.on_start(c.free());
            now += 5 * MS;
            c.on_done(now, ok(MS));
            assert!((1..=3).contains(&c.limit()));
        }
        assert_eq!(c.limit(), 3);
        for _ in 0..100 {
            c.on_start(c.free());
            now += 5 * MS;
            c.on_done(now, failed(Signal::BackPressure));
            assert!((1..=3).contains(&c.limit()));
        }
        assert_eq!(c.limit(), 1);
        // A ceiling of 1 is a fixed limit of 1; a ceiling of 0 is taken as 1.
        let mut one = Controller::new(1);
        one.on_start(1);
        assert_eq!(one.on_done(MS, ok(MS)), 1);
        assert_eq!(Controller::new(0).limit(), 1);
    }

    #[test]
    fn slots_are_counted_and_freed_by_cancelled_deliveries_too() {
        let mut c = Controller::new(8);
        c.on_start(1);
        assert_eq!(c.free(), 0);
        c.on_cancel();
        assert_eq!((c.in_flight(), c.free(), c.limit()), (0, 1, 1));
        // More ends than starts (a stale report) never underflow.
        c.on_cancel();
        c.on_done(MS, ok(MS));
        assert_eq!(c.in_flight(), 0);
    }
}
