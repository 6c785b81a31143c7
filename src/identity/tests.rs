use super::*;
use serde_json::json;

fn cfg() -> HeadersConfig {
    HeadersConfig {
        claim_prefix: "OIDC_CLAIM_".into(),
        claim_delimiter: ",".into(),
        pass_access_token: true,
        id_token_claims: true,
        id_token_payload: false,
        id_token_serialized: false,
        userinfo_claims: true,
        userinfo_json: false,
        pass_refresh_token: false,
        encoding: Encoding::None,
        remote_user_claim: "sub".into(),
        remote_user_header: None,
        lists: vec![Vec::new()],
    }
}

fn map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

fn session(id: Value, userinfo: Option<Value>) -> Session {
    Session {
        id_token_claims: map(id),
        userinfo: userinfo.map(map),
        access_token: Some("at-123".into()),
        access_token_expires: Some(1_700_000_000),
        refresh_token: Some("rt-456".into()),
        id_token: Some("eyJ.payload.sig".into()),
        ..Session::default()
    }
}

fn names(hs: &[Header]) -> Vec<&str> {
    hs.iter().map(|(n, _)| n.as_str()).collect()
}

fn get<'a>(hs: &'a [Header], name: &str) -> Option<&'a [u8]> {
    let mut found = hs.iter().filter(|(n, _)| n.as_str() == name);
    let first = found.next().map(|(_, v)| v.as_bytes());
    assert!(found.next().is_none(), "{name} sent twice");
    first
}

/// The value of `<prefix>name` for one claim of the given value.
fn claim_value(c: &HeadersConfig, value: Value) -> Option<Vec<u8>> {
    let ih = IdentityHeaders::new(c);
    let hs = ih.for_token("t", None, &map(json!({ "c": value })));
    let name = format!("{}c", c.claim_prefix.to_ascii_lowercase());
    get(&hs, &name).map(<[u8]>::to_vec)
}

fn value_of(value: Value) -> Option<String> {
    claim_value(&cfg(), value).map(|v| String::from_utf8(v).unwrap())
}

// ---- claim value rules ----

#[test]
fn strings_pass_as_is() {
    assert_eq!(value_of(json!("alice")).as_deref(), Some("alice"));
    assert_eq!(value_of(json!("")).as_deref(), Some(""));
    assert_eq!(value_of(json!("a, b; c=d")).as_deref(), Some("a, b; c=d"));
    assert_eq!(
        value_of(json!("Zoë ünïcode")).as_deref(),
        Some("Zoë ünïcode")
    );
}

#[test]
fn booleans_are_one_and_zero() {
    assert_eq!(value_of(json!(true)).as_deref(), Some("1"));
    assert_eq!(value_of(json!(false)).as_deref(), Some("0"));
}

#[test]
fn numbers_are_decimal() {
    assert_eq!(value_of(json!(42)).as_deref(), Some("42"));
    assert_eq!(value_of(json!(-7)).as_deref(), Some("-7"));
    assert_eq!(value_of(json!(0)).as_deref(), Some("0"));
    assert_eq!(value_of(json!(1.5)).as_deref(), Some("1.5"));
    assert_eq!(
        value_of(json!(u64::MAX)).as_deref(),
        Some("18446744073709551615")
    );
    assert_eq!(
        value_of(json!(i64::MIN)).as_deref(),
        Some("-9223372036854775808")
    );
}

#[test]
fn arrays_of_scalars_are_joined() {
    assert_eq!(value_of(json!(["a", "b", "c"])).as_deref(), Some("a,b,c"));
    assert_eq!(value_of(json!(["solo"])).as_deref(), Some("solo"));
    assert_eq!(value_of(json!([])).as_deref(), Some(""));
    assert_eq!(
        value_of(json!([1, "x", true, false, 2.5])).as_deref(),
        Some("1,x,1,0,2.5")
    );
}

#[test]
fn nulls_inside_arrays_are_left_out() {
    assert_eq!(value_of(json!(["a", null, "b"])).as_deref(), Some("a,b"));
    assert_eq!(value_of(json!([null])).as_deref(), Some(""));
}

#[test]
fn delimiter_is_configurable() {
    let mut c = cfg();
    c.claim_delimiter = " | ".into();
    let v = claim_value(&c, json!(["admins", "users"])).unwrap();
    assert_eq!(v, b"admins | users");
}

#[test]
fn objects_are_compact_json() {
    assert_eq!(
        value_of(json!({"a": 1, "b": [true, null]})).as_deref(),
        Some(r#"{"a":1,"b":[true,null]}"#)
    );
    assert_eq!(value_of(json!({})).as_deref(), Some("{}"));
}

#[test]
fn nested_objects_are_compact_json() {
    let v = json!({"roles": ["admin"], "inner": {"deep": {"x": "y"}}});
    assert_eq!(
        value_of(v).as_deref(),
        Some(r#"{"inner":{"deep":{"x":"y"}},"roles":["admin"]}"#)
    );
}

#[test]
fn arrays_holding_arrays_or_objects_are_compact_json() {
    assert_eq!(value_of(json!([[1, 2], 3])).as_deref(), Some("[[1,2],3]"));
    assert_eq!(
        value_of(json!(["a", {"b": "c"}])).as_deref(),
        Some(r#"["a",{"b":"c"}]"#)
    );
}

#[test]
fn json_strings_keep_their_escapes() {
    // Control characters inside JSON are escaped by serde_json, never raw.
    assert_eq!(
        value_of(json!({"k": "a\r\nb\"c"})).as_deref(),
        Some(r#"{"k":"a\r\nb\"c"}"#)
    );
}

#[test]
fn null_claims_send_no_header() {
    let ih = IdentityHeaders::new(&cfg());
    let hs = ih.for_token("t", None, &map(json!({"gone": null, "here": "x"})));
    assert_eq!(names(&hs), ["oidc_access_token", "oidc_claim_here"]);
}

// ---- claim names ----

fn claim_header_name(claim: &str) -> Option<String> {
    let ih = IdentityHeaders::new(&cfg());
    let mut claims = Map::new();
    claims.insert(claim.to_string(), json!("v"));
    let hs = ih.for_token("t", None, &claims);
    hs.get(1).map(|(n, _)| n.as_str().to_string())
}

#[test]
fn names_take_the_claim_prefix_lowercased() {
    assert_eq!(claim_header_name("sub").unwrap(), "oidc_claim_sub");
    assert_eq!(claim_header_name("Email").unwrap(), "oidc_claim_email");
}

#[test]
fn name_characters_outside_tokens_become_dashes() {
    assert_eq!(claim_header_name("a b/c").unwrap(), "oidc_claim_a-b-c");
    assert_eq!(claim_header_name("x:y").unwrap(), "oidc_claim_x-y");
    assert_eq!(claim_header_name("a\r\nb").unwrap(), "oidc_claim_a--b");
    assert_eq!(
        claim_header_name("(a)[b]{c}").unwrap(),
        "oidc_claim_-a--b--c-"
    );
    assert_eq!(
        claim_header_name("\"q\";=,?@\\").unwrap(),
        "oidc_claim_-q-------"
    );
}

#[test]
fn non_ascii_name_characters_become_one_dash_each() {
    assert_eq!(claim_header_name("é").unwrap(), "oidc_claim_-");
    assert_eq!(claim_header_name("名前").unwrap(), "oidc_claim_--");
    assert_eq!(claim_header_name("a😀b").unwrap(), "oidc_claim_a-b");
}

#[test]
fn token_characters_in_names_are_kept() {
    assert_eq!(
        claim_header_name("a!#$%&'*+-.^_`|~z09").unwrap(),
        "oidc_claim_a!#$%&'*+-.^_`|~z09"
    );
}

#[test]
fn names_too_long_for_a_header_are_skipped() {
    let long = "n".repeat(70_000);
    assert_eq!(claim_header_name(&long), None);
}

#[test]
fn custom_claim_prefix() {
    let mut c = cfg();
    c.claim_prefix = "X-User-".into();
    let ih = IdentityHeaders::new(&c);
    let hs = ih.for_token("t", None, &map(json!({"sub": "alice"})));
    assert_eq!(get(&hs, "x-user-sub"), Some(&b"alice"[..]));
}

#[test]
fn names_that_normalise_alike_are_sent_once_first_wins() {
    let ih = IdentityHeaders::new(&cfg());
    // Map order is by key: "a-b" < "a_b"; a claim "a b" also sanitises to "a-b".
    let hs = ih.for_token("t", None, &map(json!({"a b": "1", "a-b": "2", "a_b": "3"})));
    assert_eq!(names(&hs), ["oidc_access_token", "oidc_claim_a-b"]);
    assert_eq!(get(&hs, "oidc_claim_a-b"), Some(&b"1"[..]));
}

// ---- session headers ----

#[test]
fn session_with_defaults() {
    let ih = IdentityHeaders::new(&cfg());
    let s = session(json!({"sub": "alice", "iss": "https://op"}), None);
    let hs = ih.for_session(&s);
    assert_eq!(
        names(&hs),
        [
            "oidc_access_token",
            "oidc_access_token_expires",
            "oidc_claim_iss",
            "oidc_claim_sub",
        ]
    );
    assert_eq!(get(&hs, "oidc_access_token"), Some(&b"at-123"[..]));
    assert_eq!(
        get(&hs, "oidc_access_token_expires"),
        Some(&b"1700000000"[..])
    );
    assert_eq!(get(&hs, "oidc_claim_sub"), Some(&b"alice"[..]));
}

#[test]
fn every_header_when_everything_is_on() {
    let mut c = cfg();
    c.id_token_payload = true;
    c.id_token_serialized = true;
    c.userinfo_json = true;
    c.pass_refresh_token = true;
    c.remote_user_header = Some(HeaderName::from_static("x-remote-user"));
    let ih = IdentityHeaders::new(&c);
    let s = session(
        json!({"sub": "alice"}),
        Some(json!({"email": "a@example.com"})),
    );
    let hs = ih.for_session(&s);
    assert_eq!(
        names(&hs),
        [
            "oidc_access_token",
            "oidc_access_token_expires",
            "oidc_claim_sub",
            "oidc_claim_email",
            "oidc_id_token_payload",
            "oidc_id_token",
            "oidc_userinfo_json",
            "oidc_refresh_token",
            "x-remote-user",
        ]
    );
    assert_eq!(
        get(&hs, "oidc_id_token_payload"),
        Some(&br#"{"sub":"alice"}"#[..])
    );
    assert_eq!(get(&hs, "oidc_id_token"), Some(&b"eyJ.payload.sig"[..]));
    assert_eq!(
        get(&hs, "oidc_userinfo_json"),
        Some(&br#"{"email":"a@example.com"}"#[..])
    );
    assert_eq!(get(&hs, "oidc_refresh_token"), Some(&b"rt-456"[..]));
    assert_eq!(get(&hs, "x-remote-user"), Some(&b"alice"[..]));
}

#[test]
fn nothing_but_claims_when_passing_is_off() {
    let mut c = cfg();
    c.pass_access_token = false;
    c.userinfo_claims = false;
    let ih = IdentityHeaders::new(&c);
    let s = session(json!({"sub": "alice"}), Some(json!({"email": "e"})));
    assert_eq!(names(&ih.for_session(&s)), ["oidc_claim_sub"]);
}

#[test]
fn no_headers_at_all_when_everything_is_off() {
    let mut c = cfg();
    c.pass_access_token = false;
    c.id_token_claims = false;
    c.userinfo_claims = false;
    let ih = IdentityHeaders::new(&c);
    let s = session(json!({"sub": "alice"}), Some(json!({"email": "e"})));
    assert!(ih.for_session(&s).is_empty());
}

#[test]
fn missing_tokens_send_nothing() {
    let mut c = cfg();
    c.id_token_serialized = true;
    c.pass_refresh_token = true;
    c.userinfo_json = true;
    let ih = IdentityHeaders::new(&c);
    let s = Session {
        id_token_claims: map(json!({"sub": "alice"})),
        ..Session::default()
    };
    assert_eq!(names(&ih.for_session(&s)), ["oidc_claim_sub"]);
}

#[test]
fn id_token_wins_over_userinfo_and_is_sent_once() {
    let ih = IdentityHeaders::new(&cfg());
    let s = session(
        json!({"sub": "alice", "email": "id@example.com"}),
        Some(json!({"email": "ui@example.com", "phone": "123", "sub": "other"})),
    );
    let hs = ih.for_session(&s);
    assert_eq!(get(&hs, "oidc_claim_email"), Some(&b"id@example.com"[..]));
    assert_eq!(get(&hs, "oidc_claim_sub"), Some(&b"alice"[..]));
    assert_eq!(get(&hs, "oidc_claim_phone"), Some(&b"123"[..]));
    assert_eq!(hs.len(), 2 + 3);
}

#[test]
fn id_token_wins_over_userinfo_name_that_normalises_alike() {
    let ih = IdentityHeaders::new(&cfg());
    let s = session(json!({"given_name": "A"}), Some(json!({"given-name": "B"})));
    let hs = ih.for_session(&s);
    assert_eq!(get(&hs, "oidc_claim_given_name"), Some(&b"A"[..]));
    assert_eq!(get(&hs, "oidc_claim_given-name"), None);
}

#[test]
fn userinfo_fills_in_a_null_id_token_claim() {
    let ih = IdentityHeaders::new(&cfg());
    let s = session(json!({"email": null}), Some(json!({"email": "ui@x"})));
    assert_eq!(
        get(&ih.for_session(&s), "oidc_claim_email"),
        Some(&b"ui@x"[..])
    );
}

#[test]
fn userinfo_claims_alone_when_id_token_claims_are_off() {
    let mut c = cfg();
    c.id_token_claims = false;
    let ih = IdentityHeaders::new(&c);
    let s = session(json!({"email": "id"}), Some(json!({"email": "ui"})));
    let hs = ih.for_session(&s);
    assert_eq!(get(&hs, "oidc_claim_email"), Some(&b"ui"[..]));
}

#[test]
fn payload_of_no_claims_is_an_empty_object() {
    let mut c = cfg();
    c.id_token_payload = true;
    let ih = IdentityHeaders::new(&c);
    let hs = ih.for_session(&Session::default());
    assert_eq!(get(&hs, "oidc_id_token_payload"), Some(&b"{}"[..]));
}

#[test]
fn tokens_are_marked_sensitive() {
    let mut c = cfg();
    c.id_token_serialized = true;
    c.pass_refresh_token = true;
    let ih = IdentityHeaders::new(&c);
    let hs = ih.for_session(&session(json!({"sub": "a"}), None));
    for (n, v) in &hs {
        let secret = matches!(
            n.as_str(),
            "oidc_access_token" | "oidc_id_token" | "oidc_refresh_token"
        );
        assert_eq!(v.is_sensitive(), secret, "{n}");
    }
}

// ---- remote user ----

fn remote_cfg() -> HeadersConfig {
    let mut c = cfg();
    c.remote_user_header = Some(HeaderName::from_static("x-remote-user"));
    c
}

#[test]
fn remote_user_from_the_configured_claim() {
    let mut c = remote_cfg();
    c.remote_user_claim = "preferred_username".into();
    let ih = IdentityHeaders::new(&c);
    let s = session(json!({"sub": "123", "preferred_username": "alice"}), None);
    assert_eq!(
        get(&ih.for_session(&s), "x-remote-user"),
        Some(&b"alice"[..])
    );
}

#[test]
fn remote_user_falls_back_to_userinfo() {
    let mut c = remote_cfg();
    c.remote_user_claim = "email".into();
    let ih = IdentityHeaders::new(&c);
    let s = session(json!({"sub": "1"}), Some(json!({"email": "a@x"})));
    assert_eq!(get(&ih.for_session(&s), "x-remote-user"), Some(&b"a@x"[..]));
}

#[test]
fn remote_user_is_not_sent_without_the_claim() {
    let mut c = remote_cfg();
    c.remote_user_claim = "email".into();
    let ih = IdentityHeaders::new(&c);
    let s = session(json!({"sub": "1", "email": null}), None);
    assert_eq!(get(&ih.for_session(&s), "x-remote-user"), None);
}

#[test]
fn remote_user_is_sent_even_with_claims_off() {
    let mut c = remote_cfg();
    c.id_token_claims = false;
    let ih = IdentityHeaders::new(&c);
    let s = session(json!({"sub": "alice"}), None);
    assert_eq!(
        get(&ih.for_session(&s), "x-remote-user"),
        Some(&b"alice"[..])
    );
}

#[test]
fn no_remote_user_header_unless_configured() {
    let ih = IdentityHeaders::new(&cfg());
    let hs = ih.for_session(&session(json!({"sub": "alice"}), None));
    assert!(!names(&hs).contains(&"x-remote-user"));
}

// ---- bearer tokens ----

#[test]
fn token_headers() {
    let ih = IdentityHeaders::new(&remote_cfg());
    let claims = map(json!({"sub": "svc", "scope": "read write", "active": true}));
    let hs = ih.for_token("opaque", Some(1_800_000_000), &claims);
    assert_eq!(
        names(&hs),
        [
            "oidc_access_token",
            "oidc_access_token_expires",
            "oidc_claim_active",
            "oidc_claim_scope",
            "oidc_claim_sub",
            "x-remote-user",
        ]
    );
    assert_eq!(get(&hs, "oidc_access_token"), Some(&b"opaque"[..]));
    assert_eq!(
        get(&hs, "oidc_access_token_expires"),
        Some(&b"1800000000"[..])
    );
    assert_eq!(get(&hs, "oidc_claim_active"), Some(&b"1"[..]));
    assert_eq!(get(&hs, "x-remote-user"), Some(&b"svc"[..]));
}

#[test]
fn token_without_exp_sends_no_expiry() {
    let ih = IdentityHeaders::new(&cfg());
    let hs = ih.for_token("opaque", None, &Map::new());
    assert_eq!(names(&hs), ["oidc_access_token"]);
}

#[test]
fn token_is_sent_even_when_pass_access_token_is_off() {
    let mut c = cfg();
    c.pass_access_token = false;
    let hs = IdentityHeaders::new(&c).for_token("opaque", Some(1), &Map::new());
    assert_eq!(
        names(&hs),
        ["oidc_access_token", "oidc_access_token_expires"]
    );
}

// ---- value encodings ----

#[test]
fn none_encoding_replaces_control_characters_with_spaces() {
    let v = value_of(json!("a\r\nb\0c\u{7f}d\te\u{1b}f\u{b}g")).unwrap();
    assert_eq!(v, "a  b c d\te f g");
}

#[test]
fn header_injection_stays_inside_one_value() {
    let ih = IdentityHeaders::new(&cfg());
    let claims = map(json!({"name": "x\r\nX-Admin: 1\r\n\r\nbody"}));
    let hs = ih.for_token("t\r\nX-Evil: 1", None, &claims);
    assert_eq!(names(&hs), ["oidc_access_token", "oidc_claim_name"]);
    assert_eq!(
        get(&hs, "oidc_claim_name"),
        Some(&b"x  X-Admin: 1    body"[..])
    );
    assert_eq!(get(&hs, "oidc_access_token"), Some(&b"t  X-Evil: 1"[..]));
}

#[test]
fn none_encoding_sends_utf8_bytes() {
    let v = claim_value(&cfg(), json!("é☃")).unwrap();
    assert_eq!(v, "é☃".as_bytes());
}

fn latin1_cfg() -> HeadersConfig {
    let mut c = cfg();
    c.encoding = Encoding::Latin1;
    c
}

#[test]
fn latin1_maps_to_single_bytes_and_question_marks() {
    let v = claim_value(&latin1_cfg(), json!("café ÿ☃€𝄞")).unwrap();
    assert_eq!(v, b"caf\xe9 \xff???");
}

#[test]
fn latin1_replaces_control_characters() {
    let v = claim_value(&latin1_cfg(), json!("a\r\nb\u{7f}\tc")).unwrap();
    assert_eq!(v, b"a  b \tc");
}

#[test]
fn latin1_applies_to_joined_arrays() {
    let v = claim_value(&latin1_cfg(), json!(["Zoë", "Łukasz"])).unwrap();
    assert_eq!(v, b"Zo\xeb,?ukasz");
}

fn b64_cfg() -> HeadersConfig {
    let mut c = cfg();
    c.encoding = Encoding::Base64Url;
    c
}

#[test]
fn base64url_without_padding() {
    let v = claim_value(&b64_cfg(), json!("é☃\r\n?>")).unwrap();
    assert_eq!(v, URL_SAFE_NO_PAD.encode("é☃\r\n?>").as_bytes());
    assert_eq!(claim_value(&b64_cfg(), json!("a")).unwrap(), b"YQ");
    assert_eq!(claim_value(&b64_cfg(), json!("??>")).unwrap(), b"Pz8-");
    assert_eq!(claim_value(&b64_cfg(), json!(true)).unwrap(), b"MQ");
}

#[test]
fn base64url_applies_to_every_value_as_mod_auth_openidc() {
    let mut c = b64_cfg();
    c.id_token_payload = true;
    let ih = IdentityHeaders::new(&c);
    let hs = ih.for_session(&session(json!({"sub": "a"}), None));
    assert_eq!(get(&hs, "oidc_access_token"), Some(&b"YXQtMTIz"[..]));
    assert_eq!(
        get(&hs, "oidc_access_token_expires"),
        Some(URL_SAFE_NO_PAD.encode("1700000000").as_bytes())
    );
    assert_eq!(
        get(&hs, "oidc_id_token_payload"),
        Some(URL_SAFE_NO_PAD.encode(r#"{"sub":"a"}"#).as_bytes())
    );
}

#[test]
fn every_character_makes_a_valid_header_under_every_encoding() {
    let all: String = (0u32..0x3000).filter_map(char::from_u32).collect();
    for enc in [Encoding::None, Encoding::Latin1, Encoding::Base64Url] {
        let mut c = cfg();
        c.encoding = enc;
        let ih = IdentityHeaders::new(&c);
        let claims = map(json!({ all.clone(): all.clone(), "arr": [all.clone(), 1] }));
        let hs = ih.for_token(&all, Some(-1), &claims);
        assert_eq!(hs.len(), 4, "{enc:?}");
    }
}

// ---- scrubbing ----

fn request_headers(names: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for n in names {
        let name = HeaderName::from_bytes(n.as_bytes()).unwrap();
        h.append(name, HeaderValue::from_static("spoof"));
    }
    h
}

fn scrubbed(c: &HeadersConfig, sent: &[&str]) -> Vec<String> {
    let mut h = request_headers(sent);
    IdentityHeaders::new(c).scrub(&mut h);
    h.keys().map(|n| n.as_str().to_string()).collect()
}

#[test]
fn scrub_removes_spoofed_gateway_headers() {
    let left = scrubbed(
        &remote_cfg(),
        &[
            "OIDC_CLAIM_sub",
            "oidc-claim-sub",
            "Oidc_Access_Token",
            "OIDC-ACCESS-TOKEN-EXPIRES",
            "oidc_id_token_payload",
            "oidc-userinfo-json",
            "OIDC_refresh_token",
            "oidc_",
            "oidc-",
            "X-Remote-User",
            "x_remote_user",
            "host",
        ],
    );
    assert_eq!(left, ["host"]);
}

#[test]
fn scrub_keeps_headers_that_merely_mention_oidc() {
    let left = scrubbed(
        &remote_cfg(),
        &[
            "x-oidc-claim-sub",
            "my_oidc_header",
            "oidc",
            "oidcclaim",
            "x-remote-user-extra",
            "x-remote",
            "remote-user",
            "authorization",
        ],
    );
    assert_eq!(left.len(), 8, "{left:?}");
}

#[test]
fn scrub_keeps_remote_user_header_when_not_configured() {
    assert_eq!(scrubbed(&cfg(), &["x-remote-user"]), ["x-remote-user"]);
}

#[test]
fn scrub_honours_a_custom_claim_prefix() {
    let mut c = cfg();
    c.claim_prefix = "X-User-".into();
    let left = scrubbed(
        &c,
        &["x-user-sub", "X_USER_email", "x-user", "x-userx", "oidc-x"],
    );
    assert_eq!(left, ["x-user", "x-userx"]);
}

#[test]
fn scrub_removes_every_value_of_a_repeated_header() {
    let mut h = request_headers(&["oidc_claim_sub", "oidc_claim_sub", "accept"]);
    h.append("oidc_claim_sub", HeaderValue::from_static("third"));
    IdentityHeaders::new(&cfg()).scrub(&mut h);
    assert_eq!(h.len(), 1);
    assert!(h.contains_key("accept"));
}

#[test]
fn scrub_leaves_clean_requests_alone() {
    let mut h = request_headers(&["accept", "cookie", "user-agent"]);
    let before = h.clone();
    IdentityHeaders::new(&remote_cfg()).scrub(&mut h);
    assert_eq!(h, before);
}

#[test]
fn every_header_the_gateway_sets_is_one_it_scrubs() {
    let mut c = remote_cfg();
    c.claim_prefix = "X-Claim-".into();
    c.id_token_payload = true;
    c.id_token_serialized = true;
    c.userinfo_json = true;
    c.pass_refresh_token = true;
    let ih = IdentityHeaders::new(&c);
    let hs = ih.for_session(&session(json!({"sub": "a"}), Some(json!({"x": 1}))));
    assert_eq!(hs.len(), 9);
    for (n, _) in &hs {
        assert!(ih.is_reserved(n.as_str().as_bytes()), "{n}");
    }
}

/// With `claim_prefix = "OIDC_"` a claim named `access_token` would be spelled like the
/// gateway's own header: the token header is kept, the claim is not sent.
#[test]
fn a_claim_cannot_replace_a_token_header() {
    let mut c = cfg();
    c.claim_prefix = "OIDC_".into();
    c.id_token_serialized = true;
    c.pass_refresh_token = true;
    let ih = IdentityHeaders::new(&c);
    let claims = json!({
        "sub": "alice",
        "access_token": "forged",
        "access_token_expires": "1",
        "id_token": "forged",
        "refresh_token": "forged",
    });
    let hs = ih.for_session(&session(claims.clone(), None));
    assert_eq!(get(&hs, "oidc_access_token"), Some(&b"at-123"[..]));
    assert_eq!(
        get(&hs, "oidc_access_token_expires"),
        Some(&b"1700000000"[..])
    );
    // Pushed after the claims, so they replace the claim of the same name upstream; and
    // the claim was not sent twice.
    let id_tokens: Vec<_> = hs.iter().filter(|(n, _)| n == "oidc_id_token").collect();
    assert_eq!(id_tokens.last().unwrap().1, "eyJ.payload.sig");
    let rts: Vec<_> = hs
        .iter()
        .filter(|(n, _)| n == "oidc_refresh_token")
        .collect();
    assert_eq!(rts.last().unwrap().1, "rt-456");

    let claims = claims.as_object().unwrap().clone();
    let hs = ih.for_token("real-token", Some(5), &claims);
    assert_eq!(get(&hs, "oidc_access_token"), Some(&b"real-token"[..]));
    assert_eq!(get(&hs, "oidc_access_token_expires"), Some(&b"5"[..]));
}

// ---- header lists ([[headers.set]], route.headers) ----

fn claim_entry(name: &str, path: &str) -> SetHeader {
    SetHeader {
        name: HeaderName::from_bytes(name.as_bytes()).unwrap(),
        source: HeaderSource::Claim(ClaimPath::parse(path).unwrap()),
        join: ",".into(),
        encoding: Encoding::None,
    }
}

fn template_entry(name: &str, template: &str) -> SetHeader {
    SetHeader {
        name: HeaderName::from_bytes(name.as_bytes()).unwrap(),
        source: HeaderSource::Template(
            crate::config::header_set::parse_template(template).unwrap(),
        ),
        join: ",".into(),
        encoding: Encoding::None,
    }
}

/// `[[headers.set]]` with X-Email, X-Roles and Authorization; one route list with X-User.
fn lists_cfg() -> HeadersConfig {
    let mut c = cfg();
    c.lists = vec![
        vec![
            claim_entry("X-Email", "email"),
            claim_entry("X-Roles", "realm_access.roles"),
            template_entry("Authorization", "Bearer {access_token}"),
        ],
        vec![template_entry("X-User", "{sub} <{claim:email}> {{x}}")],
    ];
    c
}

fn keycloak_session() -> Session {
    let mut s = session(
        json!({
            "sub": "alice",
            "email": "alice@example.com",
            "realm_access": {"roles": ["admin", "offline_access"]}
        }),
        None,
    );
    s.sub = "alice".into();
    s
}

#[test]
fn lists_follow_the_common_headers_and_each_route_gets_its_own() {
    let ih = IdentityHeaders::new(&lists_cfg());
    let built = ih.session_identity(&keycloak_session());
    assert_eq!(built.builder(), ih.builder());

    let (common, global) = built.for_list(0);
    assert_eq!(
        names(common),
        names(&ih.for_session(&keycloak_session())),
        "the common part is exactly the [headers] ones"
    );
    assert_eq!(names(global), ["x-email", "x-roles", "authorization"]);
    assert_eq!(get(global, "x-email"), Some(&b"alice@example.com"[..]));
    assert_eq!(get(global, "x-roles"), Some(&b"admin,offline_access"[..]));
    assert_eq!(get(global, "authorization"), Some(&b"Bearer at-123"[..]));
    let auth = &global.iter().find(|(n, _)| n == "authorization").unwrap().1;
    assert!(auth.is_sensitive(), "a template with a token is sensitive");
    assert!(!global[0].1.is_sensitive());

    let (common_again, own) = built.for_list(1);
    assert_eq!(common_again.len(), common.len());
    assert_eq!(
        names(own),
        ["x-user"],
        "a route's list replaces the global one"
    );
    assert_eq!(
        get(own, "x-user"),
        Some(&b"alice <alice@example.com> {x}"[..])
    );
    assert!(
        built.for_list(2).1.is_empty(),
        "no such list: nothing extra"
    );
}

#[test]
fn a_missing_claim_or_placeholder_sends_no_header() {
    let mut c = cfg();
    c.lists = vec![vec![
        claim_entry("X-Email", "email"),
        claim_entry("X-Null", "nothing"),
        template_entry("X-Id", "id={id_token}"),
        template_entry("X-Half", "{sub}:{claim:realm_access.missing}"),
    ]];
    let ih = IdentityHeaders::new(&c);
    let mut s = session(json!({"nothing": null, "realm_access": {}}), None);
    s.id_token = None;
    s.sub = "a".into();
    let built = ih.session_identity(&s);
    assert!(built.for_list(0).1.is_empty(), "{:?}", built.for_list(0).1);
}

#[test]
fn session_claims_come_from_the_id_token_then_userinfo() {
    let mut c = cfg();
    c.lists = vec![vec![
        claim_entry("X-Email", "email"),
        claim_entry("X-Team", "org.team"),
        claim_entry("X-Name", "name"),
    ]];
    let ih = IdentityHeaders::new(&c);
    let s = session(
        json!({"email": "id@x", "name": null}),
        Some(json!({"email": "ui@x", "org": {"team": "blue"}, "name": "N"})),
    );
    let built = ih.session_identity(&s);
    let own = built.for_list(0).1;
    assert_eq!(get(own, "x-email"), Some(&b"id@x"[..]), "the ID token wins");
    assert_eq!(get(own, "x-team"), Some(&b"blue"[..]));
    assert_eq!(get(own, "x-name"), Some(&b"N"[..]), "null in the ID token");
}

#[test]
fn claim_values_follow_the_claim_header_rules_with_the_entry_join() {
    let mut c = cfg();
    let mut roles = claim_entry("X-Roles", "roles");
    roles.join = " | ".into();
    c.lists = vec![vec![
        roles,
        claim_entry("X-Admin", "admin"),
        claim_entry("X-Level", "level"),
        claim_entry("X-Addr", "address"),
        claim_entry("X-Evil", "evil"),
        template_entry("X-All", "{claim:roles};{claim:admin}"),
    ]];
    let ih = IdentityHeaders::new(&c);
    let claims = map(json!({
        "roles": ["a", "b"],
        "admin": true,
        "level": 7,
        "address": {"city": "Delft"},
        "evil": "x\r\nX-Injected: 1"
    }));
    let built = ih.token_identity("tok", None, &claims);
    let own = built.for_list(0).1;
    assert_eq!(get(own, "x-roles"), Some(&b"a | b"[..]));
    assert_eq!(get(own, "x-admin"), Some(&b"1"[..]));
    assert_eq!(get(own, "x-level"), Some(&b"7"[..]));
    assert_eq!(get(own, "x-addr"), Some(&br#"{"city":"Delft"}"#[..]));
    assert_eq!(get(own, "x-evil"), Some(&b"x  X-Injected: 1"[..]));
    assert_eq!(get(own, "x-all"), Some(&b"a,b;1"[..]), "its own join");
}

#[test]
fn each_entry_has_its_encoding() {
    let mut c = b64_cfg();
    let mut raw = template_entry("Authorization", "Bearer {access_token}");
    raw.encoding = Encoding::None;
    let mut name = claim_entry("X-Name", "name");
    name.encoding = Encoding::Base64Url;
    let mut latin = claim_entry("X-Latin", "name");
    latin.encoding = Encoding::Latin1;
    c.lists = vec![vec![raw, name, latin]];
    let ih = IdentityHeaders::new(&c);
    let built = ih.token_identity("tok", None, &map(json!({"name": "Zoë"})));
    let own = built.for_list(0).1;
    assert_eq!(get(own, "authorization"), Some(&b"Bearer tok"[..]));
    assert_eq!(
        get(own, "x-name"),
        Some(URL_SAFE_NO_PAD.encode("Zoë").as_bytes())
    );
    assert_eq!(get(own, "x-latin"), Some(&b"Zo\xeb"[..]));
}

#[test]
fn bearer_tokens_fill_access_token_and_sub_but_never_id_token() {
    let mut c = cfg();
    c.lists = vec![vec![
        template_entry("Authorization", "Bearer {access_token}"),
        template_entry("X-Sub", "{sub}"),
        template_entry("X-Id", "{id_token}"),
    ]];
    let ih = IdentityHeaders::new(&c);
    let built = ih.token_identity("tok", Some(5), &map(json!({"sub": "svc"})));
    let own = built.for_list(0).1;
    assert_eq!(names(own), ["authorization", "x-sub"]);
    assert_eq!(get(own, "authorization"), Some(&b"Bearer tok"[..]));
    assert_eq!(get(own, "x-sub"), Some(&b"svc"[..]));
}

#[test]
fn every_listed_name_is_scrubbed_with_dash_equal_to_underscore() {
    let ih = IdentityHeaders::new(&lists_cfg());
    let mut h = HeaderMap::new();
    for name in [
        "x-email",
        "x_email",
        "X-ROLES",
        "x-user",
        "authorization",
        "x-other",
    ] {
        h.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_static("forged"),
        );
    }
    let mut bearer = h.clone();
    ih.scrub(&mut h);
    let left: Vec<&str> = h.keys().map(|n| n.as_str()).collect();
    assert_eq!(
        left,
        ["x-other"],
        "a route's list is scrubbed on every route"
    );

    ih.scrub_route(&mut bearer, true);
    let mut left: Vec<&str> = bearer.keys().map(|n| n.as_str()).collect();
    left.sort_unstable();
    assert_eq!(
        left,
        ["authorization", "x-other"],
        "kept for the bearer check"
    );
    ih.scrub_after_bearer(&mut bearer, 1);
    assert!(
        bearer.contains_key("authorization"),
        "list 1 does not set it"
    );
    ih.scrub_after_bearer(&mut bearer, 0);
    assert!(!bearer.contains_key("authorization"), "list 0 does");
}

#[test]
fn each_builder_has_its_own_number() {
    let (a, b) = (IdentityHeaders::new(&cfg()), IdentityHeaders::new(&cfg()));
    assert_ne!(a.builder(), b.builder());
    let built = a.token_identity("t", None, &Map::new());
    assert_eq!(built.builder(), a.builder());
    assert_eq!(built.for_list(0).0.len(), 1, "OIDC_access_token only");
}
