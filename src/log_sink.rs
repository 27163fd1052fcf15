//! Where log lines go, and how each is stamped and prioritised there.
//!
//! Supervisors treat a service's stderr differently: procd (OpenWrt) logs
//! all of it at `daemon.err`, so every INFO line would read as an error in
//! `logread`; journald (systemd) reads a `<N>` prefix on each line as its
//! priority; a terminal wants a readable time. So there are three sinks:
//!
//! - **syslog**: one RFC 3164-style datagram per line to `/dev/log`
//!   (`<PRI>edge-gw[PID]: target: message`, facility daemon), the priority
//!   taken from the level. Chosen by `--log syslog`; OpenWrt's init script
//!   passes it. No timestamp: the syslog daemon stamps on receipt with the
//!   time zone it knows, which this process does not.
//! - **journal**: stderr with a `<N>` priority prefix and no timestamp
//!   (journald stamps), chosen when `$JOURNAL_STREAM` says stderr is
//!   connected to the journal.
//! - **stderr**: plain lines with a UTC wall-clock stamp when the clock is
//!   sane, seconds since start before that (a router booted in 1970 that
//!   has not seen NTP yet would print wrong dates).
//!
//! A sink that cannot be written to drops the line: logging must never
//! take the process down, and there is nowhere left to report it.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::sync::OnceLock;
use std::time::Duration;

use log::{Level, Record};

/// Where `--log` sends log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogTarget {
    /// stderr; with journald priority prefixes when it is the journal.
    Stderr,
    /// The local syslog daemon through `/dev/log`.
    Syslog,
}

impl LogTarget {
    /// Parses `stderr` or `syslog` (any case), as `--log` takes them.
    pub fn from_name(name: &str) -> Option<LogTarget> {
        if name.eq_ignore_ascii_case("stderr") {
            Some(LogTarget::Stderr)
        } else if name.eq_ignore_ascii_case("syslog") {
            Some(LogTarget::Syslog)
        } else {
            None
        }
    }
}

/// The syslog socket of Linux (and of OpenWrt's logd).
const DEV_LOG: &str = "/dev/log";
/// Syslog facility `daemon` (3), shifted into place for `<PRI>`.
const FACILITY_DAEMON: u8 = 3 << 3;
/// Wall-clock times before this (2024-01-01T00:00:00Z) are taken for a
/// clock not yet set by NTP: no real log line is older than the release.
const SANE_CLOCK_UNIX_S: u64 = 1_704_067_200;

/// The chosen sink, set once by [`select`].
enum Sink {
    Plain,
    Journal,
    Syslog(UnixDatagram),
}

static SINK: OnceLock<Sink> = OnceLock::new();

/// Chooses the sink: `target` if given, else the journal when stderr is
/// connected to it, else plain stderr. If `/dev/log` cannot be reached the
/// lines go to stderr and the returned error says why (the caller logs it
/// once the logger is running). The first call wins.
pub fn select(target: Option<LogTarget>) -> Result<(), String> {
    let (sink, problem) = match target {
        Some(LogTarget::Syslog) => match syslog_socket() {
            Ok(s) => (Sink::Syslog(s), None),
            Err(e) => (
                stderr_sink(),
                Some(format!(
                    "--log syslog: cannot reach {DEV_LOG} ({e}); logging to stderr"
                )),
            ),
        },
        Some(LogTarget::Stderr) | None => (stderr_sink(), None),
    };
    let _ = SINK.set(sink);
    problem.map_or(Ok(()), Err)
}

fn syslog_socket() -> std::io::Result<UnixDatagram> {
    let s = UnixDatagram::unbound()?;
    s.connect(DEV_LOG)?;
    Ok(s)
}

/// The journal when systemd connected stderr to it, else plain stderr.
/// systemd sets `JOURNAL_STREAM=DEV:INODE` of that stream; a child whose
/// stderr was redirected inherits the variable, so it counts only when it
/// still names our stderr.
fn stderr_sink() -> Sink {
    use std::os::unix::fs::MetadataExt;
    let named = std::env::var("JOURNAL_STREAM").ok();
    let ours = std::fs::metadata("/proc/self/fd/2")
        .ok()
        .map(|m| format!("{}:{}", m.dev(), m.ino()));
    match (named, ours) {
        (Some(named), Some(ours)) if named == ours => Sink::Journal,
        _ => Sink::Plain,
    }
}

/// Writes one record to the chosen sink; `uptime` is the time since the
/// logger started, the stamp used before the clock is sane.
pub fn write(uptime: Duration, record: &Record<'_>) {
    match SINK.get().unwrap_or(&Sink::Plain) {
        Sink::Plain => {
            let line = plain_line(crate::os::unix_ms(), uptime, record);
            // One write per line keeps lines from different threads whole.
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
        Sink::Journal => {
            let line = journal_line(record);
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
        Sink::Syslog(s) => {
            let datagram = syslog_datagram(std::process::id(), record);
            if s.send(datagram.as_bytes()).is_err() {
                // The syslog daemon restarted (logd on a config change):
                // its new socket needs a new connect, then one more try.
                let _ = s.connect(DEV_LOG);
                let _ = s.send(datagram.as_bytes());
            }
        }
    }
}

/// The syslog severity of a level (RFC 5424 table 2, which 3164 shares).
pub fn severity(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// `<PRI>edge-gw[PID]: target: message`, facility daemon.
fn syslog_datagram(pid: u32, record: &Record<'_>) -> String {
    format!(
        "<{}>edge-gw[{pid}]: {}: {}",
        FACILITY_DAEMON | severity(record.level()),
        record.target(),
        record.args()
    )
}

/// `<N>LEVEL target: message` for journald, which stamps lines itself.
fn journal_line(record: &Record<'_>) -> String {
    format!(
        "<{}>{:<5} {}: {}\n",
        severity(record.level()),
        record.level(),
        record.target(),
        record.args()
    )
}

/// A stderr line: UTC wall clock when the clock is sane, else uptime.
fn plain_line(unix_ms: u64, uptime: Duration, record: &Record<'_>) -> String {
    if unix_ms / 1000 < SANE_CLOCK_UNIX_S {
        return crate::logger::format_line(uptime, record);
    }
    format!(
        "{} {:<5} {}: {}\n",
        utc_stamp(unix_ms),
        record.level(),
        record.target(),
        record.args()
    )
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` from Unix milliseconds (proleptic Gregorian
/// calendar; days to civil date after Howard Hinnant's algorithm), so the
/// router build needs no date library.
fn utc_stamp(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        unix_ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_record<T>(level: Level, f: impl FnOnce(&Record<'_>) -> T) -> T {
        f(&Record::builder()
            .args(format_args!("hello {}", 42))
            .level(level)
            .target("edge_gw::agent")
            .build())
    }

    #[test]
    fn syslog_priority_is_daemon_plus_the_level() {
        let d = with_record(Level::Info, |r| syslog_datagram(7, r));
        assert_eq!(d, "<30>edge-gw[7]: edge_gw::agent: hello 42");
        let d = with_record(Level::Error, |r| syslog_datagram(7, r));
        assert!(d.starts_with("<27>"), "{d}");
        let d = with_record(Level::Warn, |r| syslog_datagram(7, r));
        assert!(d.starts_with("<28>"), "{d}");
    }

    #[test]
    fn journal_lines_carry_the_priority() {
        let l = with_record(Level::Info, journal_line);
        assert_eq!(l, "<6>INFO  edge_gw::agent: hello 42\n");
        assert!(with_record(Level::Debug, journal_line).starts_with("<7>"));
    }

    #[test]
    fn wall_clock_when_sane_uptime_before() {
        let up = Duration::from_millis(3_007);
        let l = with_record(Level::Warn, |r| plain_line(1_795_854_325_123, up, r));
        assert_eq!(
            l,
            "2026-11-28T08:25:25.123Z WARN  edge_gw::agent: hello 42\n"
        );
        let l = with_record(Level::Warn, |r| plain_line(5_000, up, r));
        assert_eq!(l, "     3.007 WARN  edge_gw::agent: hello 42\n");
    }

    #[test]
    fn utc_dates() {
        assert_eq!(
            utc_stamp(SANE_CLOCK_UNIX_S * 1000),
            "2024-01-01T00:00:00.000Z"
        );
        assert_eq!(utc_stamp(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(utc_stamp(4_107_542_399_999), "2100-02-28T23:59:59.999Z");
    }

    #[test]
    fn target_names() {
        assert_eq!(LogTarget::from_name("SysLog"), Some(LogTarget::Syslog));
        assert_eq!(LogTarget::from_name("stderr"), Some(LogTarget::Stderr));
        assert_eq!(LogTarget::from_name("file"), None);
    }
}
