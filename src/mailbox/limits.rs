//! Token-bucket rate limiting keyed by IP address or sender key (pure: time is an input).
//!
//! ```
//! use asyncpay::mailbox::limits::RateLimiter;
//!
//! let mut limiter: RateLimiter<&str> = RateLimiter::new(1.0, 2.0, 1024);
//! assert!(limiter.allow("1.2.3.4", 0));
//! assert!(limiter.allow("1.2.3.4", 0));
//! assert!(!limiter.allow("1.2.3.4", 0)); // burst of two used up
//! assert!(limiter.allow("1.2.3.4", 1_000)); // one token back after a second
//! ```
use std::collections::HashMap;
use std::hash::Hash;

/// Per-key token buckets: `rate_per_sec` tokens refill per second up to `burst`.
#[derive(Debug)]
pub struct RateLimiter<K> {
    rate_per_sec: f64,
    burst: f64,
    max_keys: usize,
    buckets: HashMap<K, (f64, u64)>,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// A limiter refilling `rate_per_sec` tokens per second, holding at most `burst`, and
    /// tracking at most `max_keys` keys (idle full buckets are forgotten first).
    pub fn new(rate_per_sec: f64, burst: f64, max_keys: usize) -> Self {
        RateLimiter {
            rate_per_sec,
            burst: burst.max(1.0),
            max_keys: max_keys.max(1),
            buckets: HashMap::new(),
        }
    }

    /// A limiter that never refuses.
    pub fn unlimited() -> Self {
        Self::new(f64::INFINITY, f64::INFINITY, 1)
    }

    /// Takes one token for `key` at time `now_ms`; false when the bucket is empty.
    pub fn allow(&mut self, key: K, now_ms: u64) -> bool {
        if self.burst.is_infinite() {
            return true;
        }
        if !self.buckets.contains_key(&key) && self.buckets.len() >= self.max_keys {
            self.forget_idle(now_ms);
            if self.buckets.len() >= self.max_keys {
                // Under a flood of distinct keys, refuse new ones rather than grow without bound.
                return false;
            }
        }
        let (rate, burst) = (self.rate_per_sec, self.burst);
        let (tokens, last) = self.buckets.entry(key).or_insert((burst, now_ms));
        let elapsed = now_ms.saturating_sub(*last) as f64 / 1000.0;
        *tokens = (*tokens + elapsed * rate).min(burst);
        *last = now_ms.max(*last);
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn forget_idle(&mut self, now_ms: u64) {
        let (rate, burst) = (self.rate_per_sec, self.burst);
        self.buckets.retain(|_, (tokens, last)| {
            let elapsed = now_ms.saturating_sub(*last) as f64 / 1000.0;
            *tokens + elapsed * rate < burst
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_independent() {
        let mut l: RateLimiter<u32> = RateLimiter::new(0.0, 1.0, 10);
        assert!(l.allow(1, 0));
        assert!(!l.allow(1, 10_000));
        assert!(l.allow(2, 0));
    }

    #[test]
    fn key_table_is_bounded() {
        let mut l: RateLimiter<u32> = RateLimiter::new(1.0, 1.0, 2);
        assert!(l.allow(1, 0));
        assert!(l.allow(2, 0));
        assert!(!l.allow(3, 0));
        // After refill, idle keys are forgotten and room is made.
        assert!(l.allow(3, 5_000));
    }
}
