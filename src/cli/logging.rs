//! Starting the logger from the command line's `--log-level`, `-v`,
//! `-q` and `--log`, the `EDGE_GW_LOG` environment variable, and the
//! config files' `log_level`.
//!
//! The logger itself is [`crate::logger`]; this is only the command line's
//! policy for picking its level.

use std::sync::atomic::{AtomicBool, Ordering};

use log::LevelFilter;

use crate::log_sink::{self, LogTarget};
use crate::logger;

/// Moves `level` by `steps` (positive: more verbose), staying within
/// off..=trace.
fn adjust_level(level: LevelFilter, steps: i32) -> LevelFilter {
    const ORDER: [LevelFilter; 6] = [
        LevelFilter::Off,
        LevelFilter::Error,
        LevelFilter::Warn,
        LevelFilter::Info,
        LevelFilter::Debug,
        LevelFilter::Trace,
    ];
    let Some(index) = ORDER.iter().position(|&l| l == level) else {
        return level;
    };
    let max = ORDER.len() - 1;
    let moved = if steps >= 0 {
        index.saturating_add(steps.unsigned_abs() as usize).min(max)
    } else {
        index.saturating_sub(steps.unsigned_abs() as usize)
    };
    ORDER.get(moved).copied().unwrap_or(level)
}

/// Whether the command line or the environment chose the level; if so a
/// config file's `log_level` does not override it ([`config_level`]).
static CHOSEN: AtomicBool = AtomicBool::new(false);

/// Starts logging to `target` (`--log`; default stderr, the journal when
/// stderr is one): `--log-level`, else `$EDGE_GW_LOG`, else info; then
/// `-v`/`-q`. Called once, before the mode runs.
pub fn init(cli: Option<LevelFilter>, verbosity: i32, target: Option<LogTarget>) {
    let sink_problem = log_sink::select(target).err();
    let (base, bad_env) = match cli {
        Some(level) => (level, None),
        None => match logger::env_level() {
            Ok(level) => (level.unwrap_or(LevelFilter::Info), None),
            Err(value) => (LevelFilter::Info, Some(value)),
        },
    };
    let env_chosen = matches!(logger::env_level(), Ok(Some(_)));
    CHOSEN.store(
        cli.is_some() || env_chosen || verbosity != 0,
        Ordering::Relaxed,
    );
    logger::init(adjust_level(base, verbosity));
    if let Some(problem) = sink_problem {
        log::warn!("{problem}");
    }
    // A stray environment variable should not stop a router's monitoring,
    // so a bad value is only a warning.
    if let Some(value) = bad_env {
        log::warn!(
            "ignoring {}={value:?}: expected error, warn, info, debug, trace or off",
            logger::ENV_VAR
        );
    }
}

/// Applies a config file's `log_level` (read after logging started),
/// unless `--log-level`, `-v`/`-q` or `$EDGE_GW_LOG` chose the level: the
/// command line wins, as for every other setting.
pub fn config_level(level: Option<LevelFilter>) {
    if let Some(level) = level
        && !CHOSEN.load(Ordering::Relaxed)
        && log::max_level() != level
    {
        log::set_max_level(level);
        log::info!("log level {level} (log_level in the config file)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbosity_steps() {
        assert_eq!(adjust_level(LevelFilter::Info, 0), LevelFilter::Info);
        assert_eq!(adjust_level(LevelFilter::Info, 1), LevelFilter::Debug);
        assert_eq!(adjust_level(LevelFilter::Info, 9), LevelFilter::Trace);
        assert_eq!(adjust_level(LevelFilter::Info, -2), LevelFilter::Error);
        assert_eq!(adjust_level(LevelFilter::Info, -9), LevelFilter::Off);
        assert_eq!(adjust_level(LevelFilter::Off, i32::MIN), LevelFilter::Off);
        assert_eq!(adjust_level(LevelFilter::Off, i32::MAX), LevelFilter::Trace);
    }
}
