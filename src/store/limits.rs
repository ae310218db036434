//! Rate limits and `Retry-After` pauses kept in this process's memory: what a
//! backend with a single process (SQLite) uses. A backend shared by several
//! processes keeps them in the database instead (see `postgres`).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::RateLimit;

/// "At most N sends in any window", with pauses a destination asked for.
#[derive(Debug)]
pub struct Limiter {
    sent: VecDeque<Instant>,
    paused_until: Option<Instant>,
}

impl Limiter {
    pub fn new() -> Limiter {
        Limiter {
            sent: VecDeque::new(),
            paused_until: None,
        }
    }

    fn prune(&mut self, limit: Option<RateLimit>, now: Instant) {
        // Without a limit nothing is kept; with one, only the current window.
        let per = limit.map(|l| l.per).unwrap_or_default();
        while self
            .sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= per)
        {
            self.sent.pop_front();
        }
        if self.paused_until.is_some_and(|p| p <= now) {
            self.paused_until = None;
        }
    }

    /// How long until one more send is allowed (zero: now).
    pub fn wait(&mut self, limit: Option<RateLimit>, now: Instant) -> Duration {
        self.prune(limit, now);
        let pause = self.paused_until.map(|p| p - now).unwrap_or_default();
        let window = match (limit, self.sent.front()) {
            (Some(l), Some(first)) if self.sent.len() >= l.count as usize => (*first + l.per) - now,
            _ => Duration::ZERO,
        };
        pause.max(window)
    }

    /// Takes a send if one is allowed now (zero), else how long to wait.
    pub fn take(&mut self, limit: Option<RateLimit>, now: Instant) -> Duration {
        let wait = self.wait(limit, now);
        if wait.is_zero() && limit.is_some() {
            self.sent.push_back(now);
        }
        wait
    }

    /// The destination asked for a pause (`Retry-After`).
    pub fn pause(&mut self, until: Instant) {
        if self.paused_until.is_none_or(|p| p < until) {
            self.paused_until = Some(until);
        }
    }

    pub fn paused_for(&mut self, now: Instant) -> Duration {
        self.paused_until
            .map(|p| p.saturating_duration_since(now))
            .unwrap_or_default()
    }
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::new()
    }
}

/// One [`Limiter`] per destination.
#[derive(Debug, Default)]
pub struct Limits(Mutex<HashMap<String, Limiter>>);

impl Limits {
    fn with<T>(&self, destination: &str, f: impl FnOnce(&mut Limiter) -> T) -> T {
        // A poisoned lock still holds valid counters.
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match map.get_mut(destination) {
            Some(l) => f(l),
            None => f(map.entry(destination.to_string()).or_default()),
        }
    }

    pub fn take_send(&self, destination: &str, limit: Option<RateLimit>) -> Duration {
        self.with(destination, |l| l.take(limit, Instant::now()))
    }

    pub fn paused_for(&self, destination: &str) -> Duration {
        self.with(destination, |l| l.paused_for(Instant::now()))
    }

    pub fn pause(&self, destination: &str, duration: Duration) {
        self.with(destination, |l| l.pause(Instant::now() + duration))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_allows_n_per_window_without_burst() {
        let rl = Some(RateLimit {
            count: 2,
            per: Duration::from_secs(1),
        });
        let mut l = Limiter::new();
        let t0 = Instant::now();
        assert_eq!(l.take(rl, t0), Duration::ZERO);
        assert_eq!(l.take(rl, t0 + Duration::from_millis(100)), Duration::ZERO);
        assert_eq!(
            l.take(rl, t0 + Duration::from_millis(200)),
            Duration::from_millis(800)
        );
        assert_eq!(l.take(rl, t0 + Duration::from_millis(1000)), Duration::ZERO);
        assert_eq!(
            l.wait(rl, t0 + Duration::from_millis(1000)),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn limiter_pauses_when_asked() {
        let mut l = Limiter::new();
        let t0 = Instant::now();
        assert_eq!(l.take(None, t0), Duration::ZERO);
        l.pause(t0 + Duration::from_secs(7));
        assert_eq!(l.take(None, t0), Duration::from_secs(7));
        assert_eq!(l.paused_for(t0), Duration::from_secs(7));
        assert_eq!(l.take(None, t0 + Duration::from_secs(7)), Duration::ZERO);
    }
}
