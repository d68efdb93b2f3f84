//! Retry policies and the backoff schedule.
//!
//! This is the only module that uses the `backoff` crate (unmaintained upstream, see
//! `deny.toml`): keeping it here means replacing it touches one file.

use std::time::{Duration, Instant};

use backoff::backoff::Backoff;
use backoff::exponential::ExponentialBackoff;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// How an activity is retried after a transient error. Data, not code: it is journaled
/// with each step and shown by `foundry workflow show`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Delay before the second attempt, in milliseconds.
    pub initial_ms: u64,
    /// Growth of the delay between attempts.
    pub factor: f64,
    /// Upper bound of one delay, in milliseconds.
    pub max_delay_ms: u64,
    /// Attempts in all, the first one included. 1 means no retry.
    pub max_attempts: u32,
    /// Upper bound of the time from the first attempt to the start of the last one, in
    /// milliseconds; `None` for no bound.
    pub max_elapsed_ms: Option<u64>,
    /// Each delay is drawn from `delay * (1 ± jitter)`.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_ms: 500,
            factor: 2.0,
            max_delay_ms: 30_000,
            max_attempts: 5,
            max_elapsed_ms: Some(600_000),
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The delay to wait after attempt `attempt` (1-based) failed, or `None` when the policy
    /// is exhausted. `elapsed` is the time since the step's first attempt started.
    pub fn delay_after(&self, attempt: u32, elapsed: Duration) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let base = self.base_delay(attempt);
        let mut schedule: ExponentialBackoff<backoff::SystemClock> = ExponentialBackoff {
            current_interval: base,
            initial_interval: Duration::from_millis(self.initial_ms),
            randomization_factor: self.jitter.clamp(0.0, 1.0),
            multiplier: self.factor,
            max_interval: Duration::from_millis(self.max_delay_ms),
            start_time: Instant::now(),
            max_elapsed_time: None,
            clock: backoff::SystemClock::default(),
        };
        let delay = schedule.next_backoff()?;
        match self.max_elapsed_ms {
            Some(max) if elapsed + delay > Duration::from_millis(max) => None,
            _ => Some(delay),
        }
    }

    /// The delay before jitter: `initial * factor^(attempt-1)`, capped.
    fn base_delay(&self, attempt: u32) -> Duration {
        let exp = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let ms = (self.initial_ms as f64) * self.factor.max(1.0).powi(exp);
        Duration::from_millis(ms.min(self.max_delay_ms as f64) as u64)
    }
}

/// How a wait for a condition polls: every `interval_ms`, for at most `deadline_ms`. Data,
/// like [`RetryPolicy`]: every bounded wait in Foundry takes one instead of constants of its
/// own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollPolicy {
    pub interval_ms: u64,
    pub deadline_ms: u64,
}

impl PollPolicy {
    pub const fn new(interval_ms: u64, deadline_ms: u64) -> Self {
        PollPolicy {
            interval_ms,
            deadline_ms,
        }
    }

    /// The same interval with another deadline: a wait whose bound is given at run time.
    pub fn within(self, deadline: Duration) -> Self {
        PollPolicy {
            deadline_ms: u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
            ..self
        }
    }

    /// The deadline, for messages.
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }

    /// Starts a wait under this policy.
    pub fn start(&self) -> Poll {
        Poll {
            interval: Duration::from_millis(self.interval_ms),
            end: Instant::now() + Duration::from_millis(self.deadline_ms),
            first: true,
        }
    }
}

/// One wait under a [`PollPolicy`]: `while poll.tick().await { .. }` tries at once, then once
/// per interval while the deadline has not passed.
#[derive(Debug)]
pub struct Poll {
    interval: Duration,
    end: Instant,
    first: bool,
}

impl Poll {
    /// Whether to try (again): the first call says yes at once; later ones after the
    /// interval, while the deadline has not passed.
    pub async fn tick(&mut self) -> bool {
        if std::mem::replace(&mut self.first, false) {
            return true;
        }
        if Instant::now() + self.interval > self.end {
            return false;
        }
        tokio::time::sleep(self.interval).await;
        true
    }

    /// Like [`Poll::tick`], sleeping on this thread: for a wait on a thread that blocks
    /// anyway, as the journal's writer does while it commits.
    pub fn tick_blocking(&mut self) -> bool {
        if std::mem::replace(&mut self.first, false) {
            return true;
        }
        if Instant::now() + self.interval > self.end {
            return false;
        }
        std::thread::sleep(self.interval);
        true
    }

    /// Like [`Poll::tick`], for a wait a cancelled run stops: `Err(Cancelled)` as soon as
    /// `cancel` fires during the interval.
    pub async fn tick_unless(&mut self, cancel: &CancellationToken) -> Result<bool, Cancelled> {
        if cancel.is_cancelled() {
            return Err(Cancelled);
        }
        tokio::select! {
            more = self.tick() => Ok(more),
            () = cancel.cancelled() => Err(Cancelled),
        }
    }
}

/// A wait stopped because its run was cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cancelled;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_poll_tries_at_once_then_per_interval_until_its_deadline() {
        let mut once = PollPolicy::new(1_000, 0).start();
        assert!(once.tick().await);
        assert!(!once.tick().await, "no time for a second try");

        let mut tries = 0;
        let mut poll = PollPolicy::new(1, 60_000).start();
        while poll.tick().await {
            tries += 1;
            if tries == 3 {
                break;
            }
        }
        assert_eq!(tries, 3);
        let policy: PollPolicy =
            serde_json::from_str(r#"{"interval_ms": 250, "deadline_ms": 30000}"#).expect("json");
        assert_eq!(policy, PollPolicy::new(250, 30_000));
    }

    #[tokio::test]
    async fn a_cancelled_run_stops_a_poll_at_once() {
        let cancel = CancellationToken::new();
        let mut poll = PollPolicy::new(60_000, 600_000).start();
        assert_eq!(poll.tick_unless(&cancel).await, Ok(true), "the first try");
        let stopper = cancel.clone();
        tokio::spawn(async move { stopper.cancel() });
        assert_eq!(
            poll.tick_unless(&cancel).await,
            Err(Cancelled),
            "not after the minute's interval"
        );
        let mut fresh = PollPolicy::new(1, 60_000).start();
        assert_eq!(fresh.tick_unless(&cancel).await, Err(Cancelled));
        let policy = PollPolicy::new(250, 1_000).within(Duration::from_secs(3));
        assert_eq!(policy, PollPolicy::new(250, 3_000));
        assert_eq!(policy.deadline(), Duration::from_secs(3));
    }

    #[test]
    fn delays_grow_and_are_capped() {
        let p = RetryPolicy {
            initial_ms: 100,
            factor: 2.0,
            max_delay_ms: 350,
            max_attempts: 10,
            max_elapsed_ms: None,
            jitter: 0.0,
        };
        let delays: Vec<u128> = (1..6)
            .map(|a| {
                p.delay_after(a, Duration::ZERO)
                    .map(|d| d.as_millis())
                    .unwrap_or(0)
            })
            .collect();
        assert_eq!(delays, vec![100, 200, 350, 350, 350]);
    }

    #[test]
    fn exhausted_after_max_attempts_or_elapsed() {
        let p = RetryPolicy {
            max_attempts: 3,
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        assert!(p.delay_after(2, Duration::ZERO).is_some());
        assert!(p.delay_after(3, Duration::ZERO).is_none());
        let p = RetryPolicy {
            max_elapsed_ms: Some(1_000),
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        assert!(p.delay_after(1, Duration::from_millis(900)).is_none());
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let p = RetryPolicy {
            initial_ms: 1_000,
            jitter: 0.5,
            max_attempts: 100,
            max_elapsed_ms: None,
            ..RetryPolicy::default()
        };
        for _ in 0..200 {
            let d = p
                .delay_after(1, Duration::ZERO)
                .map(|d| d.as_millis())
                .unwrap_or(0);
            assert!((500..=1_500).contains(&d), "{d}");
        }
    }
}
