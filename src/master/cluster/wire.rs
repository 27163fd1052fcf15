//! The fan-out message between masters: which master sent it (so it
//! skips its own), the kind, the reporting agent's group, the body.
//!
//! `[node len: u8][node][kind: u8][group len: u16 BE][group][body]`;
//! kind 2 is a v2 event body, 1 a legacy v1 report.

use crate::master::registry::remote::RemoteReport;

/// Encodes a report for other masters.
pub fn encode(node: &str, r: &RemoteReport) -> Vec<u8> {
    let (kind, group, body) = match r {
        RemoteReport::Event { group, body } => (2u8, group, body),
        RemoteReport::Legacy { group, body } => (1u8, group, body),
    };
    // Node names are at most 64 bytes (settings); groups are cut to what
    // fits the length field, which no real group name reaches.
    let node = &node.as_bytes()[..node.len().min(255)];
    let group = &group.as_bytes()[..group.len().min(usize::from(u16::MAX))];
    let mut out = Vec::with_capacity(4 + node.len() + group.len() + body.len());
    out.push(node.len() as u8);
    out.extend_from_slice(node);
    out.push(kind);
    out.extend_from_slice(&(group.len() as u16).to_be_bytes());
    out.extend_from_slice(group);
    out.extend_from_slice(body);
    out
}

/// Decodes a message: the sending node and the report, or why not.
pub fn decode(msg: &[u8]) -> Result<(&[u8], RemoteReport), &'static str> {
    let (&n, rest) = msg.split_first().ok_or("empty")?;
    let n = usize::from(n);
    if rest.len() < n + 3 {
        return Err("truncated");
    }
    let (node, rest) = rest.split_at(n);
    let kind = rest[0];
    let glen = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
    let rest = &rest[3..];
    if rest.len() < glen {
        return Err("truncated");
    }
    let group = std::str::from_utf8(&rest[..glen])
        .map_err(|_| "group not UTF-8")?
        .to_string();
    let body = rest[glen..].to_vec();
    let r = match kind {
        2 => RemoteReport::Event { group, body },
        1 => RemoteReport::Legacy { group, body },
        _ => return Err("unknown kind"),
    };
    Ok((node, r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bad_input() {
        let r = RemoteReport::Event {
            group: "g1".into(),
            body: b"{\"x\":1}".to_vec(),
        };
        let m = encode("m1", &r);
        assert_eq!(decode(&m), Ok((&b"m1"[..], r)));
        let l = RemoteReport::Legacy {
            group: String::new(),
            body: vec![0, 1, 2],
        };
        assert_eq!(decode(&encode("node-2", &l)), Ok((&b"node-2"[..], l)));
        for cut in 0..6 {
            assert!(decode(&m[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = m.clone();
        bad[3] = 9;
        assert_eq!(decode(&bad), Err("unknown kind"));
    }
}
