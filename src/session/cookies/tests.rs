use super::*;
use crate::config::CookieDomain;

fn names() -> Names {
    Names::new("oidc_session", "oidc_state_")
}

fn headers(cookies: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for c in cookies {
        h.append(COOKIE, HeaderValue::from_str(c).unwrap());
    }
    h
}

#[test]
fn pairs_trims_unquotes_and_spans_headers() {
    let h = headers(&[" a=1 ;b=\"2\";; c = 3 ", "d=4; novalue; e="]);
    let got: Vec<(&[u8], &[u8])> = pairs(&h).collect();
    let want: Vec<(&[u8], &[u8])> = vec![
        (b"a", b"1"),
        (b"b", b"2"),
        (b"c", b"3"),
        (b"d", b"4"),
        (b"", b"novalue"),
        (b"e", b""),
    ];
    assert_eq!(got, want);
}

#[test]
fn classify_names() {
    let n = names();
    assert_eq!(n.classify(b"oidc_session"), Kind::Plain);
    assert_eq!(n.classify(b"oidc_session_chunks"), Kind::Count);
    assert_eq!(n.classify(b"oidc_session_0"), Kind::Chunk(0));
    assert_eq!(n.classify(b"oidc_session_15"), Kind::Chunk(15));
    assert_eq!(n.classify(b"oidc_session_16"), Kind::StrayChunk);
    assert_eq!(n.classify(b"oidc_session_01"), Kind::StrayChunk);
    assert_eq!(n.classify(b"oidc_session_99999999999999"), Kind::StrayChunk);
    assert_eq!(n.classify(b"oidc_state_abc"), Kind::State);
    assert_eq!(n.classify(b"oidc_state_"), Kind::State);
    assert_eq!(n.classify(b"oidc_session_"), Kind::Other);
    assert_eq!(n.classify(b"oidc_session_x"), Kind::Other);
    assert_eq!(n.classify(b"oidc_sessionx"), Kind::Other);
    assert_eq!(n.classify(b"oidc_sessio"), Kind::Other);
    assert_eq!(n.classify(b"OIDC_SESSION"), Kind::Other);
    assert_eq!(n.classify(b""), Kind::Other);
}

#[test]
fn first_occurrence_wins() {
    let h = headers(&[
        "oidc_session=first; oidc_session=second",
        "oidc_session=third",
    ]);
    let p = Presented::scan(&h, &names());
    assert_eq!(p.plain, Some(&b"first"[..]));
}

#[test]
fn reassembles_chunks_in_index_order() {
    let h = headers(&[
        "oidc_session_1=BBB; oidc_session_chunks=3; oidc_session_0=AAA; x=y; oidc_session_2=C",
    ]);
    let p = Presented::scan(&h, &names());
    assert_eq!(p.sealed().unwrap().unwrap(), "AAABBBC");
}

#[test]
fn invalid_chunk_counts() {
    for count in [
        "", "0", "17", "99999999", "-1", "1.0", " ", "ab", "016", "\"\"",
    ] {
        let c = format!("oidc_session_chunks={count}; oidc_session_0=AAA");
        let h = headers(&[&c]);
        let p = Presented::scan(&h, &names());
        assert_eq!(p.sealed(), Err(InvalidReason::ChunkCount), "{count:?}");
    }
    // Chunks without a count.
    let h = headers(&["oidc_session_0=AAA"]);
    assert_eq!(
        Presented::scan(&h, &names()).sealed(),
        Err(InvalidReason::ChunkCount)
    );
}

#[test]
fn missing_chunk() {
    let h = headers(&["oidc_session_chunks=3; oidc_session_0=A; oidc_session_2=C"]);
    assert_eq!(
        Presented::scan(&h, &names()).sealed(),
        Err(InvalidReason::ChunkMissing)
    );
    let h = headers(&["oidc_session_chunks=16; oidc_session_0=A"]);
    assert_eq!(
        Presented::scan(&h, &names()).sealed(),
        Err(InvalidReason::ChunkMissing)
    );
}

#[test]
fn oversized_reassembly_is_refused_before_joining() {
    let big = "A".repeat(MAX_SEALED_LEN / 2 + 1);
    let c = format!("oidc_session_chunks=2; oidc_session_0={big}; oidc_session_1={big}");
    let h = headers(&[&c]);
    assert_eq!(
        Presented::scan(&h, &names()).sealed(),
        Err(InvalidReason::TooLarge)
    );
}

#[test]
fn nothing_presented_is_none() {
    let h = headers(&["other=1; oidc_state_x=2"]);
    assert_eq!(Presented::scan(&h, &names()).sealed(), Ok(None));
    assert_eq!(
        Presented::scan(&HeaderMap::new(), &names()).sealed(),
        Ok(None)
    );
}

#[test]
fn non_utf8_cookie_headers_are_handled() {
    let mut h = HeaderMap::new();
    h.append(
        COOKIE,
        HeaderValue::from_bytes(b"caf\xe9=1; oidc_session=\xff\xfe; keep=\xe9").unwrap(),
    );
    assert_eq!(
        Presented::scan(&h, &names()).sealed(),
        Err(InvalidReason::Encoding)
    );
    strip(&mut h, &names());
    assert_eq!(h.get(COOKIE).unwrap().as_bytes(), b"caf\xe9=1; keep=\xe9");
}

#[test]
fn strip_removes_only_ours_and_merges() {
    let mut h = headers(&[
        "a=1; oidc_session=S; oidc_state_abc=T",
        "oidc_session_0=X; b=\"two\"; oidc_session_chunks=1; oidc_session_77=Z",
        "oidc_sessionette=keep",
    ]);
    strip(&mut h, &names());
    let all: Vec<_> = h.get_all(COOKIE).iter().collect();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0], "a=1; b=\"two\"; oidc_sessionette=keep");
}

#[test]
fn strip_removes_header_when_nothing_is_left() {
    let mut h = headers(&["oidc_session=S", "oidc_state_1=x"]);
    strip(&mut h, &names());
    assert!(h.get(COOKIE).is_none());
}

#[test]
fn strip_leaves_foreign_cookies_untouched() {
    let mut h = headers(&["a=1;b=2"]);
    let before = h.clone();
    strip(&mut h, &names());
    assert_eq!(h, before);
    // Several Cookie fields (HTTP/2) become one line for the HTTP/1.1 upstream.
    let mut h = headers(&["a=1;b=2", "c=3"]);
    strip(&mut h, &names());
    let all: Vec<_> = h.get_all(COOKIE).iter().collect();
    assert_eq!(all, ["a=1; b=2; c=3"]);
}

#[test]
fn attributes() {
    let lax = CookieAttrs::new(SameSite::Lax, None);
    assert_eq!(
        lax.set("n", "v", true).unwrap(),
        "n=v; Path=/; HttpOnly; SameSite=Lax; Secure"
    );
    assert_eq!(
        lax.set("n", "v", false).unwrap(),
        "n=v; Path=/; HttpOnly; SameSite=Lax"
    );
    let domain = CookieDomain::parse("example.com");
    let strict = CookieAttrs::new(SameSite::Strict, domain.as_ref());
    assert_eq!(
        strict.expire("n", true).unwrap(),
        "n=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/; HttpOnly; \
         SameSite=Strict; Secure; Domain=example.com"
    );
    let none = CookieAttrs::new(SameSite::None, None);
    assert_eq!(
        none.set("n", "v", true).unwrap(),
        "n=v; Path=/; HttpOnly; SameSite=None; Secure"
    );
    assert_eq!(none.set("n", "v", false).unwrap(), "n=v; Path=/; HttpOnly");
    // A domain that would inject attributes is no domain (config validation reports it).
    assert_eq!(CookieDomain::parse("x.com; Path=/admin"), None);
    // Values a header cannot carry are refused, not panicked on.
    assert!(lax.set("n", "a\nb", false).is_none());
}

#[test]
fn chunks_split_at_chunk_size() {
    let s = "x".repeat(CHUNK_SIZE * 2 + 5);
    let parts: Vec<&str> = chunks(&s).collect();
    assert_eq!(
        parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
        [CHUNK_SIZE, CHUNK_SIZE, 5]
    );
}
