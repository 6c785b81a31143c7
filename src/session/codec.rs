//! Sealing values for cookies and for sessions kept in a shared store: AES-256-GCM keys
//! with key ids for rotation, optional deflate, and a purpose bound into the tag so one kind
//! of value never opens as another.
//!
//! Keys: each passphrase is stretched once per process with PBKDF2-HMAC-SHA256 at
//! [`PBKDF2_ITERATIONS`] (OWASP 2023), so a captured cookie does not let anyone test
//! passphrase guesses at GPU speed; HKDF then derives the AES key from that master key and
//! the deployment (issuer and client id), so a cookie sealed by another gateway that shares
//! the passphrase but not the client does not open here. The key id is a hash of the
//! derived key, never of the passphrase.
//!
//! Wire format (then base64url without padding):
//! `version (1) || key id (4) || nonce (12) || AES-256-GCM(flag (1) || data) || tag (16)`,
//! where `flag` is 0 for raw data and 1 for deflated data. The version, key id and purpose
//! are the associated data, so none of them can be altered without failing the tag.

use crate::secret::Secret;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;
use flate2::Compression;
use hkdf::Hkdf;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::io::{Read, Write};
use std::num::NonZeroU32;
use std::sync::{Mutex, OnceLock};

#[cfg(test)]
mod tests;

/// 2: PBKDF2-stretched, deployment-bound keys (1 was HKDF over the bare passphrase).
const VERSION: u8 = 2;
const SALT: &[u8] = b"oidc-gateway/session/v2";
/// PBKDF2-HMAC-SHA256 iterations for the master key (OWASP's 2023 recommendation).
pub(crate) const PBKDF2_ITERATIONS: u32 = 600_000;
const _: () = assert!(
    PBKDF2_ITERATIONS >= 600_000,
    "OWASP's minimum for PBKDF2-HMAC-SHA256"
);
const KEY_ID_LEN: usize = 4;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;
/// Smallest well-formed sealed value: header, the flag byte, and the tag.
const MIN_SEALED_LEN: usize = HEADER_LEN + 1 + TAG_LEN;

/// Longest sealed string [`Codec::open`] accepts: 16 cookie chunks of 4000 characters plus
/// slack. Checked before anything is decoded.
pub(crate) const MAX_SEALED_LEN: usize = 70_000;
/// Largest plaintext an inflated value may grow to (a deflate bomb stops here).
pub(crate) const MAX_PLAINTEXT_LEN: usize = 1 << 20;
/// Longest sealed string accepted for [`Purpose::StoredSession`]: a plaintext of
/// [`MAX_PLAINTEXT_LEN`] sealed without deflate, in base64url. Server-side stores are not
/// limited by cookie sizes, but what they hand back is still bounded before decoding.
pub(crate) const MAX_STORED_SEALED_LEN: usize =
    (MAX_PLAINTEXT_LEN + MIN_SEALED_LEN).div_ceil(3) * 4;
/// Data at or below this size is never deflated: the deflate header would eat the gain.
const DEFLATE_THRESHOLD: usize = 200;

const FLAG_RAW: u8 = 0;
const FLAG_DEFLATE: u8 = 1;

/// What a sealed value is for. Bound into the AEAD associated data, so a state cookie can
/// never be presented as a session cookie (or a session id as a session), even though they
/// share keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A whole session (cookie store).
    Session,
    /// A login state cookie.
    State,
    /// A session id pointing into a server-side store.
    SessionId,
    /// A whole session kept in a shared server-side store (redis).
    StoredSession,
    /// A refresh grant's outcome, shared by replicas through Redis.
    SharedGrant,
    /// A bearer token's validation result, shared by replicas through Redis.
    SharedValidation,
    /// A form POST kept across a login (`route.preserve_post`), in memory or Redis.
    KeptPost,
}

impl Purpose {
    fn tag(self) -> u8 {
        match self {
            Purpose::Session => 1,
            Purpose::State => 2,
            Purpose::SessionId => 3,
            Purpose::StoredSession => 4,
            Purpose::SharedGrant => 5,
            Purpose::SharedValidation => 6,
            Purpose::KeptPost => 7,
        }
    }

    /// Longest sealed string [`Codec::open`] looks at for this purpose.
    fn max_sealed_len(self) -> usize {
        match self {
            Purpose::StoredSession
            | Purpose::SharedGrant
            | Purpose::SharedValidation
            | Purpose::KeptPost => MAX_STORED_SEALED_LEN,
            Purpose::Session | Purpose::State | Purpose::SessionId => MAX_SEALED_LEN,
        }
    }
}

/// Why a sealed value could not be opened. Each variant names the check that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("sealed value is not base64url, or too short to hold a header and tag")]
    Encoding,
    #[error("sealed value or its inflated plaintext exceeds the size bound")]
    TooLarge,
    #[error("sealed value names a key id that no configured passphrase derives")]
    UnknownKey,
    #[error("sealed value failed authentication (tampered, wrong purpose, or wrong key)")]
    Decrypt,
    #[error("sealed value's plaintext flag or deflate stream is invalid")]
    Decompress,
    #[error("sealed value has an unsupported format version")]
    Version,
}

struct SealKey {
    id: [u8; KEY_ID_LEN],
    cipher: Aes256Gcm,
}

/// Seals and opens values with keys derived from the configured passphrases. The first
/// passphrase seals; every passphrase opens (selected by key id), so `[new, old]` rotates.
pub struct Codec {
    keys: Vec<SealKey>,
}

impl fmt::Debug for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Codec")
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl Codec {
    /// Derives one AES-256-GCM key and one 4-byte key id per passphrase, for the deployment
    /// named by `deployment` (the provider's issuer and the client id: sealed values of
    /// one deployment never open in another).
    ///
    /// # Panics
    /// If `passphrases` is empty; config validation rejects that before we get here.
    pub fn new(passphrases: &[Secret], deployment: &Deployment<'_>) -> Codec {
        assert!(
            !passphrases.is_empty(),
            "session codec needs at least one passphrase"
        );
        let keys = passphrases
            .iter()
            .map(|p| derive(&master_key(p.expose().as_bytes()), deployment))
            .collect();
        Codec { keys }
    }

    /// Seals `plaintext` for `purpose` under the first key, with a fresh random nonce.
    pub fn seal(&self, purpose: Purpose, plaintext: &[u8]) -> String {
        self.seal_with(purpose, plaintext, true)
    }

    fn seal_with(&self, purpose: Purpose, plaintext: &[u8], allow_deflate: bool) -> String {
        let key = &self.keys[0];
        let deflated = if allow_deflate {
            deflate(plaintext)
        } else {
            None
        };
        let (flag, data) = match &deflated {
            Some(d) => (FLAG_DEFLATE, d.as_slice()),
            None => (FLAG_RAW, plaintext),
        };

        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);

        let mut buf = Vec::with_capacity(HEADER_LEN + 1 + data.len() + TAG_LEN);
        buf.push(VERSION);
        buf.extend_from_slice(&key.id);
        buf.extend_from_slice(&nonce);
        buf.push(flag);
        buf.extend_from_slice(data);

        let aad = aad(purpose, &key.id);
        let tag = key
            .cipher
            .encrypt_in_place_detached(&Nonce::from(nonce), &aad, &mut buf[HEADER_LEN..])
            // Only fails past the AES-GCM length limit (64 GiB), which no caller reaches.
            .expect("AES-GCM plaintext within length limit");
        buf.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(&buf)
    }

    /// Opens a value sealed by [`Codec::seal`] for the same `purpose`, under any configured
    /// key. Bounded: at most [`MAX_SEALED_LEN`] input characters
    /// ([`MAX_STORED_SEALED_LEN`] for [`Purpose::StoredSession`]) and [`MAX_PLAINTEXT_LEN`]
    /// output bytes.
    pub fn open(&self, purpose: Purpose, sealed: &str) -> Result<Vec<u8>, CodecError> {
        if sealed.len() > purpose.max_sealed_len() {
            return Err(CodecError::TooLarge);
        }
        let mut buf = URL_SAFE_NO_PAD
            .decode(sealed)
            .map_err(|_| CodecError::Encoding)?;
        if buf.len() < MIN_SEALED_LEN {
            return Err(CodecError::Encoding);
        }
        if buf[0] != VERSION {
            return Err(CodecError::Version);
        }
        let mut key_id = [0u8; KEY_ID_LEN];
        key_id.copy_from_slice(&buf[1..1 + KEY_ID_LEN]);
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&buf[1 + KEY_ID_LEN..HEADER_LEN]);
        let tag_at = buf.len() - TAG_LEN;
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&buf[tag_at..]);
        let aad = aad(purpose, &key_id);

        // Key ids are 32 bits, so two passphrases may share one: try each match.
        let mut candidates = self.keys.iter().filter(|k| k.id == key_id).peekable();
        if candidates.peek().is_none() {
            return Err(CodecError::UnknownKey);
        }
        let body = &mut buf[HEADER_LEN..tag_at];
        let opened = candidates.any(|k| {
            k.cipher
                .decrypt_in_place_detached(&Nonce::from(nonce), &aad, body, &Tag::from(tag))
                .is_ok()
        });
        if !opened {
            return Err(CodecError::Decrypt);
        }

        let flag = buf[HEADER_LEN];
        buf.truncate(tag_at);
        buf.drain(..HEADER_LEN + 1);
        match flag {
            FLAG_RAW => Ok(buf),
            FLAG_DEFLATE => inflate(&buf),
            _ => Err(CodecError::Decompress),
        }
    }
}

/// Which gateway deployment sealed a value: the provider's issuer and the client id.
#[derive(Debug, Clone, Copy)]
pub struct Deployment<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
}

/// The passphrase stretched with PBKDF2 (hundreds of milliseconds), once per process and
/// passphrase: later gateways in the same process (tests, a reload) reuse it. The cache
/// is keyed by a SHA-256 of the passphrase and holds only derived keys.
fn master_key(passphrase: &[u8]) -> [u8; 32] {
    static MASTERS: OnceLock<Mutex<HashMap<[u8; 32], [u8; 32]>>> = OnceLock::new();
    let id: [u8; 32] = Sha256::digest(passphrase).into();
    let masters = MASTERS.get_or_init(Default::default);
    if let Some(master) = masters.lock().ok().and_then(|m| m.get(&id).copied()) {
        return master;
    }
    let mut master = [0u8; 32];
    aws_lc_rs::pbkdf2::derive(
        aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA256,
        NonZeroU32::new(PBKDF2_ITERATIONS).expect("non-zero"),
        SALT,
        passphrase,
        &mut master,
    );
    if let Ok(mut m) = masters.lock() {
        m.insert(id, master);
    }
    master
}

fn derive(master: &[u8; 32], deployment: &Deployment<'_>) -> SealKey {
    let hk = Hkdf::<Sha256>::new(Some(SALT), master);
    // Length-prefixed, so no two (issuer, client id) pairs give the same info.
    let mut info = b"aes-256-gcm".to_vec();
    for part in [deployment.issuer, deployment.client_id] {
        info.extend_from_slice(&(part.len() as u64).to_be_bytes());
        info.extend_from_slice(part.as_bytes());
    }
    let mut key = [0u8; 32];
    // Far below HKDF-SHA256's 8160-byte output limit.
    hk.expand(&info, &mut key)
        .expect("32 bytes is a valid HKDF-SHA256 length");
    let digest = Sha256::digest(key);
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(&digest[..KEY_ID_LEN]);
    SealKey {
        id,
        cipher: Aes256Gcm::new(&key.into()),
    }
}

fn aad(purpose: Purpose, key_id: &[u8; KEY_ID_LEN]) -> [u8; 2 + KEY_ID_LEN] {
    let mut aad = [0u8; 2 + KEY_ID_LEN];
    aad[0] = VERSION;
    aad[1] = purpose.tag();
    aad[2..].copy_from_slice(key_id);
    aad
}

/// Deflates `data` when it is large enough to gain and actually shrinks.
fn deflate(data: &[u8]) -> Option<Vec<u8>> {
    if data.len() <= DEFLATE_THRESHOLD {
        return None;
    }
    let mut enc = DeflateEncoder::new(Vec::with_capacity(data.len() / 2), Compression::default());
    enc.write_all(data).ok()?;
    let out = enc.finish().ok()?;
    (out.len() < data.len()).then_some(out)
}

/// Inflates at most [`MAX_PLAINTEXT_LEN`] bytes; anything longer is refused, not truncated.
fn inflate(data: &[u8]) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(data.len().saturating_mul(3).min(MAX_PLAINTEXT_LEN));
    DeflateDecoder::new(data)
        .take(MAX_PLAINTEXT_LEN as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| CodecError::Decompress)?;
    if out.len() > MAX_PLAINTEXT_LEN {
        return Err(CodecError::TooLarge);
    }
    Ok(out)
}
