//! The HTTP side's own counters: connections refused at accept and
//! connections closed for running out of time, by reason.
//!
//! Each count is also logged, at most once per burst per reason
//! ([`crate::log_limited`]), so the log says a flood is happening and the
//! counters say how big it is.
//!
//! Kept apart from the registry's counters because the HTTP side must
//! count without taking the registry lock: a flood of HTTP connections
//! must not slow the agents' tasks down. Every reason is a fixed label
//! value present from the start, so a dashboard's rate() sees 0, not a
//! missing series, before the first refusal.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Why an HTTP connection was closed right after accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `http_max_connections` connections were already open.
    MaxConnections,
    /// The client's IP already had `http_per_ip` connections open.
    PerIp,
}

impl Refusal {
    /// Every reason, in label order.
    pub const ALL: [Refusal; 2] = [Refusal::MaxConnections, Refusal::PerIp];

    /// The label value in `/metrics` and the key in `/api/status`.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::MaxConnections => "max_connections",
            Refusal::PerIp => "per_ip",
        }
    }
}

/// Why an HTTP connection was closed by the master for taking too long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timeout {
    /// The request (head and body) was not complete within
    /// `http_request_timeout`: a slow or slowloris client.
    Request,
    /// A write to the client stalled for `write_timeout`: a client that
    /// stopped reading (answers, or the event stream).
    Write,
}

impl Timeout {
    /// Every reason, in label order.
    pub const ALL: [Timeout; 2] = [Timeout::Request, Timeout::Write];

    /// The label value in `/metrics` and the key in `/api/status`.
    pub fn name(self) -> &'static str {
        match self {
            Timeout::Request => "request",
            Timeout::Write => "write",
        }
    }
}

/// Refusals and timeouts by reason. Relaxed atomics: these are statistics,
/// read by scrapes, never used to decide anything.
#[derive(Debug, Default)]
pub struct HttpCounters {
    refused: [AtomicU64; Refusal::ALL.len()],
    timed_out: [AtomicU64; Timeout::ALL.len()],
}

impl HttpCounters {
    /// Counts a connection from `ip` closed on accept, and logs it once
    /// per burst: a flood must show in the log without one line per
    /// connection. `limit` is the cap that refused it, for the log line.
    pub fn note_refusal(&self, ip: IpAddr, r: Refusal, limit: usize) {
        self.refused[r as usize].fetch_add(1, Ordering::Relaxed);
        match r {
            Refusal::MaxConnections => crate::log_limited!(
                log::Level::Warn,
                "http.refused.max_connections",
                "HTTP connection from {ip} refused: {limit} connections open (http_max_connections)"
            ),
            Refusal::PerIp => crate::log_limited!(
                log::Level::Warn,
                "http.refused.per_ip",
                "HTTP connection from {ip} refused: it has {limit} connections open (http_per_ip)"
            ),
        }
    }

    /// Counts a connection from `ip` closed for running out of `limit`,
    /// and logs it once per burst.
    pub fn note_timeout(&self, ip: IpAddr, t: Timeout, limit: Duration) {
        self.timed_out[t as usize].fetch_add(1, Ordering::Relaxed);
        let secs = limit.as_secs();
        match t {
            Timeout::Request => crate::log_limited!(
                log::Level::Warn,
                "http.timeout.request",
                "HTTP client {ip} closed: its request took over {secs} s (http_request_timeout)"
            ),
            Timeout::Write => crate::log_limited!(
                log::Level::Warn,
                "http.timeout.write",
                "HTTP client {ip} closed: it took nothing for {secs} s (write_timeout)"
            ),
        }
    }

    /// Connections refused for `r` so far.
    pub fn refused_count(&self, r: Refusal) -> u64 {
        self.refused[r as usize].load(Ordering::Relaxed)
    }

    /// Connections closed for `t` so far.
    pub fn timed_out_count(&self, t: Timeout) -> u64 {
        self.timed_out[t as usize].load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_reason() {
        let c = HttpCounters::default();
        let ip = IpAddr::from([127, 0, 0, 2]);
        c.note_refusal(ip, Refusal::PerIp, 64);
        c.note_refusal(ip, Refusal::PerIp, 64);
        c.note_timeout(ip, Timeout::Write, Duration::from_secs(10));
        assert_eq!(c.refused_count(Refusal::PerIp), 2);
        assert_eq!(c.refused_count(Refusal::MaxConnections), 0);
        assert_eq!(c.timed_out_count(Timeout::Write), 1);
        assert_eq!(c.timed_out_count(Timeout::Request), 0);
        let names: Vec<_> = Refusal::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names, ["max_connections", "per_ip"]);
    }
}
