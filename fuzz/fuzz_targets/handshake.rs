//! The session state machines on hostile input: `MasterSession` (one-key
//! keyring, legacy v1 and plaintext allowed or not) and `AgentSession`
//! (sealed, plaintext or legacy).
//!
//! Input: two control bytes, then the stream.
//! - ctl0 bits 0–2, the scenario (what precedes the fuzz bytes):
//!   0 master, nothing; 1 master after a real agent's sealed Hello (the
//!   Confirming state); 2 master after a plain v2 Hello (plaintext
//!   session); 3 master after a legacy key request (Legacy state);
//!   4 sealed agent awaiting its Welcome; 5 plaintext agent after a valid
//!   Welcome (open); 6 legacy agent; 7 master, v1 and plaintext refused.
//! - ctl0 bit 3: repair header CRCs of the fuzz bytes; bit 4: also set
//!   their uuid to the known device (so the keyring finds a key);
//!   bit 5: drain the send queue after each feed;
//!   bits 6–7: send queue limit − 1 (small, to reach slow-consumer paths).
//! - ctl1 bits 0–6: feed size (0 = everything at once); bit 7: the rest
//!   is a compact list of frames (`edge_gw_fuzz::frames_from_records`:
//!   lengths and CRCs made right, uuid the known device) instead of raw
//!   bytes, which gets the fuzzer to the message handlers quickly.
//!
//! Checks, beyond "no panic": after every feed, a session is closed
//! exactly when it reported one `Closed` event, which carries a reason and
//! is the last event; nothing happens after the close.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use edge_gw::proto::frame::{Compress, Encode, encode};
use edge_gw::proto::v2::{Hello, Message, Role, Welcome};
use edge_gw::proto::{DEFAULT_MAX_FRAME, MsgType, Uuid, Version};
use edge_gw::session::agent::{AgentConfig, AgentEvent, AgentSession};
use edge_gw::session::dedup::RecentIds;
use edge_gw::session::master::{KeyLookup, MasterConfig, MasterEvent, MasterSession};
use edge_gw::session::{Clock, Entropy, EntropyFailed, TxLimits};
use edge_gw_fuzz::{check_events, frames_from_records, repair_headers};
use libfuzzer_sys::fuzz_target;

/// Fixed randomness: a fuzz run must replay exactly from its input.
struct Fixed;

impl Entropy for Fixed {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), EntropyFailed> {
        buf.fill(0x5a);
        Ok(())
    }
}

const PSK: [u8; 32] = [0x42; 32];

fn device() -> Uuid {
    Uuid::from_text("fuzz-device-0001").unwrap()
}

/// The master's keyring: one device key.
struct OneKey;

impl KeyLookup for OneKey {
    fn psk_for(&self, uuid: &Uuid) -> Option<[u8; 32]> {
        (*uuid == device()).then_some(PSK)
    }
}

fn plain(version: Version, t: MsgType, body: &[u8]) -> Vec<u8> {
    let e = Encode {
        version,
        msg_type: t,
        uuid: device(),
        compress: Compress::Never,
        v1_cipher_flag: false,
        max_frame: DEFAULT_MAX_FRAME,
    };
    encode(&e, body, None).unwrap()
}

fn agent_cfg(psk: Option<[u8; 32]>, wire: Version, max_frames: usize) -> AgentConfig {
    AgentConfig {
        uuid: device(),
        psk,
        wire,
        tx: TxLimits {
            max_frames,
            max_bytes: 1 << 20,
        },
        max_pending_pushes: 2,
        ..AgentConfig::default()
    }
}

/// One real sealed Hello (Noise message 1), made once per process so that
/// runs are repeatable: its ephemeral key would differ every time.
fn sealed_hello(now: Clock) -> &'static [u8] {
    static HELLO: OnceLock<Vec<u8>> = OnceLock::new();
    HELLO.get_or_init(|| {
        AgentSession::new(agent_cfg(Some(PSK), Version::V2, 8), RecentIds::new(4), now, &mut Fixed)
            .poll_transmit()
            .unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let [ctl0, ctl1, rest @ ..] = data else {
        return;
    };
    let now = Clock {
        mono: Instant::now(),
        unix_ms: 1_700_000_000_000,
    };
    let mut bytes = if ctl1 & 0x80 != 0 {
        frames_from_records(rest, &device())
    } else {
        rest.to_vec()
    };
    if ctl0 & 0x08 != 0 {
        let uuid = (ctl0 & 0x10 != 0).then(device);
        repair_headers(&mut bytes, uuid.as_ref());
    }
    let drain = ctl0 & 0x20 != 0;
    let max_frames = usize::from(ctl0 >> 6) + 1;
    let chunk = match usize::from(ctl1 & 0x7f) {
        0 => bytes.len().max(1),
        n => n,
    };

    let scenario = ctl0 & 0x07;
    if scenario >= 4 && scenario != 7 {
        let (psk, wire, opening) = match scenario {
            4 => (Some(PSK), Version::V2, Vec::new()),
            5 => {
                let w = Message::Welcome(Welcome {
                    minor: 0,
                    heartbeat_ms: 1000,
                    miss_limit: 3,
                    unix_ms: 0,
                    software: "fuzz".into(),
                });
                (
                    None,
                    Version::V2,
                    plain(Version::V2, MsgType::Welcome, &w.to_body()),
                )
            }
            _ => (None, Version::V1, Vec::new()),
        };
        let mut a = AgentSession::new(agent_cfg(psk, wire, max_frames), RecentIds::new(4), now, &mut Fixed);
        let mut events = Vec::new();
        let stream = [opening, bytes].concat();
        for piece in stream.chunks(chunk) {
            let was_closed = a.is_closed();
            a.handle_input(piece, now);
            let before = events.len();
            events.extend(std::iter::from_fn(|| a.poll_event()));
            assert!(!was_closed || events.len() == before, "events after close");
            if drain {
                while a.poll_transmit().is_some() {}
            }
            check_events(&events, a.is_closed(), |e| match e {
                AgentEvent::Closed(c) => Some(c),
                _ => None,
            });
        }
        return;
    }

    let permissive = scenario != 7;
    let cfg = MasterConfig {
        legacy_v1: permissive,
        allow_plaintext: permissive,
        tx: TxLimits {
            max_frames,
            max_bytes: 1 << 20,
        },
        ..MasterConfig::default()
    };
    let opening = match scenario {
        1 => sealed_hello(now).to_vec(),
        2 => {
            let hello = Message::Hello(Hello {
                minor: 0,
                role: Role::Agent,
                group: "g".into(),
                software: "fuzz".into(),
                interval_ms: 1000,
                inbox: None,
            });
            plain(Version::V2, MsgType::Hello, &hello.to_body())
        }
        3 => plain(Version::V1, MsgType::Hello, b"{}"),
        _ => Vec::new(),
    };
    let mut m = MasterSession::new(Arc::new(cfg), now);
    let mut events = Vec::new();
    let stream = [opening, bytes].concat();
    for piece in stream.chunks(chunk) {
        let was_closed = m.is_closed();
        m.handle_input(piece, now, &OneKey, &mut Fixed);
        let before = events.len();
        events.extend(std::iter::from_fn(|| m.poll_event()));
        assert!(!was_closed || events.len() == before, "events after close");
        if drain {
            while m.poll_transmit().is_some() {}
        }
        check_events(&events, m.is_closed(), |e| match e {
            MasterEvent::Closed(c) => Some(c),
            _ => None,
        });
    }
});
