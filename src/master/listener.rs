//! Accepting agents: a cap on connections, a per-IP rate limit on new
//! ones (each costs a handshake: two X25519 operations), one task each.

use std::collections::HashMap;
use std::net::{IpAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smol::{Async, Executor};

use super::Master;

/// Most IPs the rate limiter tracks; beyond, idle entries are dropped.
const MAX_TRACKED_IPS: usize = 65_536;

/// A token bucket per source IP.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: HashMap<IpAddr, (f64, Instant)>,
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

    /// Whether `ip` may open a connection at `now`.
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.buckets.len() >= MAX_TRACKED_IPS {
            let (rate, burst) = (self.rate, self.burst);
            // Drop buckets that have refilled: they hold no information.
            self.buckets
                .retain(|_, (tokens, t)| *tokens + (now - *t).as_secs_f64() * rate < burst);
        }
        let (rate, burst) = (self.rate, self.burst);
        let (tokens, last) = self.buckets.entry(ip).or_insert((burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*last).as_secs_f64() * rate).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
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

/// Accepts connections until the master stops.
pub async fn accept_loop(
    master: Arc<Master>,
    listener: Async<TcpListener>,
    ex: Arc<Executor<'static>>,
) {
    let mut limiter = RateLimiter::new(master.settings().handshakes_per_ip);
    let mut error_backoff = Duration::from_millis(10);
    loop {
        let Some(r) = master.accept_or_stop(&listener).await else {
            return;
        };
        let (stream, addr) = match r {
            Ok(x) => x,
            Err(e) => {
                // Usually EMFILE: wait for descriptors to free up.
                log::warn!("accept failed: {e}; retrying in {error_backoff:?}");
                smol::Timer::after(error_backoff).await;
                error_backoff = (error_backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        error_backoff = Duration::from_millis(10);
        let max = master.settings().max_connections;
        let (refuse, id) = {
            let mut reg = master.lock_registry();
            let reason = if reg.connections() >= max {
                Some("max_connections")
            } else if master.budget.is_spent() {
                // Newest first: with every byte of the budget held, a new
                // connection is refused before any it would take from.
                master.budget.refuse(super::budget::Refusal::Accept);
                Some("memory_budget")
            } else if !limiter.allow(addr.ip(), Instant::now()) {
                Some("rate_limited")
            } else {
                None
            };
            if let Some(r) = reason {
                *reg.counters.refused.entry(r).or_default() += 1;
            }
            (reason, reg.next_conn_id())
        };
        if let Some(reason) = refuse {
            log::debug!("refused connection from {addr}: {reason}");
            drop(stream);
            continue;
        }
        let _ = stream.get_ref().set_nodelay(true);
        ex.spawn(super::conn::serve(master.clone(), stream, addr, id))
            .detach();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
