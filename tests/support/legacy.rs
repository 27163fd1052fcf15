//! Legacy v1 frames written and read byte by byte, the way the original
//! PHP clients do it: no encoder from the crate, so a test checks the
//! wire format itself and not edge-gw against itself.

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::time::Duration;

/// Size of the v1 header.
pub const HEAD: usize = 45;

/// The uuid the original test clients send: 32 hex characters and a letter.
pub const CLIENT_UUID: &[u8; 33] = b"0123456789abcdef0123456789abcdefA";

/// A v1 frame with exactly these header bytes (flags may be anything, so
/// bad frames can be built too) and a correct CRC.
pub fn raw(t: u8, cipher: u8, compress: u8, body: &[u8]) -> Vec<u8> {
    let mut f = vec![1u8, t, cipher, compress];
    f.extend_from_slice(&((HEAD + body.len()) as u32).to_le_bytes());
    let crc = crc32fast::hash(&f);
    f.extend_from_slice(&crc.to_le_bytes());
    f.extend_from_slice(CLIENT_UUID);
    f.extend_from_slice(body);
    f
}

/// zlib at level 9, as PHP's `gzcompress($s, 9)` writes it (`78 DA`).
pub fn zlib(body: &[u8]) -> Vec<u8> {
    miniz_oxide::deflate::compress_to_vec_zlib(body, 9)
}

/// Inflates a zlib body.
pub fn inflate(z: &[u8]) -> Vec<u8> {
    miniz_oxide::inflate::decompress_to_vec_zlib(z).expect("a valid zlib body")
}

/// One frame as raw bytes: the 45-byte header then the body.
pub struct Raw {
    pub head: [u8; HEAD],
    pub body: Vec<u8>,
}

impl Raw {
    /// Version, type, cipher flag, compress flag.
    pub fn flags(&self) -> [u8; 4] {
        [self.head[0], self.head[1], self.head[2], self.head[3]]
    }

    /// The body, inflated when the compress flag says so.
    pub fn text(&self) -> String {
        let plain = if self.head[3] == 1 {
            inflate(&self.body)
        } else {
            self.body.clone()
        };
        String::from_utf8(plain).expect("a v1 reply is ASCII")
    }
}

/// Reads exactly one frame, checking the length field and the CRC.
pub fn read(tcp: &mut TcpStream) -> Raw {
    let mut head = [0u8; HEAD];
    tcp.read_exact(&mut head).expect("a frame header");
    let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
    let crc = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    assert_eq!(crc, crc32fast::hash(&head[..8]), "head_crc");
    assert!(len >= HEAD, "length {len}");
    let mut body = vec![0u8; len - HEAD];
    tcp.read_exact(&mut body).expect("a frame body");
    Raw { head, body }
}

/// Everything the master writes until it closes the connection.
pub fn read_to_close(tcp: &mut TcpStream) -> Vec<u8> {
    let mut rest = Vec::new();
    tcp.read_to_end(&mut rest)
        .expect("the master closes the connection");
    rest
}

/// Whether the connection is still open with nothing to read right now.
pub fn open_and_quiet(tcp: &mut TcpStream) -> bool {
    tcp.set_nonblocking(true).expect("nonblocking");
    let mut b = [0u8; 1];
    let r = tcp.read(&mut b);
    tcp.set_nonblocking(false).expect("blocking");
    matches!(r, Err(e) if e.kind() == ErrorKind::WouldBlock)
}

/// A connection to `addr` with a bounded read timeout.
pub fn connect(addr: &str) -> TcpStream {
    let tcp = TcpStream::connect(addr).expect("connect to the master");
    tcp.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    tcp
}
