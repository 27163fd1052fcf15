//! Version 2 security: a Noise `NNpsk0` handshake, then ChaCha20-Poly1305
//! frames with the 45-byte header as associated data.
//!
//! The handshake is the Noise protocol framework's
//! `Noise_NNpsk0_25519_ChaChaPoly_SHA256`, run by the `snow` crate (see
//! `docs/security.md` for the threat model). The prologue binds the agent's
//! uuid, so a key for one device cannot open a session for another.
//!
//! After the handshake, each direction has its own key from Noise's
//! `Split()`. Frames are sealed exactly as a Noise `CipherState` would
//! (`EncryptWithAd`: 96-bit nonce = 32 zero bits ‖ 64-bit little-endian
//! counter), with the frame's header as the associated data. Because the
//! counter is implicit and TCP is ordered, a replayed, reordered, dropped or
//! tampered frame fails authentication.

use std::fmt;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};

use super::error::FrameError;
use super::header::Uuid;

/// The Noise protocol name; it is hashed into every session.
pub const NOISE_PARAMS: &str = "Noise_NNpsk0_25519_ChaChaPoly_SHA256";
/// Authentication tag length added to every sealed body.
pub const TAG_LEN: usize = 16;
/// Largest handshake payload accepted or sent (Hello / Welcome bodies).
pub const MAX_HANDSHAKE_PAYLOAD: usize = 4096;
/// Handshake message overhead: ephemeral key (32) + tag (16).
const HANDSHAKE_OVERHEAD: usize = 48;
const PROLOGUE_TAG: &[u8] = b"edge-gw/2 NNpsk0";

/// Why a handshake failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CryptoError {
    /// The peer's handshake message did not authenticate: it was made with
    /// another pre-shared key, for another uuid, or corrupted.
    WrongKey,
    /// A handshake message of impossible size or shape.
    Malformed(&'static str),
    /// The handshake was driven out of order (a bug in the caller).
    State(&'static str),
    /// The handshake asked for more randomness than the caller supplied
    /// (or the caller's random source failed).
    Random,
}

impl fmt::Display for CryptoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CryptoError::WrongKey => write!(
                f,
                "handshake authentication failed: the peer holds a different pre-shared key \
                 for this uuid (or the message was corrupted)"
            ),
            CryptoError::Malformed(why) => write!(f, "malformed handshake message: {why}"),
            CryptoError::State(why) => write!(f, "handshake state error: {why}"),
            CryptoError::Random => write!(f, "random source failed"),
        }
    }
}

impl std::error::Error for CryptoError {}

fn map_snow(e: snow::Error) -> CryptoError {
    match e {
        snow::Error::Decrypt => CryptoError::WrongKey,
        snow::Error::Input => CryptoError::Malformed("bad length"),
        snow::Error::Dh => CryptoError::Malformed("invalid ephemeral key"),
        snow::Error::Rng => CryptoError::Random,
        _ => CryptoError::State("unexpected handshake state"),
    }
}

/// The only randomness a handshake consumes: the 32 bytes of this side's
/// ephemeral X25519 private key.
///
/// The caller supplies it (the OS random source in the shells, fixed bytes
/// in tests), so the protocol core reads no random source of its own and a
/// test can replay a handshake byte for byte. Each handshake needs fresh
/// bytes: reusing them across handshakes with the same key would let an
/// observer link sessions. Not zeroised (see docs/security.md).
#[derive(Clone, Copy)]
pub struct Ephemeral(pub [u8; 32]);

impl fmt::Debug for Ephemeral {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Ephemeral(..)")
    }
}

/// snow's primitives (X25519 and ChaCha20-Poly1305 from its default
/// resolver, SHA-256 from the same `sha2` crate through [`Sha256`]) with the
/// caller's [`Ephemeral`] as the only random source.
struct CallerRandom(Ephemeral);

impl snow::resolvers::CryptoResolver for CallerRandom {
    fn resolve_rng(&self) -> Option<Box<dyn snow::types::Random>> {
        Some(Box::new(OneShot(Some(self.0))))
    }

    fn resolve_dh(&self, choice: &snow::params::DHChoice) -> Option<Box<dyn snow::types::Dh>> {
        snow::resolvers::DefaultResolver.resolve_dh(choice)
    }

    fn resolve_hash(
        &self,
        choice: &snow::params::HashChoice,
    ) -> Option<Box<dyn snow::types::Hash>> {
        // Not the default resolver's: that one would also link SHA-512 (and
        // any other hash snow is built with) into every binary, ~23 KB on a
        // MIPS router, for a protocol name that only ever says SHA256.
        match choice {
            snow::params::HashChoice::SHA256 => Some(Box::new(Sha256::default())),
            _ => None,
        }
    }

    fn resolve_cipher(
        &self,
        choice: &snow::params::CipherChoice,
    ) -> Option<Box<dyn snow::types::Cipher>> {
        snow::resolvers::DefaultResolver.resolve_cipher(choice)
    }
}

/// SHA-256 for snow: the `sha2` crate's, exactly as snow's own (private)
/// `HashSHA256` wraps it; HMAC and HKDF are snow's trait defaults.
#[derive(Default)]
struct Sha256(sha2::Sha256);

impl snow::types::Hash for Sha256 {
    fn name(&self) -> &'static str {
        "SHA256"
    }

    fn block_len(&self) -> usize {
        64
    }

    fn hash_len(&self) -> usize {
        32
    }

    fn reset(&mut self) {
        self.0 = sha2::Sha256::default();
    }

    fn input(&mut self, data: &[u8]) {
        sha2::Digest::update(&mut self.0, data);
    }

    fn result(&mut self, out: &mut [u8]) {
        // snow hands a buffer of its largest hash length; zip instead of
        // indexing, so a shorter one could never panic.
        let digest = sha2::Digest::finalize_reset(&mut self.0);
        for (o, d) in out.iter_mut().zip(digest.iter()) {
            *o = *d;
        }
    }
}

/// Hands out the ephemeral key once; a second request (which `NNpsk0`
/// never makes) fails as [`CryptoError::Random`] rather than repeating it.
struct OneShot(Option<Ephemeral>);

impl snow::types::Random for OneShot {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        match self.0.take() {
            Some(Ephemeral(bytes)) if dest.len() <= bytes.len() => {
                dest.copy_from_slice(&bytes[..dest.len()]);
                Ok(())
            }
            _ => Err(snow::Error::Rng),
        }
    }
}

/// One side of a two-message handshake in progress.
pub struct Handshake {
    state: snow::HandshakeState,
    initiator: bool,
}

impl fmt::Debug for Handshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handshake")
            .field("initiator", &self.initiator)
            .finish_non_exhaustive()
    }
}

impl Handshake {
    /// The agent's side: writes message 1 (Hello), reads message 2.
    /// `ephemeral` is the randomness of this handshake (see [`Ephemeral`]).
    pub fn initiator(
        psk: &[u8; 32],
        uuid: &Uuid,
        ephemeral: Ephemeral,
    ) -> Result<Handshake, CryptoError> {
        Self::build(psk, uuid, ephemeral, true)
    }

    /// The master's side: reads message 1, writes message 2 (Welcome).
    pub fn responder(
        psk: &[u8; 32],
        uuid: &Uuid,
        ephemeral: Ephemeral,
    ) -> Result<Handshake, CryptoError> {
        Self::build(psk, uuid, ephemeral, false)
    }

    fn build(
        psk: &[u8; 32],
        uuid: &Uuid,
        ephemeral: Ephemeral,
        initiator: bool,
    ) -> Result<Handshake, CryptoError> {
        let params = NOISE_PARAMS
            .parse()
            .map_err(|_| CryptoError::State("noise parameters"))?;
        let mut prologue = [0u8; PROLOGUE_TAG.len() + 33];
        prologue[..PROLOGUE_TAG.len()].copy_from_slice(PROLOGUE_TAG);
        prologue[PROLOGUE_TAG.len()..].copy_from_slice(&uuid.0);
        let builder = snow::Builder::with_resolver(params, Box::new(CallerRandom(ephemeral)))
            .psk(0, psk)
            .map_err(map_snow)?
            .prologue(&prologue)
            .map_err(map_snow)?;
        let state = if initiator {
            builder.build_initiator()
        } else {
            builder.build_responder()
        }
        .map_err(map_snow)?;
        Ok(Handshake { state, initiator })
    }

    /// Writes the next handshake message carrying `payload`.
    pub fn write(&mut self, payload: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if payload.len() > MAX_HANDSHAKE_PAYLOAD {
            return Err(CryptoError::Malformed("payload too large"));
        }
        let mut out = vec![0u8; payload.len() + HANDSHAKE_OVERHEAD];
        let n = self
            .state
            .write_message(payload, &mut out)
            .map_err(map_snow)?;
        out.truncate(n);
        Ok(out)
    }

    /// Reads the peer's handshake message and returns its payload.
    pub fn read(&mut self, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if msg.len() < HANDSHAKE_OVERHEAD {
            return Err(CryptoError::Malformed("shorter than key and tag"));
        }
        if msg.len() > MAX_HANDSHAKE_PAYLOAD + HANDSHAKE_OVERHEAD {
            return Err(CryptoError::Malformed("longer than the payload limit"));
        }
        let mut out = vec![0u8; msg.len()];
        let n = self.state.read_message(msg, &mut out).map_err(map_snow)?;
        out.truncate(n);
        Ok(out)
    }

    /// Ends a finished handshake with one cipher per direction.
    pub fn finish(mut self) -> Result<Transport, CryptoError> {
        if !self.state.is_handshake_finished() {
            return Err(CryptoError::State("handshake not finished"));
        }
        // Noise Split(): the first key protects initiator -> responder.
        let (k1, k2) = self.state.dangerously_get_raw_split();
        let (send, recv) = if self.initiator { (k1, k2) } else { (k2, k1) };
        Ok(Transport {
            send: CipherState::new(&send),
            recv: CipherState::new(&recv),
        })
    }
}

/// The two directions of an established session.
pub struct Transport {
    /// Seals frames this side sends.
    pub send: CipherState,
    /// Opens frames this side receives.
    pub recv: CipherState,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("sent", &self.send.nonce)
            .field("received", &self.recv.nonce)
            .finish()
    }
}

/// One direction's key and counter nonce (Noise `CipherState`).
pub struct CipherState {
    aead: ChaCha20Poly1305,
    nonce: u64,
}

impl CipherState {
    /// A cipher starting at nonce 0.
    pub fn new(key: &[u8; 32]) -> CipherState {
        CipherState {
            aead: ChaCha20Poly1305::new(Key::from_slice(key)),
            nonce: 0,
        }
    }

    /// Frames sealed or opened so far.
    pub fn count(&self) -> u64 {
        self.nonce
    }

    fn next_nonce(&mut self) -> Result<Nonce, FrameError> {
        // Noise reserves 2^64-1; reaching it ends the session.
        if self.nonce == u64::MAX {
            return Err(FrameError::NonceExhausted);
        }
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&self.nonce.to_le_bytes());
        self.nonce += 1;
        Ok(*Nonce::from_slice(&n))
    }

    /// Encrypts `buf` in place with `ad` authenticated, returning the tag
    /// to append.
    pub fn seal_in_place(
        &mut self,
        ad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], FrameError> {
        let nonce = self.next_nonce()?;
        let tag = self
            .aead
            .encrypt_in_place_detached(&nonce, ad, buf)
            .map_err(|_| FrameError::EncodeTooLong {
                length: buf.len(),
                max: u32::MAX,
            })?;
        Ok(tag.into())
    }

    /// Decrypts `sealed` (ciphertext ‖ tag) in place, checking `ad`, and
    /// truncates it to the plaintext. The counter advances only on success,
    /// but a failure ends the session anyway.
    pub fn open_in_place(&mut self, ad: &[u8], sealed: &mut Vec<u8>) -> Result<(), FrameError> {
        if sealed.len() < TAG_LEN || self.nonce == u64::MAX {
            return Err(FrameError::Unauthentic);
        }
        let split = sealed.len() - TAG_LEN;
        let tag = *Tag::from_slice(&sealed[split..]);
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&self.nonce.to_le_bytes());
        self.aead
            .decrypt_in_place_detached(Nonce::from_slice(&n), ad, &mut sealed[..split], &tag)
            .map_err(|_| FrameError::Unauthentic)?;
        self.nonce += 1;
        sealed.truncate(split);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distinct ephemeral keys for the sides of the handshakes below.
    fn e(n: u8) -> Ephemeral {
        Ephemeral([n; 32])
    }

    fn uuid() -> Uuid {
        Uuid::from_text("0123456789abcdef0123456789abcdefA").unwrap()
    }

    fn pair(psk_a: &[u8; 32], psk_b: &[u8; 32]) -> Result<(Transport, Transport), CryptoError> {
        let mut i = Handshake::initiator(psk_a, &uuid(), e(1))?;
        let mut r = Handshake::responder(psk_b, &uuid(), e(2))?;
        let m1 = i.write(b"hello")?;
        assert_eq!(r.read(&m1)?, b"hello");
        let m2 = r.write(b"welcome")?;
        assert_eq!(i.read(&m2)?, b"welcome");
        Ok((i.finish()?, r.finish()?))
    }

    #[test]
    fn handshake_and_both_directions() {
        let (mut a, mut b) = pair(&[7; 32], &[7; 32]).unwrap();
        fn one_way(tx: &mut CipherState, rx: &mut CipherState) {
            let mut body = b"report".to_vec();
            let tag = tx.seal_in_place(b"header", &mut body).unwrap();
            assert_ne!(&body, b"report");
            body.extend_from_slice(&tag);
            rx.open_in_place(b"header", &mut body).unwrap();
            assert_eq!(body, b"report");
        }
        one_way(&mut a.send, &mut b.recv);
        one_way(&mut b.send, &mut a.recv);
    }

    #[test]
    fn directions_use_separate_keys() {
        let (mut a, mut b) = pair(&[7; 32], &[7; 32]).unwrap();
        // Same nonce, same plaintext, opposite directions: different bytes.
        let mut x = b"same".to_vec();
        let mut y = b"same".to_vec();
        let tx = a.send.seal_in_place(b"", &mut x).unwrap();
        let ty = b.send.seal_in_place(b"", &mut y).unwrap();
        assert_ne!((x, tx), (y, ty));
    }

    #[test]
    fn wrong_key_is_detected_by_the_responder() {
        let mut i = Handshake::initiator(&[1; 32], &uuid(), e(1)).unwrap();
        let mut r = Handshake::responder(&[2; 32], &uuid(), e(2)).unwrap();
        let m1 = i.write(b"hello").unwrap();
        assert_eq!(r.read(&m1), Err(CryptoError::WrongKey));
    }

    #[test]
    fn other_uuid_is_detected() {
        let mut i = Handshake::initiator(&[1; 32], &uuid(), e(1)).unwrap();
        let other = Uuid::from_text("someone-else").unwrap();
        let mut r = Handshake::responder(&[1; 32], &other, e(2)).unwrap();
        assert_eq!(r.read(&i.write(b"").unwrap()), Err(CryptoError::WrongKey));
    }

    #[test]
    fn replay_reorder_tamper_and_wrong_ad_rejected() {
        let (mut a, mut b) = pair(&[9; 32], &[9; 32]).unwrap();
        let mut frames = Vec::new();
        for i in 0..3u8 {
            let mut body = vec![i; 10];
            let tag = a.send.seal_in_place(b"hdr", &mut body).unwrap();
            body.extend_from_slice(&tag);
            frames.push(body);
        }
        // Reordered: frame 1 before frame 0.
        assert_eq!(
            b.recv.open_in_place(b"hdr", &mut frames[1].clone()),
            Err(FrameError::Unauthentic)
        );
        // In order works.
        b.recv
            .open_in_place(b"hdr", &mut frames[0].clone())
            .unwrap();
        // Replay of frame 0.
        assert_eq!(
            b.recv.open_in_place(b"hdr", &mut frames[0].clone()),
            Err(FrameError::Unauthentic)
        );
        // Header (associated data) changed.
        assert_eq!(
            b.recv.open_in_place(b"hdR", &mut frames[1].clone()),
            Err(FrameError::Unauthentic)
        );
        // A flipped ciphertext bit.
        let mut t = frames[1].clone();
        t[0] ^= 1;
        assert_eq!(
            b.recv.open_in_place(b"hdr", &mut t),
            Err(FrameError::Unauthentic)
        );
        b.recv
            .open_in_place(b"hdr", &mut frames[1].clone())
            .unwrap();
        // Too short for a tag.
        assert_eq!(
            b.recv.open_in_place(b"hdr", &mut vec![0; 15]),
            Err(FrameError::Unauthentic)
        );
    }

    #[test]
    fn malformed_handshake_messages() {
        let mut r = Handshake::responder(&[1; 32], &uuid(), e(2)).unwrap();
        assert!(matches!(r.read(&[0; 10]), Err(CryptoError::Malformed(_))));
        let mut r = Handshake::responder(&[1; 32], &uuid(), e(2)).unwrap();
        assert!(r.read(&vec![0; 100_000]).is_err());
        let i = Handshake::initiator(&[1; 32], &uuid(), e(1)).unwrap();
        assert!(matches!(i.finish(), Err(CryptoError::State(_))));
    }

    #[test]
    fn ephemeral_keys_differ_per_session() {
        // Forward secrecy rests on fresh ephemerals: two handshakes with the
        // same PSK but fresh randomness never produce the same message.
        let mut a = Handshake::initiator(&[1; 32], &uuid(), e(1)).unwrap();
        let mut b = Handshake::initiator(&[1; 32], &uuid(), e(3)).unwrap();
        assert_ne!(a.write(b"x").unwrap(), b.write(b"x").unwrap());
    }

    #[test]
    fn a_handshake_replays_byte_for_byte_from_the_same_inputs() {
        // The randomness comes from the caller, so the same key, uuid and
        // ephemerals give the same messages and the same session keys.
        let run = || {
            let mut i = Handshake::initiator(&[5; 32], &uuid(), e(1)).unwrap();
            let mut r = Handshake::responder(&[5; 32], &uuid(), e(2)).unwrap();
            let m1 = i.write(b"hello").unwrap();
            r.read(&m1).unwrap();
            let m2 = r.write(b"welcome").unwrap();
            i.read(&m2).unwrap();
            let mut t = i.finish().unwrap();
            let mut body = b"report".to_vec();
            let tag = t.send.seal_in_place(b"h", &mut body).unwrap();
            (m1, m2, body, tag)
        };
        assert_eq!(run(), run());
    }

    /// [`CallerRandom`] with snow's own default resolver for the hash: the
    /// reference [`Sha256`] must match.
    struct DefaultHash(Ephemeral);

    impl snow::resolvers::CryptoResolver for DefaultHash {
        fn resolve_rng(&self) -> Option<Box<dyn snow::types::Random>> {
            CallerRandom(self.0).resolve_rng()
        }
        fn resolve_dh(&self, c: &snow::params::DHChoice) -> Option<Box<dyn snow::types::Dh>> {
            snow::resolvers::DefaultResolver.resolve_dh(c)
        }
        fn resolve_hash(&self, c: &snow::params::HashChoice) -> Option<Box<dyn snow::types::Hash>> {
            snow::resolvers::DefaultResolver.resolve_hash(c)
        }
        fn resolve_cipher(
            &self,
            c: &snow::params::CipherChoice,
        ) -> Option<Box<dyn snow::types::Cipher>> {
            snow::resolvers::DefaultResolver.resolve_cipher(c)
        }
    }

    #[test]
    fn sha256_only_resolver_matches_snows_default_byte_for_byte() {
        use snow::resolvers::CryptoResolver;
        use snow::types::Hash;
        // The hash alone: a FIPS 180-2 vector, and HMAC/HKDF against snow's.
        let mut ours = Sha256::default();
        ours.input(b"abc");
        let mut d = [0u8; 64];
        ours.result(&mut d);
        assert_eq!(
            d[..32],
            [
                0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae,
                0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61,
                0xf2, 0x00, 0x15, 0xad
            ]
        );
        let mut theirs = snow::resolvers::DefaultResolver
            .resolve_hash(&snow::params::HashChoice::SHA256)
            .unwrap();
        let (mut a, mut b) = ([[0u8; 64]; 3], [[0u8; 64]; 3]);
        let [a1, a2, a3] = &mut a;
        ours.hkdf(&[7; 32], b"ikm", 3, a1, a2, a3);
        let [b1, b2, b3] = &mut b;
        theirs.hkdf(&[7; 32], b"ikm", 3, b1, b2, b3);
        assert_eq!(a, b);
        assert_ne!(a[0], [0u8; 64]);

        // A whole handshake and the first sealed frame.
        let run = |with_default_hash: bool| {
            let build = |eph: Ephemeral, initiator: bool| {
                let mut prologue = [0u8; PROLOGUE_TAG.len() + 33];
                prologue[..PROLOGUE_TAG.len()].copy_from_slice(PROLOGUE_TAG);
                prologue[PROLOGUE_TAG.len()..].copy_from_slice(&uuid().0);
                let resolver: Box<dyn CryptoResolver + Send> = if with_default_hash {
                    Box::new(DefaultHash(eph))
                } else {
                    Box::new(CallerRandom(eph))
                };
                let b = snow::Builder::with_resolver(NOISE_PARAMS.parse().unwrap(), resolver)
                    .psk(0, &[5; 32])
                    .unwrap()
                    .prologue(&prologue)
                    .unwrap();
                let state = if initiator {
                    b.build_initiator()
                } else {
                    b.build_responder()
                }
                .unwrap();
                Handshake { state, initiator }
            };
            let mut i = build(e(1), true);
            let mut r = build(e(2), false);
            let m1 = i.write(b"hello").unwrap();
            assert_eq!(r.read(&m1).unwrap(), b"hello");
            let m2 = r.write(b"welcome").unwrap();
            i.read(&m2).unwrap();
            let mut t = i.finish().unwrap();
            let mut body = b"report".to_vec();
            let tag = t.send.seal_in_place(b"h", &mut body).unwrap();
            (m1, m2, body, tag)
        };
        assert_eq!(run(false), run(true));
        // And `Handshake` itself uses the SHA-256-only resolver.
        let mut i = Handshake::initiator(&[5; 32], &uuid(), e(1)).unwrap();
        assert_eq!(i.write(b"hello").unwrap(), run(true).0);
    }
}
