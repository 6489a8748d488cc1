//! The host's limits on code requests, against SMS pumping (toll fraud: requests for codes
//! to expensive numbers): at most so many per source address and per number prefix in any
//! hour, checked by the session driver before the registrar plugin is asked (the plugin's
//! own per-number limits come on top). Sliding windows: each key keeps the times of its
//! last requests within the hour (at most the limit), so a key's memory is bounded by its
//! limit and keys idle for an hour are dropped.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window of every limit.
pub const WINDOW: Duration = Duration::from_secs(3600);
/// How often keys idle for a whole window are dropped.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Which limit refused a request; its name is the `limit` label of
/// `hotline_sms_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Address,
    Prefix,
}

impl Limit {
    pub const ALL: [Limit; 2] = [Limit::Address, Limit::Prefix];

    pub fn name(self) -> &'static str {
        match self {
            Limit::Address => "address",
            Limit::Prefix => "prefix",
        }
    }
}

/// A refused request: which limit, and a reason for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub limit: Limit,
    pub reason: String,
}

/// The counters of both limits.
pub struct CodeLimits {
    per_address: u32,
    per_prefix: u32,
    prefix_digits: usize,
    state: Mutex<State>,
}

struct State {
    addresses: Windows<IpAddr>,
    prefixes: Windows<String>,
    pruned_at: Instant,
}

/// Per key, the times of its requests in the last window, oldest first.
struct Windows<K>(HashMap<K, VecDeque<Instant>>);

impl<K: Hash + Eq + Clone> Windows<K> {
    /// How long until `key` may make a request, if it has made `limit` in the window.
    fn wait(&mut self, key: &K, limit: u32, now: Instant) -> Option<Duration> {
        let times = self.0.get_mut(key)?;
        while times.front().is_some_and(|&t| now.duration_since(t) >= WINDOW) {
            times.pop_front();
        }
        (limit != 0 && times.len() >= limit as usize).then(|| (times[0] + WINDOW).saturating_duration_since(now))
    }

    fn record(&mut self, key: &K, limit: u32, now: Instant) {
        if limit == 0 {
            return;
        }
        let times = self.0.entry(key.clone()).or_default();
        times.push_back(now);
        while times.len() > limit as usize {
            times.pop_front();
        }
    }

    fn prune(&mut self, now: Instant) {
        self.0.retain(|_, times| times.back().is_some_and(|&t| now.duration_since(t) < WINDOW));
    }
}

impl CodeLimits {
    /// Limits of `per_address` and `per_prefix` requests an hour (`0`: none); a prefix is
    /// the first `prefix_digits` digits after `+`.
    pub fn new(per_address: u32, per_prefix: u32, prefix_digits: u8) -> CodeLimits {
        CodeLimits {
            per_address,
            per_prefix,
            prefix_digits: prefix_digits.max(1) as usize,
            state: Mutex::new(State { addresses: Windows(HashMap::new()), prefixes: Windows(HashMap::new()), pruned_at: Instant::now() }),
        }
    }

    /// Whether a code request for `phone` from `address` may go to the registrar now; an
    /// allowed one is counted against both limits, a refused one against none.
    pub fn check(&self, address: IpAddr, phone: &str) -> Result<(), Refused> {
        self.check_at(Instant::now(), address, phone)
    }

    fn check_at(&self, now: Instant, address: IpAddr, phone: &str) -> Result<(), Refused> {
        if self.per_address == 0 && self.per_prefix == 0 {
            return Ok(());
        }
        let address = address_key(address);
        let prefix: String = phone.trim_start_matches('+').chars().take(self.prefix_digits).collect();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if now.duration_since(state.pruned_at) >= PRUNE_EVERY {
            state.addresses.prune(now);
            state.prefixes.prune(now);
            state.pruned_at = now;
        }
        if let Some(wait) = state.addresses.wait(&address, self.per_address, now) {
            let reason = format!(
                "too many code requests from this network address (at most {} an hour); try again in {}",
                self.per_address,
                minutes(wait)
            );
            return Err(Refused { limit: Limit::Address, reason });
        }
        if let Some(wait) = state.prefixes.wait(&prefix, self.per_prefix, now) {
            let reason = format!(
                "too many code requests for numbers starting +{prefix} (at most {} an hour); try again in {}",
                self.per_prefix,
                minutes(wait)
            );
            return Err(Refused { limit: Limit::Prefix, reason });
        }
        state.addresses.record(&address, self.per_address, now);
        state.prefixes.record(&prefix, self.per_prefix, now);
        Ok(())
    }

    /// Keys counted (addresses, prefixes), for tests.
    #[cfg(test)]
    fn keys(&self) -> (usize, usize) {
        let state = self.state.lock().unwrap();
        (state.addresses.0.len(), state.prefixes.0.len())
    }
}

/// The key an address is counted under: an IPv4 address (also when mapped into IPv6), or
/// an IPv6 address's /64 network (what one subscriber usually gets).
fn address_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
        v4 => v4,
    }
}

/// `wait` in whole minutes, at least one.
fn minutes(wait: Duration) -> String {
    let minutes = wait.as_secs().div_ceil(60).max(1);
    format!("{minutes} minute{}", if minutes == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_address_is_refused_past_its_limit_until_its_oldest_request_is_an_hour_old() {
        let limits = CodeLimits::new(3, 0, 6);
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        for (i, phone) in ["+15551230001", "+447700900001", "+15551230002"].iter().enumerate() {
            assert_eq!(limits.check_at(at(i as u64 * 600), ip("192.0.2.7"), phone), Ok(()));
        }
        let refused = limits.check_at(at(1800), ip("192.0.2.7"), "+33612345678").unwrap_err();
        assert_eq!(refused.limit, Limit::Address);
        assert!(refused.reason.contains("at most 3 an hour") && refused.reason.contains("30 minutes"), "{}", refused.reason);
        // Another address is not affected; refusals are not counted.
        assert_eq!(limits.check_at(at(1800), ip("192.0.2.8"), "+33612345678"), Ok(()));
        assert!(limits.check_at(at(3599), ip("192.0.2.7"), "+33612345678").is_err());
        // The first request leaves the window: one more fits, then none again.
        assert_eq!(limits.check_at(at(3600), ip("192.0.2.7"), "+33612345678"), Ok(()));
        assert!(limits.check_at(at(3601), ip("192.0.2.7"), "+33612345678").is_err());
    }

    #[test]
    fn a_prefix_is_refused_past_its_limit_from_any_address() {
        let limits = CodeLimits::new(0, 2, 6);
        let now = Instant::now();
        assert_eq!(limits.check_at(now, ip("192.0.2.1"), "+15551230001"), Ok(()));
        assert_eq!(limits.check_at(now, ip("192.0.2.2"), "+15551239999"), Ok(()));
        let refused = limits.check_at(now, ip("192.0.2.3"), "+15551200000").unwrap_err();
        assert_eq!(refused.limit, Limit::Prefix);
        assert!(refused.reason.contains("numbers starting +155512"), "{}", refused.reason);
        assert_eq!(limits.check_at(now, ip("192.0.2.3"), "+15551300000"), Ok(()), "another prefix");
    }

    #[test]
    fn ipv6_addresses_count_per_64_and_mapped_ipv4_as_ipv4() {
        let limits = CodeLimits::new(1, 0, 6);
        let now = Instant::now();
        assert_eq!(limits.check_at(now, ip("2001:db8:1:2::1"), "+15551230001"), Ok(()));
        assert!(limits.check_at(now, ip("2001:db8:1:2:ffff::9"), "+15551230001").is_err(), "same /64");
        assert_eq!(limits.check_at(now, ip("2001:db8:1:3::1"), "+15551230001"), Ok(()), "another /64");
        assert_eq!(limits.check_at(now, ip("192.0.2.1"), "+15551230001"), Ok(()));
        assert!(limits.check_at(now, ip("::ffff:192.0.2.1"), "+15551230001").is_err(), "mapped");
    }

    #[test]
    fn zero_means_no_limit_and_idle_keys_are_dropped() {
        let off = CodeLimits::new(0, 0, 6);
        let now = Instant::now();
        for _ in 0..1000 {
            assert_eq!(off.check_at(now, ip("192.0.2.1"), "+15551230001"), Ok(()));
        }
        assert_eq!(off.keys(), (0, 0));
        let limits = CodeLimits::new(5, 5, 6);
        for i in 0..100u32 {
            let phone = format!("+1{:010}", i * 100_000);
            limits.check_at(now, IpAddr::V4(i.into()), &phone).unwrap();
        }
        assert_eq!(limits.keys(), (100, 100));
        limits.check_at(now + WINDOW, ip("192.0.2.1"), "+15551230001").unwrap();
        assert_eq!(limits.keys(), (1, 1), "only the new request's keys remain");
    }
}
