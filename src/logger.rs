//! A small logger for the `log` facade.
//!
//! One line per record. Where it goes (stderr, the journal, syslog) and
//! how it is stamped is [`crate::log_sink`]'s job; before the clock is
//! sane the stamp is `  UPTIME LEVEL target: message`, where UPTIME is
//! seconds.milliseconds since [`init`]: routers often boot with the clock
//! at 1970 and set it later (if ever), and a monotonic uptime is always
//! right and lets lines be correlated with each other.

use std::io::Write;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use log::{LevelFilter, Log, Metadata, Record};

/// Environment variable consulted when the command line sets no level.
pub const ENV_VAR: &str = "EDGE_GW_LOG";

/// When logging started; uptimes are measured from here.
static START: OnceLock<Instant> = OnceLock::new();

/// The one logger instance; `log` needs a `'static` reference.
static LOGGER: StderrLogger = StderrLogger;

struct StderrLogger;

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let uptime = START.get().map_or(Duration::ZERO, Instant::elapsed);
        // The sink (stderr, journal or syslog) and its stamp: log_sink.rs.
        crate::log_sink::write(uptime, record);
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// Formats one record with its uptime stamp, newline included: the
/// stderr line before the clock is sane ([`crate::log_sink`]).
pub(crate) fn format_line(uptime: Duration, record: &Record<'_>) -> String {
    format!(
        "{:>6}.{:03} {:<5} {}: {}\n",
        uptime.as_secs(),
        uptime.subsec_millis(),
        record.level(),
        record.target(),
        record.args()
    )
}

/// Installs the stderr logger with `level` as the maximum level.
///
/// Safe to call more than once: later calls only change the level (the
/// uptime origin stays at the first call). If some other logger was
/// installed first, it stays and only the level is set.
pub fn init(level: LevelFilter) {
    START.get_or_init(Instant::now);
    // Err means a logger is already installed (a second init, or a test
    // harness); that is fine, so the error is deliberately ignored.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// Parses a level name: `error`, `warn`, `info`, `debug`, `trace` or `off`
/// (any case).
pub fn parse_level(name: &str) -> Option<LevelFilter> {
    const LEVELS: [(&str, LevelFilter); 6] = [
        ("off", LevelFilter::Off),
        ("error", LevelFilter::Error),
        ("warn", LevelFilter::Warn),
        ("info", LevelFilter::Info),
        ("debug", LevelFilter::Debug),
        ("trace", LevelFilter::Trace),
    ];
    LEVELS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|&(_, level)| level)
}

/// The level set by [`ENV_VAR`]: `Ok(None)` if unset or empty, `Err(value)`
/// if set to something [`parse_level`] does not know (the caller decides
/// whether to warn or fail).
pub fn env_level() -> Result<Option<LevelFilter>, String> {
    match std::env::var(ENV_VAR) {
        Ok(value) if value.trim().is_empty() => Ok(None),
        Ok(value) => parse_level(value.trim()).map(Some).ok_or(value),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(value)) => Err(value.to_string_lossy().into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use log::Level;

    #[test]
    fn line_format() {
        // One statement: the record borrows format_args!'s temporaries.
        let line = format_line(
            Duration::from_millis(3_007),
            &Record::builder()
                .args(format_args!("hello {}", 42))
                .level(Level::Warn)
                .target("edge_gw::agent")
                .build(),
        );
        assert_eq!(line, "     3.007 WARN  edge_gw::agent: hello 42\n");
    }

    #[test]
    fn level_names() {
        assert_eq!(parse_level("debug"), Some(LevelFilter::Debug));
        assert_eq!(parse_level("WARN"), Some(LevelFilter::Warn));
        assert_eq!(parse_level("off"), Some(LevelFilter::Off));
        assert_eq!(parse_level("verbose"), None);
        assert_eq!(parse_level(""), None);
    }

    #[test]
    fn init_twice_is_harmless() {
        // Error level keeps other tests' warnings out of the test output
        // (this logger writes to the real stderr, which tests don't capture).
        init(LevelFilter::Error);
        init(LevelFilter::Error);
        assert_eq!(log::max_level(), LevelFilter::Error);
    }
}
