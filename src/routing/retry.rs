//! The retry decision: after a failed attempt, try again (when) or give up (dead letter).
//! Pure: the time and the jitter are inputs.

use std::time::Duration;

use crate::config::RetryPolicy;

/// What follows a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Try again at this time (ms since the epoch).
    RetryAt(u64),
    /// Give up: a dead letter.
    Dead,
}

/// A failed attempt, as the decision sees it.
#[derive(Debug, Clone, Copy)]
pub struct Failure {
    /// Attempts made so far, this one included.
    pub attempts: u32,
    /// When the delivery was created (or replayed): `max-age` counts from here.
    pub created_at_ms: u64,
    pub transient: bool,
    /// The target's `Retry-After`.
    pub retry_after: Option<Duration>,
}

impl RetryPolicy {
    /// What follows a failed attempt. Transient failures are retried with exponential
    /// backoff and full jitter, never sooner than `Retry-After`, while attempts stay under
    /// `max-attempts` and the next try falls within `max-age`; anything else is dead.
    /// `jitter` is in `[0, 1]`. (The policy is read by the config module; the decision lives
    /// here, with routing's other decisions.)
    pub fn decide(&self, f: Failure, now: u64, jitter: f64) -> RetryDecision {
        if !f.transient || f.attempts >= self.max_attempts {
            return RetryDecision::Dead;
        }
        let delay = backoff(self, f.attempts, f.retry_after, jitter);
        let next_at = now.saturating_add(delay.as_millis() as u64);
        let deadline = f
            .created_at_ms
            .saturating_add(self.max_age.as_millis() as u64);
        if next_at <= deadline {
            RetryDecision::RetryAt(next_at)
        } else {
            RetryDecision::Dead
        }
    }
}

/// Exponential backoff with full jitter: `jitter` times `initial * 2^(attempt-1)`, capped at
/// `max-delay`; never shorter than the target's `Retry-After`.
pub fn backoff(
    policy: &RetryPolicy,
    attempts: u32,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    let exp = policy
        .initial_delay
        .saturating_mul(2u32.saturating_pow(attempts.saturating_sub(1).min(30)))
        .min(policy.max_delay);
    let jittered = exp.mul_f64(jitter.clamp(0.0, 1.0));
    match retry_after {
        Some(ra) => ra.max(jittered),
        None => jittered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            max_age: Duration::from_secs(3600),
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(8),
        }
    }

    fn failure(attempts: u32, transient: bool, retry_after: Option<u64>) -> Failure {
        Failure {
            attempts,
            created_at_ms: 0,
            transient,
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    #[test]
    fn retry_decisions_follow_the_policy() {
        use RetryDecision::*;
        // (failure, now, jitter, expected)
        let cases: &[(Failure, u64, f64, RetryDecision)] = &[
            (failure(1, true, None), 0, 1.0, RetryAt(1_000)),
            (failure(1, true, None), 0, 0.5, RetryAt(500)),
            (failure(1, true, None), 0, 0.0, RetryAt(0)),
            (failure(3, true, None), 10_000, 1.0, RetryAt(14_000)),
            // Capped at max-delay.
            (failure(4, true, None), 0, 1.0, RetryAt(8_000)),
            // Retry-After wins over a shorter backoff.
            (failure(1, true, Some(30)), 0, 1.0, RetryAt(30_000)),
            (failure(4, true, Some(2)), 0, 1.0, RetryAt(8_000)),
            // Permanent failures and used-up attempts are dead.
            (failure(1, false, None), 0, 1.0, Dead),
            (failure(5, true, None), 0, 1.0, Dead),
            // The next try would fall after max-age.
            (failure(1, true, None), 3_599_500, 1.0, Dead),
            (failure(1, true, Some(7200)), 0, 0.0, Dead),
            (failure(1, true, None), 3_599_000, 1.0, RetryAt(3_600_000)),
        ];
        for (i, (f, now, jitter, want)) in cases.iter().enumerate() {
            assert_eq!(policy().decide(*f, *now, *jitter), *want, "case {i}");
        }
    }

    #[test]
    fn backoff_grows_caps_and_honours_retry_after() {
        let p = policy();
        assert_eq!(backoff(&p, 1, None, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(&p, 3, None, 1.0), Duration::from_secs(4));
        assert_eq!(backoff(&p, 30, None, 1.0), Duration::from_secs(8));
        assert_eq!(backoff(&p, 200, None, 1.0), Duration::from_secs(8));
        assert_eq!(
            backoff(&p, 1, Some(Duration::from_secs(5)), 0.3),
            Duration::from_secs(5)
        );
        assert_eq!(
            backoff(&p, 2, None, 7.0),
            Duration::from_secs(2),
            "jitter clamps"
        );
    }
}
