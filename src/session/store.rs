//! The contract for server-side session stores (memory now, Redis later): the cookie then
//! holds only a sealed session id, and the session itself lives behind this trait.

use super::{ActiveSession, Session, SessionError};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// A server-side session store, keyed by [`Session::id`].
///
/// `get` hands out an `Arc` so an in-process store can share its copy instead of cloning a
/// whole session on every request; a remote store wraps what it decoded.
pub(crate) trait Backend: Send + Sync + 'static {
    /// The session stored under `id`, if any and not yet expired. A store that cannot be
    /// reached answers `None` (the user logs in again) and logs why.
    fn get(&self, id: &str) -> impl Future<Output = Option<Arc<ActiveSession>>> + Send;

    /// Stores `session` under its id for `ttl`, replacing any previous value.
    fn put(
        &self,
        session: &Session,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), SessionError>> + Send;

    /// Forgets `id`. Removing an unknown id is not an error.
    fn remove(&self, id: &str) -> impl Future<Output = ()> + Send;
}
