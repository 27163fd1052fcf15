//! The pre-shared key itself: 32 random bytes, written as 64 hex digits.
//!
//! Kept apart from the file formats so the session code that only needs the
//! bytes ([`Psk::as_bytes`]) does not depend on how keys are stored.

use std::fmt;

use super::{KeyError, Problem};

/// Length of a pre-shared key in bytes.
pub const PSK_LEN: usize = 32;

/// A 32-byte pre-shared key.
///
/// `Debug` shows only [`Psk::fingerprint`], so keys can sit in structs that
/// get logged without leaking.
#[derive(Clone, PartialEq, Eq)]
pub struct Psk([u8; PSK_LEN]);

impl Psk {
    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: [u8; PSK_LEN]) -> Psk {
        Psk(bytes)
    }

    /// Draws a fresh key from the operating system's random source.
    pub fn generate() -> Result<Psk, KeyError> {
        let mut bytes = [0u8; PSK_LEN];
        getrandom::fill(&mut bytes).map_err(KeyError::Random)?;
        Ok(Psk(bytes))
    }

    /// The raw key, for the Noise handshake.
    pub fn as_bytes(&self) -> &[u8; PSK_LEN] {
        &self.0
    }

    /// Parses exactly 64 hex digits (either case).
    pub fn from_hex(text: &str) -> Result<Psk, Problem> {
        // Check the characters first: "not hex" is the more useful message
        // when someone pasted the wrong thing entirely.
        if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Problem::NotHex);
        }
        if text.len() != PSK_LEN * 2 {
            return Err(Problem::WrongLength { found: text.len() });
        }
        let mut bytes = [0u8; PSK_LEN];
        for (byte, pair) in bytes.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
            // ok: chunks_exact(2) yields slices of exactly two bytes.
            *byte = (hex_value(pair[0]) << 4) | hex_value(pair[1]);
        }
        Ok(Psk(bytes))
    }

    /// The key as 64 lowercase hex digits: the form stored in files.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// An 8-hex-digit identifier for logs and `Debug`.
    ///
    /// It is a CRC-32 of the key: good for telling keys apart, NOT a
    /// cryptographic digest. It reveals 32 bits of information about the
    /// key, which leaves well over 200 unknown bits, so it is safe to log.
    pub fn fingerprint(&self) -> String {
        format!("{:08x}", crate::proto::crc::crc32(&self.0))
    }
}

impl fmt::Debug for Psk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Psk(fp:{})", self.fingerprint())
    }
}

/// Value of one ASCII hex digit; the caller has checked `b` is one.
fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        // Unreachable: from_hex checked is_ascii_hexdigit first.
        _ => 0,
    }
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::test_support::{HEX_A, HEX_B, psk};

    #[test]
    fn hex_round_trip_and_case() {
        let key = psk(HEX_A);
        assert_eq!(key.to_hex(), HEX_A);
        assert_eq!(key.as_bytes()[..4], [0x00, 0x11, 0x22, 0x33]);
        assert_eq!(Psk::from_hex(&HEX_A.to_uppercase()).unwrap(), key);
    }

    #[test]
    fn hex_errors() {
        assert_eq!(Psk::from_hex("xyz"), Err(Problem::NotHex));
        assert_eq!(
            Psk::from_hex(&HEX_A[1..]),
            Err(Problem::WrongLength { found: 63 })
        );
        assert_eq!(Psk::from_hex(""), Err(Problem::WrongLength { found: 0 }));
        let long = format!("{HEX_A}00");
        assert_eq!(
            Psk::from_hex(&long),
            Err(Problem::WrongLength { found: 66 })
        );
    }

    #[test]
    fn debug_hides_the_secret() {
        let key = psk(HEX_A);
        let shown = format!("{key:?}");
        assert!(!shown.contains(&HEX_A[..16]), "{shown}");
        assert!(shown.contains(&key.fingerprint()));
        assert_eq!(key.fingerprint().len(), 8);
        assert_ne!(key.fingerprint(), psk(HEX_B).fingerprint());
    }

    #[test]
    fn generate_differs() {
        let a = Psk::generate().unwrap();
        let b = Psk::generate().unwrap();
        assert_ne!(a, b);
    }

    proptest::proptest! {
        #[test]
        fn prop_hex_round_trip(bytes in proptest::array::uniform32(proptest::num::u8::ANY)) {
            let key = Psk::from_bytes(bytes);
            proptest::prop_assert_eq!(Psk::from_hex(&key.to_hex()), Ok(key));
        }
    }
}
