//! The form posts kept across a login (`route.preserve_post`): sealed values under random
//! ids, each for as long as a login may take, taken (deleted) when read. Without `[redis]`
//! they are held in this process; with it they are in Redis, so the login may finish on any
//! replica. Either way a byte-bounded cache bounds what one replica holds: the values
//! themselves, or (with Redis) a ledger of the sizes it put there, whose evictions delete
//! the Redis keys too. An anonymous client can start any number of logins, each keeping a
//! form: the oldest kept forms go first, memory and Redis never grow beyond the bound.

use crate::redis_link::RedisLink;
use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use std::sync::Arc;
use std::time::Duration;

/// How long a kept form waits for its login: the login state's lifetime (300 s) and a
/// little more, so that a form outlives every state cookie that points at it.
pub(crate) const KEPT_FOR: Duration = Duration::from_secs(310);

/// What one entry costs beside its sealed value (the id, the cache's own bookkeeping).
const ENTRY_OVERHEAD: usize = 160;

/// Why a kept form could not be stored or read. Never holds an id or a value.
#[derive(Debug, thiserror::Error)]
#[error("redis at {target}: {cause}")]
pub(crate) struct StoreFailure {
    target: String,
    cause: String,
}

#[derive(Clone)]
struct Entry {
    /// The sealed form; `None` in the ledger of a Redis store.
    sealed: Option<Arc<str>>,
    weight: u32,
}

/// Clones share the entries (a config reload keeps them when the bound is unchanged).
#[derive(Clone)]
pub(crate) struct KeptPosts {
    entries: Cache<String, Entry>,
    redis: Option<Arc<RedisLink>>,
    max_bytes: u64,
}

impl std::fmt::Debug for KeptPosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeptPosts")
            .field("entries", &self.entries.entry_count())
            .field("redis", &self.redis.is_some())
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

impl KeptPosts {
    /// At most `max_bytes` of sealed forms in this process (or put in `redis` by it).
    pub(crate) fn new(max_bytes: u64, redis: Option<Arc<RedisLink>>) -> KeptPosts {
        let builder = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_, e: &Entry| e.weight)
            .time_to_live(KEPT_FOR)
            // Least recently used first, and every new form admitted: a flood of kept forms
            // pushes out the oldest rather than being refused in favour of them.
            .eviction_policy(EvictionPolicy::lru());
        let entries = match &redis {
            Some(link) => {
                let link = Arc::clone(link);
                builder
                    .eviction_listener(move |id: Arc<String>, _, cause| {
                        if cause == RemovalCause::Size {
                            forget_in_redis(&link, &id);
                        }
                    })
                    .build()
            }
            None => builder.build(),
        };
        KeptPosts {
            entries,
            redis,
            max_bytes,
        }
    }

    /// The byte bound this store was built with.
    pub(crate) fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Keeps `sealed` under `id` for [`KEPT_FOR`].
    pub(crate) async fn put(&self, id: &str, sealed: String) -> Result<(), StoreFailure> {
        let weight = u32::try_from(sealed.len() + ENTRY_OVERHEAD).unwrap_or(u32::MAX);
        let Some(link) = &self.redis else {
            let entry = Entry {
                sealed: Some(sealed.into()),
                weight,
            };
            self.entries.insert(id.to_string(), entry);
            return Ok(());
        };
        let mut cmd = redis::cmd("SET");
        cmd.arg(link.key(&key(id)))
            .arg(sealed)
            .arg("EX")
            .arg(KEPT_FOR.as_secs());
        link.run::<()>(&cmd)
            .await
            .map_err(|e| failure(link, "SET", &e))?;
        self.entries.insert(
            id.to_string(),
            Entry {
                sealed: None,
                weight,
            },
        );
        Ok(())
    }

    /// Takes the form kept under `id`: `None` when there is none (never kept, expired,
    /// pushed out, or already taken). Whoever takes it first gets it; later takes get
    /// `None`, on every replica.
    pub(crate) async fn take(&self, id: &str) -> Result<Option<String>, StoreFailure> {
        let Some(link) = &self.redis else {
            return Ok(self
                .entries
                .remove(id)
                .and_then(|e| e.sealed)
                .map(|s| s.to_string()));
        };
        // Explicit removal: the listener deletes nothing; the transaction below does.
        self.entries.invalidate(id);
        let name = link.key(&key(id));
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("GET")
            .arg(&name)
            .cmd("DEL")
            .arg(&name)
            .ignore();
        let (sealed,): (Option<String>,) = link
            .run_pipe(&pipe)
            .await
            .map_err(|e| failure(link, "GET", &e))?;
        Ok(sealed)
    }
}

/// The Redis key of the form kept under `id` (under the `[redis]` prefix).
fn key(id: &str) -> String {
    format!("kept_post:{id}")
}

fn failure(link: &RedisLink, command: &str, e: &crate::redis_link::Failure) -> StoreFailure {
    link.warn(
        command,
        e,
        "a form kept across a login could not be stored or read; the user is told",
    );
    StoreFailure {
        target: link.target().to_string(),
        cause: e.to_string(),
    }
}

/// Deletes the Redis copy of a form the ledger pushed out (in the background: the eviction
/// happens inside a cache call, which must not wait for Redis).
fn forget_in_redis(link: &Arc<RedisLink>, id: &str) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let link = Arc::clone(link);
    let name = link.key(&key(id));
    runtime.spawn(async move {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(name);
        if let Err(e) = link.run::<()>(&cmd).await {
            link.warn(
                "DEL",
                &e,
                "a kept form pushed out of the byte bound stays in Redis until it expires",
            );
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_kept_form_is_taken_once() {
        let kept = KeptPosts::new(1 << 20, None);
        kept.put("a", "sealed-a".into()).await.unwrap();
        assert_eq!(kept.take("a").await.unwrap().as_deref(), Some("sealed-a"));
        assert_eq!(kept.take("a").await.unwrap(), None);
        assert_eq!(kept.take("never").await.unwrap(), None);
    }

    #[tokio::test]
    async fn memory_is_bounded_by_bytes_and_the_oldest_go_first() {
        let kept = KeptPosts::new(1 << 20, None);
        let big = "x".repeat(90 * 1024);
        for i in 0..100 {
            kept.put(&format!("f{i}"), big.clone()).await.unwrap();
        }
        kept.entries.run_pending_tasks();
        assert!(
            kept.entries.weighted_size() <= 1 << 20,
            "{} bytes held",
            kept.entries.weighted_size()
        );
        assert!(kept.entries.entry_count() <= 11);
        assert_eq!(
            kept.take("f0").await.unwrap(),
            None,
            "the oldest went first"
        );
        assert!(
            kept.take("f99").await.unwrap().is_some(),
            "the newest is kept"
        );
    }

    #[tokio::test]
    async fn redis_keeps_it_for_every_replica_once_and_the_ledger_bounds_it() {
        let Some(server) =
            crate::session::test_redis::RedisServer::start_or_skip("kept posts in redis")
        else {
            return;
        };
        let config = crate::config::Config::from_toml(
            &format!(
                "[provider]\nissuer = \"https://idp.example.com\"\nclient_id = \"x\"\n\
                 client_secret = \"y\"\n[session]\npassphrase = \"0123456789abcdef0123\"\n\
                 [redis]\nurl = \"{}\"\n[[route]]\npath = \"/\"\nupstream = \"http://127.0.0.1:1\"\n",
                server.url()
            ),
            "test",
            None,
        )
        .unwrap();
        let link = Arc::new(RedisLink::new(config.redis.as_ref().unwrap()));
        let one = KeptPosts::new(1 << 20, Some(Arc::clone(&link)));
        let other = KeptPosts::new(1 << 20, Some(Arc::clone(&link)));
        one.put("a", "sealed-a".into()).await.unwrap();
        assert_eq!(other.take("a").await.unwrap().as_deref(), Some("sealed-a"));
        assert_eq!(
            one.take("a").await.unwrap(),
            None,
            "taken once, on any replica"
        );

        let big = "x".repeat(90 * 1024);
        for i in 0..30 {
            one.put(&format!("f{i}"), big.clone()).await.unwrap();
        }
        one.entries.run_pending_tasks();
        // The evictions delete in the background.
        let mut left = 30;
        for _ in 0..100 {
            let mut cmd = redis::cmd("KEYS");
            cmd.arg(link.key("kept_post:*"));
            left = link.run::<Vec<String>>(&cmd).await.unwrap().len();
            if left <= 11 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(left <= 11, "{left} kept forms left in Redis");
        assert!(
            other.take("f29").await.unwrap().is_some(),
            "the newest is kept"
        );
    }
}
