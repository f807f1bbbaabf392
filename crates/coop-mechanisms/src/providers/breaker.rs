//! A circuit breaker: closed → open when the failure rate over a sliding window
//! passes a threshold (given a minimum number of calls); open → half-open after
//! a wait; half-open lets a few probes through, closes when they all succeed and
//! reopens on the first failure.
//!
//! Written here because tower has none and the crates that do are unmaintained
//! or young (see CRATES.md). The state machine takes the time as an argument, so
//! it is tested without sleeping.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct BreakerConfig {
    /// How far back failures count.
    pub window: Duration,
    /// Fewer calls than this in the window never open the breaker.
    pub min_calls: u32,
    /// Failure share (0–1) at or above which the breaker opens.
    pub failure_rate: f64,
    /// How long it stays open before letting probes through.
    pub open_for: Duration,
    /// Probes allowed while half-open; all must succeed to close.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(30),
            min_calls: 10,
            failure_rate: 0.5,
            open_for: Duration::from_secs(15),
            half_open_probes: 3,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// The call may go ahead; report its outcome with `Breaker::record`.
#[derive(Debug)]
#[must_use = "report the call's outcome with Breaker::record"]
pub struct Permit {
    probe: bool,
}

/// The breaker is open: make no call before `retry_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    pub retry_at: Instant,
}

pub struct Breaker {
    name: &'static str,
    config: BreakerConfig,
    inner: Mutex<Inner>,
}

struct Inner {
    state: State,
    /// (when, succeeded) of calls in the window, oldest first.
    calls: VecDeque<(Instant, bool)>,
    opened_at: Option<Instant>,
    probes_in_flight: u32,
    probe_successes: u32,
}

impl Breaker {
    pub fn new(name: &'static str, config: BreakerConfig) -> Self {
        metrics::gauge!("breaker_state", "breaker" => name).set(0.0);
        Self {
            name,
            config,
            inner: Mutex::new(Inner {
                state: State::Closed,
                calls: VecDeque::new(),
                opened_at: None,
                probes_in_flight: 0,
                probe_successes: 0,
            }),
        }
    }

    pub fn state(&self) -> State {
        self.lock().state
    }

    /// Asks to make one call at `now`.
    pub fn try_acquire(&self, now: Instant) -> Result<Permit, Rejected> {
        let mut inner = self.lock();
        if inner.state == State::Open {
            let reopen_at = inner.opened_at.unwrap_or(now) + self.config.open_for;
            if now < reopen_at {
                metrics::counter!("breaker_rejected_total", "breaker" => self.name).increment(1);
                return Err(Rejected {
                    retry_at: reopen_at,
                });
            }
            self.transition(&mut inner, State::HalfOpen, now);
        }
        if inner.state == State::HalfOpen {
            if inner.probes_in_flight + inner.probe_successes >= self.config.half_open_probes {
                metrics::counter!("breaker_rejected_total", "breaker" => self.name).increment(1);
                return Err(Rejected {
                    retry_at: now + Duration::from_millis(100).min(self.config.open_for),
                });
            }
            inner.probes_in_flight += 1;
            return Ok(Permit { probe: true });
        }
        Ok(Permit { probe: false })
    }

    /// Reports how a permitted call went.
    pub fn record(&self, permit: Permit, succeeded: bool, now: Instant) {
        let outcome = if succeeded { "success" } else { "failure" };
        metrics::counter!("breaker_calls_total", "breaker" => self.name, "outcome" => outcome)
            .increment(1);
        let mut inner = self.lock();
        if permit.probe {
            inner.probes_in_flight = inner.probes_in_flight.saturating_sub(1);
            if inner.state != State::HalfOpen {
                return; // a late probe after the state moved on
            }
            if succeeded {
                inner.probe_successes += 1;
                if inner.probe_successes >= self.config.half_open_probes {
                    self.transition(&mut inner, State::Closed, now);
                }
            } else {
                self.transition(&mut inner, State::Open, now);
            }
            return;
        }
        if inner.state != State::Closed {
            return; // a call that began before the breaker opened
        }
        inner.calls.push_back((now, succeeded));
        let horizon = now.checked_sub(self.config.window);
        while inner
            .calls
            .front()
            .is_some_and(|&(at, _)| horizon.is_some_and(|h| at < h))
        {
            inner.calls.pop_front();
        }
        let total = inner.calls.len() as u32;
        let failures = inner.calls.iter().filter(|(_, ok)| !ok).count() as f64;
        if total >= self.config.min_calls && failures / f64::from(total) >= self.config.failure_rate
        {
            self.transition(&mut inner, State::Open, now);
        }
    }

    fn transition(&self, inner: &mut Inner, to: State, now: Instant) {
        let from = inner.state;
        inner.state = to;
        inner.probes_in_flight = 0;
        inner.probe_successes = 0;
        match to {
            State::Open => inner.opened_at = Some(now),
            State::Closed => {
                inner.opened_at = None;
                inner.calls.clear();
            }
            State::HalfOpen => {}
        }
        tracing::warn!(
            breaker = self.name,
            from = from.as_str(),
            to = to.as_str(),
            "circuit breaker changed state"
        );
        metrics::counter!("breaker_transitions_total", "breaker" => self.name, "from" => from.as_str(), "to" => to.as_str())
            .increment(1);
        let gauge = match to {
            State::Closed => 0.0,
            State::Open => 1.0,
            State::HalfOpen => 2.0,
        };
        metrics::gauge!("breaker_state", "breaker" => self.name).set(gauge);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(
            "test",
            BreakerConfig {
                window: Duration::from_secs(10),
                min_calls: 4,
                failure_rate: 0.5,
                open_for: Duration::from_secs(5),
                half_open_probes: 2,
            },
        )
    }

    fn call(b: &Breaker, ok: bool, at: Instant) -> Result<(), Rejected> {
        let permit = b.try_acquire(at)?;
        b.record(permit, ok, at);
        Ok(())
    }

    #[test]
    fn stays_closed_below_the_minimum_number_of_calls() {
        let (b, t) = (breaker(), Instant::now());
        for _ in 0..3 {
            call(&b, false, t).unwrap();
        }
        assert_eq!(b.state(), State::Closed, "3 failures < min_calls 4");
    }

    #[test]
    fn opens_when_the_failure_rate_passes_the_threshold() {
        let (b, t) = (breaker(), Instant::now());
        call(&b, true, t).unwrap();
        call(&b, true, t).unwrap();
        call(&b, false, t).unwrap();
        assert_eq!(b.state(), State::Closed);
        call(&b, false, t).unwrap(); // 2 of 4 failed = 50 %
        assert_eq!(b.state(), State::Open);
        let rejected = call(&b, true, t + Duration::from_secs(1)).unwrap_err();
        assert_eq!(
            rejected.retry_at,
            t + Duration::from_secs(5),
            "no call while open"
        );
    }

    #[test]
    fn old_failures_leave_the_window() {
        let (b, t) = (breaker(), Instant::now());
        call(&b, false, t).unwrap();
        call(&b, false, t).unwrap();
        let later = t + Duration::from_secs(11);
        call(&b, true, later).unwrap();
        call(&b, true, later).unwrap();
        call(&b, false, later).unwrap();
        call(&b, true, later).unwrap();
        assert_eq!(
            b.state(),
            State::Closed,
            "only 1 of the 4 calls in the window failed"
        );
    }

    #[test]
    fn half_open_probes_close_it_when_they_all_succeed() {
        let (b, t) = (breaker(), Instant::now());
        for _ in 0..4 {
            call(&b, false, t).unwrap();
        }
        let after = t + Duration::from_secs(5);
        let first = b.try_acquire(after).unwrap();
        assert_eq!(b.state(), State::HalfOpen);
        let second = b.try_acquire(after).unwrap();
        assert!(b.try_acquire(after).is_err(), "only two probes at a time");
        b.record(first, true, after);
        assert_eq!(b.state(), State::HalfOpen);
        b.record(second, true, after);
        assert_eq!(b.state(), State::Closed);
        call(&b, true, after).unwrap();
    }

    #[test]
    fn a_failed_probe_reopens_it_for_another_wait() {
        let (b, t) = (breaker(), Instant::now());
        for _ in 0..4 {
            call(&b, false, t).unwrap();
        }
        let after = t + Duration::from_secs(6);
        call(&b, false, after).unwrap();
        assert_eq!(b.state(), State::Open);
        let rejected = b.try_acquire(after + Duration::from_secs(1)).unwrap_err();
        assert_eq!(rejected.retry_at, after + Duration::from_secs(5));
        assert!(
            b.try_acquire(after + Duration::from_secs(5)).is_ok(),
            "probes again after the wait"
        );
    }

    #[test]
    fn a_closed_breaker_forgets_earlier_failures() {
        let (b, t) = (breaker(), Instant::now());
        for _ in 0..4 {
            call(&b, false, t).unwrap();
        }
        let after = t + Duration::from_secs(5);
        call(&b, true, after).unwrap();
        call(&b, true, after).unwrap();
        assert_eq!(b.state(), State::Closed);
        call(&b, false, after).unwrap();
        assert_eq!(
            b.state(),
            State::Closed,
            "one failure after closing is not a 50 % rate"
        );
    }
}
