use super::*;

fn hook(method: Method, query: &str) -> Hook {
    Hook::of(&method, query)
}

#[test]
fn the_callback_needs_a_get_with_state_and_code_or_error() {
    assert_eq!(hook(Method::GET, "code=c&state=s"), Hook::Callback);
    assert_eq!(
        hook(Method::GET, "error=access_denied&state=s"),
        Hook::Callback
    );
    // The callback wins over any other parameter.
    assert_eq!(
        hook(Method::GET, "code=c&state=s&logout=%2F"),
        Hook::Callback
    );
    assert_eq!(hook(Method::GET, "code=c"), Hook::Invalid);
    assert_eq!(hook(Method::POST, "code=c&state=s"), Hook::Invalid);
}

#[test]
fn a_post_naming_no_hook_is_a_form_post_callback() {
    assert_eq!(hook(Method::POST, ""), Hook::FormPostCallback);
    assert_eq!(hook(Method::POST, "x=1"), Hook::FormPostCallback);
    // Never taken for the back-channel logout or another hook.
    assert_eq!(
        hook(Method::POST, "logout=backchannel"),
        Hook::BackChannelLogout
    );
    assert_eq!(hook(Method::POST, "info=json"), Hook::Info("json".into()));
    assert_eq!(hook(Method::GET, ""), Hook::Invalid);
}

#[test]
fn logout_comes_in_three_kinds() {
    assert_eq!(
        hook(Method::POST, "logout=backchannel"),
        Hook::BackChannelLogout
    );
    // A GET cannot be a back-channel logout: it is an RP-initiated one to "backchannel".
    assert_eq!(
        hook(Method::GET, "logout=backchannel"),
        Hook::Logout("backchannel".into())
    );
    assert_eq!(
        hook(Method::GET, "logout=get&sid=s1&iss=https%3A%2F%2Fop"),
        Hook::FrontChannelLogout {
            sid: Some("s1".into()),
            iss: Some("https://op".into())
        }
    );
    assert_eq!(hook(Method::GET, "logout="), Hook::Logout(String::new()));
    assert_eq!(
        hook(Method::GET, "logout=%2Fbye&refresh=%2F"),
        Hook::Logout("/bye".into()),
        "logout before refresh"
    );
}

#[test]
fn refresh_then_cache_removal_then_info() {
    assert_eq!(
        hook(Method::GET, "refresh=%2Fapp&access_token=at&info=json"),
        Hook::Refresh {
            return_to: "/app".into(),
            access_token: Some("at".into())
        }
    );
    assert_eq!(
        hook(Method::GET, "remove_at_cache=at&info=json"),
        Hook::RemoveFromCache("at".into())
    );
    assert_eq!(hook(Method::GET, "info=html"), Hook::Info("html".into()));
    assert_eq!(hook(Method::GET, ""), Hook::Invalid);
    assert_eq!(hook(Method::GET, "unknown=1"), Hook::Invalid);
}

#[test]
fn the_first_value_of_a_repeated_parameter_counts() {
    assert_eq!(
        hook(Method::GET, "refresh=%2Fa&refresh=%2Fb"),
        Hook::Refresh {
            return_to: "/a".into(),
            access_token: None
        }
    );
}

#[test]
fn refresh_errors_go_before_the_fragment() {
    let location = |r: Response<Body>| r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(
        location(refresh_error("/app", "no_access_token")),
        "/app?error_code=no_access_token"
    );
    assert_eq!(
        location(refresh_error("/app?x=1#top", "refresh_failed")),
        "/app?x=1&error_code=refresh_failed#top"
    );
}
