//! X.509 version 1 certificates, as `openssl x509 -req -CA ca.crt` makes them (the
//! commands of mosquitto-tls(7)). webpki refuses them (`UnsupportedCertVersion`);
//! mosquitto (OpenSSL) accepts them. Here:
//!
//! - a v1 server certificate is used as it is, once its public key is checked against
//!   the keyfile (rustls's own check parses it with webpki);
//! - a v1 client certificate must be issued directly by one of the configured CA
//!   certificates: its signature is checked with the CA's key, its validity period
//!   against the time, and the CRLs of that CA (whose signatures are checked too) must
//!   not list it. Version 3 certificates, and everything else, go to webpki unchanged.
//!
//! Signatures are checked with the algorithms of the rustls crypto provider.

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use std::sync::Arc;
use x509_parser::certificate::X509Certificate;
use x509_parser::x509::X509Version;

/// The one certificate of a listener.
#[derive(Debug)]
pub(super) struct OneCert(pub Arc<CertifiedKey>);

impl ResolvesServerCert for OneCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// The listener's certificate chain and key, checked to belong together (for a v1
/// certificate by comparing its public key with the key's).
pub(super) fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, Error> {
    let signing_key = provider.key_provider.load_private_key(key)?;
    let public_key = signing_key.public_key().map(|spki| spki.as_ref().to_vec());
    let certified = CertifiedKey::new(chain, signing_key);
    let Some(leaf) = certified.cert.first() else {
        return Err(Error::NoCertificatesPresented);
    };
    match parse(leaf) {
        Some(cert) if cert.version() == X509Version::V1 => match public_key {
            Some(spki) if spki == cert.public_key().raw => Ok(certified),
            Some(_) => Err(Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)),
            None => Err(Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)),
        },
        _ => certified.keys_match().map(|()| certified),
    }
}

fn parse<'a>(der: &'a CertificateDer<'_>) -> Option<X509Certificate<'a>> {
    x509_parser::parse_x509_certificate(der.as_ref()).ok().map(|(_, c)| c)
}

fn bad(error: CertificateError) -> Error {
    Error::InvalidCertificate(error)
}

/// webpki's client verifier, with v1 client certificates checked here.
#[derive(Debug)]
pub(super) struct ClientVerifier {
    webpki: Arc<dyn ClientCertVerifier>,
    cas: Vec<CertificateDer<'static>>,
    crls: Vec<CertificateRevocationListDer<'static>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientVerifier {
    pub(super) fn new(
        webpki: Arc<dyn ClientCertVerifier>,
        cas: Vec<CertificateDer<'static>>,
        crls: Vec<CertificateRevocationListDer<'static>>,
        algorithms: WebPkiSupportedAlgorithms,
    ) -> ClientVerifier {
        ClientVerifier {
            webpki,
            cas,
            crls,
            algorithms,
        }
    }

    /// Whether `signature` over `message` is `key`'s (the raw subjectPublicKey bits), by
    /// any algorithm of the provider whose signature algorithm has the OID `oid`.
    fn signed_by(&self, key: &[u8], oid: &[u8], message: &[u8], signature: &[u8]) -> bool {
        self.algorithms
            .all
            .iter()
            .filter(|alg| starts_with_oid(alg.signature_alg_id().as_ref(), oid))
            .any(|alg| alg.verify_signature(key, message, signature).is_ok())
    }

    fn verify_v1(&self, leaf: &X509Certificate<'_>, now: UnixTime) -> Result<(), Error> {
        let issuer = leaf.issuer().as_raw();
        let oid = leaf.signature_algorithm.algorithm.as_bytes();
        let tbs = leaf.tbs_certificate.as_ref();
        let signature = leaf.signature_value.data.as_ref();
        let mut known_issuer = false;
        let ca = self.cas.iter().filter_map(parse).find(|ca| {
            let same = ca.subject().as_raw() == issuer;
            known_issuer |= same;
            same && self.signed_by(&ca.public_key().subject_public_key.data, oid, tbs, signature)
        });
        let Some(ca) = ca else {
            return Err(bad(if known_issuer {
                CertificateError::BadSignature
            } else {
                CertificateError::UnknownIssuer
            }));
        };
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let validity = leaf.validity();
        if now < validity.not_before.timestamp() {
            return Err(bad(CertificateError::NotValidYet));
        }
        if now > validity.not_after.timestamp() {
            return Err(bad(CertificateError::Expired));
        }
        if self.revoked(leaf, &ca) {
            return Err(bad(CertificateError::Revoked));
        }
        Ok(())
    }

    /// Whether a CRL of `ca`, signed by it, lists `leaf`.
    fn revoked(&self, leaf: &X509Certificate<'_>, ca: &X509Certificate<'_>) -> bool {
        let key = &ca.public_key().subject_public_key.data;
        self.crls
            .iter()
            .filter_map(|der| x509_parser::parse_x509_crl(der.as_ref()).ok().map(|(_, crl)| crl))
            .filter(|crl| crl.issuer().as_raw() == ca.subject().as_raw())
            .filter(|crl| {
                let oid = crl.signature_algorithm.algorithm.as_bytes();
                self.signed_by(key, oid, crl.tbs_cert_list.as_ref(), &crl.signature_value.data)
            })
            .any(|crl| {
                crl.iter_revoked_certificates()
                    .any(|r| r.raw_serial() == leaf.raw_serial())
            })
    }

    /// The TLS handshake signature of a v1 certificate's key.
    fn verify_signature_v1(
        &self,
        message: &[u8],
        leaf: &X509Certificate<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let key = &leaf.public_key().subject_public_key.data;
        let algorithms = self
            .algorithms
            .mapping
            .iter()
            .find(|(scheme, _)| *scheme == dss.scheme)
            .map(|(_, algs)| *algs)
            .ok_or(Error::PeerMisbehaved(
                rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
            ))?;
        if algorithms
            .iter()
            .any(|alg| alg.verify_signature(key, message, dss.signature()).is_ok())
        {
            Ok(HandshakeSignatureValid::assertion())
        } else {
            Err(bad(CertificateError::BadSignature))
        }
    }
}

/// Whether a DER AlgorithmIdentifier body starts with the OID whose content is `oid`.
fn starts_with_oid(alg_id: &[u8], oid: &[u8]) -> bool {
    matches!(alg_id, [0x06, len, rest @ ..] if usize::from(*len) == oid.len() && rest.starts_with(oid))
}

/// PKCS#1 v1.5 and SHA-1 schemes, which TLS 1.3 does not allow in CertificateVerify.
fn pkcs1(scheme: SignatureScheme) -> bool {
    use SignatureScheme::*;
    matches!(
        scheme,
        RSA_PKCS1_SHA1 | RSA_PKCS1_SHA256 | RSA_PKCS1_SHA384 | RSA_PKCS1_SHA512 | ECDSA_SHA1_Legacy
    )
}

fn is_v1<'a>(cert: &'a CertificateDer<'_>) -> Option<X509Certificate<'a>> {
    parse(cert).filter(|c| c.version() == X509Version::V1)
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.webpki.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.webpki.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        match is_v1(end_entity) {
            Some(leaf) => self.verify_v1(&leaf, now).map(|()| ClientCertVerified::assertion()),
            None => self.webpki.verify_client_cert(end_entity, intermediates, now),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        match is_v1(cert) {
            Some(leaf) => self.verify_signature_v1(message, &leaf, dss),
            None => self.webpki.verify_tls12_signature(message, cert, dss),
        }
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        match is_v1(cert) {
            // TLS 1.3 allows no PKCS#1 v1.5 signatures in CertificateVerify.
            Some(_) if pkcs1(dss.scheme) => Err(Error::PeerMisbehaved(
                rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
            )),
            Some(leaf) => self.verify_signature_v1(message, &leaf, dss),
            None => self.webpki.verify_tls13_signature(message, cert, dss),
        }
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}
