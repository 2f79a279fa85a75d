//! Test certificates made with rcgen: a CA, a server certificate for `localhost`, client
//! certificates, and a revocation list, written as PEM files into a folder.

use rcgen::{
    date_time_ymd, BasicConstraints, Certificate, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SerialNumber,
};
use std::path::{Path, PathBuf};

pub struct Ca {
    cert: Certificate,
    key: KeyPair,
    pub dir: PathBuf,
    name: String,
}

impl Ca {
    /// A new CA whose certificate is written to `dir/NAME.crt`.
    pub fn new(dir: &Path, name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, format!("{name} CA"));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).unwrap();
        Ca {
            cert,
            key,
            dir: dir.to_path_buf(),
            name: name.to_string(),
        }
    }

    pub fn cafile(&self) -> PathBuf {
        self.dir.join(format!("{}.crt", self.name))
    }

    /// Issues a certificate; returns the paths of its certificate and key.
    fn issue(&self, file: &str, params: CertificateParams) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let (crt, pem) = (
            self.dir.join(format!("{file}.crt")),
            self.dir.join(format!("{file}.key")),
        );
        std::fs::write(&crt, cert.pem()).unwrap();
        std::fs::write(&pem, key.serialize_pem()).unwrap();
        (crt, pem)
    }

    /// A server certificate for `localhost` only (not for 127.0.0.1).
    pub fn server(&self, file: &str) -> (PathBuf, PathBuf) {
        self.server_for(file, &["localhost"])
    }

    /// A server certificate for the DNS names `names` (the first is its Common Name).
    pub fn server_for(&self, file: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0].as_str());
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(file, params)
    }

    /// A client certificate with Common Name `cn` and serial number `serial`.
    pub fn client(&self, file: &str, cn: &str, serial: u64) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.distinguished_name.push(DnType::OrganizationName, "Tern Tests");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.serial_number = Some(SerialNumber::from(serial));
        self.issue(file, params)
    }

    /// A revocation list naming `serials`, written to `dir/crl.pem`.
    pub fn crl(&self, serials: &[u64]) -> PathBuf {
        let params = CertificateRevocationListParams {
            this_update: date_time_ymd(2024, 1, 1),
            next_update: date_time_ymd(2099, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: date_time_ymd(2024, 1, 1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.cert, &self.key).unwrap();
        let path = self.dir.join("crl.pem");
        std::fs::write(&path, crl.pem().unwrap()).unwrap();
        path
    }
}
