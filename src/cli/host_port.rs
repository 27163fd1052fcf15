//! What a `HOST:PORT` option value must look like (`--agent`, `--listen`,
//! `--http`).
//!
//! Checked when the command line is parsed, so a typo is a usage error
//! (exit status 2) naming the option, not a resolver error at startup.

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
}
