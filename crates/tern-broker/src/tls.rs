//! TLS listeners with rustls (no OpenSSL): certificates, keys and CA stores read from
//! mosquitto's directives, mutual TLS, revocation lists, ALPN, and the client
//! certificate's identity as user name. Built at start and again on SIGHUP; connections
//! already open keep the configuration they started with.

use crate::config::TlsListenerConfig;
use anyhow::{anyhow, bail, Context, Result};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};
use std::path::Path;
use std::sync::Arc;

/// Which part of a client certificate becomes the user name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityAsUser {
    No,
    /// use_identity_as_username: the subject's Common Name.
    CommonName,
    /// use_subject_as_username: the whole subject, RFC 2253 style (`CN=a,O=b,C=c`).
    Subject,
}

/// A TLS listener's ready configuration.
#[derive(Debug)]
pub struct ListenerTls {
    pub server: Arc<ServerConfig>,
    pub identity: IdentityAsUser,
}

impl ListenerTls {
    pub fn session(&self) -> Result<ServerConnection, rustls::Error> {
        ServerConnection::new(self.server.clone())
    }
}

fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

fn certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read_pem(path, what)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .with_context(|| format!("{what} {} is not valid PEM", path.display()))?;
    if certs.is_empty() {
        bail!("{what} {} holds no certificate", path.display());
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let pem = read_pem(path, "keyfile")?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .with_context(|| format!("keyfile {} is not valid PEM", path.display()))?
        .ok_or_else(|| anyhow!("keyfile {} holds no private key", path.display()))
}

/// The CA certificates of `cafile` and of every file in `capath`: as a store for webpki,
/// and as they are (for X.509 v1 client certificates, which webpki refuses).
fn roots(config: &TlsListenerConfig) -> Result<(RootCertStore, Vec<CertificateDer<'static>>)> {
    let mut store = RootCertStore::empty();
    let mut all = Vec::new();
    let mut files = Vec::new();
    if let Some(file) = &config.cafile {
        files.push(file.clone());
    }
    if let Some(dir) = &config.capath {
        let entries = std::fs::read_dir(dir).with_context(|| format!("cannot read capath {}", dir.display()))?;
        let mut found: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "pem" || e == "crt"))
            .collect();
        found.sort();
        files.extend(found);
    }
    for file in files {
        for cert in certificates(&file, "CA certificate file")? {
            store
                .add(cert.clone())
                .with_context(|| format!("CA certificate in {} is not usable", file.display()))?;
            all.push(cert);
        }
    }
    Ok((store, all))
}

fn revocation_lists(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>> {
    let pem = read_pem(path, "crlfile")?;
    let crls: Vec<_> = rustls_pemfile::crls(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .with_context(|| format!("crlfile {} is not valid PEM", path.display()))?;
    Ok(crls)
}

/// The provider with only the suites `ciphers` and `ciphers_tls1.3` name, in their order
/// (the client's preference decides among them, as OpenSSL's default does).
fn with_ciphers(
    mut provider: rustls::crypto::CryptoProvider,
    config: &TlsListenerConfig,
) -> rustls::crypto::CryptoProvider {
    let offered = |wanted: &Option<Vec<rustls::CipherSuite>>, tls13: bool| -> Vec<rustls::SupportedCipherSuite> {
        let of_version = provider
            .cipher_suites
            .iter()
            .filter(|s| (s.version() == &rustls::version::TLS13) == tls13);
        match wanted {
            None => of_version.copied().collect(),
            Some(names) => names
                .iter()
                .filter_map(|name| of_version.clone().find(|s| s.suite() == *name).copied())
                .collect(),
        }
    };
    let mut suites = offered(&config.ciphers_tls13, true);
    suites.extend(offered(&config.ciphers, false));
    provider.cipher_suites = suites;
    provider
}

/// Builds a listener's TLS configuration; every error names the directive and file.
pub fn build(config: &TlsListenerConfig) -> Result<ListenerTls> {
    let (Some(certfile), Some(keyfile)) = (&config.certfile, &config.keyfile) else {
        bail!("a TLS listener needs both certfile and keyfile");
    };
    let provider = Arc::new(with_ciphers(rustls::crypto::ring::default_provider(), config));
    let versions: &[&rustls::SupportedProtocolVersion] = match config.tls_version.as_deref() {
        None | Some("tlsv1.2") => &[&rustls::version::TLS13, &rustls::version::TLS12],
        Some("tlsv1.3") => &[&rustls::version::TLS13],
        Some(other) => bail!("tls_version {other:?}: use tlsv1.2 or tlsv1.3 (older versions are not offered)"),
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .context("TLS protocol versions")?;
    let has_ca = config.cafile.is_some() || config.capath.is_some();
    let builder = if has_ca {
        let (store, cas) = roots(config)?;
        let crls = match &config.crlfile {
            Some(crlfile) => revocation_lists(crlfile)?,
            None => Vec::new(),
        };
        let mut verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider.clone());
        if !crls.is_empty() {
            verifier = verifier.with_crls(crls.clone());
        }
        if !config.require_certificate {
            verifier = verifier.allow_unauthenticated();
        }
        let webpki = verifier.build().context("client certificate verifier")?;
        let algorithms = provider.signature_verification_algorithms;
        builder.with_client_cert_verifier(Arc::new(v1::ClientVerifier::new(webpki, cas, crls, algorithms)))
    } else if config.require_certificate {
        bail!("require_certificate needs cafile or capath to check client certificates against");
    } else {
        builder.with_no_client_auth()
    };
    let certified = v1::certified_key(certificates(certfile, "certfile")?, private_key(keyfile)?, &provider)
        .with_context(|| {
            format!(
                "certfile {} and keyfile {} do not form a usable pair",
                certfile.display(),
                keyfile.display()
            )
        })?;
    if let Some(suites) = &config.ciphers {
        let key = certified.key.algorithm();
        let tls12 = config.tls_version.as_deref() != Some("tlsv1.3");
        if tls12 && !suites.iter().any(|s| ciphers::fits_key(*s, key)) {
            tracing::warn!(
                "ciphers: none of its TLS 1.2 suites works with the {key:?} key of certfile {}: TLS 1.2 clients cannot connect to this listener (TLS 1.3 clients can)",
                certfile.display()
            );
        }
    }
    let mut server = builder.with_cert_resolver(Arc::new(v1::OneCert(Arc::new(certified))));
    server.alpn_protocols = config.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    let identity = match (config.use_identity_as_username, config.use_subject_as_username) {
        (_, true) => IdentityAsUser::Subject,
        (true, false) => IdentityAsUser::CommonName,
        (false, false) => IdentityAsUser::No,
    };
    if identity != IdentityAsUser::No && !has_ca {
        bail!("use_identity_as_username / use_subject_as_username need cafile or capath");
    }
    Ok(ListenerTls {
        server: Arc::new(server),
        identity,
    })
}

pub mod ciphers;
mod v1;

/// The user name a verified client certificate gives, per `identity`.
pub fn identity_of(certificate: &CertificateDer<'_>, identity: IdentityAsUser) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(certificate.as_ref()).ok()?;
    let subject = cert.subject();
    match identity {
        IdentityAsUser::No => None,
        IdentityAsUser::CommonName => subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string),
        IdentityAsUser::Subject => {
            // RFC 2253: the last RDN first, as mosquitto prints it.
            let parts: Vec<String> = subject
                .iter_rdn()
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .flat_map(|rdn| {
                    rdn.iter()
                        .filter_map(|attr| {
                            let name = x509_parser::objects::oid2abbrev(
                                attr.attr_type(),
                                x509_parser::objects::oid_registry(),
                            )
                            .map(str::to_string)
                            .unwrap_or_else(|_| attr.attr_type().to_id_string());
                            Some(format!("{name}={}", attr.as_str().ok()?))
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            Some(parts.join(","))
        }
    }
}
