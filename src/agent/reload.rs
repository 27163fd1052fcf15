//! What a SIGHUP changes in a running agent.
//!
//! Routers run the agent next to other services, and operators send
//! SIGHUP to "reload" things (the master's keyring, for one). The agent
//! answers by resolving its config file and key file again and sorting
//! the differences into three kinds: those the session carries (a new
//! session is needed, so it reconnects), those applied in place (the
//! mounts the report timer reads, the log level; the session stays up),
//! and those fixed at start (ring and inbox sizes, the state directory,
//! the hook: logged and kept, because changing them would lose buffered
//! reports or undelivered pushes). Nothing changed means no reconnect at all.
//!
//! The list of masters is the one session setting that may change without
//! a reconnect: an agent connected to a master the new list still names
//! keeps its session (and takes the new list for its next failover), so
//! adding or reordering masters across a fleet does not drop every agent.

use super::resolved::Resolved;

/// The names of the settings a reload changed, by what applying them takes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Carried by the session (the masters, the uuid, group, key, wire,
    /// and the interval told to the master): reconnect, except for a new
    /// list of masters alone that still names the connected one (see
    /// [`Changes::needs_reconnect`]).
    pub session: Vec<&'static str>,
    /// Applied in place, the session stays up: mounts (the report timer)
    /// and log_level (the logger).
    pub in_place: Vec<&'static str>,
    /// Fixed at start: kept at the running value until a restart.
    pub restart_only: Vec<&'static str>,
}

impl Changes {
    /// Compares what the agent runs with to what it would run with now.
    pub fn between(old: &Resolved, new: &Resolved) -> Changes {
        let (o, n) = (&old.set, &new.set);
        let mut c = Changes::default();
        for (name, changed) in [
            ("master", o.masters != n.masters),
            ("uuid", old.uuid != new.uuid),
            ("group", o.group != n.group),
            ("key", old.psk != new.psk),
            ("wire", old.wire != new.wire),
            ("interval", o.interval != n.interval),
        ] {
            if changed {
                c.session.push(name);
            }
        }
        if o.mounts != n.mounts {
            c.in_place.push("mounts");
        }
        if o.log_level != n.log_level {
            c.in_place.push("log_level");
        }
        for (name, changed) in [
            ("state_dir", o.state_dir != n.state_dir),
            ("on_push", o.on_push != n.on_push),
            ("hook_timeout", o.hook_timeout != n.hook_timeout),
            ("report_ring", o.report_ring != n.report_ring),
            (
                "report_ring_bytes",
                o.report_ring_bytes != n.report_ring_bytes,
            ),
            ("inbox_messages", o.inbox_messages != n.inbox_messages),
            ("inbox_bytes", o.inbox_bytes != n.inbox_bytes),
        ] {
            if changed {
                c.restart_only.push(name);
            }
        }
        c
    }

    /// Whether the new settings need a new session, given the master the
    /// agent is connected to now (`None`: none, it is between attempts).
    /// A changed list of masters alone does not, while it still names the
    /// connected master: that session is healthy, and moving it would be
    /// the flapping failover avoids.
    pub fn needs_reconnect(&self, connected: Option<&str>, new: &Resolved) -> bool {
        if self.session.iter().any(|&name| name != "master") {
            return true;
        }
        if self.session.is_empty() {
            return false;
        }
        !connected.is_some_and(|c| new.set.masters.iter().any(|m| m == c))
    }

    /// Whether the reload changed nothing at all.
    pub fn is_empty(&self) -> bool {
        self.session.is_empty() && self.in_place.is_empty() && self.restart_only.is_empty()
    }

    /// What to run with after the reload: `new`, except the settings
    /// that only change on restart, which keep their running values.
    pub fn applied(old: &Resolved, new: Resolved) -> Resolved {
        let mut r = new;
        r.set.state_dir.clone_from(&old.set.state_dir);
        r.set.on_push.clone_from(&old.set.on_push);
        r.set.hook_timeout = old.set.hook_timeout;
        r.set.report_ring = old.set.report_ring;
        r.set.report_ring_bytes = old.set.report_ring_bytes;
        r.set.inbox_messages = old.set.inbox_messages;
        r.set.inbox_bytes = old.set.inbox_bytes;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::options::AgentOptions;

    fn resolved(group: Option<&str>) -> Resolved {
        let mut r = Resolved::load(&AgentOptions {
            masters: vec!["m:1".into()],
            uuid: Some("r-1".into()),
            ..AgentOptions::default()
        })
        .unwrap();
        r.set.group = group.map(String::from);
        r
    }

    #[test]
    fn nothing_changed_means_no_reconnect() {
        let a = resolved(None);
        assert!(Changes::between(&a, &a.clone()).is_empty());
    }

    #[test]
    fn changes_are_sorted_by_what_they_take() {
        let a = resolved(None);
        let mut b = resolved(Some("lab"));
        b.set.mounts.push("/overlay".into());
        b.set.report_ring = 7;
        let c = Changes::between(&a, &b);
        assert_eq!(c.session, ["group"]);
        assert_eq!(c.in_place, ["mounts"]);
        assert_eq!(c.restart_only, ["report_ring"]);
        let run = Changes::applied(&a, b);
        assert_eq!(run.set.report_ring, a.set.report_ring, "kept until restart");
        assert_eq!(run.set.group.as_deref(), Some("lab"));
        assert_eq!(run.set.mounts, ["/", "/overlay"]);
    }

    #[test]
    fn a_new_master_list_keeps_a_session_it_still_names() {
        let mut a = resolved(None);
        a.set.masters = vec!["m:1".into(), "m:2".into()];
        let mut b = a.clone();
        b.set.masters = vec!["m:3".into(), "m:2".into()];
        let c = Changes::between(&a, &b);
        assert_eq!(c.session, ["master"]);
        assert!(!c.needs_reconnect(Some("m:2"), &b), "m:2 is still listed");
        assert!(c.needs_reconnect(Some("m:1"), &b), "m:1 was taken off");
        assert!(c.needs_reconnect(None, &b), "no session to keep");
        // Another session setting changed too: a new session anyway.
        b.set.group = Some("lab".into());
        let c = Changes::between(&a, &b);
        assert!(c.needs_reconnect(Some("m:2"), &b));
        // Nothing the session carries changed.
        let c = Changes::between(&a, &a.clone());
        assert!(!c.needs_reconnect(None, &a));
    }
}
