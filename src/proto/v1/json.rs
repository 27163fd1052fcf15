//! JSON writing that is byte-for-byte what the legacy PHP master produces.
//!
//! The legacy server (swoole-monitor-master) builds every reply with
//! `json_encode($value)` and no flags, on PHP 7.1 or later. Legacy clients
//! may compare or log those bytes, so edge-gw reproduces them exactly
//! instead of emitting "equivalent" JSON:
//!
//! * strings: `"` and `\` escaped as usual, `/` escaped as `\/`, the control
//!   characters U+0008, U+000C, U+000A, U+000D, U+0009 as `\b \f \n \r \t`
//!   and every other one below U+0020 as `\u00xx`; every non-ASCII character
//!   as `\uxxxx` (lowercase hex, UTF-16 surrogate pairs above U+FFFF). DEL
//!   (U+007F) is left alone, as PHP does. The output is therefore pure ASCII.
//! * integers: plain decimal.
//! * floats: PHP's `serialize_precision = -1` format, see [`write_f64`].
//!   Without `JSON_PRESERVE_ZERO_FRACTION` (which the legacy server does not
//!   pass) an integral float prints *without* `.0`: `1.0` is written `1`.
//! * objects: keys in insertion order, no whitespace anywhere.
//!
//! Writing is infallible and never panics: every function appends to a
//! `Vec<u8>`. The only input JSON cannot represent, a NaN or infinite float,
//! is written as `0`, which is what PHP writes for it under
//! `JSON_PARTIAL_OUTPUT_ON_ERROR` (without that flag PHP gives up on the whole
//! document and the legacy server then sent an empty body, a bug not worth
//! copying).
//!
//! Reading is not done here: with the `master` feature, [`reencode_php`]
//! writes a value parsed by `serde_json` back out the way PHP would. The
//! agent-only build carries no JSON parser at all.

/// Lowercase hex digits, as PHP's encoder uses for `\u` escapes.
const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `s` to `out` as a quoted JSON string, escaped like PHP's
/// `json_encode` with default flags (see the module docs for the rules).
///
/// The output is pure ASCII and always parses back to `s`.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    // Most strings are mostly plain ASCII: copy unescaped runs in one go and
    // only break the run where an escape is needed.
    out.reserve(s.len() + 2);
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut run_start = 0;
    for (i, ch) in s.char_indices() {
        let short: Option<&[u8]> = match ch {
            '"' => Some(b"\\\""),
            '\\' => Some(b"\\\\"),
            '/' => Some(b"\\/"),
            '\u{8}' => Some(b"\\b"),
            '\u{c}' => Some(b"\\f"),
            '\n' => Some(b"\\n"),
            '\r' => Some(b"\\r"),
            '\t' => Some(b"\\t"),
            _ => None,
        };
        let needs_u_escape = ch < ' ' || !ch.is_ascii();
        if short.is_none() && !needs_u_escape {
            continue;
        }
        // `i` and `run_start` are both char boundaries of `s`, run_start <= i.
        out.extend_from_slice(&bytes[run_start..i]);
        run_start = i + ch.len_utf8();
        if let Some(esc) = short {
            out.extend_from_slice(esc);
        } else {
            // Control characters and everything non-ASCII: one `\uxxxx` per
            // UTF-16 code unit, so astral characters become a surrogate pair
            // exactly like PHP writes them.
            let mut units = [0u16; 2];
            for &unit in ch.encode_utf16(&mut units).iter() {
                write_u_escape(out, unit);
            }
        }
    }
    // run_start is a char boundary no greater than s.len().
    out.extend_from_slice(&bytes[run_start..]);
    out.push(b'"');
}

/// Appends `\uxxxx` (lowercase hex) for one UTF-16 code unit.
fn write_u_escape(out: &mut Vec<u8>, unit: u16) {
    out.extend_from_slice(&[
        b'\\',
        b'u',
        // Each index is masked to 0..=15, so it is always inside HEX.
        HEX[usize::from((unit >> 12) & 0xf)],
        HEX[usize::from((unit >> 8) & 0xf)],
        HEX[usize::from((unit >> 4) & 0xf)],
        HEX[usize::from(unit & 0xf)],
    ]);
}

/// Appends an unsigned integer in decimal.
pub fn write_u64(out: &mut Vec<u8>, n: u64) {
    // u64::MAX has 20 decimal digits, so the buffer always suffices and the
    // index never goes below zero.
    let mut buf = [0u8; 20];
    let mut pos = buf.len();
    let mut rest = n;
    loop {
        pos -= 1;
        // `rest % 10` is below 10, the cast cannot truncate.
        buf[pos] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[pos..]);
}

/// Appends a signed integer in decimal.
pub fn write_i64(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    // `unsigned_abs` handles i64::MIN without overflow.
    write_u64(out, n.unsigned_abs());
}

/// Appends a float the way PHP ≥ 7.1 `json_encode` does (with
/// `serialize_precision = -1`, the default).
///
/// PHP takes the shortest digit string that round-trips (the same digits
/// Rust's formatter picks) and lays it out with `zend_gcvt(value, 17, ...)`:
///
/// * decimal point position `p` (value = 0.d1d2… × 10^p) in `-3..=17`:
///   plain notation, no trailing `.0`: `1.0` → `1`, `0.0001` → `0.0001`,
///   `1e16` → `10000000000000000`;
/// * otherwise exponent notation with at least one fraction digit and a
///   signed exponent: `1e17` → `1.0e+17`, `0.00001` → `1.0e-5`;
/// * `-0.0` → `-0`.
///
/// NaN and ±infinity cannot be represented in JSON; they are written as `0`
/// (PHP's `JSON_PARTIAL_OUTPUT_ON_ERROR` substitute) so that writing never
/// fails. Check `is_finite` first if a silent `0` is wrong for your data.
pub fn write_f64(out: &mut Vec<u8>, f: f64) {
    if !f.is_finite() {
        out.push(b'0');
        return;
    }
    if f.is_sign_negative() {
        out.push(b'-');
    }
    let abs = f.abs();
    if abs == 0.0 {
        out.push(b'0');
        return;
    }
    // `{:e}` gives the shortest round-trip digits as `d[.ddd]e[-]x`.
    let sci = format!("{abs:e}");
    let Some((mantissa, exp)) = sci.split_once('e') else {
        // Unreachable for a finite float; fall back to Rust's plain decimal
        // form, which is still a valid JSON number.
        out.extend_from_slice(format!("{abs}").as_bytes());
        return;
    };
    let Ok(exp) = exp.parse::<i32>() else {
        out.extend_from_slice(format!("{abs}").as_bytes());
        return;
    };
    let digits: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    let Some((&first, rest)) = digits.split_first() else {
        out.extend_from_slice(format!("{abs}").as_bytes());
        return;
    };
    // zend_gcvt's `decpt`: the value is 0.<digits> × 10^decpt.
    let decpt = exp + 1;
    if !(-3..=17).contains(&decpt) {
        // Exponent notation, e.g. 1.0e+17, 1.5e-7.
        out.push(first);
        out.push(b'.');
        if rest.is_empty() {
            out.push(b'0');
        } else {
            out.extend_from_slice(rest);
        }
        out.push(b'e');
        let e = decpt - 1;
        out.push(if e < 0 { b'-' } else { b'+' });
        write_u64(out, u64::from(e.unsigned_abs()));
    } else if decpt <= 0 {
        // 0.000ddd: `-decpt` zeros between the point and the digits.
        out.extend_from_slice(b"0.");
        for _ in decpt..0 {
            out.push(b'0');
        }
        out.extend_from_slice(&digits);
    } else {
        // decpt is 1..=17 here, so the conversion cannot fail.
        let int_len = usize::try_from(decpt).unwrap_or(0);
        if digits.len() <= int_len {
            // Integral: pad with zeros, no fraction (no `.0`, see above).
            out.extend_from_slice(&digits);
            out.resize(out.len() + (int_len - digits.len()), b'0');
        } else {
            let (int_part, frac_part) = digits.split_at(int_len);
            out.extend_from_slice(int_part);
            out.push(b'.');
            out.extend_from_slice(frac_part);
        }
    }
}

/// A JSON scalar, for callers that assemble objects from data (for example
/// the agent's legacy report body).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum JsonScalar<'a> {
    /// A string, escaped by [`write_str`].
    Str(&'a str),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer.
    UInt(u64),
    /// A float, written by [`write_f64`] (NaN and infinities become `0`).
    Float(f64),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
}

impl JsonScalar<'_> {
    /// Appends this scalar's JSON text to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match *self {
            JsonScalar::Str(s) => write_str(out, s),
            JsonScalar::Int(n) => write_i64(out, n),
            JsonScalar::UInt(n) => write_u64(out, n),
            JsonScalar::Float(f) => write_f64(out, f),
            JsonScalar::Bool(b) => write_bool(out, b),
            JsonScalar::Null => out.extend_from_slice(b"null"),
        }
    }
}

fn write_bool(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

/// Appends a JSON object to `out`; `build` adds its members in order.
///
/// The object is opened before and closed after `build` runs, so the output
/// is always balanced: there is no `finish` to forget.
///
/// ```
/// use edge_gw::proto::v1::json::write_object;
///
/// let mut out = Vec::new();
/// write_object(&mut out, |o| {
///     o.field_i64("errCode", 0).field_str("msg", "success");
///     o.field_object("data", |d| {
///         d.field_u64("heartbeat", 1_700_000_000);
///     });
/// });
/// assert_eq!(out, br#"{"errCode":0,"msg":"success","data":{"heartbeat":1700000000}}"#);
/// ```
pub fn write_object(out: &mut Vec<u8>, build: impl FnOnce(&mut ObjectWriter<'_>)) {
    out.push(b'{');
    let mut writer = ObjectWriter { out, empty: true };
    build(&mut writer);
    writer.out.push(b'}');
}

/// Writes the members of one JSON object in insertion order; handed out by
/// [`write_object`] and [`ObjectWriter::field_object`].
///
/// Keys are not checked for duplicates (a PHP array cannot have any, so do
/// not add the same key twice). An object with no members is written `{}`,
/// which is how PHP writes an empty *object*; an empty PHP *array* would be
/// `[]` — use [`ObjectWriter::field_raw`] with `b"[]"` to mirror one.
#[derive(Debug)]
pub struct ObjectWriter<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl ObjectWriter<'_> {
    /// Writes the separator and `"key":`, returning the buffer for the value.
    fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        write_str(self.out, key);
        self.out.push(b':');
        self.out
    }

    /// Adds a string member.
    pub fn field_str(&mut self, key: &str, value: &str) -> &mut Self {
        write_str(self.key(key), value);
        self
    }

    /// Adds a signed integer member.
    pub fn field_i64(&mut self, key: &str, value: i64) -> &mut Self {
        write_i64(self.key(key), value);
        self
    }

    /// Adds an unsigned integer member.
    pub fn field_u64(&mut self, key: &str, value: u64) -> &mut Self {
        write_u64(self.key(key), value);
        self
    }

    /// Adds a float member, formatted by [`write_f64`] (NaN and infinities
    /// become `0`).
    pub fn field_f64(&mut self, key: &str, value: f64) -> &mut Self {
        write_f64(self.key(key), value);
        self
    }

    /// Adds a `true`/`false` member.
    pub fn field_bool(&mut self, key: &str, value: bool) -> &mut Self {
        write_bool(self.key(key), value);
        self
    }

    /// Adds a `null` member.
    pub fn field_null(&mut self, key: &str) -> &mut Self {
        self.key(key).extend_from_slice(b"null");
        self
    }

    /// Adds a scalar member.
    pub fn field(&mut self, key: &str, value: JsonScalar<'_>) -> &mut Self {
        value.write_to(self.key(key));
        self
    }

    /// Adds a member whose value is already-encoded JSON, copied verbatim.
    ///
    /// `raw_json` is not validated: passing anything but one complete JSON
    /// value (in PHP's style, if byte-exactness matters) corrupts the output.
    pub fn field_raw(&mut self, key: &str, raw_json: &[u8]) -> &mut Self {
        self.key(key).extend_from_slice(raw_json);
        self
    }

    /// Adds a nested object member whose members `build` writes.
    pub fn field_object(
        &mut self,
        key: &str,
        build: impl FnOnce(&mut ObjectWriter<'_>),
    ) -> &mut Self {
        write_object(self.key(key), build);
        self
    }
}

/// Appends `value` the way the legacy PHP server would re-encode it after
/// `json_decode` (`master` feature only: the agent build has no JSON parser).
///
/// The legacy server decodes request bodies with `json_decode($body)` — *not*
/// `json_decode($body, true)` — so JSON objects become `stdClass` objects and
/// keep being objects: `{}` re-encodes as `{}` (with the assoc flag PHP would
/// turn it into an empty array and write `[]`, and `{"0":1}` would become the
/// list `[1]`; neither happens in the legacy code path). Key order is kept
/// because `serde_json` is built with `preserve_order`; a duplicated key
/// keeps its first position and its last value, like a PHP property update.
///
/// Numbers: integers that fit in `i64` stay integers; larger ones are floats
/// in PHP (no `JSON_BIGINT_AS_STRING`), so they are written with
/// [`write_f64`]. Floats follow [`write_f64`]. PHP decodes `-0` as the
/// integer 0 but `serde_json` yields the float -0.0, written `-0`; this
/// one-character difference is accepted.
///
/// Nesting is walked with an explicit stack, so even a hand-built value far
/// deeper than the parser's recursion limit cannot overflow the call stack.
#[cfg(feature = "master")]
pub fn reencode_php(value: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;

    /// An open container and the members still to write.
    enum Open<'v> {
        Array(std::slice::Iter<'v, Value>),
        Object(serde_json::map::Iter<'v>),
    }

    let mut stack: Vec<(Open<'_>, bool)> = Vec::new();
    let mut next = Some(value);
    loop {
        if let Some(v) = next.take() {
            match v {
                Value::Null => out.extend_from_slice(b"null"),
                Value::Bool(b) => write_bool(out, *b),
                Value::Number(n) => {
                    if let Some(i) = n.as_i64() {
                        write_i64(out, i);
                    } else if let Some(f) = n.as_f64() {
                        // u64 above i64::MAX (a float in PHP) or a float.
                        write_f64(out, f);
                    } else {
                        // Not produced without serde_json's
                        // `arbitrary_precision`; keep its own text then.
                        out.extend_from_slice(n.to_string().as_bytes());
                    }
                }
                Value::String(s) => write_str(out, s),
                Value::Array(items) => {
                    out.push(b'[');
                    stack.push((Open::Array(items.iter()), true));
                }
                Value::Object(map) => {
                    out.push(b'{');
                    stack.push((Open::Object(map.iter()), true));
                }
            }
        }
        let Some((open, first)) = stack.last_mut() else {
            break;
        };
        let is_first = std::mem::replace(first, false);
        match open {
            Open::Array(items) => match items.next() {
                Some(item) => {
                    if !is_first {
                        out.push(b',');
                    }
                    next = Some(item);
                }
                None => {
                    out.push(b']');
                    stack.pop();
                }
            },
            Open::Object(members) => match members.next() {
                Some((key, member)) => {
                    if !is_first {
                        out.push(b',');
                    }
                    write_str(out, key);
                    out.push(b':');
                    next = Some(member);
                }
                None => {
                    out.push(b'}');
                    stack.pop();
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(input: &str) -> String {
        let mut out = Vec::new();
        write_str(&mut out, input);
        String::from_utf8(out).expect("write_str output is ASCII")
    }

    fn f(value: f64) -> String {
        let mut out = Vec::new();
        write_f64(&mut out, value);
        String::from_utf8(out).expect("write_f64 output is ASCII")
    }

    #[test]
    fn plain_and_empty_strings() {
        assert_eq!(s(""), r#""""#);
        assert_eq!(s("success"), r#""success""#);
        assert_eq!(s("a b~\u{7f}"), "\"a b~\u{7f}\"", "DEL is not escaped");
    }

    #[test]
    fn slash_quote_backslash() {
        assert_eq!(s("a/b"), r#""a\/b""#);
        assert_eq!(s("http://x/"), r#""http:\/\/x\/""#);
        assert_eq!(s(r#"say "hi""#), r#""say \"hi\"""#);
        assert_eq!(s(r"C:\dir\"), r#""C:\\dir\\""#);
        assert_eq!(s(r#"\/""#), r#""\\\/\"""#);
    }

    #[test]
    fn control_characters() {
        assert_eq!(s("\u{8}\u{c}\n\r\t"), r#""\b\f\n\r\t""#);
        assert_eq!(s("\0"), r#""\u0000""#);
        assert_eq!(s("\u{b}"), r#""\u000b""#);
        assert_eq!(s("\u{1b}[0m"), r#""\u001b[0m""#);
        assert_eq!(s("\u{1f}"), r#""\u001f""#);
        assert_eq!(s("a\nb"), r#""a\nb""#);
    }

    #[test]
    fn non_ascii_is_lowercase_u_escaped() {
        assert_eq!(s("é"), r#""\u00e9""#);
        assert_eq!(s("\u{80}"), r#""\u0080""#);
        assert_eq!(
            s("错误格式的消息体"),
            r#""\u9519\u8bef\u683c\u5f0f\u7684\u6d88\u606f\u4f53""#
        );
        assert_eq!(s("x错y"), r#""x\u9519y""#);
        assert_eq!(s("\u{ffff}"), r#""\uffff""#);
        assert_eq!(s("\u{2028}"), r#""\u2028""#);
    }

    #[test]
    fn astral_chars_are_surrogate_pairs() {
        assert_eq!(s("😀"), r#""\ud83d\ude00""#);
        assert_eq!(s("a😀b"), r#""a\ud83d\ude00b""#);
        assert_eq!(s("\u{10000}"), r#""\ud800\udc00""#);
        assert_eq!(s("\u{10ffff}"), r#""\udbff\udfff""#);
    }

    #[test]
    fn integers() {
        let mut out = Vec::new();
        write_u64(&mut out, 0);
        out.push(b' ');
        write_u64(&mut out, u64::MAX);
        out.push(b' ');
        write_i64(&mut out, i64::MIN);
        out.push(b' ');
        write_i64(&mut out, -7);
        out.push(b' ');
        write_i64(&mut out, 1_700_000_000);
        assert_eq!(
            out,
            b"0 18446744073709551615 -9223372036854775808 -7 1700000000"
        );
    }

    #[test]
    fn floats_like_php() {
        // Integral floats: no `.0` without JSON_PRESERVE_ZERO_FRACTION.
        assert_eq!(f(1.0), "1");
        assert_eq!(f(100.0), "100");
        assert_eq!(f(-2.0), "-2");
        assert_eq!(f(0.0), "0");
        assert_eq!(f(-0.0), "-0");
        assert_eq!(f(0.1), "0.1");
        assert_eq!(f(0.5), "0.5");
        assert_eq!(f(-1.5), "-1.5");
        assert_eq!(f(123.456), "123.456");
        assert_eq!(f(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(f(1234567.125), "1234567.125");
        // Plain notation down to decpt -3, exponent below.
        assert_eq!(f(0.001), "0.001");
        assert_eq!(f(0.0001), "0.0001");
        assert_eq!(f(0.00012), "0.00012");
        assert_eq!(f(0.00001), "1.0e-5");
        assert_eq!(f(1.5e-7), "1.5e-7");
        // Plain notation up to 17 integer digits, exponent above.
        assert_eq!(f(1e16), "10000000000000000");
        assert_eq!(f(12345678901234567.0), "12345678901234568");
        assert_eq!(f(1e17), "1.0e+17");
        assert_eq!(f(1.5e17), "1.5e+17");
        assert_eq!(f(1e100), "1.0e+100");
        assert_eq!(f(9223372036854775808.0), "9.223372036854776e+18");
        assert_eq!(f(f64::MAX), "1.7976931348623157e+308");
        assert_eq!(f(f64::MIN_POSITIVE), "2.2250738585072014e-308");
        assert_eq!(f(5e-324), "5.0e-324");
        assert_eq!(f(-5e-324), "-5.0e-324");
    }

    #[test]
    fn non_finite_floats_write_zero() {
        assert_eq!(f(f64::NAN), "0");
        assert_eq!(f(f64::INFINITY), "0");
        assert_eq!(f(f64::NEG_INFINITY), "0");
        assert_eq!(f(-f64::NAN), "0");
    }

    #[test]
    fn object_builder_in_insertion_order() {
        let mut out = Vec::new();
        write_object(&mut out, |o| {
            o.field_str("z/", "é")
                .field_i64("a", -1)
                .field_u64("u", 7)
                .field_f64("f", 2.5)
                .field_f64("nan", f64::NAN)
                .field_bool("t", true)
                .field_bool("n", false)
                .field_null("nul")
                .field_raw("list", b"[]")
                .field("s", JsonScalar::Str("\"q\""))
                .field("i", JsonScalar::Int(3))
                .field("x", JsonScalar::UInt(4))
                .field("g", JsonScalar::Float(1.0))
                .field("b", JsonScalar::Bool(true))
                .field("m", JsonScalar::Null);
            o.field_object("obj", |d| {
                d.field_object("empty", |_| {});
            });
        });
        assert_eq!(
            String::from_utf8(out).expect("ASCII"),
            r#"{"z\/":"\u00e9","a":-1,"u":7,"f":2.5,"nan":0,"t":true,"n":false,"nul":null,"list":[],"s":"\"q\"","i":3,"x":4,"g":1,"b":true,"m":null,"obj":{"empty":{}}}"#
        );
    }

    #[test]
    fn empty_object() {
        let mut out = b"x".to_vec();
        write_object(&mut out, |_| {});
        assert_eq!(out, b"x{}");
    }

    #[cfg(feature = "master")]
    fn re(input: &str) -> String {
        let value: serde_json::Value = serde_json::from_str(input).expect("test JSON is valid");
        let mut out = Vec::new();
        reencode_php(&value, &mut out);
        String::from_utf8(out).expect("ASCII")
    }

    #[cfg(feature = "master")]
    #[test]
    fn reencode_keeps_order_and_php_escaping() {
        assert_eq!(
            re(r#"{"z":1,"a":"x/y","m":[true,false,null],"é":"😀"}"#),
            r#"{"z":1,"a":"x\/y","m":[true,false,null],"\u00e9":"\ud83d\ude00"}"#
        );
        assert_eq!(re(r#" { "code" : "demo" } "#), r#"{"code":"demo"}"#);
    }

    #[cfg(feature = "master")]
    #[test]
    fn reencode_empty_containers_stay_objects() {
        // Legacy decodes without the assoc flag: stdClass objects stay `{}`.
        assert_eq!(re("{}"), "{}");
        assert_eq!(
            re(r#"{"a":{},"b":[],"c":[{}]}"#),
            r#"{"a":{},"b":[],"c":[{}]}"#
        );
        assert_eq!(re(r#"{"0":1,"1":2}"#), r#"{"0":1,"1":2}"#);
        assert_eq!(re("[[[]]]"), "[[[]]]");
    }

    #[cfg(feature = "master")]
    #[test]
    fn reencode_duplicate_key_keeps_first_position_last_value() {
        assert_eq!(re(r#"{"a":1,"b":2,"a":3}"#), r#"{"a":3,"b":2}"#);
    }

    #[cfg(feature = "master")]
    #[test]
    fn reencode_numbers_like_php() {
        assert_eq!(
            re("[0,-1,9223372036854775807,-9223372036854775808]"),
            "[0,-1,9223372036854775807,-9223372036854775808]"
        );
        // Above i64::MAX PHP decodes a float.
        assert_eq!(re("9223372036854775808"), "9.223372036854776e+18");
        assert_eq!(re("18446744073709551615"), "1.8446744073709552e+19");
        assert_eq!(
            re("[1.0,1.5,1e2,1e20,0.00001,-0.0]"),
            "[1,1.5,100,1.0e+20,1.0e-5,-0]"
        );
        assert_eq!(re(r#""\u0041\/""#), r#""A\/""#);
    }

    #[cfg(feature = "master")]
    #[test]
    fn reencode_deep_nesting_does_not_recurse() {
        let mut value = serde_json::Value::Null;
        for _ in 0..100_000 {
            value = serde_json::Value::Array(vec![value]);
        }
        let mut out = Vec::new();
        reencode_php(&value, &mut out);
        // serde_json's Value drops recursively; dismantle it by hand before
        // asserting, so neither the test nor a failing assertion's unwinding
        // overflows the stack.
        let mut current = value;
        while let serde_json::Value::Array(mut items) = current {
            current = items.pop().unwrap_or(serde_json::Value::Null);
        }
        let mut expected = vec![b'['; 100_000];
        expected.extend_from_slice(b"null");
        expected.resize(expected.len() + 100_000, b']');
        assert!(out == expected, "deeply nested array re-encoded wrongly");
    }

    #[cfg(feature = "master")]
    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec((any::<String>(), inner), 0..6)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn write_str_is_ascii_and_never_panics(input in any::<String>()) {
            let mut out = Vec::new();
            write_str(&mut out, &input);
            prop_assert!(out.is_ascii());
            prop_assert!(out.len() >= input.len() + 2);
        }

        #[cfg(feature = "master")]
        #[test]
        fn write_str_round_trips_through_serde_json(input in any::<String>()) {
            let mut out = Vec::new();
            write_str(&mut out, &input);
            let back: String = serde_json::from_slice(&out)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(back, input);
        }

        #[test]
        fn write_f64_round_trips(bits in any::<u64>()) {
            let value = f64::from_bits(bits);
            let mut out = Vec::new();
            write_f64(&mut out, value);
            let text = String::from_utf8(out).map_err(|e| TestCaseError::fail(e.to_string()))?;
            if value.is_finite() {
                // Rust's parser is correctly rounded and accepts PHP's
                // `1.0e+17` form, so this checks the digits survive.
                let back: f64 = text.parse().map_err(|_| TestCaseError::fail(text.clone()))?;
                prop_assert_eq!(back.to_bits(), value.to_bits(), "{}", text);
                prop_assert!(!text.ends_with(".0"), "{}", text);
            } else {
                prop_assert_eq!(text, "0");
            }
        }

        #[cfg(feature = "master")]
        #[test]
        fn reencode_round_trips(value in json_value()) {
            let mut out = Vec::new();
            reencode_php(&value, &mut out);
            prop_assert!(out.is_ascii());
            let back: serde_json::Value = serde_json::from_slice(&out)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(back, value);
        }
    }
}
