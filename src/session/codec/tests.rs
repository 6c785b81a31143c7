use super::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn codec(passphrases: &[&str]) -> Codec {
    let secrets: Vec<Secret> = passphrases.iter().map(|p| Secret::new(*p)).collect();
    Codec::new(&secrets, &DEPLOYMENT)
}

const DEPLOYMENT: Deployment<'static> = Deployment {
    issuer: "https://op.test",
    client_id: "gateway",
};

const NEW: &str = "new passphrase, at least 16";
const OLD: &str = "old passphrase, at least 16";

/// Decodes, lets `f` edit the raw bytes, and re-encodes.
fn edit(sealed: &str, f: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut raw = URL_SAFE_NO_PAD.decode(sealed).unwrap();
    f(&mut raw);
    URL_SAFE_NO_PAD.encode(raw)
}

#[test]
fn roundtrip_small_and_large() {
    let c = codec(&[NEW]);
    for data in [
        Vec::new(),
        b"hello".to_vec(),
        vec![b'a'; 5000],
        (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect(),
    ] {
        let sealed = c.seal(Purpose::Session, &data);
        assert_eq!(c.open(Purpose::Session, &sealed).unwrap(), data);
    }
}

#[test]
fn deflates_only_when_it_pays() {
    let c = codec(&[NEW]);
    let plain_len = |sealed: &str| URL_SAFE_NO_PAD.decode(sealed).unwrap().len() - MIN_SEALED_LEN;
    // Compressible but below the threshold: stored raw.
    assert_eq!(plain_len(&c.seal(Purpose::Session, &[b'a'; 200])), 200);
    // Compressible above the threshold: deflated.
    assert!(plain_len(&c.seal(Purpose::Session, &[b'a'; 2000])) < 100);
    // Incompressible: stored raw rather than grown.
    let mut noise = vec![0u8; 2000];
    rand::thread_rng().fill_bytes(&mut noise);
    assert_eq!(plain_len(&c.seal(Purpose::Session, &noise)), 2000);
}

#[test]
fn output_is_base64url_without_padding() {
    let c = codec(&[NEW]);
    let sealed = c.seal(Purpose::Session, b"x");
    assert!(sealed
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
}

#[test]
fn rotation_opens_old_values_and_seals_with_the_first_key() {
    let old = codec(&[OLD]);
    let rotated = codec(&[NEW, OLD]);
    let other = codec(&["some other passphrase entirely"]);

    let sealed_old = old.seal(Purpose::Session, b"payload");
    assert_eq!(
        rotated.open(Purpose::Session, &sealed_old).unwrap(),
        b"payload"
    );
    assert_eq!(
        other.open(Purpose::Session, &sealed_old),
        Err(CodecError::UnknownKey)
    );

    let sealed_new = rotated.seal(Purpose::Session, b"payload");
    assert_eq!(
        old.open(Purpose::Session, &sealed_new),
        Err(CodecError::UnknownKey)
    );
    assert!(codec(&[NEW]).open(Purpose::Session, &sealed_new).is_ok());
}

#[test]
fn key_id_is_not_the_key() {
    let c = codec(&[NEW]);
    let hk = Hkdf::<Sha256>::new(Some(SALT), NEW.as_bytes());
    let mut key = [0u8; 32];
    hk.expand(b"aes-256-gcm", &mut key).unwrap();
    assert_ne!(c.keys[0].id, key[..KEY_ID_LEN]);
}

#[test]
fn tampering_any_region_fails_with_the_matching_error() {
    let c = codec(&[NEW]);
    let sealed = c.seal(Purpose::Session, &[b'z'; 600]);
    let len = URL_SAFE_NO_PAD.decode(&sealed).unwrap().len();
    let regions = [
        (0, CodecError::Version),
        (1, CodecError::UnknownKey),
        (4, CodecError::UnknownKey),
        (5, CodecError::Decrypt),  // nonce
        (16, CodecError::Decrypt), // nonce
        (17, CodecError::Decrypt), // flag byte
        (18, CodecError::Decrypt), // data
        (len - TAG_LEN - 1, CodecError::Decrypt),
        (len - TAG_LEN, CodecError::Decrypt), // tag
        (len - 1, CodecError::Decrypt),
    ];
    for (at, want) in regions {
        let bad = edit(&sealed, |raw| raw[at] ^= 0x01);
        assert_eq!(c.open(Purpose::Session, &bad), Err(want), "byte {at}");
    }
    // Every single byte, for completeness: never accepted, never a panic.
    for at in 0..len {
        let bad = edit(&sealed, |raw| raw[at] ^= 0x80);
        assert!(c.open(Purpose::Session, &bad).is_err(), "byte {at}");
    }
}

#[test]
fn truncated_or_extended_values_fail() {
    let c = codec(&[NEW]);
    let sealed = c.seal(Purpose::Session, b"some payload here");
    for cut in 0..sealed.len() {
        assert!(
            c.open(Purpose::Session, &sealed[..cut]).is_err(),
            "cut {cut}"
        );
    }
    let longer = edit(&sealed, |raw| raw.push(0));
    assert_eq!(c.open(Purpose::Session, &longer), Err(CodecError::Decrypt));
    assert_eq!(
        c.open(Purpose::Session, &sealed[..10]),
        Err(CodecError::Encoding)
    );
}

#[test]
fn garbage_fails() {
    let c = codec(&[NEW]);
    for garbage in [
        "",
        "=",
        "not base64!",
        "AAAA",
        "a b c",
        "\u{e9}\u{e9}\u{e9}",
        "AQ==",
        &"A".repeat(200),
        &"_".repeat(MAX_SEALED_LEN),
    ] {
        assert!(c.open(Purpose::Session, garbage).is_err(), "{garbage:?}");
    }
    assert_eq!(
        c.open(Purpose::Session, &"A".repeat(MAX_SEALED_LEN + 1)),
        Err(CodecError::TooLarge)
    );
}

#[test]
fn stored_sessions_have_a_larger_bound_than_cookies() {
    let c = codec(&[NEW]);
    let noise = |len: usize| {
        let mut v = vec![0u8; len];
        rand::thread_rng().fill_bytes(&mut v);
        v
    };
    // Incompressible and over the cookie bound once sealed.
    let data = noise(200_000);
    let sealed = c.seal(Purpose::StoredSession, &data);
    assert!(sealed.len() > MAX_SEALED_LEN);
    assert_eq!(c.open(Purpose::StoredSession, &sealed).unwrap(), data);
    // The largest plaintext, sealed without deflate, still fits the stored bound.
    let edge = noise(MAX_PLAINTEXT_LEN);
    let sealed = c.seal(Purpose::StoredSession, &edge);
    assert!(sealed.len() <= MAX_STORED_SEALED_LEN, "{}", sealed.len());
    assert_eq!(
        c.open(Purpose::StoredSession, &sealed).unwrap().len(),
        edge.len()
    );
    assert_eq!(
        c.open(
            Purpose::StoredSession,
            &"A".repeat(MAX_STORED_SEALED_LEN + 1)
        ),
        Err(CodecError::TooLarge)
    );
}

#[test]
fn a_value_sealed_for_one_purpose_does_not_open_as_another() {
    let c = codec(&[NEW]);
    let all = [
        Purpose::Session,
        Purpose::State,
        Purpose::SessionId,
        Purpose::StoredSession,
    ];
    for sealed_as in all {
        let sealed = c.seal(sealed_as, b"value");
        for opened_as in all {
            let got = c.open(opened_as, &sealed);
            if sealed_as == opened_as {
                assert_eq!(got.unwrap(), b"value");
            } else {
                assert_eq!(got, Err(CodecError::Decrypt));
            }
        }
    }
}

#[test]
fn decompression_bomb_is_bounded() {
    let c = codec(&[NEW]);
    // 4 MiB of zeros deflates to a few KiB: a bomb only a key holder could make, but open
    // must still refuse it without inflating past the bound.
    let bomb = vec![0u8; 4 * MAX_PLAINTEXT_LEN];
    let sealed = c.seal(Purpose::Session, &bomb);
    assert!(sealed.len() < MAX_SEALED_LEN);
    assert_eq!(c.open(Purpose::Session, &sealed), Err(CodecError::TooLarge));
    // Exactly at the bound is fine.
    let edge = vec![0u8; MAX_PLAINTEXT_LEN];
    let sealed = c.seal(Purpose::Session, &edge);
    assert_eq!(
        c.open(Purpose::Session, &sealed).unwrap().len(),
        MAX_PLAINTEXT_LEN
    );
}

#[test]
fn unknown_flag_is_refused() {
    // A flag byte other than 0 or 1 can only come from a key holder; refuse it anyway.
    let c = codec(&[NEW]);
    let key = &c.keys[0];
    let nonce = [7u8; NONCE_LEN];
    let mut buf = vec![VERSION];
    buf.extend_from_slice(&key.id);
    buf.extend_from_slice(&nonce);
    buf.extend_from_slice(&[9, 1, 2, 3]);
    let tag = key
        .cipher
        .encrypt_in_place_detached(
            &Nonce::from(nonce),
            &aad(Purpose::Session, &key.id),
            &mut buf[HEADER_LEN..],
        )
        .unwrap();
    buf.extend_from_slice(&tag);
    let sealed = URL_SAFE_NO_PAD.encode(&buf);
    assert_eq!(
        c.open(Purpose::Session, &sealed),
        Err(CodecError::Decompress)
    );
}

#[test]
fn nonce_differs_per_seal() {
    let c = codec(&[NEW]);
    let a = URL_SAFE_NO_PAD
        .decode(c.seal(Purpose::Session, b"same"))
        .unwrap();
    let b = URL_SAFE_NO_PAD
        .decode(c.seal(Purpose::Session, b"same"))
        .unwrap();
    assert_ne!(a[5..HEADER_LEN], b[5..HEADER_LEN]);
    assert_ne!(a, b);
}

/// A realistic session: a ~900-byte RS256 ID token, a JWT access token, an opaque refresh
/// token and the ID token's ~10 claims. Reports sealed sizes with and without deflate
/// (`cargo test typical_session -- --nocapture`).
#[test]
fn typical_session_sealed_size() {
    use crate::session::Session;
    use serde_json::{json, Value};

    let mut rng = rand::thread_rng();
    let mut random_b64 = |bytes: usize| {
        let mut b = vec![0u8; bytes];
        rng.fill_bytes(&mut b);
        URL_SAFE_NO_PAD.encode(b)
    };
    let jwt = |header: &Value, payload: &Value, sig: String| {
        format!(
            "{}.{}.{sig}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload.to_string())
        )
    };
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": random_b64(16)});
    let now = 1_700_000_000i64;
    let claims = json!({
        "iss": "https://idp.example.com/realms/demo",
        "sub": "f1b4c7a2-5d3e-4f8a-9b6c-2e1d0a9f8b7c",
        "aud": "gateway",
        "exp": now + 300, "iat": now, "auth_time": now,
        "nonce": random_b64(16),
        "sid": "3c9e2f61-8a4b-4d7e-b5c1-0f2a6e9d4b83",
        "at_hash": random_b64(16),
        "email": "alice.example@example.com",
        "email_verified": true,
        "name": "Alice Example",
        "preferred_username": "alice",
    });
    let id_token = jwt(&header, &claims, random_b64(256));
    let access_token = jwt(
        &header,
        &json!({
            "iss": "https://idp.example.com/realms/demo",
            "sub": "f1b4c7a2-5d3e-4f8a-9b6c-2e1d0a9f8b7c",
            "aud": ["gateway", "account"], "azp": "gateway",
            "exp": now + 300, "iat": now, "jti": random_b64(16),
            "scope": "openid profile email offline_access",
            "sid": "3c9e2f61-8a4b-4d7e-b5c1-0f2a6e9d4b83",
            "realm_access": {"roles": ["default-roles-demo", "offline_access", "uma_authorization"]},
        }),
        random_b64(256),
    );
    let refresh_token = random_b64(48);
    let Value::Object(id_token_claims) = claims else {
        unreachable!()
    };
    let session = Session {
        id: random_b64(16),
        iss: "https://idp.example.com/realms/demo".into(),
        sub: "f1b4c7a2-5d3e-4f8a-9b6c-2e1d0a9f8b7c".into(),
        sid: Some("3c9e2f61-8a4b-4d7e-b5c1-0f2a6e9d4b83".into()),
        id_token_claims,
        userinfo: None,
        access_token: Some(access_token.clone().into()),
        access_token_expires: Some(now + 300),
        refresh_token: Some(refresh_token.clone().into()),
        id_token: Some(id_token.clone().into()),
        created_at: now,
        created_ms: now * 1000,
        last_seen: now,
        provider: String::new(),
    };
    let json = serde_json::to_vec(&session).unwrap();
    let c = codec(&[NEW]);
    let deflated = c.seal(Purpose::Session, &json);
    let raw = c.seal_with(Purpose::Session, &json, false);
    eprintln!(
        "typical session: id_token {} B, access_token {} B, refresh_token {} B, JSON {} B; \
         sealed without deflate {} B, with deflate {} B",
        id_token.len(),
        access_token.len(),
        refresh_token.len(),
        json.len(),
        raw.len(),
        deflated.len()
    );
    assert!((800..1000).contains(&id_token.len()));
    assert!(deflated.len() < raw.len());
    assert!(
        deflated.len() <= super::super::CHUNK_SIZE,
        "fits one cookie"
    );
    assert_eq!(c.open(Purpose::Session, &deflated).unwrap(), json);
    assert_eq!(c.open(Purpose::Session, &raw).unwrap(), json);
}

/// A value sealed by another deployment (same passphrase, another client or issuer) does
/// not open: its key, and so its key id, differ.
#[test]
fn sealed_values_belong_to_one_deployment() {
    let secrets = [Secret::new(NEW)];
    let ours = Codec::new(&secrets, &DEPLOYMENT);
    let sealed = ours.seal(Purpose::Session, b"{}");
    for other in [
        Deployment {
            issuer: DEPLOYMENT.issuer,
            client_id: "another-client",
        },
        Deployment {
            issuer: "https://other-op.test",
            client_id: DEPLOYMENT.client_id,
        },
        // Length-prefixed: moving a character between the parts is another deployment.
        Deployment {
            issuer: "https://op.tes",
            client_id: "tgateway",
        },
    ] {
        let theirs = Codec::new(&secrets, &other);
        assert_eq!(
            theirs.open(Purpose::Session, &sealed),
            Err(CodecError::UnknownKey),
            "{other:?}"
        );
    }
    assert!(ours.open(Purpose::Session, &sealed).is_ok());
}

/// The master key is the passphrase stretched by PBKDF2-HMAC-SHA256 at OWASP's count.
#[test]
fn passphrases_are_stretched() {
    let master = master_key(NEW.as_bytes());
    assert!(aws_lc_rs::pbkdf2::verify(
        aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA256,
        std::num::NonZeroU32::new(PBKDF2_ITERATIONS).unwrap(),
        SALT,
        NEW.as_bytes(),
        &master,
    )
    .is_ok());
    // Cached per process: the same bytes again, without another derivation.
    assert_eq!(master_key(NEW.as_bytes()), master);
}
