//! The agents' listening sockets and what admits a new connection: the
//! per-IP rate limit on new ones (each costs a handshake: two X25519
//! operations). The shards ([`super::shard`]) accept and serve them.

use std::collections::HashMap;
use std::net::{IpAddr, TcpListener};
use std::time::Instant;

/// Most IPs the rate limiter tracks; beyond, idle entries are dropped.
const MAX_TRACKED_IPS: usize = 65_536;

/// A token bucket per source IP.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: HashMap<IpAddr, Bucket>,
}

/// One source IP's tokens, and the refusals of its current burst: a
/// whole NAT'd site reconnecting is one event for the log, not one line
/// per device.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
    /// Connections refused since the bucket was last full.
    refused: u64,
}

/// What the limiter decided for one new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Accept it. `refused_in_burst` is non-zero once, when an address
    /// that was refused has had a full bucket again: the burst is over and
    /// this is how many it refused (for one summary line in the log).
    Allowed {
        /// Connections refused in the burst that just ended.
        refused_in_burst: u64,
    },
    /// Refuse it. `first` is set for the first refusal of a burst, so
    /// the caller logs the start of a burst once, not every connection.
    Refused {
        /// The first refusal since the address last had a full bucket.
        first: bool,
    },
}

impl RateLimiter {
    /// `per_sec` new connections per second per IP, bursts of 4× that.
    pub fn new(per_sec: u32) -> RateLimiter {
        let rate = f64::from(per_sec.max(1));
        RateLimiter {
            rate,
            burst: rate * 4.0,
            buckets: HashMap::new(),
        }
    }

    /// The sustained rate, connections per second per IP.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The burst, connections accepted at once from one idle IP.
    pub fn burst(&self) -> f64 {
        self.burst
    }

    /// Whether `ip` may open a connection at `now`.
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        matches!(self.admit(ip, now), Admission::Allowed { .. })
    }

    /// Whether `ip` may open a connection at `now`, and where that puts
    /// the address's current burst (see [`Admission`]).
    pub fn admit(&mut self, ip: IpAddr, now: Instant) -> Admission {
        if self.buckets.len() >= MAX_TRACKED_IPS {
            let (rate, burst) = (self.rate, self.burst);
            // Drop buckets that have refilled: they hold no information.
            self.buckets
                .retain(|_, b| b.tokens + (now - b.last).as_secs_f64() * rate < burst);
        }
        let (rate, burst) = (self.rate, self.burst);
        let b = self.buckets.entry(ip).or_insert(Bucket {
            tokens: burst,
            last: now,
            refused: 0,
        });
        b.tokens =
            (b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * rate).min(burst);
        b.last = now;
        // A full bucket means the address was quiet long enough: whatever
        // was refused before belongs to a burst that is over.
        let refused_in_burst = if b.tokens >= burst {
            std::mem::take(&mut b.refused)
        } else {
            0
        };
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Admission::Allowed { refused_in_burst }
        } else {
            b.refused += 1;
            Admission::Refused {
                first: b.refused == 1,
            }
        }
    }
}

/// Listen backlog: std's fixed 128 drops SYNs when a fleet reconnects at
/// once (they are then retried after a second); the kernel caps this at
/// `net.core.somaxconn`.
pub const BACKLOG: i32 = 4096;

/// Binds a listening TCP socket on `addr` (resolved; the first address
/// that binds wins) with [`BACKLOG`] and `SO_REUSEADDR`.
pub fn bind(addr: &str) -> std::io::Result<TcpListener> {
    use rustix::net::{AddressFamily, SocketType, sockopt};
    use std::net::ToSocketAddrs;
    let mut last = std::io::Error::other(format!("{addr} resolves to no address"));
    for sa in addr.to_socket_addrs()? {
        let family = if sa.is_ipv4() {
            AddressFamily::INET
        } else {
            AddressFamily::INET6
        };
        let r = rustix::net::socket(family, SocketType::STREAM, None).and_then(|fd| {
            sockopt::set_socket_reuseaddr(&fd, true)?;
            rustix::net::bind(&fd, &sa)?;
            rustix::net::listen(&fd, BACKLOG)?;
            Ok(fd)
        });
        match r {
            Ok(fd) => return Ok(TcpListener::from(fd)),
            Err(e) => last = e.into(),
        }
    }
    Err(last)
}

/// Raises the soft open-file limit to the hard limit: every agent is a
/// file descriptor, and the default 1024 is far below a fleet.
pub fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut l = getrlimit(Resource::Nofile);
    if l.current != l.maximum {
        l.current = l.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, l) {
            log::warn!("cannot raise the open-file limit: {e}");
        }
    }
}

/// Applies the per-IP limit to a new connection from `ip`, logging each
/// burst of refusals twice at most (when it starts, and its count once
/// the address is quiet again) rather than once per connection: a site
/// behind NAT reconnecting at once would otherwise flood the log.
pub(super) fn admit_and_log(limiter: &mut RateLimiter, ip: IpAddr) -> bool {
    match limiter.admit(ip, Instant::now()) {
        Admission::Allowed { refused_in_burst } => {
            if refused_in_burst > 0 {
                log::info!(
                    "{ip}: the burst is over; {refused_in_burst} connection(s) were refused by the per-IP rate limit"
                );
            }
            true
        }
        Admission::Refused { first } => {
            if first {
                log::warn!(
                    "refusing new connections from {ip}: more than {} per second (burst {}); \
                     devices behind one NAT address share this limit: raise handshakes_per_ip",
                    limiter.rate(),
                    limiter.burst()
                );
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bind_listens_and_accepts() {
        let l = bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        let _c = std::net::TcpStream::connect(a).unwrap();
        assert!(l.accept().is_ok());
        assert!(bind("no-such-host.invalid:1").is_err());
    }

    #[test]
    fn bucket_allows_burst_then_rate() {
        let t0 = Instant::now();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let mut l = RateLimiter::new(2);
        let allowed = (0..20).filter(|_| l.allow(ip, t0)).count();
        assert_eq!(allowed, 8, "burst of 4x the rate");
        assert!(l.allow(other, t0), "other IPs are unaffected");
        assert!(!l.allow(ip, t0 + Duration::from_millis(100)));
        assert!(l.allow(ip, t0 + Duration::from_millis(600)));
    }

    #[test]
    fn a_burst_of_refusals_is_reported_once_then_summed() {
        let t0 = Instant::now();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let mut l = RateLimiter::new(2);
        let verdicts: Vec<Admission> = (0..12).map(|_| l.admit(ip, t0)).collect();
        assert_eq!(
            verdicts[7],
            Admission::Allowed {
                refused_in_burst: 0
            }
        );
        assert_eq!(verdicts[8], Admission::Refused { first: true });
        assert_eq!(verdicts[11], Admission::Refused { first: false });
        // One admitted mid-burst does not end the burst...
        let t1 = t0 + Duration::from_millis(600);
        assert_eq!(
            l.admit(ip, t1),
            Admission::Allowed {
                refused_in_burst: 0
            }
        );
        assert_eq!(l.admit(ip, t1), Admission::Refused { first: false });
        // ...a full bucket does, and says how many it refused.
        let t2 = t1 + Duration::from_secs(10);
        assert_eq!(
            l.admit(ip, t2),
            Admission::Allowed {
                refused_in_burst: 5
            }
        );
        assert_eq!(
            l.admit(ip, t2),
            Admission::Allowed {
                refused_in_burst: 0
            }
        );
    }
}
