//! Which uuid a connection may claim at its first frame, decided before
//! the master answers anything.
//!
//! Two rules live here because the session can apply them with nothing but
//! the first header and the keyring, so a refused peer never gets a key
//! reply, a Welcome or a join:
//! - [`malformed_uuid`]: a uuid must be printable. An all-NUL uuid used to
//!   join as `""`, which no operator can address or tell apart.
//! - [`unauthenticated_claim`]: a uuid that has a device key of its own is
//!   an authenticated identity; an unauthenticated session (legacy v1 or
//!   plaintext v2) may not use it. The keyring's lookup falls back to the
//!   fleet key for every uuid, so "has a key" means a key *of its own*
//!   here: with only a fleet key every uuid would be protected and v1 could
//!   not be used at all.
//!
//! The other half of the identity rule (a uuid that has joined sealed this
//! run stays sealed-only, even with the fleet key) needs the fleet's
//! history and lives in the master's registry.

use super::master::KeyLookup;
use crate::proto::Uuid;

/// The kinds of session that prove nothing about who they are: the ones
/// the identity rule keeps away from authenticated uuids. Named in logs,
/// counters and the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unauthenticated {
    /// A legacy wire version 1 connection (`--legacy-v1`).
    LegacyV1,
    /// A plaintext version 2 session (`--allow-plaintext`).
    Plaintext,
}

impl Unauthenticated {
    /// Stable short name for counters and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Unauthenticated::LegacyV1 => "v1",
            Unauthenticated::Plaintext => "plaintext",
        }
    }

    /// Words for a log line or a close reason.
    fn words(self) -> &'static str {
        match self {
            Unauthenticated::LegacyV1 => "legacy v1",
            Unauthenticated::Plaintext => "plaintext",
        }
    }
}

/// Why a uuid cannot name a peer at all, or `None` if it can: it must be
/// non-empty once its NUL padding is removed and every byte must be
/// printable ASCII (`!` to `~`). That is wider than the keyring's uuid
/// rule on purpose: legacy clients that never had a key may use other
/// printable ids, and nothing here needs them to be file names.
pub fn malformed_uuid(uuid: &Uuid) -> Option<String> {
    let bytes = uuid.trimmed();
    if bytes.is_empty() {
        return Some("refused: the uuid is empty (all NUL bytes)".into());
    }
    if !bytes.iter().all(u8::is_ascii_graphic) {
        // Display escapes what is not printable, so the reason stays one
        // line and shows the offending bytes.
        return Some(format!(
            "refused: the uuid {uuid} has bytes that are not printable ASCII"
        ));
    }
    None
}

/// Why an unauthenticated session of kind `who` may not claim `uuid`, or
/// `None` if it may: refused when the keyring holds a device key of its
/// own for it.
pub fn unauthenticated_claim(
    uuid: &Uuid,
    keys: &dyn KeyLookup,
    who: Unauthenticated,
) -> Option<String> {
    keys.has_device_key(uuid).then(|| {
        format!(
            "refused: uuid {uuid} has its own key and joins only sealed; \
             a {} session may not claim it",
            who.words()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct DeviceKey(Uuid);

    impl KeyLookup for DeviceKey {
        fn psk_for(&self, _: &Uuid) -> Option<[u8; 32]> {
            // A fleet key: every uuid has *a* key.
            Some([1; 32])
        }
        fn has_device_key(&self, uuid: &Uuid) -> bool {
            *uuid == self.0
        }
    }

    #[test]
    fn empty_and_unprintable_uuids_are_refused_printable_ones_pass() {
        assert!(malformed_uuid(&Uuid::ZERO).unwrap().contains("empty"));
        let mut inner_nul = Uuid::from_text("ab").unwrap();
        inner_nul.0[1] = 0;
        inner_nul.0[2] = b'c';
        for bad in [inner_nul, Uuid::from_text("a b").unwrap(), {
            let mut u = Uuid::ZERO;
            u.0[0] = 0xff;
            u
        }] {
            assert!(
                malformed_uuid(&bad).unwrap().contains("not printable"),
                "{bad:?}"
            );
        }
        for good in ["0123456789abcdef0123456789abcdefA", "r1", "a/b#~!"] {
            assert_eq!(malformed_uuid(&Uuid::from_text(good).unwrap()), None);
        }
    }

    #[test]
    fn only_a_device_key_protects_a_uuid_the_fleet_key_does_not() {
        let own = Uuid::from_text("own").unwrap();
        let keys = DeviceKey(own);
        let why = unauthenticated_claim(&own, &keys, Unauthenticated::LegacyV1).unwrap();
        assert!(why.contains("uuid own has its own key"), "{why}");
        let other = Uuid::from_text("other").unwrap();
        assert_eq!(
            unauthenticated_claim(&other, &keys, Unauthenticated::Plaintext),
            None
        );
    }
}

#[cfg(test)]
mod session_tests {
    //! The rules as a master session applies them to raw first frames.

    use std::sync::Arc;
    use std::time::Instant;

    use super::*;
    use crate::proto::frame::{Compress, Encode, encode};
    use crate::proto::v2::{self, CloseCode, Message, Role};
    use crate::proto::{FrameDecoder, MsgType, Version};
    use crate::session::master::{MasterConfig, MasterEvent, MasterSession};
    use crate::session::{Clock, CloseInfo, Entropy, EntropyFailed};

    /// A keyring with a fleet key and one device key, for `own`.
    struct Ring;

    fn own() -> Uuid {
        Uuid::from_text("own").unwrap()
    }

    impl KeyLookup for Ring {
        fn psk_for(&self, _: &Uuid) -> Option<[u8; 32]> {
            Some([7; 32])
        }
        fn has_device_key(&self, uuid: &Uuid) -> bool {
            *uuid == own()
        }
    }

    struct Zeros;

    impl Entropy for Zeros {
        fn fill(&mut self, buf: &mut [u8]) -> Result<(), EntropyFailed> {
            buf.fill(0);
            Ok(())
        }
    }

    fn session() -> MasterSession {
        let cfg = MasterConfig {
            legacy_v1: true,
            allow_plaintext: true,
            ..MasterConfig::default()
        };
        MasterSession::new(Arc::new(cfg), now())
    }

    fn now() -> Clock {
        Clock {
            mono: Instant::now(),
            unix_ms: 0,
        }
    }

    fn frame(version: Version, t: MsgType, uuid: Uuid, cipher: bool, body: &[u8]) -> Vec<u8> {
        let e = Encode {
            version,
            msg_type: t,
            uuid,
            compress: Compress::Never,
            v1_cipher_flag: false,
            max_frame: 1 << 20,
        };
        let mut bytes = encode(&e, body, None).unwrap();
        if cipher {
            crate::proto::frame::mark_handshake(&mut bytes);
        }
        bytes
    }

    fn hello() -> Vec<u8> {
        Message::Hello(v2::Hello {
            minor: 0,
            role: Role::Agent,
            group: String::new(),
            software: "t".into(),
            interval_ms: 1000,
            inbox: None,
        })
        .to_body()
    }

    /// Feeds `bytes`; returns the events and the frames the session wrote.
    fn feed(bytes: &[u8]) -> (Vec<MasterEvent>, Vec<crate::proto::Frame>) {
        let mut s = session();
        s.handle_input(bytes, now(), &Ring, &mut Zeros);
        let mut events = Vec::new();
        while let Some(e) = s.poll_event() {
            events.push(e);
        }
        let mut d = FrameDecoder::new(1 << 20);
        let mut out = Vec::new();
        while let Some(b) = s.poll_transmit() {
            d.feed(&b).unwrap();
            while let Some(f) = d.next_frame().unwrap() {
                out.push(f);
            }
        }
        (events, out)
    }

    fn closed(events: &[MasterEvent]) -> &CloseInfo {
        match events.last() {
            Some(MasterEvent::Closed(c)) => c,
            other => panic!("not closed: {other:?}"),
        }
    }

    fn close_frame(out: &[crate::proto::Frame]) -> v2::Close {
        match out {
            [f] if f.header.msg_type == MsgType::Close => {
                v2::decode(MsgType::Close, &f.body).unwrap()
            }
            other => panic!("expected one Close frame, got {other:?}"),
        }
    }

    #[test]
    fn an_all_nul_uuid_is_refused_on_every_first_frame() {
        // Legacy v1: hung up on without a reply (it cannot read a Close).
        let (ev, out) = feed(&frame(Version::V1, MsgType::Hello, Uuid::ZERO, false, b""));
        assert_eq!(ev.len(), 1, "no join: {ev:?}");
        assert_eq!(closed(&ev).code, CloseCode::Protocol);
        assert!(closed(&ev).reason.contains("empty"), "{ev:?}");
        assert!(out.is_empty(), "no key reply: {out:?}");
        // Plaintext and sealed v2 Hello: a Close naming the reason.
        for cipher in [false, true] {
            let (ev, out) = feed(&frame(
                Version::V2,
                MsgType::Hello,
                Uuid::ZERO,
                cipher,
                &hello(),
            ));
            assert_eq!(ev.len(), 1, "no join: {ev:?}");
            let c = close_frame(&out);
            assert_eq!(c.code, CloseCode::Protocol);
            assert!(c.reason.contains("uuid is empty"), "{c:?}");
        }
    }

    #[test]
    fn an_unprintable_uuid_is_refused() {
        let mut u = Uuid::from_text("ab").unwrap();
        u.0[0] = b'\n';
        let (ev, out) = feed(&frame(Version::V2, MsgType::Hello, u, false, &hello()));
        assert_eq!(ev.len(), 1);
        assert!(close_frame(&out).reason.contains("\\x0ab"), "{out:?}");
        let (ev, out) = feed(&frame(Version::V1, MsgType::Report, u, false, b"{}"));
        assert!(closed(&ev).reason.contains("not printable"));
        assert!(out.is_empty());
    }

    #[test]
    fn a_device_key_uuid_is_not_claimable_over_v1_or_plaintext() {
        // v1 key request: refused silently, nothing answered, counted by
        // the shell through the event.
        let (ev, out) = feed(&frame(Version::V1, MsgType::Hello, own(), false, b""));
        assert_eq!(
            ev[0],
            MasterEvent::IdentityRefused {
                uuid: own(),
                who: Unauthenticated::LegacyV1
            }
        );
        assert_eq!(closed(&ev).code, CloseCode::AuthFailed);
        assert!(out.is_empty(), "no key reply: {out:?}");
        // Plaintext Hello: refused with a Close the agent can log.
        let (ev, out) = feed(&frame(Version::V2, MsgType::Hello, own(), false, &hello()));
        assert_eq!(
            ev[0],
            MasterEvent::IdentityRefused {
                uuid: own(),
                who: Unauthenticated::Plaintext
            }
        );
        let c = close_frame(&out);
        assert_eq!(c.code, CloseCode::AuthFailed);
        assert!(c.reason.contains("uuid own has its own key"), "{c:?}");
        // A uuid with only the fleet key joins over v1 as before.
        let other = Uuid::from_text("other").unwrap();
        let (ev, out) = feed(&frame(Version::V1, MsgType::Hello, other, false, b""));
        assert!(matches!(ev.as_slice(), [MasterEvent::Joined(_)]), "{ev:?}");
        assert_eq!(out.len(), 1, "the key reply");
    }

    #[test]
    fn refuse_drops_unwritten_replies_and_closes() {
        let mut s = session();
        let other = Uuid::from_text("other").unwrap();
        s.handle_input(
            &frame(Version::V1, MsgType::Hello, other, false, b""),
            now(),
            &Ring,
            &mut Zeros,
        );
        assert!(s.queued_bytes() > 0, "the key reply is queued");
        s.refuse(CloseCode::AuthFailed, "taken");
        assert!(s.is_closed());
        assert_eq!(s.poll_transmit(), None, "a v1 peer gets nothing");
    }
}
