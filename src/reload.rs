//! Hot reload of the configuration (docs/behaviour.md §2.1): on SIGHUP, or when `run --watch`
//! sees the file change, the file is read and checked like `check-config`, and the new
//! [`Gateway`] is swapped in whole. Each request loads the gateway once when it starts and
//! keeps it, so in-flight requests finish on the config they started with. A file with
//! problems changes nothing: every problem is logged with its key path.
//!
//! A few keys are bound to what the process holds (sockets, the Redis connection, the
//! session store): a reload keeps their running values, logs which changed, and they apply
//! at the next restart. See [`RESTART_ONLY`].

use crate::config::Config;
use crate::gateway::Gateway;
use crate::observe::LogControl;
use arc_swap::ArcSwap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::signal::unix::Signal;

/// The keys a reload cannot apply (see [`keep_restart_only`]).
pub const RESTART_ONLY: &[&str] = &[
    "server.listen",
    "server.redirect_http_listen",
    "server.tls_cert_file / server.tls_key_file",
    "server.max_connections",
    "server.workers",
    "admin.listen",
    "session.store",
    "session.memory_capacity",
    "[redis]",
    "log.format",
    "[telemetry]",
];

/// How often `run --watch` looks at the file's modification time and size.
pub const WATCH_EVERY: Duration = Duration::from_secs(2);

/// The gateway requests are served by now. Cheap to read: one lock-free load per request.
pub struct Current(ArcSwap<Gateway>);

impl Current {
    pub fn new(gateway: Gateway) -> Current {
        Current(ArcSwap::from_pointee(gateway))
    }

    /// The gateway a new request runs on (and keeps until it ends).
    pub fn get(&self) -> Arc<Gateway> {
        self.0.load_full()
    }

    /// A short look, for what does not outlive the caller's statement.
    pub(crate) fn peek(&self) -> arc_swap::Guard<Arc<Gateway>> {
        self.0.load()
    }
}

/// Re-reads one config file into a [`Current`]. Reloads are serialised.
#[derive(Clone)]
pub struct Reloader {
    current: Arc<Current>,
    path: PathBuf,
    serial: Arc<tokio::sync::Mutex<()>>,
    /// Applies `log.level` (absent when the caller set logging up itself, as tests do).
    log: Option<Arc<LogControl>>,
}

/// Why a reload changed nothing.
#[derive(Debug)]
pub struct ReloadFailed(pub String);

impl std::fmt::Display for ReloadFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Reloader {
    pub fn new(current: Arc<Current>, path: &Path) -> Reloader {
        Reloader {
            current,
            path: path.to_path_buf(),
            serial: Arc::default(),
            log: None,
        }
    }

    /// Also applies `[log] level` on reload, through `control`.
    pub fn with_log_control(mut self, control: LogControl) -> Reloader {
        self.log = Some(Arc::new(control));
        self
    }

    /// Reads, checks and swaps in the file; the new generation. On error nothing changed,
    /// and the error lists every problem with its key path (also logged). Counted in
    /// `/metrics` either way.
    pub async fn reload(&self) -> Result<u64, ReloadFailed> {
        let _serial = self.serial.lock().await;
        let current = Arc::clone(&self.current);
        let path = self.path.clone();
        let log = self.log.clone();
        // Reading files and stretching a new passphrase (PBKDF2) block: not on a worker.
        let outcome = tokio::task::spawn_blocking(move || {
            let old = current.get();
            let config = Config::load(&path).map_err(|e| ReloadFailed(e.to_string()))?;
            let config = keep_restart_only(config, &old.services.config);
            // The level is checked by the config check already; applied first so that a
            // filter the subscriber refuses still leaves everything else unchanged.
            if let Some(log) = &log {
                if config.log.level != old.services.config.log.level {
                    log.set_level(&config.log.level).map_err(ReloadFailed)?;
                }
            }
            let new = old.reloaded(config);
            let generation = new.services.generation;
            current.0.store(Arc::new(new));
            Ok(generation)
        })
        .await
        .unwrap_or_else(|e| Err(ReloadFailed(format!("the reload task failed: {e}"))));
        let gateway = self.current.peek();
        let metrics = &gateway.services.metrics;
        match &outcome {
            Ok(generation) => {
                metrics.config_reloads.inc();
                for warning in &gateway.services.config.warnings {
                    tracing::warn!(key = warning.key.as_str(), "{}", warning.reason);
                }
                tracing::info!(
                    generation,
                    file = %self.path.display(),
                    "configuration reloaded"
                );
            }
            Err(e) => {
                metrics.config_reload_failures.inc();
                for line in e.0.lines().map(str::trim).filter(|l| !l.is_empty()) {
                    tracing::error!(file = %self.path.display(), "reload refused: {line}");
                }
                tracing::error!(
                    generation = gateway.services.generation,
                    "configuration NOT reloaded: the running one is kept"
                );
            }
        }
        outcome
    }

    /// Reloads on every SIGHUP received through `hangups` ([`hangups`]), forever.
    pub async fn on_hangup(self, hangups: std::io::Result<Signal>) {
        let mut hangups = match hangups {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP: no reload on signal");
                return;
            }
        };
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration");
            let _ = self.reload().await;
        }
    }

    /// `run --watch`: reloads whenever the file's modification time or size (following a
    /// symlink: a Kubernetes ConfigMap swaps one) differs from `loaded`, the file's
    /// [`stamp`] taken before it was read at start; forever.
    pub async fn watch(self, loaded: Option<Stamp>) {
        let mut seen = loaded;
        let mut tick = tokio::time::interval(WATCH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = stamp(&self.path);
            if now != seen && now.is_some() {
                seen = now;
                tracing::info!(file = %self.path.display(), "the configuration file changed: reloading");
                let _ = self.reload().await;
            }
        }
    }
}

/// Starts catching SIGHUP. Call it before the listeners are bound: from then on a SIGHUP
/// no longer ends the process (its default), and the ones that arrive before
/// [`Reloader::on_hangup`] runs are kept for it.
pub fn hangups() -> std::io::Result<Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
}

/// What identifies a version of a file: modification time and size.
pub type Stamp = (SystemTime, u64);

/// The [`Stamp`] of the file at `path` now (following symlinks); `None` when unreadable.
pub fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Puts back the running values of the keys only a restart applies, warning for each one
/// the file changed.
fn keep_restart_only(mut new: Config, old: &Config) -> Config {
    let mut kept = Vec::new();
    if new.server.listen != old.server.listen {
        new.server.listen.clone_from(&old.server.listen);
        kept.push("server.listen");
    }
    if new.server.redirect_http_listen != old.server.redirect_http_listen {
        new.server
            .redirect_http_listen
            .clone_from(&old.server.redirect_http_listen);
        kept.push("server.redirect_http_listen");
    }
    if new.server.tls != old.server.tls {
        new.server.tls.clone_from(&old.server.tls);
        kept.push("server.tls_cert_file / server.tls_key_file");
    }
    if new.server.max_connections != old.server.max_connections {
        new.server.max_connections = old.server.max_connections;
        kept.push("server.max_connections");
    }
    if new.server.workers != old.server.workers {
        new.server.workers = old.server.workers;
        kept.push("server.workers");
    }
    let admin = |c: &Config| c.admin.as_ref().map(|a| a.listen.clone());
    if admin(&new) != admin(old) {
        new.admin.clone_from(&old.admin);
        kept.push("admin.listen");
    }
    if new.session.store != old.session.store {
        new.session.store = old.session.store;
        kept.push("session.store");
    }
    if new.session.memory_capacity != old.session.memory_capacity {
        new.session.memory_capacity = old.session.memory_capacity;
        kept.push("session.memory_capacity");
    }
    if new.redis != old.redis {
        new.redis.clone_from(&old.redis);
        kept.push("[redis]");
    }
    if new.log.format != old.log.format {
        new.log.format = old.log.format;
        kept.push("log.format");
    }
    if new.telemetry != old.telemetry {
        new.telemetry.clone_from(&old.telemetry);
        kept.push("[telemetry]");
    }
    for key in kept {
        tracing::warn!(
            key,
            "changed in the file, but only a restart applies it: the running value is kept"
        );
    }
    new
}
