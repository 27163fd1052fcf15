//! Starting the logger from the command line's `--log-level`, `-v` and
//! `-q` and the `EDGE_GW_LOG` environment variable.
//!
//! The logger itself is [`crate::logger`]; this is only the command line's
//! policy for picking its level.

use log::LevelFilter;

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

/// Starts logging: `--log-level`, else `$EDGE_GW_LOG`, else info; then
/// `-v`/`-q`. Called once, before the mode runs.
pub fn init(cli: Option<LevelFilter>, verbosity: i32) {
    let (base, bad_env) = match cli {
        Some(level) => (level, None),
        None => match logger::env_level() {
            Ok(level) => (level.unwrap_or(LevelFilter::Info), None),
            Err(value) => (LevelFilter::Info, Some(value)),
        },
    };
    logger::init(adjust_level(base, verbosity));
    // A stray environment variable should not stop a router's monitoring,
    // so a bad value is only a warning.
    if let Some(value) = bad_env {
        log::warn!(
            "ignoring {}={value:?}: expected error, warn, info, debug, trace or off",
            logger::ENV_VAR
        );
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
