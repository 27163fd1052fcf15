//! What the agent's tasks share (one thread, so `RefCell`): the report
//! ring, the push inbox, the delivery journal, acks waiting for a
//! connection, custom metrics, counters, and the wakeups between tasks.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Instant;

use smol::channel::{Receiver, Sender};

use super::delivery_journal::DeliveryJournal;
use super::inbox::Inbox;
use super::result_store::ResultStore;
use super::ring::ReportRing;

/// Most custom metrics held for the next report.
pub const MAX_CUSTOM: usize = 32;
/// Longest custom metric key.
pub const MAX_CUSTOM_KEY: usize = 32;
/// Longest custom metric value.
pub const MAX_CUSTOM_VALUE: usize = 64;

/// Counters over the agent's lifetime.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Reports made.
    pub reports_made: u32,
    /// Reports handed to a session.
    pub reports_sent: u32,
    /// Pushes received (first time).
    pub pushes: u32,
    /// Pushes delivered locally.
    pub delivered: u32,
    /// Hook runs that failed.
    pub hook_failures: u32,
    /// Connection attempts.
    pub connects: u32,
    /// Sessions established.
    pub sessions: u32,
}

/// Shared state.
#[derive(Debug)]
pub struct State {
    /// Reports waiting to be sent.
    pub ring: ReportRing,
    /// Pushes waiting for the local consumer.
    pub inbox: Inbox,
    /// What the local consumer took, durably: consulted before a push is
    /// handed to the consumer, written before it is acked.
    pub journal: DeliveryJournal,
    /// Push ids delivered locally whose ack is not yet sent.
    pub acked: VecDeque<u64>,
    /// Push ids the consumer failed on: handed back to the session so a
    /// resend is delivered again.
    pub refused: VecDeque<u64>,
    /// Push results the master has not confirmed (durable).
    pub results: ResultStore,
    /// Of those, the ones not yet sent on this session, oldest first.
    pub results_unsent: VecDeque<u64>,
    /// Most output bytes of a result (`result_max_bytes`), for answers
    /// that come through the local socket.
    pub result_cap: usize,
    /// Custom key/value metrics for the next report.
    pub custom: Vec<(String, String)>,
    /// A session is open.
    pub connected: bool,
    /// The master of the open session, as listed (`HOST:PORT`); `None`
    /// while disconnected. Shown by `STATUS` on the local socket.
    pub master: Option<String>,
    /// Unix ms minus monotonic ms since `start`, learnt from the master
    /// when the local clock is not trustworthy.
    pub clock_offset_ms: Option<i64>,
    /// Monotonic start of the agent.
    pub start: Instant,
    /// Counters.
    pub counters: Counters,
    /// Pushes are consumed by the `--on-push` hook (not the socket).
    pub hook: bool,
}

/// Handles to shared state and wakeups.
#[derive(Clone, Debug)]
pub struct Shared {
    /// The state.
    pub state: Rc<RefCell<State>>,
    /// Wakes the connection task (new report or ack).
    pub wake_conn: (Sender<()>, Receiver<()>),
    /// Wakes the delivery task (new push in the inbox).
    pub wake_delivery: (Sender<()>, Receiver<()>),
}

impl Shared {
    /// Shared state with the given bounds and the journal loaded at start
    /// (so a restarted agent knows what its consumer already took).
    pub fn new(ring: ReportRing, inbox: Inbox, journal: DeliveryJournal, hook: bool) -> Shared {
        Shared {
            state: Rc::new(RefCell::new(State {
                ring,
                inbox,
                journal,
                acked: VecDeque::new(),
                refused: VecDeque::new(),
                results: ResultStore::default(),
                results_unsent: VecDeque::new(),
                result_cap: super::RESULT_MAX_BYTES,
                custom: Vec::new(),
                connected: false,
                master: None,
                clock_offset_ms: None,
                start: Instant::now(),
                counters: Counters::default(),
                hook,
            })),
            wake_conn: smol::channel::bounded(1),
            wake_delivery: smol::channel::bounded(1),
        }
    }

    /// Wakes the connection task (coalesced).
    pub fn poke_conn(&self) {
        let _ = self.wake_conn.0.try_send(());
    }

    /// Wakes the delivery task (coalesced).
    pub fn poke_delivery(&self) {
        let _ = self.wake_delivery.0.try_send(());
    }
}

impl State {
    /// Sets custom metrics from `KEY=VALUE` words; returns an error naming
    /// the first bad one (nothing is changed then).
    pub fn set_custom(&mut self, words: &[&str]) -> Result<(), String> {
        let mut parsed = Vec::new();
        for w in words {
            let Some((k, v)) = w.split_once('=') else {
                return Err(format!("{w:?} is not KEY=VALUE"));
            };
            if k.is_empty() || k.len() > MAX_CUSTOM_KEY || !k.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(format!(
                    "bad key {k:?} (1-{MAX_CUSTOM_KEY} printable characters)"
                ));
            }
            if v.len() > MAX_CUSTOM_VALUE {
                return Err(format!("value of {k} longer than {MAX_CUSTOM_VALUE} bytes"));
            }
            parsed.push((k.to_string(), v.to_string()));
        }
        for (k, v) in parsed {
            if let Some(e) = self.custom.iter_mut().find(|e| e.0 == k) {
                e.1 = v;
            } else if self.custom.len() < MAX_CUSTOM {
                self.custom.push((k, v));
            } else {
                return Err(format!("at most {MAX_CUSTOM} custom metrics"));
            }
        }
        Ok(())
    }

    /// Wall clock now in Unix ms, or 0 if neither the system clock (a
    /// router that booted in 1970) nor the master told us the time.
    pub fn unix_ms(&self, mono: Instant) -> u64 {
        // Anything before 2020 is a clock that was never set.
        const PLAUSIBLE: u64 = 1_577_836_800_000;
        let sys = crate::os::unix_ms();
        if sys >= PLAUSIBLE {
            return sys;
        }
        match self.clock_offset_ms {
            Some(off) => {
                let since = mono.saturating_duration_since(self.start).as_millis() as i64;
                u64::try_from(since + off).unwrap_or(0)
            }
            None => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_metrics_validated_and_bounded() {
        let s = Shared::new(
            ReportRing::new(1, 1),
            Inbox::new(1, 1),
            DeliveryJournal::open(None),
            false,
        );
        let mut st = s.state.borrow_mut();
        st.set_custom(&["wan=up", "clients=12"]).unwrap();
        st.set_custom(&["wan=down"]).unwrap();
        assert_eq!(st.custom[0], ("wan".into(), "down".into()));
        assert!(st.set_custom(&["novalue"]).is_err());
        assert!(st.set_custom(&["=x"]).is_err());
        assert!(st.set_custom(&[&format!("k={}", "v".repeat(65))]).is_err());
        let many: Vec<String> = (0..40).map(|i| format!("k{i}=1")).collect();
        let words: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(st.set_custom(&words).is_err());
        assert_eq!(st.custom.len(), MAX_CUSTOM);
    }
}
