//! TLS on the proxied listeners: rustls (aws-lc-rs), TLS 1.2 and 1.3, ALPN `h2` and
//! `http/1.1`, and a certificate that is reloaded when its files change (checked every
//! [`WATCH_EVERY`]) or on SIGHUP. A reload swaps what new handshakes get; established
//! connections are untouched. A new certificate that does not load keeps the old one
//! serving, and the reason is logged.

use crate::config::{load_certified_key, ListenerTls};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

/// How often the certificate files' modification times are looked at.
const WATCH_EVERY: Duration = Duration::from_secs(5);
/// A client that has not finished its handshake by then is dropped.
pub(super) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The certificate in service, swapped by [`Certificate::reload`].
pub(super) struct Certificate {
    files: ListenerTls,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' modification times when last loaded (or tried).
    seen: RwLock<(Option<SystemTime>, Option<SystemTime>)>,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("cert_file", &self.files.cert_file)
            .finish_non_exhaustive()
    }
}

fn modified(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl Certificate {
    /// Loads the files (config validation already did once, so a failure here means they
    /// changed in between).
    pub(super) fn load(files: &ListenerTls) -> Result<Arc<Certificate>, String> {
        let seen = (modified(&files.cert_file), modified(&files.key_file));
        let key = load_certified_key(&files.cert_file, &files.key_file)?;
        Ok(Arc::new(Certificate {
            files: files.clone(),
            current: RwLock::new(key),
            seen: RwLock::new(seen),
        }))
    }

    /// Loads the files again and swaps the certificate in; on failure keeps the old one.
    /// Whether a new certificate is in service.
    pub(super) fn reload(&self) -> bool {
        *self.seen.write().unwrap_or_else(|e| e.into_inner()) = (
            modified(&self.files.cert_file),
            modified(&self.files.key_file),
        );
        match load_certified_key(&self.files.cert_file, &self.files.key_file) {
            Ok(key) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = key;
                tracing::info!(cert_file = %self.files.cert_file.display(), "TLS certificate reloaded");
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "new TLS certificate refused; the previous one stays in service");
                false
            }
        }
    }

    /// Whether either file changed since the last (attempted) load.
    fn changed(&self) -> bool {
        let now = (
            modified(&self.files.cert_file),
            modified(&self.files.key_file),
        );
        *self.seen.read().unwrap_or_else(|e| e.into_inner()) != now
    }

    /// Runs until the process ends: reloads when the files change or on SIGHUP.
    pub(super) async fn watch(self: Arc<Self>) {
        #[cfg(unix)]
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut tick = tokio::time::interval(WATCH_EVERY);
        loop {
            #[cfg(unix)]
            let signalled = async {
                match hangup.as_mut() {
                    Some(h) => {
                        h.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let signalled = std::future::pending::<()>();
            tokio::select! {
                () = signalled => {
                    tracing::info!("SIGHUP: reloading the TLS certificate");
                    self.reload();
                }
                _ = tick.tick() => {
                    if self.changed() {
                        self.reload();
                    }
                }
            }
        }
    }

    /// The rustls server configuration that serves this certificate.
    pub(super) fn server_config(self: &Arc<Self>) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("aws-lc-rs supports TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.current.read().unwrap_or_else(|e| e.into_inner()),
        ))
    }
}

/// An accepted connection, plain or TLS: one type, so one connection driver serves both.
pub(super) enum Stream {
    Plain(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>),
}

macro_rules! delegate {
    ($self:ident, $s:ident => $call:expr) => {
        match $self.get_mut() {
            Stream::Plain($s) => {
                let $s = std::pin::Pin::new($s);
                $call
            }
            Stream::Tls($s) => {
                let $s = std::pin::Pin::new($s.as_mut());
                $call
            }
        }
    };
}

impl tokio::io::AsyncRead for Stream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl tokio::io::AsyncWrite for Stream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        delegate!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }
}
