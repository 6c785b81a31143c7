use super::*;
use crate::provider::id_token::VerifiedIdToken;
use crate::secret::Secret;
use serde_json::{json, Map, Value};

fn session() -> Session {
    Session {
        id: "id-1".into(),
        iss: "https://op.test".into(),
        sub: "alice".into(),
        sid: Some("sid-1".into()),
        access_token: Some(Secret::new("at-1")),
        access_token_expires: Some(1_000),
        refresh_token: Some(Secret::new("rt-1")),
        id_token: Some(Secret::new("idt-1")),
        created_at: 100,
        last_seen: 200,
        ..Session::default()
    }
}

fn claims(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

#[test]
fn inline_refresh_is_due_only_inside_the_window() {
    assert!(!due(None, 100, 60), "no expiry known: never");
    assert!(!due(Some(200), 100, 60), "100 s left, window 60 s");
    assert!(due(Some(160), 100, 60), "60 s left");
    assert!(due(Some(50), 100, 60), "already expired");
    assert!(!due(Some(50), 100, 0), "window 0 turns it off");
}

#[test]
fn a_grant_replaces_the_tokens_and_keeps_an_unrotated_refresh_token() {
    let grant = TokenGrant {
        access_token: Secret::new("at-2"),
        expires_at: Some(2_000),
        refresh_token: None,
        id_token: None,
    };
    let s = apply(&session(), &grant, 500);
    assert_eq!(s.access_token, Some(Secret::new("at-2")));
    assert_eq!(s.access_token_expires, Some(2_000));
    assert_eq!(s.refresh_token, Some(Secret::new("rt-1")), "kept");
    assert_eq!(s.id_token, Some(Secret::new("idt-1")), "kept");
    assert_eq!(s.last_seen, 500);
    assert_eq!((s.id.as_str(), s.created_at), ("id-1", 100), "same session");
}

#[test]
fn a_grant_with_rotation_and_an_id_token_replaces_them_all() {
    let grant = TokenGrant {
        access_token: Secret::new("at-2"),
        expires_at: None,
        refresh_token: Some(Secret::new("rt-2")),
        id_token: Some(VerifiedIdToken {
            raw: "idt-2".into(),
            claims: claims(json!({"sub": "alice", "sid": "sid-2", "name": "Alice"})),
        }),
    };
    let s = apply(&session(), &grant, 500);
    assert_eq!(s.refresh_token, Some(Secret::new("rt-2")));
    assert_eq!(s.id_token, Some(Secret::new("idt-2")));
    assert_eq!(s.sid.as_deref(), Some("sid-2"));
    assert_eq!(s.id_token_claims["name"], "Alice");
    assert_eq!(s.access_token_expires, None);
}

#[test]
fn refresh_errors_say_what_failed_without_tokens() {
    let e = RefreshError::Grant(Arc::new(GrantError::Refused {
        error: "invalid_grant".into(),
        description: None,
    }));
    assert!(e.to_string().contains("invalid_grant"));
    let store = RefreshError::Store(SessionError::Store("redis down".into()));
    assert!(store.to_string().contains("could not be stored"));
    assert!(
        !format!("{:?}", session()).contains("rt-1"),
        "Debug redacts tokens"
    );
}
