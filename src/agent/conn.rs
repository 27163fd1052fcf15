//! The agent's connection loop: resolve, connect, run a session; on a
//! failure move to the next master ([`MasterList`]) after a jittered wait,
//! and again — logging each change of state once, not every retry.

use std::cell::RefCell;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::time::{Duration, Instant};

use smol::future::FutureExt;
use smol::io::AsyncWriteExt;
use smol::{Async, Timer};

use super::delivery_journal::Known;
use super::inbox::Refused;
use super::masters::MasterList;
use super::state::Shared;
use crate::proto::Version;
use crate::proto::v1::json;
use crate::proto::v2::{self, CloseCode};
use crate::session::agent::{AgentConfig, AgentEvent, AgentSession, SendError};
use crate::session::{CloseInfo, Entropy};

/// Connect timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a host name's addresses.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(30);
/// A write stalled this long ends the session.
const WRITE_TIMEOUT: Duration = Duration::from_secs(15);

/// What the loop needs.
pub struct ConnConfig {
    /// The masters, each resolved on every attempt. Shared with the
    /// signal loop, which hands it a SIGHUP's new list
    /// ([`MasterList::relist`]) while the session stays up; borrowed only
    /// between awaits.
    pub masters: Rc<RefCell<MasterList>>,
    /// Session settings.
    pub session: AgentConfig,
}

enum Wake {
    Readable,
    Poked,
    Timer,
    /// Stop, closing with this reason.
    Stop(&'static str),
}

/// The last problem logged for each master, so a retry that fails the
/// same way is logged at debug level only; pruned to the listed masters
/// on every attempt, so never longer than the list (at most
/// [`crate::cli::host_port::MAX_MASTERS`] entries).
#[derive(Default)]
struct Problems(Vec<(String, String)>);

impl Problems {
    /// Records `problem` for `master`; true if it is news.
    fn note(&mut self, master: &str, problem: String) -> bool {
        match self.0.iter_mut().find(|(m, _)| m == master) {
            Some((_, p)) if *p == problem => false,
            Some((_, p)) => {
                *p = problem;
                true
            }
            None => {
                self.0.push((master.to_string(), problem));
                true
            }
        }
    }

    /// Forgets `master`'s problem (it worked).
    fn clear(&mut self, master: &str) {
        self.0.retain(|(m, _)| m != master);
    }

    /// Forgets the masters a SIGHUP took off the list.
    fn prune(&mut self, listed: &[String]) {
        self.0.retain(|(m, _)| listed.contains(m));
    }
}

/// Runs until `stop` fires; returns after closing the session cleanly
/// with the reason `stop` carried ([`STOPPED`] or [`RELOADING`]), which
/// the master logs and shows as the agent's last close.
pub async fn run(cfg: ConnConfig, shared: Shared, stop: smol::channel::Receiver<&'static str>) {
    let mut problems = Problems::default();
    loop {
        let master = {
            let masters = cfg.masters.borrow();
            problems.prune(masters.addrs());
            masters.current().to_string()
        };
        shared.state.borrow_mut().counters.connects += 1;
        let attempt = async { Some(connect(&master).await) };
        let stopped = async {
            let _ = stop.recv().await;
            None
        };
        let Some(result) = attempt.or(stopped).await else {
            return;
        };
        // Whether this failure is worth a line at info level or above.
        let loud;
        let mut lasted = Duration::ZERO;
        match result {
            Ok((stream, addr)) => {
                let started = Instant::now();
                let who = named(&master, addr);
                let (info, established) = session(stream, &cfg, &shared, &stop, &who).await;
                {
                    let mut st = shared.state.borrow_mut();
                    st.connected = false;
                    st.master = None;
                }
                if info.code == CloseCode::Normal
                    && matches!(info.reason.as_str(), STOPPED | RELOADING)
                {
                    return;
                }
                lasted = started.elapsed();
                if established {
                    problems.clear(&master);
                }
                let problem = format!("{}: {}", info.code.name(), info.reason);
                loud = problems.note(&master, problem) || established;
                if established {
                    log::warn!("disconnected from the master at {who}: {}", info.reason);
                } else if loud {
                    let hint = if info.code == CloseCode::AuthFailed {
                        " (check --key-file and the master's keyring)"
                    } else {
                        ""
                    };
                    log::error!("master at {who} refused the session: {}{hint}", info.reason);
                }
            }
            Err(e) => {
                loud = problems.note(&master, e.clone());
                if loud {
                    let single = cfg.masters.borrow().addrs().len() == 1;
                    log::warn!(
                        "cannot reach the master at {master}: {e}{}",
                        if single {
                            "; retrying with backoff"
                        } else {
                            ""
                        }
                    );
                } else {
                    log::debug!("still cannot reach {master}");
                }
            }
        }
        let (mv, listed) = {
            let mut masters = cfg.masters.borrow_mut();
            (masters.failed(lasted, random()), masters.addrs().len())
        };
        // u64: printing a u128 (`as_millis`) links 128-bit formatting.
        let wait = format!(
            "{} ms",
            u64::try_from(mv.delay.as_millis()).unwrap_or(u64::MAX)
        );
        if listed == 1 {
            log::debug!("reconnecting in {wait}");
        } else if loud {
            log::info!(
                "moving to the master at {} in {wait}{}",
                mv.to,
                if mv.round_done {
                    " (every listed master failed this round: backing off)"
                } else {
                    ""
                }
            );
        } else {
            log::debug!("trying the master at {} in {wait}", mv.to);
        }
        let sleep = async {
            Timer::after(mv.delay).await;
            false
        };
        let stopped = async {
            let _ = stop.recv().await;
            true
        };
        if sleep.or(stopped).await {
            return;
        }
    }
}

/// A uniform random number from the agent's random source, for the
/// jitter (the middle of the range if the source fails: a wait that is
/// not random still waits).
fn random() -> u32 {
    let mut b = [0u8; 4];
    match crate::os::OsEntropy.fill(&mut b) {
        Ok(()) => u32::from_le_bytes(b),
        Err(_) => u32::MAX / 2,
    }
}

/// The master as listed, with the address it resolved to when that says
/// more (`m1.example.net:9503 (192.0.2.7:9503)`).
fn named(master: &str, addr: SocketAddr) -> String {
    let a = addr.to_string();
    if a == master {
        a
    } else {
        format!("{master} ({a})")
    }
}

/// The Close reason when the agent stops (SIGTERM, SIGINT).
pub const STOPPED: &str = "agent stopping";
/// The Close reason when a SIGHUP changed what the session carries and
/// the agent reconnects with the new settings.
pub const RELOADING: &str = "agent reloading its settings";

/// Resolves (every attempt: the master's address may change) and connects
/// to the first address that answers.
async fn connect(master: &str) -> Result<(Async<TcpStream>, SocketAddr), String> {
    let addrs = resolve(master).await?;
    let mut last = format!("{master} resolved to no address");
    for a in addrs {
        let c = async { Some(Async::<TcpStream>::connect(a).await) };
        let t = async {
            Timer::after(CONNECT_TIMEOUT).await;
            None
        };
        match c.or(t).await {
            Some(Ok(s)) => {
                let _ = s.get_ref().set_nodelay(true);
                return Ok((s, a));
            }
            Some(Err(e)) => last = format!("{a}: {e}"),
            None => {
                last = format!(
                    "{a}: connect timed out after {} s",
                    CONNECT_TIMEOUT.as_secs()
                )
            }
        }
    }
    Err(last)
}

/// The master's addresses. A literal `IP:PORT` (what most router configs
/// carry) is used as is, with no resolver at all; a name goes to the C
/// library's resolver (`getaddrinfo`, which reads `/etc/hosts` and
/// `/etc/resolv.conf`) on a thread of its own, so that a slow DNS server
/// never stalls the agent's one executor thread. One short-lived thread
/// per attempt instead of smol's `resolve`, whose `blocking` thread pool
/// is more machinery than one lookup every few seconds needs.
async fn resolve(master: &str) -> Result<Vec<SocketAddr>, String> {
    if let Ok(addr) = master.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    let (tx, rx) = smol::channel::bounded(1);
    let name = master.to_string();
    std::thread::Builder::new()
        .name("resolve".into())
        // musl's resolver keeps its buffers (a few KiB) on the stack.
        .stack_size(128 * 1024)
        .spawn(move || {
            use std::net::ToSocketAddrs;
            let r = name.to_socket_addrs().map(Iterator::collect::<Vec<_>>);
            // The receiver is gone when the attempt was given up: fine.
            let _ = tx.send_blocking(r);
        })
        .map_err(|e| format!("cannot resolve {master}: no thread for the lookup: {e}"))?;
    // The resolver bounds itself (resolv.conf's timeout and attempts), but
    // the loop must not depend on that: a lookup left behind finishes on
    // its own thread and its answer is dropped.
    let answer = async { rx.recv().await.ok() };
    let limit = async {
        Timer::after(RESOLVE_TIMEOUT).await;
        None
    };
    match answer.or(limit).await {
        Some(Ok(addrs)) => Ok(addrs),
        Some(Err(e)) => Err(format!("cannot resolve {master}: {e}")),
        None => Err(format!(
            "cannot resolve {master}: no answer within {} s",
            RESOLVE_TIMEOUT.as_secs()
        )),
    }
}

/// One session on a connected stream; returns why it ended and whether it
/// was ever established.
async fn session(
    mut stream: Async<TcpStream>,
    cfg: &ConnConfig,
    shared: &Shared,
    stop: &smol::channel::Receiver<&'static str>,
    who: &str,
) -> (CloseInfo, bool) {
    // The session answers resends of what the journal knows as delivered
    // by itself; later deliveries are checked on each push below.
    let recent = shared.state.borrow().journal.delivered().clone();
    let mut s = AgentSession::new(
        cfg.session.clone(),
        recent,
        crate::os::now(),
        &mut crate::os::OsEntropy,
    );
    let mut established = false;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while let Some(bytes) = s.poll_transmit() {
            let w = async { stream.write_all(&bytes).await.map_err(|e| e.to_string()) };
            let t = async {
                Timer::after(WRITE_TIMEOUT).await;
                Err(format!("write stalled for {} s", WRITE_TIMEOUT.as_secs()))
            };
            if let Err(e) = w.or(t).await {
                s.handle_eof(&e);
                break;
            }
        }
        while let Some(e) = s.poll_event() {
            match e {
                AgentEvent::Connected {
                    keepalive,
                    master_unix_ms,
                    master_software,
                } => {
                    established = true;
                    let mut st = shared.state.borrow_mut();
                    st.connected = true;
                    st.master = Some(cfg.masters.borrow().current().to_string());
                    st.counters.sessions += 1;
                    // Every unconfirmed result goes again on a new session.
                    st.results_unsent = st.results.ids().into();
                    if master_unix_ms > 0 {
                        let since = st.start.elapsed().as_millis() as i64;
                        st.clock_offset_ms = Some(master_unix_ms as i64 - since);
                    }
                    log::info!(
                        "connected to the master at {who} ({}{}, heartbeat {} s × {}){}",
                        if cfg.session.wire == Version::V1 {
                            "legacy v1"
                        } else {
                            "v2"
                        },
                        match (cfg.session.wire, cfg.session.psk.is_some()) {
                            (Version::V2, true) => ", encrypted",
                            (Version::V2, false) => ", plaintext",
                            _ => "",
                        },
                        keepalive.interval.as_secs(),
                        keepalive.miss_limit,
                        if master_software.is_empty() {
                            String::new()
                        } else {
                            format!(", {master_software}")
                        }
                    );
                }
                AgentEvent::Push(p) => {
                    let id = p.id;
                    let r = {
                        let mut st = shared.state.borrow_mut();
                        match st.journal.known(id) {
                            Known::New => {
                                st.counters.pushes += 1;
                                Some(st.inbox.offer(p))
                            }
                            Known::Delivered => {
                                // Taken since this session began (its ack
                                // may be queued already: a second ack of
                                // one id is ignored by the master).
                                if !st.acked.contains(&id) {
                                    st.acked.push_back(id);
                                }
                                None
                            }
                            Known::Interrupted => {
                                // Logged as an error at start; resends
                                // come every push_resend seconds.
                                log::debug!("push {id}: held until RESOLVE (hook interrupted)");
                                None
                            }
                        }
                    };
                    match r {
                        None => s.refuse_push(id),
                        Some(r) => handle_offer(&mut s, shared, id, r),
                    }
                }
                AgentEvent::HeartbeatAck { rtt, .. } => log::trace!("heartbeat rtt {rtt:?}"),
                AgentEvent::PushResultStored(id) => {
                    log::debug!("push {id}: the master stored its result");
                    shared.state.borrow_mut().results.confirmed(id);
                }
                AgentEvent::Event(_) | AgentEvent::LegacyData(_) => {}
                AgentEvent::Closed(info) => {
                    return (info, established);
                }
            }
        }
        if s.is_open() {
            flush_acks(&mut s, shared);
            flush_results(&mut s, shared);
            flush_reports(&mut s, shared, cfg);
            if s.queued_bytes() > 0 {
                continue;
            }
        }
        let deadline = s.poll_timeout();
        let readable = async {
            let _ = stream.readable().await;
            Wake::Readable
        };
        let poked = async {
            let _ = shared.wake_conn.1.recv().await;
            Wake::Poked
        };
        let timer = async {
            match deadline {
                Some(t) => Timer::at(t).await,
                None => Timer::never().await,
            };
            Wake::Timer
        };
        let stopped = async { Wake::Stop(stop.recv().await.unwrap_or(STOPPED)) };
        match readable.or(poked).or(timer).or(stopped).await {
            Wake::Readable => loop {
                match stream.get_ref().read(&mut buf) {
                    Ok(0) => {
                        s.handle_eof("the master closed the connection");
                        break;
                    }
                    Ok(n) => {
                        s.handle_input(&buf[..n], crate::os::now());
                        if n < buf.len() || s.is_closed() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        s.handle_eof(&e.to_string());
                        break;
                    }
                }
            },
            Wake::Stop(reason) => {
                s.close(CloseCode::Normal, reason);
                while let Some(bytes) = s.poll_transmit() {
                    let w = async { stream.write_all(&bytes).await.is_ok() };
                    let t = async {
                        Timer::after(Duration::from_millis(500)).await;
                        false
                    };
                    if !w.or(t).await {
                        break;
                    }
                }
                let info = CloseInfo {
                    code: CloseCode::Normal,
                    reason: reason.into(),
                    by_peer: false,
                    frame_error: None,
                };
                return (info, established);
            }
            Wake::Poked | Wake::Timer => {}
        }
        s.handle_timeout(crate::os::now());
    }
}

/// What became of a new push offered to the inbox.
fn handle_offer(s: &mut AgentSession, shared: &Shared, id: u64, r: Result<(), Refused>) {
    match r {
        Ok(()) => shared.poke_delivery(),
        Err(Refused::AlreadyQueued) => s.refuse_push(id),
        Err(Refused::Full(_)) => {
            crate::log_limited!(
                log::Level::Warn,
                "agent.inbox_full",
                "push {id}: inbox full; not acked, the master will resend it"
            );
            s.refuse_push(id);
        }
    }
}

/// Acks pushes the local consumer took (already in the journal: the ack
/// never runs ahead of the record), and hands back ones it could not.
fn flush_acks(s: &mut AgentSession, shared: &Shared) {
    loop {
        let Some(id) = shared.state.borrow().acked.front().copied() else {
            break;
        };
        match s.ack_push(id) {
            Ok(()) => {
                shared.state.borrow_mut().acked.pop_front();
            }
            Err(_) => break,
        }
    }
    let refused: Vec<u64> = shared.state.borrow_mut().refused.drain(..).collect();
    for id in refused {
        s.refuse_push(id);
    }
}

/// Sends the results not yet sent on this session (after their acks, which
/// `flush_acks` queued first). A master too old for results gets none:
/// they stay stored for a newer one.
fn flush_results(s: &mut AgentSession, shared: &Shared) {
    if !s.master_takes_results() {
        return;
    }
    loop {
        let next = {
            let st = shared.state.borrow();
            st.results_unsent
                .front()
                .map(|id| (*id, st.results.get(*id).cloned()))
        };
        let Some((_, r)) = next else { break };
        if let Some(r) = r
            && s.send_push_result(&r).is_err()
        {
            break;
        }
        shared.state.borrow_mut().results_unsent.pop_front();
    }
}

/// Sends buffered reports, oldest first, with their age.
fn flush_reports(s: &mut AgentSession, shared: &Shared, cfg: &ConnConfig) {
    loop {
        let (report, taken) = {
            let st = shared.state.borrow();
            let Some(b) = st.ring.front() else { break };
            let mut r = b.report.clone();
            r.dropped = st.ring.dropped;
            (r, b.taken)
        };
        let mut report = report;
        report.age_ms = u32::try_from(taken.elapsed().as_millis()).unwrap_or(u32::MAX);
        let r = if cfg.session.wire == Version::V1 {
            s.send_legacy_report(&legacy_body(&report))
        } else {
            s.send_report(&report)
        };
        match r {
            Ok(()) => {
                let mut st = shared.state.borrow_mut();
                st.ring.pop();
                st.counters.reports_sent += 1;
            }
            Err(SendError::QueueFull) | Err(SendError::NotOpen) => break,
            Err(SendError::Encode(e)) => {
                log::error!("report {} cannot be encoded ({e}); dropped", report.seq);
                shared.state.borrow_mut().ring.pop();
            }
        }
    }
}

/// Bytes received and sent over every interface but loopback, as the
/// legacy body reports them (wrapping like the kernel's counters).
fn net_totals(h: &v2::Health) -> (u64, u64) {
    h.net
        .iter()
        .filter(|n| n.name != "lo")
        .fold((0u64, 0u64), |(a, b), n| {
            (a.wrapping_add(n.rx_bytes), b.wrapping_add(n.tx_bytes))
        })
}

/// The legacy (v1) JSON report body.
///
/// CPU and load are fixed-point on the wire of v2 (per-mille, hundredths);
/// they are written here as decimals straight from those integers, never
/// through an `f64`: the text is the same as PHP's shortest float form
/// (`12.3`, `0.25`, `2`; tested against [`json::write_f64`]), and the
/// router build then links no float formatting for it.
pub fn legacy_body(r: &v2::Report) -> Vec<u8> {
    let h = &r.health;
    let (rx, tx) = net_totals(h);
    let mut out = Vec::with_capacity(256);
    let mut num = Vec::with_capacity(16);
    json::write_object(&mut out, |o| {
        o.field_u64("seq", u64::from(r.seq))
            .field_u64("time", r.unix_ms / 1000);
        for (key, value, places) in [
            ("cpu", u64::from(h.cpu_permille), 1),
            ("load1", u64::from(h.load_x100[0]), 2),
            ("load5", u64::from(h.load_x100[1]), 2),
            ("load15", u64::from(h.load_x100[2]), 2),
        ] {
            num.clear();
            write_fixed(&mut num, value, places);
            o.field_raw(key, &num);
        }
        o.field_u64("mem_total_kb", h.memory.total_kb)
            .field_u64("mem_available_kb", h.memory.available_kb)
            .field_u64("uptime", h.uptime_s)
            .field_u64("processes", u64::from(h.processes))
            .field_u64("rx_bytes", rx)
            .field_u64("tx_bytes", tx)
            .field_u64("dropped", u64::from(r.dropped));
    });
    out
}

/// Appends `value / 10^places` as a JSON number: `123, 1` → `12.3`,
/// `120, 1` → `12`, `5, 2` → `0.05` (no trailing zeros, no lone `.`).
fn write_fixed(out: &mut Vec<u8>, value: u64, places: u32) {
    let scale = 10u64.pow(places);
    json::write_u64(out, value / scale);
    let mut frac = value % scale;
    if frac == 0 {
        return;
    }
    out.push(b'.');
    let mut digits = places;
    while frac.is_multiple_of(10) {
        frac /= 10;
        digits -= 1;
    }
    // Most significant first, with the fraction's leading zeros (`0.05`).
    for d in (0..digits).rev() {
        out.push(b'0' + (frac / 10u64.pow(d) % 10) as u8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1;
    use std::net::TcpListener;

    /// The body as it was written before: through `f64` and
    /// [`json::write_f64`] (PHP's shortest form), the reference for
    /// [`legacy_body`]'s integer decimals.
    fn legacy_body_via_f64(r: &v2::Report) -> Vec<u8> {
        use json::JsonScalar as J;
        let h = &r.health;
        let (rx, tx) = net_totals(h);
        v1::report_body(&[
            ("seq", J::UInt(u64::from(r.seq))),
            ("time", J::UInt(r.unix_ms / 1000)),
            ("cpu", J::Float(f64::from(h.cpu_permille) / 10.0)),
            ("load1", J::Float(f64::from(h.load_x100[0]) / 100.0)),
            ("load5", J::Float(f64::from(h.load_x100[1]) / 100.0)),
            ("load15", J::Float(f64::from(h.load_x100[2]) / 100.0)),
            ("mem_total_kb", J::UInt(h.memory.total_kb)),
            ("mem_available_kb", J::UInt(h.memory.available_kb)),
            ("uptime", J::UInt(h.uptime_s)),
            ("processes", J::UInt(u64::from(h.processes))),
            ("rx_bytes", J::UInt(rx)),
            ("tx_bytes", J::UInt(tx)),
            ("dropped", J::UInt(u64::from(r.dropped))),
        ])
    }

    #[test]
    fn legacy_body_writes_the_same_text_as_through_f64() {
        let mut r = v2::Report {
            seq: 7,
            unix_ms: 1_700_000_123_456,
            dropped: 2,
            ..v2::Report::default()
        };
        r.health.memory.total_kb = 262_144;
        r.health.uptime_s = 86_400;
        // Every CPU value, and loads around every power of ten up to u32::MAX.
        let mut loads: Vec<u32> = (0..=1000).collect();
        let mut p = 1000u32;
        while let Some(next) = p.checked_mul(10) {
            loads.extend([next - 1, next, next + 1, next + 7, next + 50]);
            p = next;
        }
        loads.extend([u32::MAX - 1, u32::MAX]);
        for (i, &load) in loads.iter().enumerate() {
            r.health.cpu_permille = u16::try_from(i % 1001).unwrap();
            r.health.load_x100 = [load, load / 3, load.wrapping_mul(7)];
            let got = legacy_body(&r);
            let want = legacy_body_via_f64(&r);
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want)
            );
        }
        let mut spot = v2::Report::default();
        spot.health.cpu_permille = 123;
        spot.health.load_x100 = [5, 50, 200];
        let text = String::from_utf8(legacy_body(&spot)).unwrap();
        assert!(
            text.contains(r#""cpu":12.3,"load1":0.05,"load5":0.5,"load15":2,"#),
            "{text}"
        );
    }

    #[test]
    fn a_literal_address_needs_no_lookup() {
        // Ready on the first poll: no thread, no resolver.
        for (text, want) in [("192.0.2.7:9503", "192.0.2.7:9503"), ("[::1]:9", "[::1]:9")] {
            let first = smol::block_on(smol::future::poll_once(resolve(text)));
            let want: SocketAddr = want.parse().unwrap();
            assert_eq!(first, Some(Ok(vec![want])), "{text}");
        }
    }

    #[test]
    fn connects_to_a_literal_address_and_to_a_name() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        smol::block_on(async {
            let (_, addr) = connect(&format!("127.0.0.1:{port}")).await.unwrap();
            assert_eq!(addr, SocketAddr::from(([127, 0, 0, 1], port)));
            // `localhost` may list ::1 first, where nothing listens: the
            // next address answers.
            let (_, addr) = connect(&format!("localhost:{port}")).await.unwrap();
            assert_eq!(addr, SocketAddr::from(([127, 0, 0, 1], port)));
        });
        // Nothing listens any more: an error that names the address.
        drop(listener);
        let e = smol::block_on(connect(&format!("127.0.0.1:{port}"))).unwrap_err();
        assert!(e.starts_with(&format!("127.0.0.1:{port}: ")), "{e}");
    }

    #[test]
    fn a_name_that_does_not_resolve_is_an_error() {
        // `.invalid` never resolves (RFC 6761); bounded by RESOLVE_TIMEOUT.
        let e = smol::block_on(resolve("no-such-host.invalid:9503")).unwrap_err();
        assert!(
            e.starts_with("cannot resolve no-such-host.invalid:9503: "),
            "{e}"
        );
    }
}
