//! The identity rule, the registry's half: an unauthenticated session
//! (legacy v1 or plaintext v2) can never displace, shadow or update an
//! authenticated agent.
//!
//! A uuid is authenticated when either
//! - the keyring holds a device key of its own for it: the session refuses
//!   those at the first frame ([`crate::session::identity`]), before they
//!   reach the registry; or
//! - it has joined sealed during this master's run (fleet key included):
//!   the registry remembers that in [`Agent::authenticated`], online or
//!   not, until the agent is forgotten. Checked here, in
//!   [`Registry::joined`], before anything of the agent or its live
//!   connection is touched.
//!
//! A master restart forgets the second kind until the agent joins sealed
//! again (the fleet is not persisted); device keys protect from the start,
//! which is one more reason to prefer them.

use super::{Agent, Registry};
use crate::proto::Version;
use crate::session::identity::Unauthenticated;
use crate::session::master::Peer;

/// A join the identity rule refused: the connection must be closed
/// without joining (the caller logs it at WARN).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityRefused {
    /// What kind of session tried.
    pub who: Unauthenticated,
    /// Why, for the log and the close reason.
    pub reason: String,
}

/// What kind of unauthenticated session `peer` is, `None` if sealed.
fn unauthenticated(peer: &Peer) -> Option<Unauthenticated> {
    match (peer.sealed, peer.version) {
        (true, _) => None,
        (false, Version::V1) => Some(Unauthenticated::LegacyV1),
        (false, Version::V2) => Some(Unauthenticated::Plaintext),
    }
}

/// Whether `peer` may join as `agent` (the entry its uuid names, if any).
pub(super) fn check(agent: Option<&Agent>, peer: &Peer) -> Result<(), IdentityRefused> {
    let Some(who) = unauthenticated(peer) else {
        return Ok(());
    };
    match agent {
        Some(a) if a.authenticated => {
            let state = if a.online() && a.sealed {
                "is online sealed"
            } else {
                "has joined sealed before"
            };
            Err(IdentityRefused {
                who,
                reason: format!(
                    "refused: uuid {} {state}; a {} session may not claim it",
                    peer.uuid,
                    who.name()
                ),
            })
        }
        _ => Ok(()),
    }
}

impl Registry {
    /// Counts an identity refusal, whoever made it (the session for a
    /// device key, [`Registry::joined`] for a sealed history).
    pub fn identity_refused(&mut self, who: Unauthenticated) {
        *self
            .counters
            .identity_refused
            .entry(who.name())
            .or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::tests::{addr, peer};
    use super::*;
    use crate::master::conn_handle::{Cmd, ConnHandle};
    use crate::proto::v2::{self, CloseCode};
    use crate::session::CloseInfo;
    use crate::session::outbox::OutboxLimits;

    fn v1(name: &str) -> Peer {
        Peer {
            version: Version::V1,
            sealed: false,
            group: String::new(),
            ..peer(name, "")
        }
    }

    fn plaintext(name: &str) -> Peer {
        Peer {
            sealed: false,
            ..peer(name, "g")
        }
    }

    fn closed() -> CloseInfo {
        CloseInfo {
            code: CloseCode::Normal,
            reason: "bye".into(),
            by_peer: true,
            frame_error: None,
        }
    }

    #[test]
    fn v1_and_plaintext_never_displace_shadow_or_update_a_sealed_agent() {
        let t = Instant::now();
        let mut r = Registry::new(OutboxLimits::default(), t);
        let handles: Vec<_> = (1..=4).map(ConnHandle::new).collect();
        for h in &handles {
            r.conn_opened(h.clone());
        }
        let u = peer("a", "g").uuid;
        assert_eq!(r.joined(1, &peer("a", "g"), addr(), t, 0), None);
        r.report(1, Box::new(v2::Report::default()), t, 0);
        // A v1 key request under its uuid: refused before anything moves.
        let refused = r.joined(2, &v1("a"), addr(), t, 0).unwrap();
        assert_eq!(refused.who, Unauthenticated::LegacyV1);
        assert!(refused.reason.contains("is online sealed"), "{refused:?}");
        // The refused connection's report reaches no agent.
        r.legacy_report(2, b"{\"evil\":1}".to_vec(), 0);
        let a = r.agent(&u).unwrap();
        assert_eq!((a.version, a.sealed), (Some(Version::V2), true));
        assert!(a.conn.as_ref().is_some_and(|c| c.id == 1));
        assert!(matches!(a.latest(), Some(super::super::Latest::V2(_))));
        assert_eq!(a.reports(), 1);
        assert!(
            handles[0].take().is_empty(),
            "the sealed session is not told anything"
        );
        // Its close does not take the agent offline; its reports still count.
        r.conn_closed(2, &closed(), 0);
        assert!(r.agent(&u).unwrap().online());
        r.report(1, Box::new(v2::Report::default()), t, 0);
        assert_eq!(r.agent(&u).unwrap().reports(), 2);
        // Plaintext v2 may not take it either.
        let refused = r.joined(3, &plaintext("a"), addr(), t, 0).unwrap();
        assert_eq!(refused.who, Unauthenticated::Plaintext);
        // Offline, the uuid stays sealed-only.
        r.conn_closed(1, &closed(), 0);
        let refused = r.joined(4, &v1("a"), addr(), t, 0).unwrap();
        assert!(
            refused.reason.contains("has joined sealed before"),
            "{refused:?}"
        );
        assert!(!r.agent(&u).unwrap().online());
        assert_eq!(r.counters.identity_refused.get("v1"), Some(&2));
        assert_eq!(r.counters.identity_refused.get("plaintext"), Some(&1));
    }

    #[test]
    fn a_sealed_session_takes_over_an_unauthenticated_uuid_for_good() {
        let t = Instant::now();
        let mut r = Registry::new(OutboxLimits::default(), t);
        let handles: Vec<_> = (1..=4).map(ConnHandle::new).collect();
        for h in &handles {
            r.conn_opened(h.clone());
        }
        // Never sealed: v1 and plaintext join and replace each other as before.
        assert_eq!(r.joined(1, &v1("b"), addr(), t, 0), None);
        assert_eq!(r.joined(2, &plaintext("b"), addr(), t, 0), None);
        // The sealed agent wins and kicks the unauthenticated session.
        assert_eq!(r.joined(3, &peer("b", "g"), addr(), t, 0), None);
        assert!(matches!(
            handles[1].take().pop_front(),
            Some(Cmd::Kick(CloseCode::Replaced, _))
        ));
        assert!(r.joined(4, &v1("b"), addr(), t, 0).is_some());
        // Forgetting the agent (offline) forgets that it was sealed.
        r.conn_closed(3, &closed(), 0);
        assert!(r.forget(&peer("b", "g").uuid).is_some());
        assert_eq!(r.joined(4, &v1("b"), addr(), t, 0), None);
    }
}
