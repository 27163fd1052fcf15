//! Load averages from `/proc/loadavg`: `0.36 0.80 0.53 1/83 22023`.
//!
//! The kernel prints two decimals, so the values are parsed as fixed point
//! straight into ×100 integers: no float parsing (soft-float on most MIPS
//! routers) and no rounding question.

use super::source::count_error;

/// Parses the first three fields as load ×100. A malformed file is one
/// error and gives `[0, 0, 0]`, so the three never mix two readings.
pub(super) fn parse(text: &str, errors: &mut u32) -> [u32; 3] {
    let mut it = text.split_ascii_whitespace();
    let mut out = [0; 3];
    for slot in &mut out {
        match it.next().and_then(parse_x100) {
            Some(v) => *slot = v,
            None => {
                count_error(errors);
                return [0; 3];
            }
        }
    }
    out
}

/// `"12.34"` → 1234, `"7"` → 700, `"0.5"` → 50, `"1.239"` → 123
/// (truncated). `None` for signs, empty parts or overflow.
fn parse_x100(s: &str) -> Option<u32> {
    let (int, frac) = s.split_once('.').unwrap_or((s, "00"));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut digits = frac.bytes().map(|b| u32::from(b - b'0'));
    let hundredths = digits.next().unwrap_or(0) * 10 + digits.next().unwrap_or(0);
    int.parse::<u32>()
        .ok()?
        .checked_mul(100)?
        .checked_add(hundredths)
}

#[cfg(test)]
mod tests {
    use super::super::tests::fixture_text;
    use super::*;

    fn parse_set(set: &str) -> ([u32; 3], u32) {
        let mut e = 0;
        (parse(&fixture_text(set, "proc/loadavg"), &mut e), e)
    }

    #[test]
    fn fixtures() {
        assert_eq!(parse_set("linux-6.18-x86_64"), ([36, 80, 53], 0));
        assert_eq!(parse_set("linux-2.6.18-i686"), ([8, 3, 1], 0));
        assert_eq!(parse_set("openwrt-22.03-mt7621"), ([121, 118, 112], 0));
    }

    #[test]
    fn fixed_point_forms() {
        assert_eq!(parse_x100("0.00"), Some(0));
        assert_eq!(parse_x100("12.34"), Some(1234));
        assert_eq!(parse_x100("7"), Some(700));
        assert_eq!(parse_x100("0.5"), Some(50));
        assert_eq!(parse_x100("1.239"), Some(123));
        assert_eq!(parse_x100("42949672.95"), Some(u32::MAX));
        assert_eq!(parse_x100("42949672.96"), None);
        assert_eq!(parse_x100("99999999999"), None);
        for bad in [
            "", ".", "1.", ".5", "-1.00", "+1.00", "1.2x", "1..2", "١.٠٠",
        ] {
            assert_eq!(parse_x100(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn malformed_file_is_one_error_and_zeros() {
        for bad in ["", "0.10 0.20\n", "0.10 x 0.30 1/2 3\n", "\u{fffd}\u{fffd}"] {
            let mut e = 0;
            assert_eq!(parse(bad, &mut e), [0; 3], "{bad:?}");
            assert_eq!(e, 1, "{bad:?}");
        }
    }
}
