//! Sealing values for cookies and for sessions kept in a shared store: HKDF-derived
//! AES-256-GCM keys with key ids for rotation, optional deflate, and a purpose bound into the
//! tag so one kind of value never opens as another.
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
use sha2::Sha256;
use std::fmt;
use std::io::{Read, Write};

#[cfg(test)]
mod tests;

const VERSION: u8 = 1;
const SALT: &[u8] = b"oidc-gateway/session/v1";
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
}

impl Purpose {
    fn tag(self) -> u8 {
        match self {
            Purpose::Session => 1,
            Purpose::State => 2,
            Purpose::SessionId => 3,
            Purpose::StoredSession => 4,
        }
    }

    /// Longest sealed string [`Codec::open`] looks at for this purpose.
    fn max_sealed_len(self) -> usize {
        match self {
            Purpose::StoredSession => MAX_STORED_SEALED_LEN,
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
    /// Derives one AES-256-GCM key and one 4-byte key id per passphrase with HKDF-SHA256.
    ///
    /// # Panics
    /// If `passphrases` is empty; config validation rejects that before we get here.
    pub fn new(passphrases: &[Secret]) -> Codec {
        assert!(
            !passphrases.is_empty(),
            "session codec needs at least one passphrase"
        );
        let keys = passphrases
            .iter()
            .map(|p| derive(p.expose().as_bytes()))
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

fn derive(passphrase: &[u8]) -> SealKey {
    let hk = Hkdf::<Sha256>::new(Some(SALT), passphrase);
    let mut key = [0u8; 32];
    let mut id = [0u8; KEY_ID_LEN];
    // Both lengths are far below HKDF-SHA256's 8160-byte output limit.
    hk.expand(b"aes-256-gcm", &mut key)
        .expect("32 bytes is a valid HKDF-SHA256 length");
    hk.expand(b"key-id", &mut id)
        .expect("4 bytes is a valid HKDF-SHA256 length");
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
