//! systemd's service notification protocol (`sd_notify(3)`), spoken
//! directly: one datagram of `KEY=VALUE` lines to the Unix socket named by
//! `$NOTIFY_SOCKET`. That is the whole protocol, so no crate and no
//! libsystemd: `std::os::unix::net::UnixDatagram` sends it.
//!
//! What the roles send (only when `$NOTIFY_SOCKET` is set; without it every
//! call here does nothing, so the same binary runs under procd, a shell or
//! `Type=exec`):
//!
//! | when | message |
//! |---|---|
//! | listeners bound, PID file written (master); state loaded, tasks started (agent) | `READY=1` and a `STATUS=` line |
//! | every half of `$WATCHDOG_USEC`, from a task on the executor | `WATCHDOG=1` |
//! | SIGHUP: before the reload, after it | `RELOADING=1`, then `READY=1` |
//! | SIGTERM/SIGINT | `STOPPING=1` |
//!
//! The units use `Type=notify` with `ExecReload=kill -HUP`, not
//! `Type=notify-reload`: that one needs systemd 253 (Debian 12 and RHEL 9
//! have 252) and a `MONOTONIC_USEC=` on `RELOADING=1`, a `CLOCK_MONOTONIC`
//! reading std does not expose (`Instant` is opaque). Under `Type=notify`
//! systemd shows the reload between `RELOADING=1` and `READY=1`, but
//! `systemctl reload` returns once `kill` has sent the signal.
//!
//! The socket is a path (`/run/systemd/notify`) or, on Linux, an abstract
//! name written `@name` (std's `SocketAddrExt::from_abstract_name`; no
//! unsafe). The watchdog is honoured only if `$WATCHDOG_PID` is unset or
//! names this process, as `sd_watchdog_enabled(3)` does. The variables are
//! left in the environment (removing them is `unsafe` in edition 2024): a
//! hook that inherits them is ignored by systemd, which takes notifications
//! from the main process only (`NotifyAccess=main`, the default).
//!
//! Process-wide by nature (one environment, one service manager), so the
//! notifier is one lazily initialised static and callers need not carry
//! it through their tasks.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::OnceLock;
use std::time::Duration;

/// Where the datagrams go, and how often the watchdog wants one.
#[derive(Debug)]
pub struct Notifier {
    sock: UnixDatagram,
    addr: SocketAddr,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// A notifier for socket `target` (`$NOTIFY_SOCKET`'s form: a path, or
    /// `@name` for an abstract one) pinging every `watchdog`.
    pub fn new(target: &str, watchdog: Option<Duration>) -> Result<Notifier, String> {
        let addr = socket_addr(target)?;
        let sock = UnixDatagram::unbound().map_err(|e| format!("notify socket: {e}"))?;
        Ok(Notifier {
            sock,
            addr,
            watchdog,
        })
    }

    /// Sends one message (newline-separated `KEY=VALUE` lines). Best
    /// effort: a service manager that went away must not stop the service,
    /// so a failure is only logged.
    pub fn send(&self, state: &str) {
        if let Err(e) = self.sock.send_to_addr(state.as_bytes(), &self.addr) {
            crate::log_limited!(
                log::Level::Warn,
                "sd_notify.send",
                "systemd notification {:?} not sent: {e}",
                state.lines().next().unwrap_or("")
            );
        }
    }

    /// How often to send `WATCHDOG=1`: half of `$WATCHDOG_USEC`, as
    /// `sd_watchdog_enabled(3)` advises, so one late ping is not a kill.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }
}

/// The socket address of a `$NOTIFY_SOCKET` value.
fn socket_addr(target: &str) -> Result<SocketAddr, String> {
    if let Some(name) = target.strip_prefix('@') {
        abstract_addr(name)
    } else if target.starts_with('/') {
        SocketAddr::from_pathname(target).map_err(|e| format!("NOTIFY_SOCKET {target:?}: {e}"))
    } else {
        Err(format!(
            "NOTIFY_SOCKET {target:?} is neither an absolute path nor an @abstract name"
        ))
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_addr(name: &str) -> Result<SocketAddr, String> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name.as_bytes())
        .map_err(|e| format!("NOTIFY_SOCKET @{name}: {e}"))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_addr(name: &str) -> Result<SocketAddr, String> {
    Err(format!(
        "NOTIFY_SOCKET @{name}: abstract sockets exist on Linux only"
    ))
}

/// Half of `WATCHDOG_USEC`, if it is set, a positive number, and meant for
/// this process (`WATCHDOG_PID` unset or equal to `me`).
fn watchdog_from(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    if pid.is_some_and(|p| p.trim().parse::<u32>().ok() != Some(me)) {
        return None;
    }
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    Some(Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
}

/// The process's notifier: `None` when `$NOTIFY_SOCKET` is unset (not run
/// by systemd, or not `Type=notify`) or unusable (logged once).
fn notifier() -> Option<&'static Notifier> {
    static N: OnceLock<Option<Notifier>> = OnceLock::new();
    N.get_or_init(|| {
        let target = std::env::var("NOTIFY_SOCKET").ok()?;
        let watchdog = watchdog_from(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        );
        match Notifier::new(&target, watchdog) {
            Ok(n) => Some(n),
            Err(e) => {
                log::warn!("{e}; not notifying systemd");
                None
            }
        }
    })
    .as_ref()
}

/// Tells systemd the service is up (`READY=1`), with a one-line `status`
/// for `systemctl status`. Also ends a reload (after [`reloading`]).
pub fn ready(status: &str) {
    if let Some(n) = notifier() {
        let status = status.replace('\n', " ");
        n.send(&format!("READY=1\nSTATUS={status}"));
    }
}

/// Tells systemd a reload (SIGHUP) has begun; [`ready`] ends it.
pub fn reloading() {
    if let Some(n) = notifier() {
        n.send("RELOADING=1\nSTATUS=reloading");
    }
}

/// Tells systemd the service is shutting down on its own accord (a signal).
pub fn stopping() {
    if let Some(n) = notifier() {
        n.send("STOPPING=1\nSTATUS=stopping");
    }
}

/// How often [`watchdog_ping`] must be called, if systemd watches.
pub fn watchdog_interval() -> Option<Duration> {
    notifier().and_then(Notifier::watchdog_interval)
}

/// `WATCHDOG=1`: the caller proved the service is alive.
pub fn watchdog_ping() {
    if let Some(n) = notifier() {
        n.send("WATCHDOG=1");
    }
}

/// Pings the watchdog every [`watchdog_interval`] for as long as the task
/// runs, each time `alive()` returned `true`: run it on the executor whose
/// life it vouches for, and let `alive` touch what a hang would block (the
/// master: its registry lock, and its shards' answer to the last check).
/// A `false` skips the ping, so systemd restarts a stuck service after
/// `WatchdogSec`. Ends at once if systemd does not watch.
#[cfg(any(feature = "agent", feature = "master"))]
pub async fn watchdog(alive: impl Fn() -> bool) {
    let Some(every) = watchdog_interval() else {
        return;
    };
    // The first ping at once: the watchdog runs from the start, and a
    // small WatchdogSec must not kill a service still starting.
    loop {
        if alive() {
            watchdog_ping();
        }
        smol::Timer::after(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_interval_is_half_of_watchdog_usec_for_this_process() {
        assert_eq!(
            watchdog_from(Some("2000000"), None, 7),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            watchdog_from(Some("2000000"), Some("7"), 7),
            Some(Duration::from_secs(1))
        );
        assert_eq!(watchdog_from(Some("2000000"), Some("8"), 7), None);
        assert_eq!(watchdog_from(None, None, 7), None);
        assert_eq!(watchdog_from(Some("0"), None, 7), None);
        assert_eq!(watchdog_from(Some("soon"), None, 7), None);
    }

    #[test]
    fn a_message_reaches_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("edge-gw-sdn-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let n = Notifier::new(path.to_str().unwrap(), None).unwrap();
        n.send("READY=1\nSTATUS=up");
        let mut buf = [0u8; 64];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=up");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_message_reaches_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("edge-gw-sdn-test-{}", std::process::id());
        let rx = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap()).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let n = Notifier::new(&format!("@{name}"), None).unwrap();
        n.send("WATCHDOG=1");
        let mut buf = [0u8; 64];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
    }

    #[test]
    fn a_relative_socket_is_refused() {
        assert!(
            Notifier::new("run/notify", None)
                .unwrap_err()
                .contains("neither")
        );
    }
}
