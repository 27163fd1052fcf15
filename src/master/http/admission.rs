//! Which HTTP connections may stay open: a cap on all of them and a cap per
//! client IP, held as slots that free themselves when the connection ends.
//!
//! The per-IP cap counts an IPv6 client by its /64, the smallest block a
//! site is normally given: one client can otherwise pick a new source
//! address for every connection.
//!
//! Both caps count open connections rather than a rate, because what a
//! slow client takes from everyone else is a slot for as long as it holds
//! it; the per-IP cap makes one client unable to take all of them.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use super::counters::Refusal;

/// Open HTTP connections, in total and per IP. Entries are removed when
/// their count drops to zero, so the map is bounded by the total cap.
#[derive(Debug, Default)]
pub struct Admission {
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One admitted connection's slot: dropping it (when the connection's task
/// ends, however it ends) gives the slot back.
#[derive(Debug)]
pub struct Slot {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Admission {
    /// Takes a slot for a connection from `ip`, or says which cap refuses
    /// it. The total cap is checked first: when the server is full the
    /// operator should see that, whoever asked.
    pub fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        max_total: usize,
        max_per_ip: usize,
    ) -> Result<Slot, Refusal> {
        let ip = client_key(ip);
        let mut g = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let (total, per_ip) = &mut *g;
        if *total >= max_total {
            return Err(Refusal::MaxConnections);
        }
        let mine = per_ip.entry(ip).or_default();
        if *mine >= max_per_ip {
            return Err(Refusal::PerIp);
        }
        *mine += 1;
        *total += 1;
        Ok(Slot {
            admission: self.clone(),
            ip,
        })
    }

    /// Open connections now, for `/api/status` and `/metrics`.
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).0
    }
}

/// The address the per-IP cap counts `ip` under: IPv4 as is (also when
/// it arrives IPv4-mapped on an IPv6 socket), IPv6 by its /64.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !u128::from(u64::MAX))),
        },
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut g = self
            .admission
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let (total, per_ip) = &mut *g;
        *total = total.saturating_sub(1);
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_total_and_per_ip_and_frees_on_drop() {
        let a = Arc::new(Admission::default());
        let ip1: IpAddr = "10.0.0.1".parse().unwrap();
        let ip2: IpAddr = "10.0.0.2".parse().unwrap();
        let s1 = a.admit(ip1, 3, 2).unwrap();
        let _s2 = a.admit(ip1, 3, 2).unwrap();
        assert_eq!(a.admit(ip1, 3, 2).unwrap_err(), Refusal::PerIp);
        let _s3 = a.admit(ip2, 3, 2).unwrap();
        assert_eq!(a.admit(ip2, 3, 2).unwrap_err(), Refusal::MaxConnections);
        assert_eq!(a.open(), 3);
        drop(s1);
        assert_eq!(a.open(), 2);
        assert!(a.admit(ip1, 3, 2).is_ok(), "the slot came back");
        assert_eq!(a.open(), 2, "and went again with the temporary");
    }

    #[test]
    fn ipv6_counts_by_slash_64_and_mapped_v4_as_v4() {
        let a = Arc::new(Admission::default());
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let _s = a.admit(one, 10, 1).unwrap();
        assert_eq!(a.admit(same_64, 10, 1).unwrap_err(), Refusal::PerIp);
        assert!(a.admit(other_64, 10, 1).is_ok());
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        let _s = a.admit(v4, 10, 1).unwrap();
        assert_eq!(a.admit(mapped, 10, 1).unwrap_err(), Refusal::PerIp);
    }

    #[test]
    fn idle_ips_are_forgotten() {
        let a = Arc::new(Admission::default());
        for i in 0..100u8 {
            drop(a.admit(IpAddr::from([10, 0, 0, i]), 10, 1).unwrap());
        }
        assert!(a.open.lock().unwrap().1.is_empty());
    }
}
