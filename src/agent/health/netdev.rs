//! Interface counters from `/proc/net/dev`.
//!
//! Two header lines, then one line per interface:
//!
//! ```text
//!   eth0: 96267736    5449    0 ...      (current kernels: "%6s: %7llu")
//!   eth0:3965453012 28374651    3 ...    (2.6-era kernels: "%6s:%8lu")
//! ```
//!
//! Old kernels glue the receive byte count to the colon once it has more
//! than eight digits, so the line is split at the first colon rather than
//! at whitespace. Linux forbids `:` in interface names, so the first colon
//! is always the separator.
//!
//! Columns after the colon: receive `bytes packets errs drop fifo frame
//! compressed multicast`, then transmit `bytes packets errs drop fifo colls
//! carrier compressed`. Counters are 32-bit on 32-bit kernels before 2.6.35
//! and wrap at 4 GiB; the master computes rates from deltas and must allow
//! for that.

use crate::proto::v2::NetIf;

use super::MAX_INTERFACES;
use super::source::{bounded_name, count_error};

/// Appends up to [`MAX_INTERFACES`] interfaces to `out`, in file order
/// (the kernel lists them by ifindex). Header lines (they contain `|`) are
/// skipped; lines without a colon or with fewer than 16 numeric columns
/// are counted in `errors` and skipped. Interfaces past the cap are left
/// out silently.
pub(super) fn parse(text: &str, errors: &mut u32, out: &mut Vec<NetIf>) {
    for line in text.lines() {
        if out.len() >= MAX_INTERFACES {
            break;
        }
        if line.contains('|') || line.trim().is_empty() {
            continue;
        }
        match parse_line(line) {
            Some(n) => out.push(n),
            None => count_error(errors),
        }
    }
}

/// One interface line; `None` if malformed.
fn parse_line(line: &str) -> Option<NetIf> {
    let (name, rest) = line.split_once(':')?;
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    // Parse only the six columns reported, but insist on all sixteen being
    // there: a shorter line is some other layout (Linux 2.0 had no byte
    // columns), where these positions would mean something else.
    let mut cols = [0u64; 16];
    let mut n = 0;
    for (i, f) in rest.split_ascii_whitespace().take(16).enumerate() {
        if matches!(i, 0 | 1 | 2 | 8 | 9 | 10) {
            cols[i] = f.parse().ok()?;
        } else if !f.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        n += 1;
    }
    (n == 16).then(|| NetIf {
        name: bounded_name(name),
        rx_bytes: cols[0],
        rx_packets: cols[1],
        rx_errors: cols[2],
        tx_bytes: cols[8],
        tx_packets: cols[9],
        tx_errors: cols[10],
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::fixture_text;
    use super::*;

    fn nif(name: &str, c: [u64; 6]) -> NetIf {
        NetIf {
            name: name.into(),
            rx_bytes: c[0],
            rx_packets: c[1],
            rx_errors: c[2],
            tx_bytes: c[3],
            tx_packets: c[4],
            tx_errors: c[5],
        }
    }

    fn parse_set(set: &str) -> (Vec<NetIf>, u32) {
        let mut e = 0;
        let mut v = Vec::new();
        parse(&fixture_text(set, "proc/net/dev"), &mut e, &mut v);
        (v, e)
    }

    #[test]
    fn modern_fixture() {
        assert_eq!(
            parse_set("linux-6.18-x86_64"),
            (
                vec![
                    nif("lo", [3193, 29, 0, 3193, 29, 0]),
                    nif("ifb0", [0; 6]),
                    nif("ifb1", [0; 6]),
                    nif("eth0", [96267736, 5449, 0, 384712, 3531, 0]),
                ],
                0
            )
        );
    }

    #[test]
    fn old_fixture_with_glued_columns() {
        assert_eq!(
            parse_set("linux-2.6.18-i686"),
            (
                vec![
                    nif("lo", [587324, 4521, 0, 587324, 4521, 0]),
                    nif("eth0", [3965453012, 28374651, 3, 1823456789, 19283746, 0]),
                    nif("eth1", [48213, 402, 0, 9120, 96, 7]),
                    nif("sit0", [0; 6]),
                ],
                0
            )
        );
    }

    #[test]
    fn openwrt_fixture() {
        let (v, e) = parse_set("openwrt-22.03-mt7621");
        assert_eq!(e, 0);
        let names: Vec<&str> = v.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "lo", "eth0", "lan1", "lan2", "lan3", "lan4", "wan", "br-lan", "wlan0", "wlan1"
            ]
        );
        assert_eq!(
            v[1],
            nif("eth0", [58123456789, 61234567, 0, 9876543210, 32109876, 0])
        );
        assert_eq!(
            v[9],
            nif("wlan1", [4123456789, 5123456, 0, 61234567890, 43210987, 12])
        );
    }

    #[test]
    fn malformed_lines_are_counted() {
        let text = "Inter-|   Receive |  Transmit\n\
                    face |bytes    packets|bytes\n\
                    eth0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n\
                    eth1: 1 2 3\n\
                    : 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n\
                    eth2: 18446744073709551616 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n\
                    eth3: 1 2 3 4 5 6 7 x 9 10 11 12 13 14 15 16\n\
                    \n\
                    eth4:1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17\n";
        let mut e = 0;
        let mut v = Vec::new();
        parse(text, &mut e, &mut v);
        assert_eq!(e, 5);
        assert_eq!(v, [nif("eth4", [1, 2, 3, 9, 10, 11])]);
    }

    #[test]
    fn interfaces_are_capped_and_names_cut() {
        let mut text = String::new();
        for i in 0..100 {
            text.push_str(&format!(
                "{}{i}: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n",
                "v".repeat(80)
            ));
        }
        let mut e = 0;
        let mut v = Vec::new();
        parse(&text, &mut e, &mut v);
        assert_eq!((v.len(), e), (MAX_INTERFACES, 0));
        assert!(v.iter().all(|n| n.name == "v".repeat(64)));
    }
}
