//! Reading and checking one option's value, so every option reports a bad
//! value the same way: `invalid value 'X' for --NAME: why`.

use std::ffi::OsString;
use std::ops::RangeInclusive;
use std::path::PathBuf;

use super::host_port::split_host_port;
use super::parse::Usage;

/// The usage error for a bad option value.
pub(super) fn bad_value(name: &str, value: &str, why: &str) -> Usage {
    Usage(format!("invalid value '{value}' for {name}: {why}"))
}

/// The option's value as UTF-8 text.
pub(super) fn text(p: &mut lexopt::Parser, name: &str) -> Result<String, Usage> {
    p.value()?
        .into_string()
        .map_err(|raw| bad_value(name, &raw.to_string_lossy(), "not valid UTF-8"))
}

/// The option's value as non-empty text.
pub(super) fn nonempty(p: &mut lexopt::Parser, name: &str) -> Result<String, Usage> {
    let value = text(p, name)?;
    if value.trim().is_empty() {
        return Err(bad_value(name, &value, "must not be empty"));
    }
    Ok(value)
}

/// The option's value as a path; any bytes but none is fine.
pub(super) fn path(p: &mut lexopt::Parser, name: &str) -> Result<PathBuf, Usage> {
    let value: OsString = p.value()?;
    if value.is_empty() {
        return Err(bad_value(name, "", "must not be empty"));
    }
    Ok(PathBuf::from(value))
}

/// The option's value as a whole number within `range`.
pub(super) fn number(
    p: &mut lexopt::Parser,
    name: &str,
    range: RangeInclusive<u32>,
) -> Result<u32, Usage> {
    let value = text(p, name)?;
    match value.parse::<u32>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(bad_value(
            name,
            &value,
            &format!(
                "expected a whole number from {} to {}",
                range.start(),
                range.end()
            ),
        )),
    }
}

/// The option's value as `HOST:PORT`; port 0 ("any free port") only if
/// `any_port` is set.
pub(super) fn address(p: &mut lexopt::Parser, name: &str, any_port: bool) -> Result<String, Usage> {
    let value = text(p, name)?;
    match split_host_port(&value) {
        Ok((_, 0)) if !any_port => Err(bad_value(name, &value, "the port must not be 0")),
        Ok(_) => Ok(value),
        Err(why) => Err(bad_value(name, &value, &why)),
    }
}
