//! Temperatures from `/sys/class/thermal/thermal_zone*/{type,temp}`.
//!
//! `temp` is millidegrees Celsius (may be negative). Many routers (MT7621,
//! ath79) have no zone at all; kernels before 2.6.25 have no
//! `/sys/class/thermal`. Both give an empty list.
//!
//! A zone whose `temp` cannot be read is skipped without counting an
//! error: drivers refuse reads while a sensor is off (iwlwifi with the
//! interface down returns EIO/ENODATA). A `temp` that reads but is not a
//! number is an error. Reading `temp` can take a few milliseconds on
//! I²C-attached sensors.

use crate::proto::v2::Temperature;

use super::MAX_ZONES;
use super::source::{Source, bounded_name, count_error};

/// Zone numbers collected from the directory listing before sorting; a
/// bound on memory should sysfs list something absurd.
const MAX_LISTED: usize = 1024;

/// Appends up to [`MAX_ZONES`] zones to `out`, lowest zone number first
/// (directory order is arbitrary, and numeric order keeps `thermal_zone10`
/// after `thermal_zone9`). `zones` is scratch kept by the caller.
pub(super) fn read(
    src: &mut Source,
    zones: &mut Vec<u32>,
    errors: &mut u32,
    out: &mut Vec<Temperature>,
) {
    zones.clear();
    src.list_dir(format_args!("sys/class/thermal"), |name, _| {
        // Entries are symlinks into /sys/devices, so the type is not
        // checked. `cooling_deviceN` entries sit alongside.
        if zones.len() < MAX_LISTED
            && let Some(n) = name.strip_prefix(b"thermal_zone").and_then(parse_index)
        {
            zones.push(n);
        }
    });
    zones.sort_unstable();
    zones.dedup();
    zones.truncate(MAX_ZONES);
    for &n in zones.iter() {
        let milli_c = match src.read(format_args!("sys/class/thermal/thermal_zone{n}/temp")) {
            None => continue,
            Some(t) => match t.trim().parse::<i32>() {
                Ok(v) => v,
                Err(_) => {
                    count_error(errors);
                    continue;
                }
            },
        };
        let zone = match src.read(format_args!("sys/class/thermal/thermal_zone{n}/type")) {
            Some(t) if !t.trim().is_empty() => bounded_name(t.trim()),
            _ => format!("thermal_zone{n}"),
        };
        out.push(Temperature { zone, milli_c });
    }
}

/// Decimal digits → `u32`; `None` for anything else (`thermal_zone`,
/// `thermal_zone1a`, overflow).
fn parse_index(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u32, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u32::from(b - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::fixture_root;
    use super::*;

    fn read_set(set: &str) -> (Vec<Temperature>, u32) {
        let mut src = Source::new(fixture_root(set));
        let (mut zones, mut e, mut out) = (Vec::new(), 0, Vec::new());
        read(&mut src, &mut zones, &mut e, &mut out);
        (out, e)
    }

    fn temp(zone: &str, milli_c: i32) -> Temperature {
        Temperature {
            zone: zone.into(),
            milli_c,
        }
    }

    #[test]
    fn modern_fixture_skips_unreadable_zone() {
        // thermal_zone2 (iwlwifi_1) has a type but no temp.
        assert_eq!(
            read_set("linux-6.18-x86_64"),
            (vec![temp("acpitz", 27800), temp("x86_pkg_temp", 45000)], 0)
        );
    }

    #[test]
    fn no_thermal_class_is_empty() {
        assert_eq!(read_set("linux-2.6.18-i686"), (vec![], 0));
        assert_eq!(read_set("openwrt-22.03-mt7621"), (vec![], 0));
    }

    #[test]
    fn hostile_fixture_orders_numerically() {
        // zone0 temp is garbage (error); zone2 has an empty type; zone10
        // is negative; `thermal_zone1a` and `thermal_zone` are not zones.
        assert_eq!(
            read_set("hostile"),
            (
                vec![temp("thermal_zone2", 40000), temp("cpu-thermal", -12500)],
                1
            )
        );
    }

    #[test]
    fn index_parsing() {
        assert_eq!(parse_index(b"0"), Some(0));
        assert_eq!(parse_index(b"4294967295"), Some(u32::MAX));
        assert_eq!(parse_index(b"4294967296"), None);
        assert_eq!(parse_index(b""), None);
        assert_eq!(parse_index(b"1a"), None);
    }
}
