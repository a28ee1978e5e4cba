//! `wss://`: TLS with rustls (through tokio-rustls), its certificate chain
//! and key read from PEM files and read again when they change, so a renewed
//! certificate is served without a restart (connections already open keep
//! the one they agreed on).

use crate::net::transport::Stream;
use anyhow::{Context, Result};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

/// How often the certificate files are checked for a change.
pub const WATCH_EVERY: Duration = Duration::from_secs(1);

pub use wshost_config::TlsFiles;

/// The TLS side of the listener: what it accepts with, and the certificate
/// it presents, swapped when the files change.
pub struct Tls {
    acceptor: TlsAcceptor,
    certs: Arc<Certs>,
}

/// The certificate handed to every new handshake.
#[derive(Debug)]
struct Certs {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' modification times when last read.
    stamps: Mutex<Stamps>,
}

/// What the files hold (a few KiB, kept whole): a renewal that keeps the
/// old modification time (`cp -p`, `rsync -t`, a coarse clock) is a change too.
type Stamps = (Option<Vec<u8>>, Option<Vec<u8>>);

impl Tls {
    /// Read the files; fails naming the one that is missing or not PEM, or
    /// a key that does not match the certificate.
    pub fn load(files: TlsFiles) -> Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let stamps = stamps(&files);
        let key = read(&files, &provider)?;
        let certs = Arc::new(Certs {
            files,
            provider: provider.clone(),
            current: RwLock::new(Arc::new(key)),
            stamps: Mutex::new(stamps),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(certs.clone());
        // WebSocket handshakes are HTTP/1.1 (RFC 8441's HTTP/2 ones are not
        // served): a browser that offers h2 as well picks this.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            certs,
        })
    }

    /// The TLS handshake, within `timeout`.
    pub async fn accept(&self, tcp: TcpStream, timeout: Duration) -> std::io::Result<Stream> {
        let stream = tokio::time::timeout(timeout, self.acceptor.accept(tcp))
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))?;
        Ok(Stream::Tls(Box::new(stream)))
    }

    /// Read the files again if they changed since last read. A pair that
    /// fails to load (a half-written renewal, a key that does not match)
    /// leaves the current certificate in place and is tried again at the
    /// next change. Returns whether a new certificate is now served.
    pub fn reload_if_changed(&self) -> bool {
        let certs = &self.certs;
        let now = stamps(&certs.files);
        {
            let mut seen = certs.stamps.lock().unwrap_or_else(|e| e.into_inner());
            if *seen == now {
                return false;
            }
            *seen = now;
        }
        self.reload()
    }

    /// Read the files again, whether or not they changed (SIGHUP).
    pub fn reload(&self) -> bool {
        let certs = &self.certs;
        match read(&certs.files, &certs.provider) {
            Ok(key) => {
                *certs.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
                tracing::info!(
                    "TLS certificate reloaded from {}",
                    certs.files.cert.display()
                );
                true
            }
            Err(e) => {
                tracing::error!("TLS certificate not reloaded, the current one stays: {e:#}");
                false
            }
        }
    }

    /// Check the files every [`WATCH_EVERY`] and serve a new certificate
    /// once they change.
    pub async fn watch(self: Arc<Self>) {
        loop {
            tokio::time::sleep(WATCH_EVERY).await;
            let tls = self.clone();
            let _ = tokio::task::spawn_blocking(move || tls.reload_if_changed()).await;
        }
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

fn stamps(files: &TlsFiles) -> Stamps {
    let held = |path: &Path| std::fs::read(path).ok();
    (held(&files.cert), held(&files.key))
}

/// The chain (leaf first) and its key, checked to belong together.
fn read(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey> {
    let cert = &files.cert;
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("{}: not a PEM certificate file", cert.display()))?;
    anyhow::ensure!(
        !chain.is_empty(),
        "{}: holds no certificate (PEM `BEGIN CERTIFICATE`)",
        cert.display()
    );
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("{}: not a PEM private key file", files.key.display()))?;
    CertifiedKey::from_der(chain, key, provider).with_context(|| {
        format!(
            "{} and {} do not make a usable certificate and key",
            cert.display(),
            files.key.display()
        )
    })
}
