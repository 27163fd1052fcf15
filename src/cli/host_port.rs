//! What a `HOST:PORT` option value must look like (`--agent`, `--listen`,
//! `--http`).
//!
//! Checked when the command line is parsed, so a typo is a usage error
//! (exit status 2) naming the option, not a resolver error at startup.
//! The agent's list of masters (`--agent A,B`, `master = [...]` in its
//! config file) is checked here too, so both forms fail the same way.

/// Most masters one agent may be given: a cluster has a handful; a
/// longer list is a mistake (a pasted fleet list), not a plan.
pub const MAX_MASTERS: usize = 16;

/// Splits `HOST:PORT` into host and port, checking that it looks right.
///
/// The host is a name, an IPv4 address or a bracketed IPv6 address
/// (`[::1]:9503`); it is not resolved here. Port 0 is returned as is; the
/// caller decides whether "any free port" makes sense.
pub fn split_host_port(addr: &str) -> Result<(&str, u16), String> {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err("expected HOST:PORT, e.g. master.example.net:9503".into());
    };
    if let Some(inner) = host.strip_prefix('[') {
        if inner.strip_suffix(']').is_none_or(str::is_empty) {
            return Err("a bracketed IPv6 host must look like [::1]".into());
        }
    } else if host.contains(':') {
        return Err("write IPv6 addresses in brackets, e.g. [::1]:9503".into());
    } else if host.is_empty() {
        return Err("the host before ':' is missing".into());
    }
    if host.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err("the host contains a space or '/'".into());
    }
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("the port {port:?} is not a number from 0 to 65535"))?;
    Ok((host, port))
}

/// Checks the agent's masters, in order: each entry `HOST:PORT` with a
/// port from 1 to 65535, surrounding blanks ignored, none empty, none
/// twice, at most [`MAX_MASTERS`]. An error names the entry at fault.
pub fn master_list<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for (i, raw) in entries.into_iter().enumerate() {
        let entry = raw.trim();
        let n = i + 1;
        if entry.is_empty() {
            return Err(format!("master {n} of the list is empty"));
        }
        match split_host_port(entry) {
            Ok((_, 0)) => return Err(format!("master {entry:?}: the port must not be 0")),
            Ok(_) => {}
            Err(why) => return Err(format!("master {entry:?}: {why}")),
        }
        if out.iter().any(|e| e == entry) {
            return Err(format!("master {entry:?} is listed twice"));
        }
        if out.len() == MAX_MASTERS {
            return Err(format!("more than {MAX_MASTERS} masters"));
        }
        out.push(entry.to_string());
    }
    if out.is_empty() {
        return Err("the list of masters is empty".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port() {
        assert_eq!(split_host_port("m.example:9503"), Ok(("m.example", 9503)));
        assert_eq!(split_host_port("10.0.0.1:0"), Ok(("10.0.0.1", 0)));
        assert_eq!(split_host_port("[::1]:80"), Ok(("[::1]", 80)));
        for bad in [
            "host",
            ":80",
            "host:",
            "host:x",
            "host:70000",
            "::1:80",
            "[]:80",
            "[::1:80",
            "a b:1",
        ] {
            assert!(split_host_port(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn master_lists() {
        assert_eq!(master_list(["m1:9503"]), Ok(vec!["m1:9503".to_string()]));
        assert_eq!(
            master_list("a:1, [::1]:2 ,b.example:3".split(',')),
            Ok(vec!["a:1".into(), "[::1]:2".into(), "b.example:3".into()])
        );
        for (bad, names) in [
            ("a:1,b", "\"b\""),
            ("a:1,,b:2", "master 2"),
            ("a:1,", "master 2"),
            ("a:1,b:0", "\"b:0\": the port must not be 0"),
            ("a:1,b:70000", "\"b:70000\""),
            ("a:1,a:1", "listed twice"),
            ("", "master 1"),
        ] {
            let e = master_list(bad.split(',')).unwrap_err();
            assert!(e.contains(names), "{bad:?}: {e}");
        }
        let many: Vec<String> = (1..=17).map(|p| format!("m:{p}")).collect();
        assert!(
            master_list(many.iter().map(String::as_str))
                .unwrap_err()
                .contains("more than 16")
        );
        assert!(master_list([]).unwrap_err().contains("empty"));
    }
}
