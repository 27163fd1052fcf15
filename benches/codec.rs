//! Codec micro-benchmarks, std only (no criterion: it would double the
//! dependency tree for a handful of loops).
//!
//! Each case encodes or decodes one frame per iteration: encode is message
//! → body → frame bytes (compressed and/or sealed as the case says); decode
//! is bytes → `FrameDecoder` → `open_body` → message. Every case is checked
//! once for a correct result before it is timed, warmed up, then run for a
//! fixed time; the report is frames/s and MB/s of wire bytes (10^6 bytes).
//!
//! ```text
//! cargo bench --bench codec                           # ~1 s per case
//! EDGE_GW_BENCH_SECS=0.05 cargo bench --bench codec   # CI smoke run
//! cargo bench --bench codec -- sealed heartbeat       # only matching cases
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use edge_gw::proto::compress::{DEFAULT_LEVEL, LEGACY_LEVEL};
use edge_gw::proto::crypto::CipherState;
use edge_gw::proto::frame::{Compress, Encode, encode, open_body};
use edge_gw::proto::v2::{Heartbeat, Message};
use edge_gw::proto::{DEFAULT_MAX_FRAME, FrameDecoder, HEADER_LEN, MsgType, Uuid, Version};

const KEY: [u8; 32] = [0x42; 32];

#[path = "common/sample.rs"]
mod sample;

/// A router's typical report, as a message.
fn typical_report() -> Message {
    Message::Report(sample::typical_report(86_400))
}

/// A legacy agent's JSON report, as the PHP-era agents send it.
const V1_REPORT: &[u8] = br#"{"uuid":"0123456789abcdef0123456789abcdefA","time":"2024-01-01 12:00:00","cpu":"13.7%","cpu_cores":["12.0%","9.8%","20.1%","13.0%"],"load":"0.45 0.38 0.30","mem_total":"247736","mem_free":"120312","mem_available":"163420","disk":[{"path":"/","total":"14336","avail":"0"},{"path":"/tmp","total":"123868","avail":"121004"},{"path":"/overlay","total":"81920","avail":"60112"}],"net":[{"if":"eth0","rx":"8641975230","tx":"6913580247"},{"if":"wlan0","rx":"3703703670","tx":"2962962963"}],"temp":"54.3","conntrack":"312"}"#;

fn uuid() -> Uuid {
    Uuid::from_text("0123456789abcdef0123456789abcdefA").unwrap()
}

fn opts(version: Version, msg_type: MsgType, compress: Compress) -> Encode {
    Encode {
        version,
        msg_type,
        uuid: uuid(),
        compress,
        v1_cipher_flag: false,
        max_frame: DEFAULT_MAX_FRAME,
    }
}

/// One benchmark: `run` does one iteration and returns the wire bytes it
/// handled (the frame length).
struct Case {
    name: String,
    run: Box<dyn FnMut() -> usize>,
}

/// Encode and decode cases for one kind of frame. Decoding a sealed frame
/// needs the receiver's nonce to match the frame's, so each decode opens
/// the same nonce-0 frame with a fresh receiving cipher (setting up a
/// cipher is a key copy; the cost is the AEAD).
fn pair(name: &str, version: Version, msg: Body, compress: Compress, sealed: bool) -> [Case; 2] {
    let e = opts(version, msg.msg_type(), compress);
    let expected = msg.to_body();
    let frame = encode(
        &e,
        &expected,
        sealed.then(|| CipherState::new(&KEY)).as_mut(),
    )
    .unwrap();
    let frame_len = frame.len();

    let mut tx = CipherState::new(&KEY);
    let enc_msg = msg.clone();
    let encode_case = Case {
        name: format!("{name} encode"),
        run: Box::new(move || {
            let body = black_box(&enc_msg).to_body();
            let seal = if sealed { Some(&mut tx) } else { None };
            let out = encode(&e, &body, seal).unwrap();
            black_box(&out);
            out.len()
        }),
    };

    let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
    let mut decode_one = move |bytes: &[u8]| -> Body {
        decoder.feed(bytes).unwrap();
        let f = decoder.next_frame().unwrap().unwrap();
        let t = f.header.msg_type;
        let mut rx = sealed.then(|| CipherState::new(&KEY));
        let body = open_body(f, rx.as_mut(), DEFAULT_MAX_FRAME).unwrap();
        msg.decode_like(t, body)
    };
    // Checked once, untimed: a benchmark of a wrong result is worthless.
    assert_eq!(decode_one(&frame).to_body(), expected, "{name}");
    let decode_case = Case {
        name: format!("{name} decode"),
        run: Box::new(move || {
            black_box(decode_one(black_box(&frame)));
            frame_len
        }),
    };
    [encode_case, decode_case]
}

/// What a case carries: a v2 message (postcard) or a v1 JSON body, which
/// the codec passes through untouched (the master hands it on as text).
#[derive(Clone)]
enum Body {
    V2(Box<Message>),
    Raw(MsgType, Vec<u8>),
}

impl Body {
    fn msg_type(&self) -> MsgType {
        match self {
            Body::V2(m) => m.msg_type(),
            Body::Raw(t, _) => *t,
        }
    }

    fn to_body(&self) -> Vec<u8> {
        match self {
            Body::V2(m) => m.to_body(),
            Body::Raw(_, b) => b.clone(),
        }
    }

    /// Decodes `body` the way a receiver of this kind of frame does.
    fn decode_like(&self, t: MsgType, body: Vec<u8>) -> Body {
        match self {
            Body::V2(_) => Body::V2(Box::new(Message::decode(t, &body).unwrap())),
            Body::Raw(..) => Body::Raw(t, body),
        }
    }
}

fn cases() -> Vec<Case> {
    let report = Body::V2(Box::new(typical_report()));
    let v1_report = Body::Raw(MsgType::Report, V1_REPORT.to_vec());
    let heartbeat = Body::Raw(MsgType::Heartbeat, Vec::new());
    // The commonest frame of a fleet: a 5-byte heartbeat, where the AEAD's
    // fixed cost (Poly1305 key, header as associated data) is everything.
    let v2_heartbeat = Body::V2(Box::new(Message::Heartbeat(Heartbeat { seq: 1 << 20 })));
    let zlib = Compress::Always(DEFAULT_LEVEL);
    let mut out = Vec::new();
    for (name, version, body, compress, sealed) in [
        (
            "v2 report plain",
            Version::V2,
            &report,
            Compress::Never,
            false,
        ),
        ("v2 report zlib", Version::V2, &report, zlib, false),
        (
            "v2 report sealed",
            Version::V2,
            &report,
            Compress::Never,
            true,
        ),
        ("v2 report sealed+zlib", Version::V2, &report, zlib, true),
        (
            "v2 heartbeat plain",
            Version::V2,
            &v2_heartbeat,
            Compress::Never,
            false,
        ),
        (
            "v2 heartbeat sealed",
            Version::V2,
            &v2_heartbeat,
            Compress::Never,
            true,
        ),
        (
            "v1 heartbeat (45 B)",
            Version::V1,
            &heartbeat,
            Compress::Never,
            false,
        ),
        (
            "v1 report json",
            Version::V1,
            &v1_report,
            Compress::Never,
            false,
        ),
        (
            "v1 report json+zlib9",
            Version::V1,
            &v1_report,
            Compress::Always(LEGACY_LEVEL),
            false,
        ),
    ] {
        out.extend(pair(name, version, body.clone(), compress, sealed));
    }
    out
}

/// Runs `case` for about `secs` (after a warm-up of a fifth of that) and
/// returns (iterations, wire bytes, elapsed).
fn measure(case: &mut Case, secs: f64) -> (u64, u64, Duration) {
    let warm = Duration::from_secs_f64(secs / 5.0);
    let start = Instant::now();
    let mut warm_iters = 0u64;
    while warm_iters == 0 || start.elapsed() < warm {
        (case.run)();
        warm_iters += 1;
    }
    // Check the clock about every millisecond, not every iteration.
    let per_ms = warm_iters as f64 / start.elapsed().as_secs_f64() / 1000.0;
    let batch = (per_ms as u64).max(1);
    let target = Duration::from_secs_f64(secs);
    let (mut iters, mut bytes) = (0u64, 0u64);
    let start = Instant::now();
    loop {
        for _ in 0..batch {
            bytes += (case.run)() as u64;
        }
        iters += batch;
        let elapsed = start.elapsed();
        if elapsed >= target {
            return (iters, bytes, elapsed);
        }
    }
}

fn main() {
    let secs = match std::env::var("EDGE_GW_BENCH_SECS") {
        Ok(s) => match s.trim().parse::<f64>() {
            Ok(v) if v > 0.0 && v.is_finite() => v,
            _ => {
                eprintln!("EDGE_GW_BENCH_SECS must be a positive number of seconds, not {s:?}");
                std::process::exit(2);
            }
        },
        Err(_) => 1.0,
    };
    // `cargo bench` passes `--bench`; other words select cases by name.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    println!("edge-gw codec, {secs} s per case (EDGE_GW_BENCH_SECS), header {HEADER_LEN} B");
    println!(
        "{:<30} {:>7} {:>13} {:>9} {:>10}",
        "case", "bytes", "frames/s", "MB/s", "ns/frame"
    );
    for mut case in cases() {
        if !filters.is_empty() && !filters.iter().any(|f| case.name.contains(f.as_str())) {
            continue;
        }
        let (iters, bytes, elapsed) = measure(&mut case, secs);
        let s = elapsed.as_secs_f64();
        println!(
            "{:<30} {:>7} {:>13.0} {:>9.1} {:>10.0}",
            case.name,
            bytes / iters,
            iters as f64 / s,
            bytes as f64 / s / 1e6,
            s * 1e9 / iters as f64,
        );
    }
}
