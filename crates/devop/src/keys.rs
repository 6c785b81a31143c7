//! RS256 signing keys of the development provider: generation, rotation, the JWKS, compact
//! JWS encoding and verification of tokens it issued itself (e.g. `id_token_hint`).

use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{self, KeyPair as _, UnparsedPublicKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// One RSA key pair with its key id (the RFC 7638 thumbprint) and public JWK.
pub(crate) struct SigningKey {
    pair: KeyPair,
    kid: String,
    jwk: Value,
}

impl SigningKey {
    /// A fresh 2048-bit key.
    pub(crate) fn generate() -> std::io::Result<Self> {
        let pair = KeyPair::generate(KeySize::Rsa2048)
            .map_err(|_| std::io::Error::other("RSA key generation failed"))?;
        let public = pair.public_key();
        let n = URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero());
        let e = URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero());
        // RFC 7638: members in lexicographic order, no whitespace.
        let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
        let jwk = json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n, "e": e});
        Ok(Self { pair, kid, jwk })
    }

    pub(crate) fn kid(&self) -> &str {
        &self.kid
    }

    /// `header.payload.signature` with RS256 and the given header members (alg is set here).
    pub(crate) fn sign(&self, mut header: Map<String, Value>, claims: &Value) -> String {
        header.insert("alg".into(), "RS256".into());
        let input = signing_input(&Value::Object(header), claims);
        let mut sig = vec![0; self.pair.public_modulus_len()];
        // Signing with a valid in-memory key and a correctly sized buffer cannot fail.
        if self
            .pair
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                input.as_bytes(),
                &mut sig,
            )
            .is_err()
        {
            tracing::error!("RS256 signing failed");
        }
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    fn verifies(&self, input: &[u8], sig: &[u8]) -> bool {
        let public = self.pair.public_key().as_ref();
        UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, public)
            .verify(input, sig)
            .is_ok()
    }
}

/// An unsecured JWT (`alg: none`): `header.payload.` with an empty signature.
pub(crate) fn unsigned_jwt(claims: &Value) -> String {
    format!("{}.", signing_input(&json!({"alg": "none"}), claims))
}

fn signing_input(header: &Value, claims: &Value) -> String {
    let encode = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string().as_bytes());
    format!("{}.{}", encode(header), encode(claims))
}

/// Why a token did not verify against the published keys.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum JwtError {
    #[error("not a compact JWS")]
    Malformed,
    #[error("algorithm is not RS256")]
    DisallowedAlg,
    #[error("no published key has this kid")]
    NoMatchingKey,
    #[error("signature does not verify")]
    BadSignature,
}

/// Published keys (current last) plus a "rogue" key that is never published, used by the
/// tamper modes and test helpers that need a signature the JWKS cannot verify.
pub(crate) struct KeySet {
    published: Vec<Arc<SigningKey>>,
    rogue: Option<Arc<SigningKey>>,
}

impl KeySet {
    pub(crate) fn new(first: SigningKey) -> Self {
        Self {
            published: vec![Arc::new(first)],
            rogue: None,
        }
    }

    pub(crate) fn current(&self) -> Arc<SigningKey> {
        Arc::clone(self.published.last().expect("the key set is never empty"))
    }

    /// The never-published key (generated on first use).
    pub(crate) fn rogue(&mut self) -> std::io::Result<Arc<SigningKey>> {
        if let Some(key) = &self.rogue {
            return Ok(Arc::clone(key));
        }
        let key = Arc::new(SigningKey::generate()?);
        self.rogue = Some(Arc::clone(&key));
        Ok(key)
    }

    /// Makes `next` current and keeps only the previous key beside it, like a real OP
    /// during rotation.
    pub(crate) fn rotate(&mut self, next: SigningKey) {
        let previous = self.current();
        self.published = vec![previous, Arc::new(next)];
    }

    /// Drops every key but the current one.
    pub(crate) fn retire_old(&mut self) {
        let current = self.current();
        self.published = vec![current];
    }

    pub(crate) fn jwks(&self) -> Value {
        let keys: Vec<Value> = self.published.iter().map(|k| k.jwk.clone()).collect();
        json!({ "keys": keys })
    }

    /// Verifies an RS256 compact JWS against the published keys and returns its claims.
    /// Claims (iss, aud, exp) are the caller's business.
    pub(crate) fn verify(&self, token: &str) -> Result<Map<String, Value>, JwtError> {
        let (input, sig) = token.rsplit_once('.').ok_or(JwtError::Malformed)?;
        let (header, payload) = input.split_once('.').ok_or(JwtError::Malformed)?;
        let header = decode_object(header)?;
        if header.get("alg").and_then(Value::as_str) != Some("RS256") {
            return Err(JwtError::DisallowedAlg);
        }
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| JwtError::Malformed)?;
        let kid = header.get("kid").and_then(Value::as_str);
        let mut candidates = self
            .published
            .iter()
            .filter(|k| kid.is_none_or(|kid| kid == k.kid))
            .peekable();
        if candidates.peek().is_none() {
            return Err(JwtError::NoMatchingKey);
        }
        if !candidates.any(|k| k.verifies(input.as_bytes(), &sig)) {
            return Err(JwtError::BadSignature);
        }
        decode_object(payload)
    }
}

fn decode_object(part: &str) -> Result<Map<String, Value>, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(JwtError::Malformed),
    }
}

/// OIDC `at_hash`: base64url of the left half of SHA-256 of the access token.
pub(crate) fn at_hash(access_token: &str) -> String {
    let digest = Sha256::digest(access_token.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..16])
}
