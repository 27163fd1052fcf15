//! Legacy (wire version 1) JSON bodies, byte-exact with swoole-monitor-master.
//!
//! Only bodies live here; the 45-byte frame header is handled elsewhere.
//! Every reply the legacy server sends is `json_encode` of
//! `["errCode" => .., "msg" => .., "data" => ..]`, so all builders share that
//! envelope, in that key order, with PHP's escaping from [`super::json`]
//! (the Chinese messages travel as `\uxxxx` escapes).
//!
//! What the legacy server does with each body (see
//! `shared/LEGACY-PROTOCOL.md` and its `HandleServer.php`):
//!
//! * key request (type 1) → [`key_reply`];
//! * heartbeat (type 3) → [`heartbeat_reply`];
//! * subscribe (type 5) → [`check_subscribe`]; nothing is sent on success,
//!   [`bad_body_reply`] then close on failure;
//! * report (type 7) → [`fanout`] to every subscriber, [`need_key_fanout`]
//!   to those that registered with the cipher flag.
//!
//! The agent writes its own report body with [`report_body`]; that part has
//! no JSON parser behind it, so it also builds without the `master` feature.

#[cfg(feature = "master")]
use std::fmt;

pub mod json;

use json::{JsonScalar, ObjectWriter};

/// `errCode` of a successful reply.
pub const ERR_OK: i64 = 0;
/// `errCode` of every failed reply.
pub const ERR_FAIL: i64 = -1;

/// `msg` of a successful reply.
pub const MSG_SUCCESS: &str = "success";
/// `msg` when a subscribe body is empty, not JSON, not an object or lacks
/// `code` ("badly formatted message body").
pub const MSG_BAD_BODY: &str = "错误格式的消息体";
/// `msg` when a client asked for an encrypted reply before it had a key
/// ("please request a key first").
pub const MSG_NEED_KEY: &str = "请先请求密钥";

/// Key of the cipher key inside a key reply's `data`.
pub const KEY_CIPHER_KEY: &str = "cipher_key";
/// Key of the timestamp inside a heartbeat reply's `data`.
pub const KEY_HEARTBEAT: &str = "heartbeat";
/// The member a subscribe body must have.
pub const KEY_CODE: &str = "code";

/// Builds `{"errCode":<code>,"msg":"<msg>","data":<data>}`.
///
/// `size_hint` only presizes the buffer.
fn envelope(
    err_code: i64,
    msg: &str,
    size_hint: usize,
    data: impl FnOnce(&mut ObjectWriter<'_>),
) -> Vec<u8> {
    // 40 bytes covers the envelope around a short ASCII msg; the hint covers
    // the data.
    let mut out = Vec::with_capacity(40 + msg.len() * 6 + size_hint);
    json::write_object(&mut out, |o| {
        o.field_i64("errCode", err_code).field_str("msg", msg);
        data(o);
    });
    out
}

/// Builds a reply envelope around already-encoded JSON `data`:
/// `{"errCode":<err_code>,"msg":"<msg>","data":<data_json>}`.
///
/// The general form of every builder below, for replies they do not cover.
/// `data_json` is copied verbatim and must be one complete JSON value.
#[must_use]
pub fn reply_raw(err_code: i64, msg: &str, data_json: &[u8]) -> Vec<u8> {
    envelope(err_code, msg, data_json.len(), |o| {
        o.field_raw("data", data_json);
    })
}

/// Reply to a key request:
/// `{"errCode":0,"msg":"success","data":{"cipher_key":"<key>"}}`.
///
/// The legacy key is 32 characters of `[0-9a-zA-Z]`, so it needs no
/// escaping, but any string is escaped correctly.
#[must_use]
pub fn key_reply(cipher_key: &str) -> Vec<u8> {
    envelope(ERR_OK, MSG_SUCCESS, 20 + cipher_key.len(), |o| {
        o.field_object("data", |d| {
            d.field_str(KEY_CIPHER_KEY, cipher_key);
        });
    })
}

/// Reply to a heartbeat:
/// `{"errCode":0,"msg":"success","data":{"heartbeat":<unix_secs>}}`.
#[must_use]
pub fn heartbeat_reply(unix_secs: u64) -> Vec<u8> {
    envelope(ERR_OK, MSG_SUCCESS, 32, |o| {
        o.field_object("data", |d| {
            d.field_u64(KEY_HEARTBEAT, unix_secs);
        });
    })
}

/// Body pushed to each subscriber for one report:
/// `{"errCode":0,"msg":"success","data":"<report body as a JSON string>"}`.
///
/// The report body is forwarded as a *string* (its JSON text, not the
/// decoded value), exactly as the legacy server did.
///
/// A body that is not valid UTF-8 is converted lossily: each invalid
/// sequence becomes U+FFFD (written `\ufffd`). The legacy server's
/// `json_encode` failed on such a body and it sent a frame with an empty
/// body, which no client can use; substituting is what PHP itself does with
/// `JSON_INVALID_UTF8_SUBSTITUTE`, keeps every valid byte and still tells the
/// subscriber something arrived. Valid UTF-8 (every legacy client) is
/// byte-exact. Callers that would rather drop or log such a report can test
/// `std::str::from_utf8(report_body)` first; typically it means a
/// compressed body was not inflated before fan-out.
#[must_use]
pub fn fanout(report_body: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(report_body);
    // Quotes in a JSON body double in size when escaped.
    envelope(ERR_OK, MSG_SUCCESS, report_body.len() * 2, |o| {
        o.field_str("data", &text);
    })
}

/// Body pushed for one report to a subscriber that registered with the
/// cipher flag:
/// `{"errCode":-1,"msg":"请先请求密钥","data":"<report body as a JSON string>"}`
/// (the message as `\uxxxx` escapes).
///
/// The original never encrypted: it overwrote `errCode` and `msg` of the
/// [`fanout`] it was about to send and left `data` as it was, whether or
/// not the subscriber had asked for a key. Old clients may branch on
/// `errCode`, so edge-gw sends the same bytes. Non-UTF-8 bodies are
/// converted as in [`fanout`].
#[must_use]
pub fn need_key_fanout(report_body: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(report_body);
    envelope(ERR_FAIL, MSG_NEED_KEY, report_body.len() * 2, |o| {
        o.field_str("data", &text);
    })
}

/// Reply to a malformed subscribe body, sent before closing the connection:
/// `{"errCode":-1,"msg":"错误格式的消息体","data":<decoded body or null>}`
/// (the message as `\uxxxx` escapes).
///
/// `decoded` is what the legacy `json_decode` produced, re-encoded the PHP
/// way by [`json::reencode_php`]; `None` (empty or unparsable body) writes
/// `null`. [`SubscribeError::decoded`] gives the right argument.
#[cfg(feature = "master")]
#[must_use]
pub fn bad_body_reply(decoded: Option<&serde_json::Value>) -> Vec<u8> {
    let mut data = Vec::new();
    match decoded {
        Some(value) => json::reencode_php(value, &mut data),
        None => data.extend_from_slice(b"null"),
    }
    reply_raw(ERR_FAIL, MSG_BAD_BODY, &data)
}

/// Reply when a client asked for an encrypted reply but has no key:
/// `{"errCode":-1,"msg":"请先请求密钥","data":null}` (the message as
/// `\uxxxx` escapes).
///
/// The master does not send this: observed, the original answered a
/// cipher-flagged heartbeat with success and a cipher-flagged subscriber's
/// fan-out with [`need_key_fanout`] (the error *with* the report as
/// `data`). Kept for tools that want the bare error.
#[must_use]
pub fn need_key_reply() -> Vec<u8> {
    reply_raw(ERR_FAIL, MSG_NEED_KEY, b"null")
}

/// Builds the agent's legacy report body: a JSON object of scalar members,
/// in the given order, written the way the legacy PHP clients'
/// `json_encode` wrote theirs.
///
/// The legacy report client sends `{"code":"demo","status":"1"}`, which is
/// `report_body(&[("code", JsonScalar::Str("demo")), ("status",
/// JsonScalar::Str("1"))])`. Keys must be distinct.
#[must_use]
pub fn report_body(fields: &[(&str, JsonScalar<'_>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + fields.len() * 16);
    json::write_object(&mut out, |o| {
        for &(key, value) in fields {
            o.field(key, value);
        }
    });
    out
}

/// A valid subscribe (type 5) request body.
#[cfg(feature = "master")]
#[derive(Debug, Clone, PartialEq)]
pub struct Subscribe {
    /// The `code` member in string form: a JSON string's contents as-is,
    /// any other JSON value as its PHP-style JSON text (`1`, `true`,
    /// `null`, `{"a":1}`, …). The legacy server only checked that `code`
    /// exists and kept whatever it was.
    pub code: String,
    /// The whole decoded body, members in their original order.
    pub body: serde_json::Map<String, serde_json::Value>,
}

/// Why a subscribe body was refused. Each case answers with
/// [`bad_body_reply`]`(err.decoded())` and a close, as the legacy server did.
#[cfg(feature = "master")]
#[derive(Debug, Clone, PartialEq)]
pub enum SubscribeError {
    /// The body was empty.
    Empty,
    /// The body is not JSON (or not UTF-8); carries `serde_json`'s message.
    /// Note that `serde_json` stops at 128 nesting levels where PHP allows
    /// 512: such bodies land here, which only changes `data` to `null`.
    InvalidJson(String),
    /// The body is JSON but not an object; carries the decoded value.
    NotAnObject(serde_json::Value),
    /// The body is an object without a `code` member; carries the object.
    MissingCode(serde_json::Value),
}

#[cfg(feature = "master")]
impl SubscribeError {
    /// The decoded body, if the body was JSON: the `data` of the
    /// [`bad_body_reply`] to send.
    #[must_use]
    pub fn decoded(&self) -> Option<&serde_json::Value> {
        match self {
            SubscribeError::Empty | SubscribeError::InvalidJson(_) => None,
            SubscribeError::NotAnObject(value) | SubscribeError::MissingCode(value) => Some(value),
        }
    }
}

#[cfg(feature = "master")]
impl fmt::Display for SubscribeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubscribeError::Empty => f.write_str("empty subscribe body"),
            SubscribeError::InvalidJson(msg) => write!(f, "subscribe body is not JSON: {msg}"),
            SubscribeError::NotAnObject(_) => f.write_str("subscribe body is not a JSON object"),
            SubscribeError::MissingCode(_) => f.write_str("subscribe body has no \"code\" member"),
        }
    }
}

#[cfg(feature = "master")]
impl std::error::Error for SubscribeError {}

/// Checks a subscribe (type 5) body the way the legacy server did
/// (`is_object($body) && property_exists($body, "code")`): it must be a
/// JSON object with a `code` member of any type, `null` included.
///
/// # Errors
///
/// One [`SubscribeError`] per way the legacy server refused a body: empty,
/// not JSON, not an object, no `code`.
#[cfg(feature = "master")]
pub fn check_subscribe(body: &[u8]) -> Result<Subscribe, SubscribeError> {
    use serde_json::Value;

    if body.is_empty() {
        return Err(SubscribeError::Empty);
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| SubscribeError::InvalidJson(e.to_string()))?;
    let Value::Object(map) = value else {
        return Err(SubscribeError::NotAnObject(value));
    };
    let code = match map.get(KEY_CODE) {
        Some(Value::String(code)) => code.clone(),
        Some(other) => {
            let mut text = Vec::new();
            json::reencode_php(other, &mut text);
            // reencode_php writes ASCII only, so nothing is ever replaced.
            String::from_utf8_lossy(&text).into_owned()
        }
        None => return Err(SubscribeError::MissingCode(Value::Object(map))),
    };
    Ok(Subscribe { code, body: map })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).expect("replies are ASCII")
    }

    /// `错误格式的消息体` as PHP writes it.
    const BAD_BODY_ESCAPED: &str = r#"\u9519\u8bef\u683c\u5f0f\u7684\u6d88\u606f\u4f53"#;

    #[test]
    fn key_reply_bytes() {
        assert_eq!(
            text(key_reply("aZ09bY18cX27dW36eV45fU54gT63hS72")),
            r#"{"errCode":0,"msg":"success","data":{"cipher_key":"aZ09bY18cX27dW36eV45fU54gT63hS72"}}"#
        );
        assert_eq!(
            text(key_reply("a/b")),
            r#"{"errCode":0,"msg":"success","data":{"cipher_key":"a\/b"}}"#
        );
    }

    #[test]
    fn heartbeat_reply_bytes() {
        assert_eq!(
            text(heartbeat_reply(1_700_000_000)),
            r#"{"errCode":0,"msg":"success","data":{"heartbeat":1700000000}}"#
        );
        assert_eq!(
            text(heartbeat_reply(0)),
            r#"{"errCode":0,"msg":"success","data":{"heartbeat":0}}"#
        );
    }

    #[test]
    fn fanout_bytes() {
        assert_eq!(
            text(fanout(br#"{"code":"demo","status":"1"}"#)),
            r#"{"errCode":0,"msg":"success","data":"{\"code\":\"demo\",\"status\":\"1\"}"}"#
        );
        assert_eq!(
            text(fanout(
                "{\"url\":\"http://a/b\",\"n\":\"中\\\\\"}\n".as_bytes()
            )),
            r#"{"errCode":0,"msg":"success","data":"{\"url\":\"http:\/\/a\/b\",\"n\":\"\u4e2d\\\\\"}\n"}"#
        );
        assert_eq!(
            text(fanout(b"")),
            r#"{"errCode":0,"msg":"success","data":""}"#
        );
    }

    #[test]
    fn fanout_non_utf8_is_lossy_not_empty() {
        // A zlib header, as a compressed-but-not-inflated body would start.
        assert_eq!(
            text(fanout(b"\x78\xdaok\xff")),
            r#"{"errCode":0,"msg":"success","data":"x\ufffdok\ufffd"}"#
        );
    }

    #[test]
    fn need_key_reply_bytes() {
        assert_eq!(
            text(need_key_reply()),
            r#"{"errCode":-1,"msg":"\u8bf7\u5148\u8bf7\u6c42\u5bc6\u94a5","data":null}"#
        );
    }

    #[test]
    fn need_key_fanout_bytes() {
        assert_eq!(
            text(need_key_fanout(br#"{"code":"demo","p":"/"}"#)),
            r#"{"errCode":-1,"msg":"\u8bf7\u5148\u8bf7\u6c42\u5bc6\u94a5","data":"{\"code\":\"demo\",\"p\":\"\/\"}"}"#
        );
    }

    #[test]
    fn reply_raw_bytes() {
        assert_eq!(
            text(reply_raw(ERR_FAIL, MSG_NEED_KEY, br#""report""#)),
            r#"{"errCode":-1,"msg":"\u8bf7\u5148\u8bf7\u6c42\u5bc6\u94a5","data":"report"}"#
        );
        assert_eq!(
            text(reply_raw(ERR_OK, MSG_SUCCESS, b"[]")),
            r#"{"errCode":0,"msg":"success","data":[]}"#
        );
    }

    #[test]
    fn report_body_bytes() {
        assert_eq!(
            text(report_body(&[
                ("code", JsonScalar::Str("demo")),
                ("status", JsonScalar::Str("1")),
            ])),
            r#"{"code":"demo","status":"1"}"#
        );
        assert_eq!(
            text(report_body(&[
                ("host", JsonScalar::Str("r1/lan")),
                ("load", JsonScalar::Float(0.25)),
                ("mem", JsonScalar::UInt(65536)),
                ("delta", JsonScalar::Int(-3)),
                ("up", JsonScalar::Bool(true)),
                ("note", JsonScalar::Null),
                ("名", JsonScalar::Str("😀")),
            ])),
            r#"{"host":"r1\/lan","load":0.25,"mem":65536,"delta":-3,"up":true,"note":null,"\u540d":"\ud83d\ude00"}"#
        );
        assert_eq!(text(report_body(&[])), "{}");
    }

    #[test]
    fn messages_escape_as_expected() {
        let mut out = Vec::new();
        json::write_str(&mut out, MSG_BAD_BODY);
        assert_eq!(text(out), format!("\"{BAD_BODY_ESCAPED}\""));
    }

    #[cfg(feature = "master")]
    mod master {
        use super::*;

        #[test]
        fn bad_body_reply_bytes() {
            assert_eq!(
                text(bad_body_reply(None)),
                format!(r#"{{"errCode":-1,"msg":"{BAD_BODY_ESCAPED}","data":null}}"#)
            );
            let value = serde_json::json!({"status": "1", "url": "a/b", "x": {}});
            assert_eq!(
                text(bad_body_reply(Some(&value))),
                format!(
                    r#"{{"errCode":-1,"msg":"{BAD_BODY_ESCAPED}","data":{{"status":"1","url":"a\/b","x":{{}}}}}}"#
                )
            );
        }

        #[test]
        fn subscribe_ok() {
            let sub = check_subscribe(br#"{"code":"demo","status":"1"}"#).expect("valid");
            assert_eq!(sub.code, "demo");
            assert_eq!(
                sub.body.keys().collect::<Vec<_>>(),
                ["code", "status"],
                "order kept"
            );
            assert_eq!(sub.body["status"], "1");
        }

        #[test]
        fn subscribe_code_of_any_type() {
            let code = |body: &[u8]| check_subscribe(body).expect("valid").code;
            assert_eq!(code(br#"{"code":7}"#), "7");
            assert_eq!(code(br#"{"code":1.0}"#), "1");
            assert_eq!(code(br#"{"code":true}"#), "true");
            assert_eq!(code(br#"{"code":null}"#), "null");
            assert_eq!(code(br#"{"code":""}"#), "");
            assert_eq!(code(br#"{"code":"a/\u00e9"}"#), "a/é");
            assert_eq!(
                code(br#"{"x":1,"code":{"b":[1,"/"]}}"#),
                r#"{"b":[1,"\/"]}"#
            );
        }

        #[test]
        fn subscribe_empty() {
            let err = check_subscribe(b"").expect_err("empty");
            assert_eq!(err, SubscribeError::Empty);
            assert_eq!(err.decoded(), None);
        }

        #[test]
        fn subscribe_invalid_json() {
            for body in [
                &b"{"[..],
                b"   ",
                b"{'code':1}",
                b"{\"code\":1} x",
                b"\"\xff\"",
            ] {
                let err = check_subscribe(body).expect_err("invalid");
                let SubscribeError::InvalidJson(msg) = &err else {
                    panic!("{body:?}: expected InvalidJson, got {err:?}");
                };
                assert!(!msg.is_empty());
                assert_eq!(err.decoded(), None);
                assert_eq!(
                    text(bad_body_reply(err.decoded())),
                    format!(r#"{{"errCode":-1,"msg":"{BAD_BODY_ESCAPED}","data":null}}"#)
                );
            }
        }

        #[test]
        fn subscribe_not_an_object() {
            for (body, data) in [
                (&br#"[{"code":1}]"#[..], r#"[{"code":1}]"#),
                (b"\"code\"", r#""code""#),
                (b"42", "42"),
                (b"null", "null"),
            ] {
                let err = check_subscribe(body).expect_err("not an object");
                assert!(matches!(err, SubscribeError::NotAnObject(_)), "{err:?}");
                assert_eq!(
                    text(bad_body_reply(err.decoded())),
                    format!(r#"{{"errCode":-1,"msg":"{BAD_BODY_ESCAPED}","data":{data}}}"#)
                );
            }
        }

        #[test]
        fn subscribe_missing_code() {
            for (body, data) in [
                (
                    &br#"{"status":"1","Code":"x","p":"/"}"#[..],
                    r#"{"status":"1","Code":"x","p":"\/"}"#,
                ),
                (b"{}", "{}"),
            ] {
                let err = check_subscribe(body).expect_err("no code");
                assert!(matches!(err, SubscribeError::MissingCode(_)), "{err:?}");
                assert_eq!(
                    text(bad_body_reply(err.decoded())),
                    format!(r#"{{"errCode":-1,"msg":"{BAD_BODY_ESCAPED}","data":{data}}}"#)
                );
            }
        }

        #[test]
        fn subscribe_errors_display() {
            assert_eq!(SubscribeError::Empty.to_string(), "empty subscribe body");
            assert!(
                SubscribeError::InvalidJson("EOF".into())
                    .to_string()
                    .ends_with("EOF")
            );
            assert!(
                SubscribeError::MissingCode(serde_json::json!({}))
                    .to_string()
                    .contains("code")
            );
        }
    }
}
