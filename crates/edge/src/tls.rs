//! TLS (issue 17): the rustls configurations of the TLS listeners (certificate and key
//! per listener, reloadable) and of outbound connections (roots, server verification,
//! client certificate). The connections themselves are `tcp`'s, wrapped.
//!
//! rustls runs on the `ring` provider: it builds with the C compiler alone (aws-lc-rs
//! would need cmake). Roots default to the system's trust store (`rustls-native-certs`)
//! rather than a compiled-in list: the operating system keeps it current, and
//! `tls.ca_file` replaces it when carriers use a private CA.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use trunkstore_config::Settings;
use trunkstore_proxy::TlsName;

/// Everything TLS needs from the settings (`listen.tls`, `tls`). The default: no TLS
/// listener, servers verified against the system's roots.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// One per TLS listener: address, certificate chain file, key file.
    pub listeners: Vec<TlsListenerFiles>,
    /// Roots peers are verified against; `None`: the system's.
    pub ca_file: Option<PathBuf>,
    /// Verify the servers we connect to (default true).
    pub verify_server: bool,
    /// Client certificate chain and key presented when a server asks (mutual TLS).
    pub client_identity: Option<(PathBuf, PathBuf)>,
    /// Listeners refuse peers without a verifiable client certificate.
    pub require_client_certificate: bool,
}

/// A TLS listener's address and the PEM files of its identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsListenerFiles {
    /// Where it listens.
    pub address: SocketAddr,
    /// PEM certificate chain, leaf first.
    pub certificate: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            listeners: Vec::new(),
            ca_file: None,
            verify_server: true,
            client_identity: None,
            require_client_certificate: false,
        }
    }
}

impl TlsSettings {
    /// From the settings' `listen.tls` and `tls`.
    pub fn from_settings(s: &Settings) -> TlsSettings {
        let t = &s.tls;
        TlsSettings {
            listeners: s
                .listen
                .tls
                .iter()
                .map(|l| TlsListenerFiles {
                    address: l.address,
                    certificate: l.certificate.clone(),
                    key: l.key.clone(),
                })
                .collect(),
            ca_file: t.ca_file.clone(),
            verify_server: t.verify_server,
            client_identity: t.client_certificate.clone().zip(t.client_key.clone()),
            require_client_certificate: t.require_client_certificate,
        }
    }
}

/// rustls's ring provider. rustls 0.23.48 deprecates it only because it lacks the
/// post-quantum key exchange that aws-lc-rs has; classical X25519/P-256 is what SIP
/// peers (carriers, PBXs, Teams) offer, and aws-lc-rs would need cmake to build.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn invalid(what: impl fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Every certificate of a PEM file (at least one).
fn certificates(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(invalid(format!("{}: no certificate", path.display())));
    }
    Ok(certs)
}

/// The private key of a PEM file (its content never goes into an error).
fn private_key(path: &Path) -> io::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| invalid(format!("{}: no usable private key ({e})", path.display())))
}

/// The roots peers are verified against: `ca_file`, else the system's trust store.
fn roots(ca_file: Option<&Path>) -> io::Result<Arc<RootCertStore>> {
    let mut store = RootCertStore::empty();
    let certs = match ca_file {
        Some(path) => certificates(path)?,
        None => {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "cannot read part of the system trust store");
            }
            found.certs
        }
    };
    let (added, ignored) = store.add_parsable_certificates(certs);
    if ignored > 0 {
        tracing::warn!(added, ignored, "some trust anchors could not be used");
    }
    if store.is_empty() {
        tracing::warn!("no trust anchors: every TLS peer certificate will be refused");
    }
    Ok(Arc::new(store))
}

/// The server side of one listener: its certificate and key, the client-certificate rule.
fn server_config(
    files: &TlsListenerFiles,
    roots: &Arc<RootCertStore>,
    require_client: bool,
) -> io::Result<Arc<ServerConfig>> {
    let chain = certificates(&files.certificate)?;
    let key = private_key(&files.key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(invalid)?;
    let builder = if require_client {
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(invalid)?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let config = builder.with_single_cert(chain, key).map_err(|e| {
        invalid(format!(
            "{} / {}: {e}",
            files.certificate.display(),
            files.key.display()
        ))
    })?;
    Ok(Arc::new(config))
}

/// The client side: roots (or no verification), client certificate if configured.
fn client_config(s: &TlsSettings, roots: Arc<RootCertStore>) -> io::Result<Arc<ClientConfig>> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(invalid)?;
    let builder = if s.verify_server {
        builder.with_root_certificates(roots)
    } else {
        tracing::warn!("tls.verify_server is false: TLS servers are not verified");
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoServerVerification(provider())))
    };
    let config = match &s.client_identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(certificates(cert)?, private_key(key)?)
            .map_err(|e| invalid(format!("{}: {e}", cert.display())))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// One listener's current server configuration, replaced by [`TlsState::reload`].
pub(crate) struct ListenerTls {
    files: TlsListenerFiles,
    current: RwLock<Arc<ServerConfig>>,
}

impl ListenerTls {
    /// The configuration a new connection is accepted with.
    pub(crate) fn config(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The TLS configurations of the edge: per listener, and for outbound connections.
pub(crate) struct TlsState {
    settings: TlsSettings,
    roots: Arc<RootCertStore>,
    pub(crate) listeners: Vec<Arc<ListenerTls>>,
    pub(crate) client: Arc<ClientConfig>,
}

impl TlsState {
    /// Loads every certificate and key; fails (and the edge does not start) on the first
    /// one that cannot be used.
    pub(crate) fn load(settings: &TlsSettings) -> io::Result<TlsState> {
        let roots = roots(settings.ca_file.as_deref())?;
        let listeners = settings
            .listeners
            .iter()
            .map(|f| {
                let config = server_config(f, &roots, settings.require_client_certificate)?;
                Ok(Arc::new(ListenerTls {
                    files: f.clone(),
                    current: RwLock::new(config),
                }))
            })
            .collect::<io::Result<_>>()?;
        Ok(TlsState {
            client: client_config(settings, roots.clone())?,
            settings: settings.clone(),
            roots,
            listeners,
        })
    }

    /// Reads every listener's certificate and key again (SIGHUP): a pair that loads
    /// replaces the old one for new connections; one that does not keeps the old one,
    /// logged. Open connections keep what they were accepted with. Returns how many
    /// listeners failed.
    pub(crate) fn reload(&self) -> usize {
        let mut failed = 0;
        for l in &self.listeners {
            let require = self.settings.require_client_certificate;
            match server_config(&l.files, &self.roots, require) {
                Ok(config) => {
                    *l.current.write().unwrap_or_else(|e| e.into_inner()) = config;
                    tracing::info!(listener = %l.files.address, "TLS certificate reloaded");
                }
                Err(e) => {
                    failed += 1;
                    tracing::error!(
                        listener = %l.files.address,
                        error = %e,
                        "TLS certificate not reloaded, the old one stays"
                    );
                }
            }
        }
        failed
    }
}

/// The name a server we connect to must prove. A configured domain the core sent with the
/// message (a carrier gateway's or failover URI's host, RFC 5922 §4) is checked against
/// the certificate's DNS names and sent as SNI; without one, the IP address the server is
/// reached at is checked against its IP SANs, and no SNI is sent (RFC 6066 §3).
pub(crate) fn server_name(
    addr: SocketAddr,
    name: Option<&TlsName>,
) -> Result<ServerName<'static>, String> {
    match name {
        None => Ok(ServerName::IpAddress(addr.ip().into())),
        Some(n) => ServerName::try_from(n.as_str().to_owned())
            .map_err(|e| format!("{n}: not usable as a TLS server name ({e})")),
    }
}

/// `tls.verify_server: false`: any certificate is accepted (the handshake's signatures
/// are still checked, so the peer holds the key of what it shows).
#[derive(Debug)]
struct NoServerVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoServerVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
