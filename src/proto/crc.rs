//! CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320: zlib's and
//! `crc32fast::hash`'s) for frame headers and key fingerprints.
//!
//! Bytewise with a 1 KiB table built at compile time. Everything this
//! checks is short (a header's first 8 bytes, a 32-byte key), where
//! `crc32fast`'s 16 KiB slice-by-16 table and SIMD paths buy nothing, but
//! cost ~16 KB of flash on a router. The master's push log, which sums
//! whole records, keeps `crc32fast`.

/// The lookup table: entry `i` is the CRC of byte `i` alone.
const TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            bit += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// The CRC-32 of `data`, equal to `crc32fast::hash(data)`.
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c = TABLE[usize::from((c as u8) ^ b)] ^ (c >> 8);
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn check_values() {
        // The standard check value, the empty input, and one header of the
        // spec (the same vectors as `header::tests`).
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(&[1, 5, 0, 0, 0x49, 0, 0, 0]), 0x1dac_e7e7);
    }

    proptest! {
        #[test]
        fn equals_crc32fast(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
            prop_assert_eq!(crc32(&data), crc32fast::hash(&data));
        }
    }
}
