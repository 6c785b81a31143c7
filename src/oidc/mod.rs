//! The browser side of OpenID Connect: the login redirect with its state cookie, the
//! callback that turns a code into a session, and logout (RP-initiated, front- and
//! back-channel). Everything said to the provider itself is in `provider`.

pub(crate) mod callback;
pub(crate) mod chooser;
pub(crate) mod login;
pub(crate) mod logout;
pub(crate) mod preserve_post;
pub(crate) mod state;
