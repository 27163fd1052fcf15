//! zlib (RFC 1950) bodies, both directions, with the inflated size capped.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};

use miniz_oxide::DataFormat;
use miniz_oxide::deflate::core::{
    CompressorOxide, TDEFLFlush, TDEFLStatus, compress, create_comp_flags_from_zip_params,
};

use super::error::FrameError;

/// Bodies shorter than this are not worth trying: the zlib header, block
/// header and Adler-32 trailer take 7+ bytes, and postcard bodies are
/// already dense. Measured (benches/codec.rs): a typical 252-byte v2
/// report grows to 263 bytes and the attempt costs ~15 µs, so small
/// bodies are sent plain without trying.
const MIN_WORTH: usize = 512;

/// Compression level. The legacy master writes level 9 (`78 DA`); level 6
/// is nearly as small at a fraction of the CPU, and any level inflates the
/// same, so edge-gw uses 6 except where byte-identical legacy output is
/// wanted ([`LEGACY_LEVEL`]).
pub const DEFAULT_LEVEL: u8 = 6;
/// The legacy master's level.
pub const LEGACY_LEVEL: u8 = 9;

/// Compresses `body` if that makes it smaller; `None` means send it plain.
pub fn deflate_if_smaller(body: &[u8], level: u8) -> Option<Vec<u8>> {
    if body.len() < MIN_WORTH {
        return None;
    }
    // Give up as soon as the output reaches the input's size.
    deflate_capped(body, level, body.len())
}

/// Compresses `body` whatever the result's size (legacy peers that asked
/// for compressed replies get them).
pub fn deflate(body: &[u8], level: u8) -> Vec<u8> {
    // zlib's worst case: 5 bytes per 16 KiB stored block, plus the 2-byte
    // header and the 4-byte Adler-32.
    let bound = body.len() + body.len() / 16_384 * 5 + 5 + 6 + 64;
    deflate_capped(body, level, bound).unwrap_or_default()
}

static KEEP_COMPRESSOR: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// A compressor kept per thread once [`keep_compressor_per_thread`] is
    /// on: making one allocates and zeroes ~300 KB, which dominated the
    /// cost of compressing a small body (profile in BENCHMARKS.md).
    static COMPRESSOR: RefCell<Option<Box<CompressorOxide>>> = const { RefCell::new(None) };
}

/// Keeps one compressor per thread from now on instead of making one per
/// call. The master turns this on (it compresses all day on a fixed number
/// of threads); an agent compresses rarely and would rather not hold the
/// ~300 KB.
pub fn keep_compressor_per_thread() {
    KEEP_COMPRESSOR.store(true, Ordering::Relaxed);
}

/// zlib-compresses `body`; `None` if the output would exceed `cap` bytes.
fn deflate_capped(body: &[u8], level: u8, cap: usize) -> Option<Vec<u8>> {
    let flags = create_comp_flags_from_zip_params(level.into(), 1, 0);
    if !KEEP_COMPRESSOR.load(Ordering::Relaxed) {
        return run_deflate(&mut CompressorOxide::new(flags), body, cap);
    }
    COMPRESSOR.with(|c| {
        // A compressor is busy only inside this call, and this call does
        // not re-enter; if it ever did, fall back to a fresh one.
        let Ok(mut slot) = c.try_borrow_mut() else {
            return run_deflate(&mut CompressorOxide::new(flags), body, cap);
        };
        let d = slot.get_or_insert_with(|| Box::new(CompressorOxide::new(flags)));
        d.reset();
        d.set_format_and_level(DataFormat::Zlib, level);
        run_deflate(d, body, cap)
    })
}

fn run_deflate(d: &mut CompressorOxide, body: &[u8], cap: usize) -> Option<Vec<u8>> {
    // Most bodies shrink to well under half; grow only when needed.
    let mut out = vec![0u8; (body.len() / 2).clamp(64, cap.max(64))];
    let mut input = body;
    let mut pos = 0;
    loop {
        let (status, used, wrote) = compress(d, input, &mut out[pos..], TDEFLFlush::Finish);
        pos += wrote;
        input = input.get(used..).unwrap_or_default();
        match status {
            TDEFLStatus::Done => {
                out.truncate(pos);
                return (pos <= cap).then_some(out);
            }
            TDEFLStatus::Okay => {
                if pos >= cap {
                    return None;
                }
                let grown = (out.len() * 2).min(cap + 64);
                if grown <= out.len() {
                    return None;
                }
                out.resize(grown, 0);
            }
            // Only with bad parameters: treat as "not compressible".
            TDEFLStatus::BadParam | TDEFLStatus::PutBufFailed => return None,
        }
    }
}

/// Inflates a zlib body, refusing to produce more than `max` bytes, so a
/// zlib bomb is an error and not an allocation of its announced size.
pub fn inflate_capped(z: &[u8], max: u32) -> Result<Vec<u8>, FrameError> {
    use miniz_oxide::inflate::TINFLStatus;
    match miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(z, max as usize) {
        Ok(mut v) => {
            // miniz grows its output by doubling, so capacity may pass
            // the cap (up to ~2x) while the length does not: give it back.
            v.shrink_to_fit();
            Ok(v)
        }
        Err(e) => Err(match e.status {
            TINFLStatus::HasMoreOutput => FrameError::InflateTooLarge { max },
            TINFLStatus::FailedCannotMakeProgress => {
                FrameError::BadCompression("truncated zlib stream")
            }
            TINFLStatus::Adler32Mismatch => FrameError::BadCompression("Adler-32 mismatch"),
            _ => FrameError::BadCompression("invalid zlib stream"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_only_when_smaller() {
        let text = b"cpu=12 mem=34 load=0.5 ".repeat(40);
        let z = deflate_if_smaller(&text, DEFAULT_LEVEL).unwrap();
        assert!(z.len() < text.len());
        assert_eq!(inflate_capped(&z, 1 << 20).unwrap(), text);
        // Short and incompressible bodies stay plain.
        assert_eq!(deflate_if_smaller(b"{\"a\":1}", DEFAULT_LEVEL), None);
        // xorshift64: incompressible enough for zlib.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert_eq!(deflate_if_smaller(&noise, DEFAULT_LEVEL), None);
    }

    #[test]
    fn same_bytes_as_miniz_with_and_without_a_kept_compressor() {
        let text = b"cpu=12 mem=34 load=0.5 iface=eth0 rx=123456 ".repeat(200);
        for keep in [false, true] {
            if keep {
                keep_compressor_per_thread();
            }
            for level in [1, DEFAULT_LEVEL, LEGACY_LEVEL] {
                for body in [&text[..600], &text[..], &b"short"[..], &[][..]] {
                    let want = miniz_oxide::deflate::compress_to_vec_zlib(body, level);
                    // Twice: a reused compressor must be reset between calls.
                    assert_eq!(deflate(body, level), want);
                    assert_eq!(deflate(body, level), want);
                    assert_eq!(
                        inflate_capped(&deflate(body, level), 1 << 20).unwrap(),
                        body
                    );
                }
            }
        }
    }

    #[test]
    fn legacy_level_writes_78da() {
        let z = deflate_if_smaller(&[b'a'; 600], LEGACY_LEVEL).unwrap();
        assert_eq!(&z[..2], &[0x78, 0xda]);
    }

    #[test]
    fn bomb_is_an_error() {
        // 16 MiB of zeros deflates to ~16 KiB; a 1 MiB cap must refuse it.
        let z = miniz_oxide::deflate::compress_to_vec_zlib(&vec![0u8; 16 << 20], 9);
        assert!(z.len() < 64 << 10);
        assert_eq!(
            inflate_capped(&z, 1 << 20),
            Err(FrameError::InflateTooLarge { max: 1 << 20 })
        );
        // Exactly at the cap is fine.
        let z = miniz_oxide::deflate::compress_to_vec_zlib(&vec![7u8; 1000], 9);
        assert_eq!(inflate_capped(&z, 1000).unwrap().len(), 1000);
        assert!(inflate_capped(&z, 999).is_err());
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(matches!(
            inflate_capped(b"not zlib at all", 1000),
            Err(FrameError::BadCompression(_))
        ));
        let mut z = miniz_oxide::deflate::compress_to_vec_zlib(&[b'x'; 100], 6);
        let n = z.len();
        z[n - 1] ^= 0xff; // break the Adler-32
        assert!(matches!(
            inflate_capped(&z, 1000),
            Err(FrameError::BadCompression(_))
        ));
        assert!(inflate_capped(&z[..n / 2], 1000).is_err());
    }
}
