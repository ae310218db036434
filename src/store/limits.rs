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
    /// The sends of the current window: when each was taken, and its number
    /// (what [`Limiter::give_back`] finds it by).
    sent: VecDeque<(Instant, i64)>,
    /// The number of the next send taken.
    next: i64,
    paused_until: Option<Instant>,
}

impl Limiter {
    pub fn new() -> Limiter {
        Limiter {
            sent: VecDeque::new(),
            next: 1,
            paused_until: None,
        }
    }

    fn prune(&mut self, limit: Option<RateLimit>, now: Instant) {
        // Without a limit nothing is kept; with one, only the current window.
        let per = limit.map(|l| l.per).unwrap_or_default();
        while self
            .sent
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) >= per)
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
            (Some(l), Some((first, _))) if self.sent.len() >= l.count as usize => {
                (*first + l.per) - now
            }
            _ => Duration::ZERO,
        };
        pause.max(window)
    }

    /// Takes a send if one is allowed now (its number; 0 without a limit: nothing
    /// to give back), else says how long to wait.
    pub fn take(&mut self, limit: Option<RateLimit>, now: Instant) -> Result<i64, Duration> {
        let wait = self.wait(limit, now);
        if !wait.is_zero() {
            return Err(wait);
        }
        if limit.is_none() {
            return Ok(0);
        }
        let n = self.next;
        self.next += 1;
        self.sent.push_back((now, n));
        Ok(n)
    }

    /// Hands back send `n` (its send was not made): the window is as if it had
    /// never been taken. Gone from the window already, or never taken: nothing.
    pub fn give_back(&mut self, n: i64) {
        if let Some(i) = self.sent.iter().position(|(_, m)| *m == n) {
            self.sent.remove(i);
        }
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

    pub fn take_send(&self, destination: &str, limit: Option<RateLimit>) -> Result<i64, Duration> {
        self.with(destination, |l| l.take(limit, Instant::now()))
    }

    pub fn give_back(&self, destination: &str, n: i64) {
        self.with(destination, |l| l.give_back(n))
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
        assert!(l.take(rl, t0).is_ok());
        assert!(l.take(rl, t0 + Duration::from_millis(100)).is_ok());
        assert_eq!(
            l.take(rl, t0 + Duration::from_millis(200)),
            Err(Duration::from_millis(800))
        );
        assert!(l.take(rl, t0 + Duration::from_millis(1000)).is_ok());
        assert_eq!(
            l.wait(rl, t0 + Duration::from_millis(1000)),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn a_send_given_back_leaves_the_window_as_if_it_was_never_taken() {
        let rl = Some(RateLimit {
            count: 2,
            per: Duration::from_secs(1),
        });
        let ms = Duration::from_millis;
        let mut l = Limiter::new();
        let t0 = Instant::now();
        let first = l.take(rl, t0).unwrap();
        let second = l.take(rl, t0 + ms(100)).unwrap();
        assert_eq!(l.take(rl, t0 + ms(200)), Err(ms(800)));
        // The second was not sent: its place is free at once, the first's not.
        l.give_back(second);
        let third = l.take(rl, t0 + ms(200)).unwrap();
        assert_ne!(third, second);
        assert_eq!(l.take(rl, t0 + ms(300)), Err(ms(700)));
        // Handed back twice, or after its window: nothing more is freed.
        l.give_back(second);
        assert_eq!(l.take(rl, t0 + ms(300)), Err(ms(700)));
        assert!(l.take(rl, t0 + ms(1000)).is_ok());
        l.give_back(first);
        assert_eq!(l.take(rl, t0 + ms(1000)), Err(ms(200)));
        // Without a limit there is nothing to hand back.
        assert_eq!(l.take(None, t0), Ok(0));
    }

    #[test]
    fn limiter_pauses_when_asked() {
        let mut l = Limiter::new();
        let t0 = Instant::now();
        assert!(l.take(None, t0).is_ok());
        l.pause(t0 + Duration::from_secs(7));
        assert_eq!(l.take(None, t0), Err(Duration::from_secs(7)));
        assert_eq!(l.paused_for(t0), Duration::from_secs(7));
        assert!(l.take(None, t0 + Duration::from_secs(7)).is_ok());
    }
}
