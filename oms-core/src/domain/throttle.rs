//! Login throttling: how many password attempts an email address and a
//! client address get before they must wait.

use std::net::IpAddr;
use std::time::Duration;

use super::Email;

/// Limits on login attempts, each counted in a fixed window that starts
/// with the first attempt after the last window ended.
///
/// An email's attempt is counted *before* its password is checked, so that
/// concurrent guesses cannot slip past the limit, and a success clears the
/// email's count: it counts failures and attempts in flight. An address
/// counts its failures only (read before, counted after the check), so
/// that many buyers logging in at once behind one address (a NAT, a
/// proxy) are not held back by their own successes; concurrent guesses
/// from one address may pass its limit by the logins it has in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Attempts per email address and window (default 5).
    pub per_email: u64,
    /// Failed attempts per client address (an IPv4 address, or an IPv6
    /// /64) and window, whatever the email (default 50).
    pub per_address: u64,
    /// The window (default 15 min).
    pub window: Duration,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            per_email: 5,
            per_address: 50,
            window: Duration::from_secs(15 * 60),
        }
    }
}

/// The attempts under one key in its current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempts {
    /// Attempts counted, this one included.
    pub count: u64,
    /// When the window ends and the count starts again from zero.
    pub resets_in: Duration,
}

/// The counter key of an email address.
pub fn email_key(email: &Email) -> String {
    format!("login:email:{email}")
}

/// The counter key of a client address: the IPv4 address, or the /64
/// prefix of an IPv6 address (one host usually holds a whole /64). An
/// IPv4-mapped IPv6 address counts as its IPv4 address.
pub fn address_key(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => format!("login:addr:{v4}"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("login:addr:{v4}"),
            None => {
                let s = v6.segments();
                format!(
                    "login:addr:{:x}:{:x}:{:x}:{:x}::/64",
                    s[0], s[1], s[2], s[3]
                )
            }
        },
    }
}

impl ThrottlePolicy {
    /// Whether an attempt may go on, given the counts with it included:
    /// `Err` with how long to wait when the email's or the address's count
    /// is over its limit.
    pub fn verdict(&self, email: Attempts, address: Option<Attempts>) -> Result<(), Duration> {
        let mut wait: Option<Duration> = None;
        if email.count > self.per_email {
            wait = Some(email.resets_in);
        }
        if let Some(a) = address.filter(|a| a.count > self.per_address) {
            wait = Some(wait.map_or(a.resets_in, |w| w.max(a.resets_in)));
        }
        match wait {
            None => Ok(()),
            Some(w) => Err(w.max(Duration::from_secs(1))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(count: u64, secs: u64) -> Attempts {
        Attempts {
            count,
            resets_in: Duration::from_secs(secs),
        }
    }

    #[test]
    fn the_attempt_over_the_limit_waits_for_the_window() {
        let p = ThrottlePolicy::default();
        for n in 1..=5 {
            assert_eq!(p.verdict(at(n, 600), Some(at(n, 600))), Ok(()));
        }
        assert_eq!(
            p.verdict(at(6, 600), Some(at(6, 600))),
            Err(Duration::from_secs(600))
        );
        assert_eq!(
            p.verdict(at(1, 10), Some(at(51, 700))),
            Err(Duration::from_secs(700))
        );
        assert_eq!(
            p.verdict(at(9, 100), Some(at(51, 30))),
            Err(Duration::from_secs(100)),
            "the longer wait"
        );
        assert_eq!(p.verdict(at(1, 10), None), Ok(()));
        assert_eq!(
            p.verdict(at(6, 0), None),
            Err(Duration::from_secs(1)),
            "never Retry-After: 0"
        );
    }

    #[test]
    fn keys_name_the_email_and_the_address() {
        let e = Email::parse("Kim@Example.com").unwrap();
        assert_eq!(email_key(&e), "login:email:kim@example.com");
        let v4: IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(address_key(v4), "login:addr:203.0.113.7");
        let mapped: IpAddr = "::ffff:203.0.113.7".parse().unwrap();
        assert_eq!(address_key(mapped), "login:addr:203.0.113.7");
        let a: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        assert_eq!(address_key(a), "login:addr:2001:db8:1:2::/64");
        assert_eq!(address_key(a), address_key(b), "one /64, one counter");
    }
}
