//! TLS for the client (rustls): the CA to trust (`--cafile`, `--capath`), a client
//! certificate for mutual TLS (`--cert`, `--key`), the lowest version, ALPN, and
//! mosquitto's `--insecure`, which keeps checking the certificate chain but not the host
//! name. Host names are verified by default.

use crate::client::ClientError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a TLS connection uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// CA certificates that sign the broker's certificate.
    pub cafile: Option<PathBuf>,
    /// A folder of CA certificates (`*.pem`, `*.crt`).
    pub capath: Option<PathBuf>,
    /// Client certificate and key, for brokers that require one.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Do not check that the certificate names the host (the chain is still checked).
    pub insecure: bool,
    /// Lowest version: `tlsv1.2` (default) or `tlsv1.3`.
    pub tls_version: Option<String>,
    /// ALPN protocols to offer.
    pub alpn: Vec<String>,
}

fn tls_error(what: impl std::fmt::Display) -> ClientError {
    ClientError::Tls(what.to_string())
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let pem = std::fs::read(path).map_err(|e| tls_error(format!("cannot read {}: {e}", path.display())))?;
    rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(format!("{} is not valid PEM: {e}", path.display())))
}

fn roots(options: &TlsOptions) -> Result<RootCertStore, ClientError> {
    let mut files: Vec<PathBuf> = options.cafile.iter().cloned().collect();
    if let Some(dir) = &options.capath {
        let entries = std::fs::read_dir(dir).map_err(|e| tls_error(format!("cannot read {}: {e}", dir.display())))?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "pem" || e == "crt"))
            .collect();
        found.sort();
        files.extend(found);
    }
    if files.is_empty() {
        return Err(tls_error(
            "TLS needs --cafile or --capath with the CA that signed the broker's certificate",
        ));
    }
    let mut store = RootCertStore::empty();
    for file in files {
        for cert in certificates(&file)? {
            store
                .add(cert)
                .map_err(|e| tls_error(format!("CA certificate in {}: {e}", file.display())))?;
        }
    }
    Ok(store)
}

/// Checks the chain like webpki but accepts a certificate for another name.
#[derive(Debug)]
struct IgnoreHostName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for IgnoreHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The rustls client configuration for `options`.
pub fn client_config(options: &TlsOptions) -> Result<Arc<ClientConfig>, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match options.tls_version.as_deref() {
        None | Some("tlsv1.2") => &[&rustls::version::TLS13, &rustls::version::TLS12],
        Some("tlsv1.3") => &[&rustls::version::TLS13],
        Some(other) => return Err(tls_error(format!("--tls-version {other}: use tlsv1.2 or tlsv1.3"))),
    };
    let roots = Arc::new(roots(options)?);
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(tls_error)?;
    let builder = if options.insecure {
        let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(tls_error)?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(IgnoreHostName(webpki)))
    } else {
        builder.with_root_certificates(roots)
    };
    let mut config = match (&options.cert, &options.key) {
        (Some(cert), Some(key)) => {
            let pem = std::fs::read(key).map_err(|e| tls_error(format!("cannot read {}: {e}", key.display())))?;
            let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut pem.as_slice())
                .map_err(|e| tls_error(format!("{} is not valid PEM: {e}", key.display())))?
                .ok_or_else(|| tls_error(format!("{} holds no private key", key.display())))?;
            builder
                .with_client_auth_cert(certificates(cert)?, key)
                .map_err(tls_error)?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err(tls_error("--cert and --key go together")),
    };
    config.alpn_protocols = options.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Ok(Arc::new(config))
}
