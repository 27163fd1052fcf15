//! Property tests of the wire codec and of the sessions' input handling.
//!
//! The unit tests next to the code check chosen examples; these check rules
//! that must hold for *every* input: the decoder never panics and its memory
//! stays bounded whatever bytes arrive in whatever split; every v2 message
//! survives every encoding option; a sealed frame is either the original or
//! an error; any body decodes or fails cleanly as any type; and a master or
//! agent fed garbage always ends closed with exactly one reason.
//!
//! 256 cases per property keep the suite at a few seconds in debug builds;
//! `PROPTEST_CASES=5000 cargo test --test codec_props` is a soak run.
//! The plain `#[test]`s at the end pin bugs these properties found.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

use edge_gw::proto::compress::deflate_if_smaller;
use edge_gw::proto::crypto::CipherState;
use edge_gw::proto::decoder::MAX_FEED;
use edge_gw::proto::frame::{Compress, Encode, encode, open_body};
use edge_gw::proto::v2::{
    AckStatus, Close, CloseCode, Event, FsUsage, Health, Heartbeat, HeartbeatAck, Hello, Memory,
    Message, NetIf, Push, PushAck, Report, Role, Scope, Subscribe, Temperature, Welcome,
};
use edge_gw::proto::{
    DEFAULT_MAX_FRAME, Frame, FrameDecoder, FrameError, HEADER_LEN, Header, MsgType, UUID_LEN,
    Uuid, Version,
};

/// Cases per property; `PROPTEST_CASES` in the environment overrides it.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        // No regression files: this suite owns only its source file. A
        // failure prints the minimal input; pin it as a plain #[test].
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// Stream helpers
// ---------------------------------------------------------------------------

/// What a decoder made of a byte stream: the frames, then the error that
/// stopped it (if any).
type Decoded = (Vec<Frame>, Option<FrameError>);

/// Feeds `stream` to a fresh decoder in chunks of the given sizes (the last
/// size repeats), draining after every feed as the API requires, and calls
/// `check` on the decoder after each drain.
fn decode_in_chunks(
    stream: &[u8],
    sizes: &[usize],
    max_frame: u32,
    mut check: impl FnMut(&FrameDecoder),
) -> Decoded {
    let mut d = FrameDecoder::new(max_frame);
    let mut frames = Vec::new();
    let mut rest = stream;
    let mut i = 0;
    while !rest.is_empty() {
        let want = sizes.get(i).or(sizes.last()).copied().unwrap_or(rest.len());
        i += 1;
        let (chunk, tail) = rest.split_at(want.clamp(1, rest.len()));
        rest = tail;
        if let Err(e) = d.feed(chunk) {
            return (frames, Some(e));
        }
        loop {
            match d.next_frame() {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => {
                    // A framing error is final and frees the buffer.
                    assert!(d.feed(b"x").is_err(), "decoder accepted bytes after {e}");
                    assert_eq!(d.capacity(), 0, "buffer kept after {e}");
                    return (frames, Some(e));
                }
            }
        }
        check(&d);
    }
    (frames, None)
}

fn decode_whole(stream: &[u8], max_frame: u32) -> Decoded {
    decode_in_chunks(stream, &[stream.len()], max_frame, |_| {})
}

/// Chunk sizes that repeat `sizes` until `total` bytes are covered.
fn cycled(sizes: &[usize], total: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut covered = 0;
    for &s in sizes.iter().cycle() {
        if covered >= total {
            break;
        }
        out.push(s);
        covered += s;
    }
    out
}

/// A header with a correct CRC but fields chosen freely (possibly invalid),
/// so generated streams get past the CRC check and reach the other checks.
fn raw_header(v: u8, t: u8, c: u8, z: u8, length: u32, uuid: &[u8; UUID_LEN]) -> Vec<u8> {
    let mut h = vec![v, t, c, z];
    h.extend_from_slice(&length.to_le_bytes());
    let crc = crc32fast::hash(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    h.extend_from_slice(uuid);
    h
}

/// Recomputes the CRC of a header at the start of `bytes`.
fn fix_crc(bytes: &mut [u8]) {
    let crc = crc32fast::hash(&bytes[0..8]);
    bytes[8..12].copy_from_slice(&crc.to_le_bytes());
}

/// One piece of a hostile stream: noise, or a CRC-valid header whose other
/// fields are near (and sometimes beyond) the valid ranges, with a length
/// that usually matches its body and sometimes lies.
fn arb_segment() -> impl Strategy<Value = Vec<u8>> {
    let header = (
        prop_oneof![4 => 1u8..=2, 1 => any::<u8>()],
        prop_oneof![4 => 1u8..=10, 1 => any::<u8>()],
        prop_oneof![4 => 0u8..=1, 1 => any::<u8>()],
        prop_oneof![4 => 0u8..=1, 1 => any::<u8>()],
        prop_oneof![
            4 => Just(None),
            1 => any::<u32>().prop_map(Some),
            1 => (0u32..700).prop_map(Some),
        ],
        any::<u8>(),
        vec(any::<u8>(), 0..200),
    )
        .prop_map(|(v, t, c, z, lie, u, body)| {
            let length = lie.unwrap_or((HEADER_LEN + body.len()) as u32);
            let mut out = raw_header(v, t, c, z, length, &[u; UUID_LEN]);
            out.extend_from_slice(&body);
            out
        });
    prop_oneof![3 => header, 1 => vec(any::<u8>(), 0..64)]
}

fn arb_stream() -> impl Strategy<Value = Vec<u8>> {
    vec(arb_segment(), 0..8).prop_map(|segs| segs.concat())
}

// ---------------------------------------------------------------------------
// 1. The decoder against arbitrary bytes
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    /// Any bytes in any split: no panic, the same frames and the same error
    /// as one whole feed, frames within the cap, and memory bounded by the
    /// cap (not by what a header announces). An idle decoder holds nothing.
    #[test]
    fn decoder_survives_any_bytes_in_any_split(
        stream in arb_stream(),
        sizes in vec(1usize..300, 1..20),
        max_frame in (HEADER_LEN as u32)..600,
    ) {
        let max_chunk = sizes.iter().copied().max().unwrap_or(1);
        let whole = decode_whole(&stream, max_frame);
        let chunked = decode_in_chunks(&stream, &sizes, max_frame, |d| {
            assert!(d.buffered() <= max_frame as usize + MAX_FEED);
            // Amortised growth at most doubles what is needed: one partial
            // frame, the consumed prefix of this feed, and one chunk. An
            // allocation sized by an unchecked header length breaks this.
            let bound = 2 * (2 * max_frame as usize + max_chunk);
            assert!(d.capacity() <= bound, "capacity {} > {bound}", d.capacity());
            if d.buffered() == 0 {
                assert_eq!(d.capacity(), 0, "an idle decoder keeps no buffer");
            }
        });
        prop_assert_eq!(&chunked, &whole);
        let bytes_one = decode_in_chunks(&stream, &[1], max_frame, |_| {});
        prop_assert_eq!(&bytes_one, &whole);
        for f in &whole.0 {
            prop_assert!(f.header.length <= max_frame);
            prop_assert_eq!(f.body.len() + HEADER_LEN, f.header.length as usize);
        }
    }

    /// A sender that ignores the feed limit is refused, not buffered.
    #[test]
    fn oversized_feed_is_refused(max_frame in (HEADER_LEN as u32)..4096, extra in 1usize..100) {
        let mut d = FrameDecoder::new(max_frame);
        let limit = max_frame as usize + MAX_FEED;
        // A partial header, so nothing can be consumed.
        prop_assert!(d.feed(&[2u8; 10]).is_ok());
        let r = d.feed(&vec![0u8; limit - 10 + extra]);
        let is_full = matches!(r, Err(FrameError::BufferFull { .. }));
        prop_assert!(is_full, "{:?}", r);
        prop_assert_eq!(d.capacity(), 0);
    }
}

// ---------------------------------------------------------------------------
// Message strategies
// ---------------------------------------------------------------------------

fn text() -> impl Strategy<Value = String> {
    // Printable text including multi-byte characters.
    "\\PC{0,16}"
}

fn arb_scope() -> impl Strategy<Value = Scope> {
    prop_oneof![Just(Scope::All), text().prop_map(Scope::Group)]
}

fn arb_close_code() -> impl Strategy<Value = CloseCode> {
    // Through from_u16, so `Other(n)` never shadows a named code (those
    // would decode as the named variant and not round-trip).
    any::<u16>().prop_map(CloseCode::from_u16)
}

/// Opaque bytes: sometimes random, sometimes one repeated byte, so that
/// `IfSmaller` really compresses some of the frames.
fn blob() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..300),
        (any::<u8>(), 0usize..1500).prop_map(|(b, n)| vec![b; n]),
    ]
}

fn arb_health() -> impl Strategy<Value = Health> {
    let net = (text(), any::<[u64; 6]>()).prop_map(|(name, c)| NetIf {
        name,
        rx_bytes: c[0],
        tx_bytes: c[1],
        rx_packets: c[2],
        tx_packets: c[3],
        rx_errors: c[4],
        tx_errors: c[5],
    });
    let fs = (text(), any::<u64>(), any::<u64>()).prop_map(|(mount, total_kb, avail_kb)| FsUsage {
        mount,
        total_kb,
        avail_kb,
    });
    let temp = (text(), any::<i32>()).prop_map(|(zone, milli_c)| Temperature { zone, milli_c });
    let memory = any::<[u64; 5]>().prop_map(|m| Memory {
        total_kb: m[0],
        available_kb: m[1],
        free_kb: m[2],
        buffers_kb: m[3],
        cached_kb: m[4],
    });
    (
        (any::<u64>(), any::<u16>(), vec(any::<u16>(), 0..8)),
        (any::<[u32; 3]>(), memory, any::<u32>()),
        (vec(net, 0..4), vec(fs, 0..4), vec(temp, 0..4)),
        (any::<Option<u32>>(), vec((text(), text()), 0..4)),
    )
        .prop_map(
            |(
                (uptime_s, cpu_permille, cpu_cores),
                (load_x100, memory, processes),
                (net, fs, temps),
                (conntrack, custom),
            )| Health {
                uptime_s,
                cpu_permille,
                cpu_cores,
                load_x100,
                memory,
                processes,
                net,
                fs,
                temps,
                conntrack,
                custom,
            },
        )
}

fn arb_report() -> impl Strategy<Value = Report> {
    (any::<(u32, u64, u32, u32)>(), arb_health()).prop_map(
        |((seq, unix_ms, age_ms, dropped), health)| Report {
            seq,
            unix_ms,
            age_ms,
            dropped,
            health,
        },
    )
}

/// Every v2 message type, with varied contents.
fn arb_message() -> impl Strategy<Value = Message> {
    let role = prop_oneof![Just(Role::Agent), Just(Role::Subscriber)];
    let status = prop_oneof![Just(AckStatus::Delivered), Just(AckStatus::Duplicate)];
    prop_oneof![
        (any::<u16>(), role, text(), text(), any::<u32>()).prop_map(
            |(minor, role, group, software, interval_ms)| Message::Hello(Hello {
                minor,
                role,
                group,
                software,
                interval_ms,
                inbox: None,
            })
        ),
        (any::<(u16, u32, u8, u64)>(), text()).prop_map(
            |((minor, heartbeat_ms, miss_limit, unix_ms), software)| Message::Welcome(Welcome {
                minor,
                heartbeat_ms,
                miss_limit,
                unix_ms,
                software,
            })
        ),
        any::<u32>().prop_map(|seq| Message::Heartbeat(Heartbeat { seq })),
        any::<(u32, u64)>()
            .prop_map(|(seq, unix_ms)| Message::HeartbeatAck(HeartbeatAck { seq, unix_ms })),
        arb_scope().prop_map(|scope| Message::Subscribe(Subscribe { scope })),
        (any::<u64>(), text(), text(), blob()).prop_map(|(id, sender, group, body)| {
            Message::Push(Push {
                id,
                sender,
                group,
                body,
            })
        }),
        arb_report().prop_map(Message::Report),
        (any::<u64>(), status).prop_map(|(id, status)| Message::PushAck(PushAck { id, status })),
        (arb_close_code(), text())
            .prop_map(|(code, reason)| Message::Close(Close { code, reason })),
        (vec(any::<u8>(), 0..33), text(), arb_report()).prop_map(|(agent, group, report)| {
            Message::Event(Event {
                agent,
                group,
                report,
            })
        }),
    ]
}

// ---------------------------------------------------------------------------
// 2. Encode → decode round trip
// ---------------------------------------------------------------------------

/// One way of encoding frames.
#[derive(Clone, Copy, Debug)]
struct Flags {
    version: Version,
    compress: Compress,
    /// v2: sealed with session keys. v1: the "reply encrypted" flag, which
    /// says nothing about the body (v1 has no sealing).
    cipher: bool,
}

/// Every flag combination the protocol allows: v1/v2 × Never/IfSmaller/
/// Always × cipher on/off (sealed in v2, the legacy flag in v1).
fn all_flags(level: u8) -> Vec<Flags> {
    let mut out = Vec::new();
    for version in [Version::V1, Version::V2] {
        for compress in [
            Compress::Never,
            Compress::IfSmaller(level),
            Compress::Always(level),
        ] {
            for cipher in [false, true] {
                out.push(Flags {
                    version,
                    compress,
                    cipher,
                });
            }
        }
    }
    out
}

/// The header type a message travels under: v1 knows only types 1–7, so
/// v2-only messages ride as a Report there (the frame layer does not care
/// what the body holds).
fn wire_type(version: Version, m: &Message) -> MsgType {
    MsgType::from_u8(version, m.msg_type().as_u8()).unwrap_or(MsgType::Report)
}

fn uuid_of(b: u8) -> Uuid {
    Uuid([b; UUID_LEN])
}

proptest! {
    #![proptest_config(config(256))]

    /// Every message, under every flag combination, comes back identical
    /// whether the stream arrives whole, one byte at a time, or in random
    /// splits, and the first frame survives a split at every byte position.
    #[test]
    fn every_message_round_trips_under_every_flag_combination(
        msgs in vec(arb_message(), 1..5),
        level in 0u8..=10,
        key in any::<[u8; 32]>(),
        uuid in any::<u8>(),
        sizes in vec(1usize..200, 1..12),
    ) {
        for flags in all_flags(level) {
            let sealed = flags.cipher && flags.version == Version::V2;
            let mut tx = CipherState::new(&key);
            let mut stream = Vec::new();
            let mut first_len = 0;
            for m in &msgs {
                let t = wire_type(flags.version, m);
                let e = Encode {
                    version: flags.version,
                    msg_type: t,
                    uuid: uuid_of(uuid),
                    compress: flags.compress,
                    v1_cipher_flag: flags.cipher,
                    max_frame: DEFAULT_MAX_FRAME,
                };
                let body = m.to_body();
                let bytes = encode(&e, &body, sealed.then_some(&mut tx)).unwrap();
                // The header says exactly what was done to the body.
                let head: &[u8; HEADER_LEN] = bytes.first_chunk().unwrap();
                let h = Header::parse(head, DEFAULT_MAX_FRAME).unwrap();
                let compressed = match flags.compress {
                    Compress::Never => false,
                    Compress::IfSmaller(l) => deflate_if_smaller(&body, l).is_some(),
                    Compress::Always(_) => true,
                };
                prop_assert_eq!(
                    (h.version, h.msg_type, h.cipher, h.compress, h.length as usize, h.uuid),
                    (flags.version, t, flags.cipher, compressed, bytes.len(), uuid_of(uuid)),
                    "{:?}", flags
                );
                if first_len == 0 {
                    first_len = bytes.len();
                }
                stream.extend_from_slice(&bytes);
            }

            // Many frames in one feed, one byte per feed, random splits.
            let whole = decode_whole(&stream, DEFAULT_MAX_FRAME);
            prop_assert_eq!(whole.1.as_ref(), None, "{:?}", flags);
            prop_assert_eq!(whole.0.len(), msgs.len());
            let one = decode_in_chunks(&stream, &[1], DEFAULT_MAX_FRAME, |_| {});
            prop_assert_eq!(&one, &whole, "{:?} one byte at a time", flags);
            let sizes = cycled(&sizes, stream.len());
            let split = decode_in_chunks(&stream, &sizes, DEFAULT_MAX_FRAME, |_| {});
            prop_assert_eq!(&split, &whole, "{:?} split {:?}", flags, sizes);

            // The first frame split at every interior byte position (two
            // feeds; no split at all is the whole-stream case above).
            let first = &stream[..first_len];
            for p in 1..first_len {
                let got = decode_in_chunks(first, &[p, first_len], DEFAULT_MAX_FRAME, |_| {});
                prop_assert_eq!(got.0.as_slice(), &whole.0[..1], "{:?} split at {}", flags, p);
                prop_assert_eq!(got.1, None);
            }

            // Opened in order with the peer's key: the original bodies.
            let mut rx = CipherState::new(&key);
            for (frame, m) in whole.0.into_iter().zip(&msgs) {
                let t = frame.header.msg_type;
                let body = open_body(frame, sealed.then_some(&mut rx), DEFAULT_MAX_FRAME);
                prop_assert_eq!(body.as_ref(), Ok(&m.to_body()), "{:?}", flags);
                if flags.version == Version::V2 {
                    prop_assert_eq!(Message::decode(t, &body.unwrap()), Ok(m.clone()));
                }
            }
        }
    }

    /// Arbitrary bodies (not just messages) survive every combination too:
    /// the frame layer must be transparent to any bytes, including empty.
    #[test]
    fn any_body_round_trips(body in blob(), level in 0u8..=10, key in any::<[u8; 32]>()) {
        for flags in all_flags(level) {
            let sealed = flags.cipher && flags.version == Version::V2;
            let e = Encode {
                version: flags.version,
                msg_type: MsgType::Report,
                uuid: Uuid::ZERO,
                compress: flags.compress,
                v1_cipher_flag: flags.cipher,
                max_frame: DEFAULT_MAX_FRAME,
            };
            let mut tx = CipherState::new(&key);
            let bytes = encode(&e, &body, sealed.then_some(&mut tx)).unwrap();
            let (mut frames, err) = decode_whole(&bytes, DEFAULT_MAX_FRAME);
            prop_assert_eq!(err, None);
            prop_assert_eq!(frames.len(), 1);
            let mut rx = CipherState::new(&key);
            let opened = open_body(frames.remove(0), sealed.then_some(&mut rx), DEFAULT_MAX_FRAME);
            prop_assert_eq!(opened, Ok(body.clone()), "{:?}", flags);
        }
    }
}

// ---------------------------------------------------------------------------
// 3. Sealed frames: the original or an error
// ---------------------------------------------------------------------------

fn arb_compress() -> impl Strategy<Value = Compress> {
    prop_oneof![
        Just(Compress::Never),
        (0u8..=10).prop_map(Compress::IfSmaller),
        (0u8..=10).prop_map(Compress::Always),
    ]
}

fn seal(key: &[u8; 32], bodies: &[Vec<u8>], compress: Compress) -> Vec<u8> {
    let mut tx = CipherState::new(key);
    let e = Encode {
        version: Version::V2,
        msg_type: MsgType::Report,
        uuid: uuid_of(b'u'),
        compress,
        v1_cipher_flag: false,
        max_frame: DEFAULT_MAX_FRAME,
    };
    bodies
        .iter()
        .flat_map(|b| encode(&e, b, Some(&mut tx)).unwrap())
        .collect()
}

/// Decodes `stream` and opens every frame in order with one receiving
/// cipher, as a session does; returns the bodies that opened.
fn open_all(stream: &[u8], key: &[u8; 32]) -> Vec<Vec<u8>> {
    let (frames, _) = decode_whole(stream, DEFAULT_MAX_FRAME);
    let mut rx = CipherState::new(key);
    frames
        .into_iter()
        .filter_map(|f| open_body(f, Some(&mut rx), DEFAULT_MAX_FRAME).ok())
        .collect()
}

/// An edit of a byte stream.
#[derive(Clone, Debug)]
enum Edit {
    Xor(Index, u8),
    Truncate(Index),
    Insert(Index, u8),
    Remove(Index),
    /// Recompute the first header's CRC, as an attacker who knows the
    /// format would, so that edits there reach the later checks.
    FixCrc,
}

fn arb_edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<Index>(), 1u8..=255).prop_map(|(i, x)| Edit::Xor(i, x)),
        1 => any::<Index>().prop_map(Edit::Truncate),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        1 => any::<Index>().prop_map(Edit::Remove),
        2 => Just(Edit::FixCrc),
    ]
}

fn apply(bytes: &mut Vec<u8>, edit: &Edit) {
    if bytes.is_empty() {
        return;
    }
    match edit {
        Edit::Xor(i, x) => {
            let i = i.index(bytes.len());
            bytes[i] ^= x;
        }
        Edit::Truncate(i) => bytes.truncate(i.index(bytes.len())),
        Edit::Insert(i, b) => bytes.insert(i.index(bytes.len() + 1), *b),
        Edit::Remove(i) => {
            bytes.remove(i.index(bytes.len()));
        }
        Edit::FixCrc => {
            if bytes.len() >= HEADER_LEN {
                fix_crc(bytes);
            }
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// One flipped bit anywhere in a sealed frame is always an error: the
    /// CRC catches it in bytes 0..12 (CRC-32 detects every single-bit
    /// error), the AEAD everywhere else, including in the uuid, which the
    /// CRC does not cover, and when the attacker also fixes the CRC.
    #[test]
    fn a_flipped_bit_in_a_sealed_frame_is_always_an_error(
        key in any::<[u8; 32]>(),
        body in blob(),
        compress in arb_compress(),
        bit in any::<Index>(),
        recompute_crc in any::<bool>(),
    ) {
        let sealed = seal(&key, std::slice::from_ref(&body), compress);
        // Control: untouched, it opens to the original.
        prop_assert_eq!(open_all(&sealed, &key), vec![body.clone()]);

        let mut bad = sealed.clone();
        let bit = bit.index(bad.len() * 8);
        bad[bit / 8] ^= 1 << (bit % 8);
        // Fixing the CRC after flipping a bit of the CRC itself would undo
        // the flip; there the flip stands alone.
        let in_crc = (8 * 8..12 * 8).contains(&bit);
        let recompute_crc = recompute_crc && !in_crc;
        if recompute_crc {
            fix_crc(&mut bad);
        }
        let (frames, err) = decode_whole(&bad, DEFAULT_MAX_FRAME);
        if bit < 12 * 8 && !recompute_crc {
            let crc_caught = matches!(err, Some(FrameError::BadCrc { .. }));
            prop_assert!(crc_caught, "bit {}: {:?}", bit, err);
        }
        let mut rx = CipherState::new(&key);
        for f in frames {
            let r = open_body(f, Some(&mut rx), DEFAULT_MAX_FRAME);
            prop_assert!(r.is_err(), "bit {} flipped, yet opened: {:?}", bit, r);
        }
    }

    /// Any edits to a stream of sealed frames: whatever still opens is
    /// exactly the original body of that position in the stream (the
    /// implicit nonce pins each frame to its place), never anything else.
    #[test]
    fn mutated_sealed_streams_open_only_to_the_originals(
        key in any::<[u8; 32]>(),
        bodies in vec(blob(), 1..4),
        compress in arb_compress(),
        edits in vec(arb_edit(), 1..6),
    ) {
        let mut stream = seal(&key, &bodies, compress);
        let original = stream.clone();
        for e in &edits {
            apply(&mut stream, e);
        }
        let opened = open_all(&stream, &key);
        prop_assert!(opened.len() <= bodies.len());
        prop_assert_eq!(&opened[..], &bodies[..opened.len()]);
        if !stream.starts_with(&original) {
            // A stream changed within the original frames cannot open
            // completely: the edit is either cut off (truncation) or
            // detected. (Bytes appended after the last frame are just an
            // incomplete next frame.)
            prop_assert!(opened.len() < bodies.len(), "edits {:?} went unnoticed", edits);
        }
    }

    /// `open_body` on arbitrary frames, with or without keys, never panics;
    /// what it returns follows from the flags alone.
    #[test]
    fn open_body_on_arbitrary_frames(
        version in prop_oneof![Just(Version::V1), Just(Version::V2)],
        cipher in any::<bool>(),
        compress in any::<bool>(),
        // The body, and what it inflates to when it is an intact zlib
        // stream: random bytes, or a real stream (up to 4× the largest cap
        // when inflated), intact or with one byte changed.
        (body, inflates_to) in prop_oneof![
            vec(any::<u8>(), 0..400).prop_map(|b| (b, None)),
            (blob(), 0usize..16_000, any::<bool>(), any::<Index>(), 1u8..=255).prop_map(
                |(mut raw, pad, intact, i, x)| {
                    raw.resize(raw.len() + pad, b'p');
                    let mut z = miniz_oxide::deflate::compress_to_vec_zlib(&raw, 6);
                    if intact {
                        return (z, Some(raw));
                    }
                    let i = i.index(z.len());
                    z[i] ^= x;
                    (z, None)
                }
            ),
        ],
        key in prop::option::of(any::<[u8; 32]>()),
        max in 1u32..4096,
    ) {
        let header = Header {
            version,
            msg_type: MsgType::Report,
            cipher,
            compress,
            length: (HEADER_LEN + body.len()) as u32,
            uuid: uuid_of(7),
        };
        let frame = Frame { header, body: body.clone() };
        let mut c = key.map(|k| CipherState::new(&k));
        let r = open_body(frame, c.as_mut(), max);
        match (version, cipher, key.is_some()) {
            // A session's key state must match the flag.
            (Version::V2, true, false) | (Version::V2, false, true) => {
                prop_assert_eq!(r, Err(FrameError::CipherMismatch));
            }
            // Random bytes never authenticate (2^-128).
            (Version::V2, true, true) => prop_assert_eq!(r, Err(FrameError::Unauthentic)),
            // A caller with keys is in a sealed session and needs an
            // authenticated body; a v1 frame cannot be sealed, so it must
            // not come back as if it had been opened.
            (Version::V1, _, true) => {
                let refused = r.is_err();
                prop_assert!(refused, "v1 frame opened with session keys: {:?}", r);
            }
            // No cipher involved: the body as is, or inflated within `max`.
            _ => match r {
                Ok(b) if !compress => prop_assert_eq!(b, body),
                Ok(b) => {
                    prop_assert!(b.len() <= max as usize);
                    if let Some(raw) = inflates_to {
                        prop_assert_eq!(b, raw);
                    }
                }
                Err(FrameError::InflateTooLarge { max: m }) => {
                    prop_assert!(compress && m == max);
                    if let Some(raw) = inflates_to {
                        prop_assert!(raw.len() > max as usize);
                    }
                }
                Err(FrameError::BadCompression(_)) => {
                    prop_assert!(compress && inflates_to.is_none());
                }
                Err(e) => return Err(TestCaseError::fail(format!("unexpected {e}"))),
            },
        }
    }
}

// ---------------------------------------------------------------------------
// 4. Message::decode on arbitrary bytes
// ---------------------------------------------------------------------------

/// Arbitrary bytes, or a valid body of any type with a few bytes changed
/// (which reaches much deeper into the decoders than noise does).
fn arb_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..200),
        (arb_message(), vec((any::<Index>(), any::<u8>()), 0..4)).prop_map(|(m, edits)| {
            let mut b = m.to_body();
            if !b.is_empty() {
                for (i, v) in edits {
                    let i = i.index(b.len());
                    b[i] = v;
                }
            }
            b
        }),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    /// Any body, decoded as any type: no panic; an error names the type; a
    /// success is a message of that type that re-encodes to itself.
    #[test]
    fn message_decode_never_panics(body in arb_body()) {
        for t in MsgType::ALL {
            match Message::decode(t, &body) {
                Ok(m) => {
                    prop_assert_eq!(m.msg_type(), t);
                    prop_assert_eq!(Message::decode(t, &m.to_body()), Ok(m));
                }
                Err(FrameError::BadBody { msg_type, reason }) => {
                    prop_assert_eq!(msg_type, t.name());
                    prop_assert!(!reason.is_empty());
                }
                Err(e) => {
                    return Err(TestCaseError::fail(format!("{}: unexpected {e}", t.name())));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// 5. The master session against arbitrary input
// ---------------------------------------------------------------------------

#[cfg(all(feature = "agent", feature = "master"))]
mod session_input {
    use std::fmt::Debug;
    use std::sync::Arc;
    use std::time::Instant;

    use edge_gw::session::agent::{AgentConfig, AgentEvent, AgentSession};
    use edge_gw::session::dedup::RecentIds;
    use edge_gw::session::master::{KeyLookup, MasterConfig, MasterEvent, MasterSession};
    use edge_gw::session::{Clock, CloseInfo, TxLimits};

    use super::*;

    const PSK: [u8; 32] = [0x42; 32];

    fn agent_uuid() -> Uuid {
        Uuid::from_text("props-agent").unwrap()
    }

    /// The master's keyring: one device key.
    struct OneKey;

    impl KeyLookup for OneKey {
        fn psk_for(&self, uuid: &Uuid) -> Option<[u8; 32]> {
            (*uuid == agent_uuid()).then_some(PSK)
        }
    }

    fn now() -> Clock {
        Clock {
            mono: Instant::now(),
            unix_ms: 1_700_000_000_000,
        }
    }

    fn plain_frame(version: Version, t: MsgType, body: &[u8], compress: bool) -> Vec<u8> {
        let e = Encode {
            version,
            msg_type: t,
            uuid: agent_uuid(),
            compress: if compress {
                Compress::Always(1)
            } else {
                Compress::Never
            },
            v1_cipher_flag: false,
            max_frame: DEFAULT_MAX_FRAME,
        };
        encode(&e, body, None).unwrap()
    }

    /// Legacy bodies: valid and invalid subscriptions, a report, a key and
    /// a heartbeat reply, and broken JSON.
    fn arb_json() -> impl Strategy<Value = &'static [u8]> {
        prop_oneof![
            Just(&br#"{"code":"demo","status":"1"}"#[..]),
            Just(&br#"{"status":"1"}"#[..]),
            Just(&b"[1,2"[..]),
            Just(&b""[..]),
            Just(&br#"{"cpu":"12%","mem":"1G"}"#[..]),
            Just(&br#"{"errCode":0,"msg":"success","data":{"cipher_key":"k"}}"#[..]),
            Just(&br#"{"errCode":0,"msg":"success","data":{"heartbeat":1700000000}}"#[..]),
        ]
    }

    /// Well-formed plain frames of every type and both versions, so that
    /// input gets past the CRC and reaches the message handlers: v2 bodies
    /// from real messages, v1 bodies from [`arb_json`].
    fn arb_valid_frame() -> impl Strategy<Value = Vec<u8>> {
        let v2 = (arb_message(), any::<bool>())
            .prop_map(|(m, z)| plain_frame(Version::V2, m.msg_type(), &m.to_body(), z));
        // Mostly the types a legacy client sends (1, 3, 5, 7); the others
        // only end the session.
        let v1_type = prop_oneof![4 => prop::sample::select(vec![1u8, 3, 5, 7]), 1 => 1u8..=7];
        let v1 = (v1_type, arb_json(), any::<bool>()).prop_map(|(t, json, z)| {
            let t = MsgType::from_u8(Version::V1, t).unwrap();
            plain_frame(Version::V1, t, json, z)
        });
        prop_oneof![v2, v1]
    }

    /// Hostile input: noise, CRC-valid headers with bad fields, and valid
    /// frames, in any order.
    fn arb_tail() -> impl Strategy<Value = Vec<u8>> {
        vec(
            prop_oneof![1 => arb_segment(), 2 => arb_valid_frame()],
            0..8,
        )
        .prop_map(|frames| frames.concat())
    }

    /// The invariants of a session's event stream, checked after every
    /// input: at most one `Closed`, with a reason, always the last event,
    /// present exactly when the session says it is closed.
    fn check_events<E: Debug>(
        events: &[E],
        is_closed: bool,
        closed: impl Fn(&E) -> Option<&CloseInfo>,
    ) -> Result<(), TestCaseError> {
        let closes: Vec<&CloseInfo> = events.iter().filter_map(&closed).collect();
        prop_assert!(closes.len() <= 1, "several Closed events: {:?}", events);
        prop_assert_eq!(is_closed, closes.len() == 1, "{:?}", events);
        if let Some(c) = closes.first() {
            let last_is_close = events.last().and_then(&closed).is_some();
            prop_assert!(last_is_close, "events after Closed: {:?}", events);
            prop_assert!(!c.reason.trim().is_empty(), "{:?}", c);
            if let Some(kind) = c.frame_error {
                prop_assert!(FrameError::KINDS.contains(&kind), "{:?}", c);
            }
            if c.code == CloseCode::BadFrame {
                prop_assert!(c.frame_error.is_some(), "{:?}", c);
            }
        }
        Ok(())
    }

    /// What precedes the hostile bytes at the master, so that they reach
    /// each of its states.
    #[derive(Clone, Copy, Debug)]
    enum MasterOpening {
        Nothing,
        /// A legacy key request: the Legacy state, if v1 is enabled.
        V1KeyRequest,
        /// A plain v2 Hello: an open plaintext session, if allowed.
        PlainHello,
        /// A real agent's sealed Hello: the Confirming state.
        SealedHello,
    }

    fn master_opening(o: MasterOpening, now: Clock) -> Vec<u8> {
        match o {
            MasterOpening::Nothing => Vec::new(),
            MasterOpening::V1KeyRequest => plain_frame(Version::V1, MsgType::Hello, b"{}", false),
            MasterOpening::PlainHello => {
                let hello = Message::Hello(Hello {
                    minor: 0,
                    role: Role::Agent,
                    group: "g".into(),
                    software: "props".into(),
                    interval_ms: 1000,
                    inbox: None,
                });
                plain_frame(Version::V2, MsgType::Hello, &hello.to_body(), false)
            }
            MasterOpening::SealedHello => {
                let cfg = AgentConfig {
                    uuid: agent_uuid(),
                    psk: Some(PSK),
                    ..AgentConfig::default()
                };
                AgentSession::new(cfg, RecentIds::new(4), now, &mut edge_gw::os::OsEntropy)
                    .poll_transmit()
                    .unwrap()
            }
        }
    }

    fn arb_master_opening() -> impl Strategy<Value = MasterOpening> {
        prop_oneof![
            Just(MasterOpening::Nothing),
            Just(MasterOpening::V1KeyRequest),
            Just(MasterOpening::PlainHello),
            Just(MasterOpening::SealedHello),
        ]
    }

    /// How the agent session under test is set up.
    #[derive(Clone, Copy, Debug)]
    enum AgentOpening {
        /// Sealed v2, waiting for a Noise Welcome (which noise cannot forge).
        Sealed,
        /// Plaintext v2, then a valid plain Welcome: the open state.
        PlainWelcomed,
        /// Legacy v1: straight into the Legacy state.
        Legacy,
    }

    fn arb_agent_opening() -> impl Strategy<Value = AgentOpening> {
        prop_oneof![
            Just(AgentOpening::Sealed),
            Just(AgentOpening::PlainWelcomed),
            Just(AgentOpening::Legacy),
        ]
    }

    proptest! {
        #![proptest_config(config(256))]

        /// The master, fed anything in any split: no panic, and the event
        /// invariants hold after every input; input after the close changes
        /// nothing; a stream the decoder cannot cut always ends the session.
        #[test]
        fn master_ends_closed_with_a_reason(
            // Mostly on: "off" only refuses the first frame.
            legacy_v1 in prop::bool::weighted(0.75),
            allow_plaintext in prop::bool::weighted(0.75),
            opening in arb_master_opening(),
            tail in arb_tail(),
            sizes in vec(1usize..300, 1..12),
            // Small send queues, rarely drained, reach the slow-consumer
            // paths in the middle of every handler.
            max_frames in 1usize..5,
            drain_tx in prop::bool::weighted(0.25),
        ) {
            let now = now();
            let cfg = MasterConfig {
                legacy_v1,
                allow_plaintext,
                tx: TxLimits { max_frames, max_bytes: 1 << 20 },
                ..MasterConfig::default()
            };
            let mut m = MasterSession::new(Arc::new(cfg), now);
            let mut stream = master_opening(opening, now);
            stream.extend_from_slice(&tail);

            let mut events = Vec::new();
            let mut at = 0;
            for size in cycled(&sizes, stream.len()) {
                let end = (at + size).min(stream.len());
                let was_closed = m.is_closed();
                m.handle_input(&stream[at..end], now, &OneKey, &mut edge_gw::os::OsEntropy);
                at = end;
                let before = events.len();
                events.extend(std::iter::from_fn(|| m.poll_event()));
                prop_assert!(!was_closed || events.len() == before, "events after close");
                if drain_tx {
                    while m.poll_transmit().is_some() {}
                }
                check_events(&events, m.is_closed(), |e| match e {
                    MasterEvent::Closed(c) => Some(c),
                    _ => None,
                })?;
            }
            // If the decoder itself breaks on this stream, the session must
            // have ended (earlier, for another reason, is fine).
            if decode_whole(&stream, DEFAULT_MAX_FRAME).1.is_some() {
                prop_assert!(m.is_closed(), "stream error left it open: {:?}", events);
            }
        }

        /// The same for the agent, in each of its states.
        #[test]
        fn agent_ends_closed_with_a_reason(
            opening in arb_agent_opening(),
            tail in arb_tail(),
            sizes in vec(1usize..300, 1..12),
            max_frames in 1usize..5,
            max_pending_pushes in 0usize..3,
            drain_tx in prop::bool::weighted(0.25),
        ) {
            let now = now();
            let cfg = AgentConfig {
                uuid: agent_uuid(),
                psk: matches!(opening, AgentOpening::Sealed).then_some(PSK),
                wire: match opening {
                    AgentOpening::Legacy => Version::V1,
                    _ => Version::V2,
                },
                tx: TxLimits { max_frames, max_bytes: 1 << 20 },
                max_pending_pushes,
                ..AgentConfig::default()
            };
            let mut a = AgentSession::new(cfg, RecentIds::new(4), now, &mut edge_gw::os::OsEntropy);
            let mut stream = Vec::new();
            if let AgentOpening::PlainWelcomed = opening {
                let w = Message::Welcome(Welcome {
                    minor: 0,
                    heartbeat_ms: 1000,
                    miss_limit: 3,
                    unix_ms: 0,
                    software: "props".into(),
                });
                stream = plain_frame(Version::V2, MsgType::Welcome, &w.to_body(), false);
            }
            stream.extend_from_slice(&tail);

            let mut events = Vec::new();
            let mut at = 0;
            for size in cycled(&sizes, stream.len()) {
                let end = (at + size).min(stream.len());
                let was_closed = a.is_closed();
                a.handle_input(&stream[at..end], now);
                at = end;
                let before = events.len();
                events.extend(std::iter::from_fn(|| a.poll_event()));
                prop_assert!(!was_closed || events.len() == before, "events after close");
                if drain_tx {
                    while a.poll_transmit().is_some() {}
                }
                check_events(&events, a.is_closed(), |e| match e {
                    AgentEvent::Closed(c) => Some(c),
                    _ => None,
                })?;
            }
            if decode_whole(&stream, DEFAULT_MAX_FRAME).1.is_some() {
                prop_assert!(a.is_closed(), "stream error left it open: {:?}", events);
            }
        }
    }

    /// Found by `agent_ends_closed_with_a_reason`: an agent waiting for
    /// its Welcome that gets any other frame (here a plain Heartbeat, which
    /// is out of place and has the wrong cipher flag) must close with a
    /// reason. The session ends, but while the Welcome is handled its state
    /// is parked as `Closed`, so `close()` returns early: no `Closed` event
    /// and no Close frame.
    #[test]
    fn agent_awaiting_welcome_reports_why_it_closes() {
        let now = now();
        let cfg = AgentConfig {
            uuid: agent_uuid(),
            psk: Some(PSK),
            ..AgentConfig::default()
        };
        let mut a = AgentSession::new(cfg, RecentIds::new(4), now, &mut edge_gw::os::OsEntropy);
        let hb = Message::Heartbeat(Heartbeat { seq: 1 });
        a.handle_input(
            &plain_frame(Version::V2, MsgType::Heartbeat, &hb.to_body(), false),
            now,
        );
        assert!(a.is_closed());
        let events: Vec<_> = std::iter::from_fn(|| a.poll_event()).collect();
        assert!(
            matches!(
                events.as_slice(),
                [AgentEvent::Closed(CloseInfo {
                    code: CloseCode::Protocol,
                    ..
                })]
            ),
            "{events:?}"
        );
    }

    /// Found by the `decode_encrypted` fuzz target: `open_body` with
    /// session keys returns a v1 frame's body unauthenticated, and the
    /// master's Confirming state takes any body that opens as proof that
    /// the peer holds the keys. So replaying a recorded sealed Hello and
    /// then sending one *plain v1* frame joins the session as the victim's
    /// uuid (`sealed: true`) and delivers a forged message, with no key.
    #[test]
    fn replayed_hello_and_a_plain_v1_frame_do_not_join() {
        let now = now();
        let cfg = AgentConfig {
            uuid: agent_uuid(),
            psk: Some(PSK),
            ..AgentConfig::default()
        };
        // Recorded off the wire from the real agent.
        let hello = AgentSession::new(cfg, RecentIds::new(4), now, &mut edge_gw::os::OsEntropy)
            .poll_transmit()
            .unwrap();
        // Default master: v1 and plaintext both refused.
        let mut m = MasterSession::new(Arc::new(MasterConfig::default()), now);
        m.handle_input(&hello, now, &OneKey, &mut edge_gw::os::OsEntropy);
        assert!(m.poll_transmit().is_some(), "the Welcome");
        let forged = Message::Report(Report {
            seq: 666,
            ..Report::default()
        });
        let e = Encode {
            version: Version::V1,
            msg_type: MsgType::Report,
            uuid: agent_uuid(),
            compress: Compress::Never,
            v1_cipher_flag: true,
            max_frame: DEFAULT_MAX_FRAME,
        };
        m.handle_input(
            &encode(&e, &forged.to_body(), None).unwrap(),
            now,
            &OneKey,
            &mut edge_gw::os::OsEntropy,
        );
        let events: Vec<_> = std::iter::from_fn(|| m.poll_event()).collect();
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, MasterEvent::Joined(_) | MasterEvent::Report(_))),
            "joined without the key: {events:?}"
        );
        assert!(m.peer().is_none());
        assert!(m.is_closed(), "{events:?}");
    }

    /// Found by `master_ends_closed_with_a_reason`: a legacy push
    /// registration with a bad body, arriving when the send queue is full.
    /// Queueing the error reply closes the session as a slow consumer, and
    /// the registration handler then closes it a second time, so the shell
    /// sees two `Closed` events (it promises none follow the first).
    #[test]
    fn legacy_bad_subscribe_on_a_full_queue_closes_once() {
        let now = now();
        let cfg = MasterConfig {
            legacy_v1: true,
            tx: TxLimits {
                max_frames: 1,
                max_bytes: 1 << 20,
            },
            ..MasterConfig::default()
        };
        let mut m = MasterSession::new(Arc::new(cfg), now);
        // The heartbeat reply fills the one-frame queue (not drained).
        m.handle_input(
            &plain_frame(Version::V1, MsgType::Heartbeat, b"", false),
            now,
            &OneKey,
            &mut edge_gw::os::OsEntropy,
        );
        m.handle_input(
            &plain_frame(Version::V1, MsgType::Subscribe, b"[1", false),
            now,
            &OneKey,
            &mut edge_gw::os::OsEntropy,
        );
        assert!(m.is_closed());
        let closes: Vec<_> = std::iter::from_fn(|| m.poll_event())
            .filter_map(|e| match e {
                MasterEvent::Closed(c) => Some(c),
                _ => None,
            })
            .collect();
        assert_eq!(closes.len(), 1, "{closes:#?}");
    }
}
