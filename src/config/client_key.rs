//! The private key a provider entry signs its client assertions with
//! (`token_endpoint_auth = "private_key_jwt"`, RFC 7523): read from a PEM file (RSA as
//! PKCS#1 or PKCS#8, P-256 EC as SEC1 or PKCS#8), checked by signing and verifying once,
//! and described by the public JWK the gateway publishes at `<admin>/jwks.json`.
//! Errors name the file and never hold key material.

use jsonwebtoken::jwk::{Jwk, KeyAlgorithm, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use std::fmt;
use std::sync::Arc;

/// Smallest RSA modulus accepted (NIST SP 800-131A; what Entra ID and Okta require).
const MIN_RSA_BITS: usize = 2048;

/// A loaded signing key: cheap to clone, compared by its public part and algorithm.
#[derive(Clone)]
pub struct ClientKey {
    inner: Arc<Inner>,
}

struct Inner {
    key: EncodingKey,
    alg: Algorithm,
    /// The public key with `kid`, `alg` and `use`, as published.
    public: Jwk,
}

impl ClientKey {
    /// Reads `pem` (a private key) to sign with `alg` (`None`: RS256 for RSA keys, ES256
    /// for EC keys) under `kid` (`None`: the RFC 7638 SHA-256 thumbprint of the public key).
    pub fn from_pem(pem: &[u8], alg: Option<&str>, kid: Option<&str>) -> Result<ClientKey, String> {
        let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "holds no PEM private key (encrypted keys are not supported: \
                 write it unencrypted with `openssl pkey -in KEY -out KEY.pem`)"
                    .to_string()
            }
            other => format!("is not a readable PEM private key: {other:?}"),
        })?;
        let (key, family) = match &der {
            PrivateKeyDer::Pkcs1(der) => (
                EncodingKey::from_rsa_der(der.secret_pkcs1_der()),
                Family::Rsa,
            ),
            PrivateKeyDer::Sec1(der) => (p256_to_pkcs8(der.secret_sec1_der())?, Family::Ec),
            PrivateKeyDer::Pkcs8(_) => match EncodingKey::from_rsa_pem(pem) {
                Ok(key) => (key, Family::Rsa),
                Err(_) => (
                    EncodingKey::from_ec_pem(pem)
                        .map_err(|_| "is neither an RSA nor an EC private key".to_string())?,
                    Family::Ec,
                ),
            },
            _ => return Err("is not an RSA or EC private key".into()),
        };
        let alg = match (family, alg) {
            (Family::Rsa, None | Some("RS256")) => Algorithm::RS256,
            (Family::Rsa, Some("PS256")) => Algorithm::PS256,
            (Family::Ec, None | Some("ES256")) => Algorithm::ES256,
            (family, Some(other)) => {
                return Err(format!(
                    "holds {} key, which cannot sign {other:?} (use {})",
                    family.article(),
                    family.algorithms()
                ))
            }
        };
        let mut public = Jwk::from_encoding_key(&key, alg).map_err(|_| match family {
            Family::Ec => "holds an EC key that is not on the P-256 curve (ES256)".to_string(),
            Family::Rsa => "holds an RSA key that cannot be read".to_string(),
        })?;
        if let jsonwebtoken::jwk::AlgorithmParameters::RSA(rsa) = &public.algorithm {
            let bits = rsa_modulus_bits(&rsa.n);
            if bits < MIN_RSA_BITS {
                return Err(format!(
                    "holds a {bits}-bit RSA key; at least {MIN_RSA_BITS} bits are required"
                ));
            }
        }
        let kid = match kid {
            Some(kid) => kid.to_string(),
            None => public
                .thumbprint(ThumbprintHash::SHA256)
                .map_err(|_| "its public key has no RFC 7638 thumbprint".to_string())?,
        };
        public.common.key_id = Some(kid);
        public.common.key_algorithm = Some(key_algorithm(alg));
        public.common.public_key_use = Some(PublicKeyUse::Signature);
        let loaded = ClientKey {
            inner: Arc::new(Inner { key, alg, public }),
        };
        loaded.self_check()?;
        Ok(loaded)
    }

    pub fn algorithm(&self) -> Algorithm {
        self.inner.alg
    }

    pub fn kid(&self) -> &str {
        self.inner
            .public
            .common
            .key_id
            .as_deref()
            .unwrap_or_default()
    }

    /// The public key as published (`kid`, `alg`, `use: sig`).
    pub fn public_jwk(&self) -> &Jwk {
        &self.inner.public
    }

    /// Signs `claims` as a JWT with this key's algorithm and `kid`.
    pub fn sign<T: serde::Serialize>(&self, claims: &T) -> Result<String, String> {
        let mut header = Header::new(self.inner.alg);
        header.kid = Some(self.kid().to_string());
        jsonwebtoken::encode(&header, claims, &self.inner.key)
            .map_err(|e| format!("signing failed: {e}"))
    }

    /// Signs a token and verifies it with the public JWK: a key that cannot do both is
    /// refused at load, not at the first login.
    fn self_check(&self) -> Result<(), String> {
        let token = self.sign(&serde_json::json!({"check": true}))?;
        let decoding = DecodingKey::from_jwk(&self.inner.public)
            .map_err(|_| "its public key cannot be used to verify".to_string())?;
        let mut validation = Validation::new(self.inner.alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &validation)
            .map(|_| ())
            .map_err(|_| "a signature made with it does not verify with its public key".into())
    }
}

#[derive(Clone, Copy)]
enum Family {
    Rsa,
    Ec,
}

impl Family {
    fn article(self) -> &'static str {
        match self {
            Family::Rsa => "an RSA",
            Family::Ec => "an EC",
        }
    }

    fn algorithms(self) -> &'static str {
        match self {
            Family::Rsa => "RS256 or PS256",
            Family::Ec => "ES256",
        }
    }
}

/// A SEC1 (`EC PRIVATE KEY`) P-256 key as the PKCS#8 document jsonwebtoken reads.
fn p256_to_pkcs8(sec1: &[u8]) -> Result<EncodingKey, String> {
    use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let pair = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, sec1)
        .map_err(|_| "holds an EC key that is not on the P-256 curve (ES256)".to_string())?;
    let pkcs8 = pair
        .to_pkcs8v1()
        .map_err(|_| "holds an EC key that cannot be converted to PKCS#8".to_string())?;
    Ok(EncodingKey::from_ec_der(pkcs8.as_ref()))
}

/// Bits of a base64url big-endian modulus (leading zero bytes not counted).
fn rsa_modulus_bits(n_b64: &str) -> usize {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(n_b64)
        .unwrap_or_default();
    let Some(first) = bytes.iter().position(|b| *b != 0) else {
        return 0;
    };
    (bytes.len() - first) * 8 - bytes[first].leading_zeros() as usize
}

fn key_algorithm(alg: Algorithm) -> KeyAlgorithm {
    match alg {
        Algorithm::PS256 => KeyAlgorithm::PS256,
        Algorithm::ES256 => KeyAlgorithm::ES256,
        _ => KeyAlgorithm::RS256,
    }
}

impl PartialEq for ClientKey {
    fn eq(&self, other: &Self) -> bool {
        self.inner.alg == other.inner.alg && self.inner.public == other.inner.public
    }
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientKey")
            .field("alg", &self.inner.alg)
            .field("kid", &self.kid())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rsa_from_aws_lc() -> String {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::rsa::{KeyPair, KeySize};
        let pair = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).unwrap();
        pem_block("PRIVATE KEY", der.as_ref())
    }

    fn pem_block(tag: &str, der: &[u8]) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {tag}-----\n{}\n-----END {tag}-----\n",
            lines.join("\n")
        )
    }

    fn ec_pkcs8_pem() -> String {
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .serialize_pem()
    }

    #[test]
    fn rsa_pkcs8_defaults_to_rs256_and_the_thumbprint_kid() {
        let key = ClientKey::from_pem(rsa_from_aws_lc().as_bytes(), None, None).unwrap();
        assert_eq!(key.algorithm(), Algorithm::RS256);
        let thumb = key.public_jwk().thumbprint(ThumbprintHash::SHA256).unwrap();
        assert_eq!(key.kid(), thumb);
        assert_eq!(key.kid().len(), 43, "base64url of a SHA-256 digest");
        let json = serde_json::to_value(key.public_jwk()).unwrap();
        assert_eq!(json["kty"], "RSA");
        assert_eq!(json["alg"], "RS256");
        assert_eq!(json["use"], "sig");
        assert!(json.get("d").is_none(), "no private part: {json}");
        assert!(json.get("p").is_none());
    }

    #[test]
    fn rsa_pkcs1_is_read_and_ps256_selectable() {
        use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
        use aws_lc_rs::rsa::{KeyPair, KeySize};
        let pair = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let pkcs8 = AsDer::<Pkcs8V1Der>::as_der(&pair).unwrap();
        // PKCS#1 is the RSAPrivateKey inside the PKCS#8 document's OCTET STRING.
        let PrivateKeyDer::Pkcs8(p8) =
            PrivateKeyDer::from_pem_slice(pem_block("PRIVATE KEY", pkcs8.as_ref()).as_bytes())
                .unwrap()
        else {
            panic!("pkcs8")
        };
        let pkcs1 = pkcs1_inside(p8.secret_pkcs8_der());
        let pem = pem_block("RSA PRIVATE KEY", &pkcs1);
        let key = ClientKey::from_pem(pem.as_bytes(), Some("PS256"), Some("k1")).unwrap();
        assert_eq!(key.algorithm(), Algorithm::PS256);
        assert_eq!(key.kid(), "k1");
        let from_pkcs8 = ClientKey::from_pem(
            pem_block("PRIVATE KEY", pkcs8.as_ref()).as_bytes(),
            Some("PS256"),
            Some("k1"),
        )
        .unwrap();
        assert_eq!(key, from_pkcs8, "the same key in both encodings");
    }

    /// The last OCTET STRING of a PKCS#8 PrivateKeyInfo (version, algorithm, key) holds
    /// the PKCS#1 key: read with the DER lengths aws-lc-rs writes (long form).
    fn pkcs1_inside(p8: &[u8]) -> Vec<u8> {
        fn len(b: &[u8], i: usize) -> (usize, usize) {
            if b[i] < 0x80 {
                (b[i] as usize, i + 1)
            } else {
                let n = (b[i] & 0x7f) as usize;
                let mut l = 0usize;
                for k in 0..n {
                    l = (l << 8) | b[i + 1 + k] as usize;
                }
                (l, i + 1 + n)
            }
        }
        let (_, mut i) = len(p8, 1); // outer SEQUENCE
        for _ in 0..2 {
            let (l, start) = len(p8, i + 1);
            i = start + l;
        }
        assert_eq!(p8[i], 0x04, "OCTET STRING");
        let (l, start) = len(p8, i + 1);
        p8[start..start + l].to_vec()
    }

    #[test]
    fn ec_pkcs8_and_sec1_default_to_es256() {
        let pem = ec_pkcs8_pem();
        let key = ClientKey::from_pem(pem.as_bytes(), None, None).unwrap();
        assert_eq!(key.algorithm(), Algorithm::ES256);
        let json = serde_json::to_value(key.public_jwk()).unwrap();
        assert_eq!(json["kty"], "EC");
        assert_eq!(json["crv"], "P-256");
        assert!(json.get("d").is_none());

        let sec1 = {
            use aws_lc_rs::encoding::{AsDer, EcPrivateKeyRfc5915Der};
            use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
            let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
            let der = AsDer::<EcPrivateKeyRfc5915Der>::as_der(&pair.private_key()).unwrap();
            pem_block("EC PRIVATE KEY", der.as_ref())
        };
        let key = ClientKey::from_pem(sec1.as_bytes(), Some("ES256"), None).unwrap();
        assert_eq!(key.algorithm(), Algorithm::ES256);
    }

    #[test]
    fn mismatched_algorithms_and_bad_files_are_refused() {
        let ec = ec_pkcs8_pem();
        let err = ClientKey::from_pem(ec.as_bytes(), Some("RS256"), None).unwrap_err();
        assert!(err.contains("EC key") && err.contains("ES256"), "{err}");
        let rsa = rsa_from_aws_lc();
        let err = ClientKey::from_pem(rsa.as_bytes(), Some("ES256"), None).unwrap_err();
        assert!(err.contains("RSA key"), "{err}");
        let err = ClientKey::from_pem(b"not a key", None, None).unwrap_err();
        assert!(err.contains("no PEM private key"), "{err}");
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)
            .unwrap()
            .serialize_pem();
        let err = ClientKey::from_pem(p384.as_bytes(), None, None).unwrap_err();
        assert!(err.contains("P-256"), "{err}");
    }

    #[test]
    fn small_rsa_keys_are_refused() {
        assert_eq!(rsa_modulus_bits("AQAB"), 17);
        assert_eq!(rsa_modulus_bits("AAAB"), 1);
    }

    #[test]
    fn debug_shows_no_key_material() {
        let key = ClientKey::from_pem(ec_pkcs8_pem().as_bytes(), None, Some("k")).unwrap();
        let shown = format!("{key:?}");
        assert!(
            shown.contains("ES256") && shown.contains("\"k\""),
            "{shown}"
        );
        assert!(!shown.contains("PRIVATE"), "{shown}");
    }
}
