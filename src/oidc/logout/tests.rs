use super::*;
use serde_json::json;

const NOW: i64 = 1_700_000_000;

fn claims(extra: Value) -> Map<String, Value> {
    let mut c = json!({
        "iss": "https://op.test",
        "aud": "gateway",
        "iat": NOW,
        "jti": "jti-1",
        "events": {BACKCHANNEL_EVENT: {}},
    })
    .as_object()
    .cloned()
    .unwrap();
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.remove(k);
        } else {
            c.insert(k.clone(), v.clone());
        }
    }
    c
}

#[test]
fn a_sid_names_the_op_session_even_with_a_sub() {
    let c = claims(json!({"sid": "s-1", "sub": "alice"}));
    let (target, jti) = check_logout_claims(&c, NOW).unwrap();
    assert_eq!(
        target,
        LogoutTarget::Sid {
            iss: "https://op.test",
            sid: "s-1"
        }
    );
    assert_eq!(jti, "jti-1");
}

#[test]
fn a_sub_alone_names_the_subject() {
    let c = claims(json!({"sub": "alice"}));
    let (target, _) = check_logout_claims(&c, NOW).unwrap();
    assert_eq!(
        target,
        LogoutTarget::Sub {
            iss: "https://op.test",
            sub: "alice"
        }
    );
}

#[test]
fn each_rule_refuses_alone() {
    let cases = [
        (
            json!({"sid": "s", "events": null}),
            LogoutTokenError::NoEvent,
        ),
        (
            json!({"sid": "s", "events": {BACKCHANNEL_EVENT: "yes"}}),
            LogoutTokenError::NoEvent,
        ),
        (json!({"sid": "s", "nonce": "n"}), LogoutTokenError::Nonce),
        (json!({}), LogoutTokenError::NoSessionOrSubject),
        (
            json!({"sid": "s", "iat": NOW - LOGOUT_IAT_WINDOW - 1}),
            LogoutTokenError::StaleIssuedAt,
        ),
        (
            json!({"sid": "s", "iat": NOW + LOGOUT_IAT_SKEW + 1}),
            LogoutTokenError::StaleIssuedAt,
        ),
        (
            json!({"sid": "s", "iat": null}),
            LogoutTokenError::StaleIssuedAt,
        ),
        (json!({"sid": "s", "jti": null}), LogoutTokenError::NoJti),
    ];
    for (extra, expected) in cases {
        let c = claims(extra.clone());
        assert_eq!(
            check_logout_claims(&c, NOW).map(|_| ()),
            Err(expected),
            "{extra}"
        );
    }
}

#[test]
fn refusals_name_the_claim() {
    for e in [
        LogoutTokenError::NoEvent,
        LogoutTokenError::Nonce,
        LogoutTokenError::StaleIssuedAt,
        LogoutTokenError::NoJti,
        LogoutTokenError::Replayed,
    ] {
        let text = e.to_string();
        let claim = text.split(':').next().unwrap();
        assert!(["events", "nonce", "iat", "jti"].contains(&claim), "{text}");
    }
}

#[test]
fn iat_may_be_ten_minutes_old_or_a_minute_ahead() {
    for iat in [NOW - LOGOUT_IAT_WINDOW, NOW, NOW + LOGOUT_IAT_SKEW] {
        let c = claims(json!({"sid": "s", "iat": iat}));
        assert!(check_logout_claims(&c, NOW).is_ok(), "iat {iat}");
    }
}

#[test]
fn replays_are_caught_for_the_whole_iat_window() {
    assert!(crate::session::LOGOUT_JTI_TTL.as_secs() as i64 > LOGOUT_IAT_WINDOW + LOGOUT_IAT_SKEW);
}
