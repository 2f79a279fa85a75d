//! mosquitto's `ciphers` (TLS 1.2, an OpenSSL cipher list) and `ciphers_tls1.3` (TLS 1.3,
//! OpenSSL's ciphersuites list), mapped onto the suites rustls offers with its ring
//! provider.
//!
//! A suite is named as OpenSSL names it (`ECDHE-RSA-AES128-GCM-SHA256`) or by its IANA name
//! (`TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`). A TLS 1.2 list may also be an OpenSSL
//! cipher-list expression (`HIGH:!aNULL:!MD5`, `ECDHE+AESGCM`, `DEFAULT:@STRENGTH`): it is
//! evaluated over the six suites rustls has, with OpenSSL's operators (`!` removes for
//! good, `-` removes, `+` moves to the end, `A+B` is both, `@STRENGTH` sorts by key size)
//! and the keywords that describe them (`ALL`, `HIGH`, `ECDHE`, `aRSA`, `AESGCM`, ...).
//! Keywords for what rustls never offers (`aNULL`, `RC4`, `3DES`, `kRSA`, `PSK`, ...) select
//! nothing, so the usual exclusions are harmless. A suite rustls does not have, an unknown
//! keyword, or a list that selects nothing is an error naming it.

use rustls::CipherSuite;

/// One TLS 1.2 suite rustls (ring) offers: OpenSSL's name, the suite, the OpenSSL
/// keywords that select it beyond those common to all six, and its key bits.
struct Tls12Suite {
    openssl: &'static str,
    suite: CipherSuite,
    tags: &'static [&'static str],
    bits: u16,
}

const TLS12: &[Tls12Suite] = &[
    Tls12Suite {
        openssl: "ECDHE-ECDSA-AES256-GCM-SHA384",
        suite: CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        tags: &["aECDSA", "ECDSA", "AES", "AES256", "AESGCM", "SHA384", "FIPS"],
        bits: 256,
    },
    Tls12Suite {
        openssl: "ECDHE-ECDSA-AES128-GCM-SHA256",
        suite: CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        tags: &["aECDSA", "ECDSA", "AES", "AES128", "AESGCM", "SHA256", "FIPS"],
        bits: 128,
    },
    Tls12Suite {
        openssl: "ECDHE-ECDSA-CHACHA20-POLY1305",
        suite: CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        tags: &["aECDSA", "ECDSA", "CHACHA20", "SHA256"],
        bits: 256,
    },
    Tls12Suite {
        openssl: "ECDHE-RSA-AES256-GCM-SHA384",
        suite: CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        tags: &["aRSA", "RSA", "AES", "AES256", "AESGCM", "SHA384", "FIPS"],
        bits: 256,
    },
    Tls12Suite {
        openssl: "ECDHE-RSA-AES128-GCM-SHA256",
        suite: CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        tags: &["aRSA", "RSA", "AES", "AES128", "AESGCM", "SHA256", "FIPS"],
        bits: 128,
    },
    Tls12Suite {
        openssl: "ECDHE-RSA-CHACHA20-POLY1305",
        suite: CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        tags: &["aRSA", "RSA", "CHACHA20", "SHA256"],
        bits: 256,
    },
];

/// Keywords every one of the six suites has.
const COMMON: &[&str] = &[
    "ALL", "DEFAULT", "HIGH", "ECDHE", "EECDH", "kECDHE", "kEECDH", "AEAD", "TLSv1.2",
];

/// OpenSSL keywords for suites rustls never offers: they select nothing.
const NONE_OFFERED: &[&str] = &[
    "COMPLEMENTOFALL",
    "COMPLEMENTOFDEFAULT",
    "LOW",
    "MEDIUM",
    "EXPORT",
    "EXP",
    "NULL",
    "eNULL",
    "aNULL",
    "kRSA",
    "kDHE",
    "kEDH",
    "DHE",
    "EDH",
    "DH",
    "kDH",
    "ADH",
    "AECDH",
    "aDSS",
    "DSS",
    "aDH",
    "aECDH",
    "PSK",
    "kPSK",
    "aPSK",
    "kECDHEPSK",
    "kDHEPSK",
    "kRSAPSK",
    "SRP",
    "kSRP",
    "aSRP",
    "RC4",
    "RC2",
    "DES",
    "3DES",
    "IDEA",
    "SEED",
    "CAMELLIA",
    "CAMELLIA128",
    "CAMELLIA256",
    "ARIA",
    "ARIA128",
    "ARIA256",
    "CCM",
    "CCM8",
    "AESCCM",
    "AESCCM8",
    "MD5",
    "SHA1",
    "SHA",
    "GOST94",
    "GOST89MAC",
    "kGOST",
    "aGOST",
    "SSLv3",
    "TLSv1",
    "TLSv1.0",
    "SUITEB128",
    "SUITEB128ONLY",
    "SUITEB192",
];

/// The TLS 1.3 suites: OpenSSL's (and IANA's) name and the suite; `None` for those rustls
/// does not offer.
const TLS13: &[(&str, Option<CipherSuite>)] = &[
    ("TLS_AES_256_GCM_SHA384", Some(CipherSuite::TLS13_AES_256_GCM_SHA384)),
    ("TLS_AES_128_GCM_SHA256", Some(CipherSuite::TLS13_AES_128_GCM_SHA256)),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        Some(CipherSuite::TLS13_CHACHA20_POLY1305_SHA256),
    ),
    ("TLS_AES_128_CCM_SHA256", None),
    ("TLS_AES_128_CCM_8_SHA256", None),
];

/// Why a cipher list cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    #[error("cipher suite {0} is not offered by Tern's TLS library (rustls); it offers {1}")]
    NotOffered(String, String),
    #[error("{0:?} is neither a cipher suite nor an OpenSSL cipher-list keyword Tern knows; name suites from {1}")]
    Unknown(String, String),
    #[error("{0:?} selects none of the suites Tern's TLS library offers ({1})")]
    Empty(String, String),
}

fn offered_tls12() -> String {
    TLS12.iter().map(|s| s.openssl).collect::<Vec<_>>().join(", ")
}

fn offered_tls13() -> String {
    TLS13
        .iter()
        .filter(|(_, s)| s.is_some())
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `term` (a keyword or a suite name) selects `suite`; `None` for a term that is
/// not known.
fn selects(term: &str, suite: &Tls12Suite) -> Option<bool> {
    if term == suite.openssl || format!("{:?}", suite.suite) == term {
        return Some(true);
    }
    if COMMON.contains(&term) || suite.tags.contains(&term) {
        return Some(true);
    }
    let known = NONE_OFFERED.contains(&term)
        || TLS12
            .iter()
            .any(|s| s.tags.contains(&term) || s.openssl == term || format!("{:?}", s.suite) == term);
    known.then_some(false)
}

/// The error for an unknown term: a suite OpenSSL has and rustls lacks (a name with
/// dashes or a TLS_ name), or an unknown keyword.
fn unknown(term: &str) -> CipherError {
    let looks_like_suite = term.contains('-') || term.starts_with("TLS_") || term.starts_with("SSL_");
    if looks_like_suite {
        CipherError::NotOffered(term.into(), offered_tls12())
    } else {
        CipherError::Unknown(term.into(), offered_tls12())
    }
}

/// The TLS 1.2 suites an OpenSSL cipher list (mosquitto's `ciphers`) selects, in order.
pub fn tls12(list: &str) -> Result<Vec<CipherSuite>, CipherError> {
    let mut chosen: Vec<usize> = Vec::new();
    let mut banned = [false; 6];
    for element in list.split([':', ',', ' ']).filter(|e| !e.is_empty()) {
        if let Some(command) = element.strip_prefix('@') {
            if command == "STRENGTH" {
                chosen.sort_by_key(|&i| std::cmp::Reverse(TLS12[i].bits));
            } else if !command.starts_with("SECLEVEL=") {
                return Err(CipherError::Unknown(element.into(), offered_tls12()));
            }
            continue;
        }
        let (op, expression) = match element.chars().next() {
            Some(c @ ('!' | '-' | '+')) => (c, &element[1..]),
            _ => (' ', element),
        };
        let mut matching = Vec::new();
        for (i, suite) in TLS12.iter().enumerate() {
            let mut all = true;
            for term in expression.split('+') {
                all &= selects(term, suite).ok_or_else(|| unknown(term))?;
            }
            if all {
                matching.push(i);
            }
        }
        match op {
            '!' => {
                for &i in &matching {
                    banned[i] = true;
                }
                chosen.retain(|i| !matching.contains(i));
            }
            '-' => chosen.retain(|i| !matching.contains(i)),
            '+' => {
                let (moved, kept): (Vec<usize>, Vec<usize>) = chosen.iter().partition(|i| matching.contains(i));
                chosen = kept.into_iter().chain(moved).collect();
            }
            _ => {
                for i in matching {
                    if !banned[i] && !chosen.contains(&i) {
                        chosen.push(i);
                    }
                }
            }
        }
    }
    if chosen.is_empty() {
        return Err(CipherError::Empty(list.into(), offered_tls12()));
    }
    Ok(chosen.into_iter().map(|i| TLS12[i].suite).collect())
}

/// Whether the TLS 1.2 suite `suite` can be used with a certificate key of `key`'s kind
/// (ECDSA suites need an ECDSA key, RSA suites an RSA key).
pub fn fits_key(suite: CipherSuite, key: rustls::SignatureAlgorithm) -> bool {
    let needs = match key {
        rustls::SignatureAlgorithm::ECDSA => "aECDSA",
        rustls::SignatureAlgorithm::RSA => "aRSA",
        _ => return false,
    };
    TLS12.iter().any(|s| s.suite == suite && s.tags.contains(&needs))
}

/// The TLS 1.3 suites of an OpenSSL ciphersuites list (mosquitto's `ciphers_tls1.3`).
pub fn tls13(list: &str) -> Result<Vec<CipherSuite>, CipherError> {
    let mut chosen = Vec::new();
    for name in list.split([':', ',', ' ']).filter(|e| !e.is_empty()) {
        match TLS13.iter().find(|(n, _)| *n == name) {
            Some((_, Some(suite))) => {
                if !chosen.contains(suite) {
                    chosen.push(*suite);
                }
            }
            Some((_, None)) => return Err(CipherError::NotOffered(name.into(), offered_tls13())),
            None if name.starts_with("TLS_") => return Err(CipherError::NotOffered(name.into(), offered_tls13())),
            None => return Err(CipherError::Unknown(name.into(), offered_tls13())),
        }
    }
    if chosen.is_empty() {
        return Err(CipherError::Empty(list.into(), offered_tls13()));
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use CipherSuite as S;

    #[test]
    fn suites_are_named_as_openssl_or_iana_names_them() {
        assert_eq!(
            tls12("ECDHE-RSA-AES128-GCM-SHA256:TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384").unwrap(),
            [
                S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
                S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
            ]
        );
        assert_eq!(
            tls13("TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256").unwrap(),
            [S::TLS13_CHACHA20_POLY1305_SHA256, S::TLS13_AES_128_GCM_SHA256]
        );
    }

    #[test]
    fn suites_rustls_lacks_are_refused_by_name() {
        let err = tls12("ECDHE-RSA-AES128-GCM-SHA256:AES128-SHA").unwrap_err();
        assert!(
            matches!(&err, CipherError::NotOffered(n, _) if n == "AES128-SHA"),
            "{err}"
        );
        assert!(err.to_string().contains("ECDHE-RSA-CHACHA20-POLY1305"), "{err}");
        let err = tls13("TLS_AES_128_CCM_SHA256").unwrap_err();
        assert!(matches!(&err, CipherError::NotOffered(n, _) if n == "TLS_AES_128_CCM_SHA256"));
        assert!(matches!(tls13("HIGH"), Err(CipherError::Unknown(..))));
    }

    #[test]
    fn openssl_expressions_are_evaluated_over_the_offered_suites() {
        assert_eq!(tls12("HIGH:!aNULL:!MD5:!RC4").unwrap().len(), 6);
        assert_eq!(
            tls12("ECDHE+AESGCM+aRSA").unwrap(),
            [
                S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
                S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
            ]
        );
        assert_eq!(
            tls12("ALL:!ECDSA:!CHACHA20:-AES256").unwrap(),
            [S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]
        );
        // "!" bans for good, "-" may be added back.
        assert_eq!(tls12("!AES128:AES").unwrap().len(), 2);
        assert_eq!(tls12("-AES128:AES").unwrap().len(), 4);
        let sorted = tls12("AES128:AES256:@STRENGTH").unwrap();
        assert_eq!(sorted[0], S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384);
        assert!(tls12("DEFAULT:@SECLEVEL=2").is_ok());
    }

    #[test]
    fn suites_fit_the_key_kind_they_authenticate_with() {
        use rustls::SignatureAlgorithm as A;
        assert!(fits_key(S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, A::RSA));
        assert!(!fits_key(S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, A::ECDSA));
        assert!(fits_key(S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, A::ECDSA));
        assert!(!fits_key(S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, A::ED25519));
    }

    #[test]
    fn unknown_keywords_and_empty_selections_are_refused() {
        assert!(matches!(tls12("BOGUS"), Err(CipherError::Unknown(..))));
        assert!(matches!(tls12("aNULL:RC4"), Err(CipherError::Empty(..))));
        assert!(matches!(tls12(""), Err(CipherError::Empty(..))));
        assert!(matches!(tls12("@NOPE"), Err(CipherError::Unknown(..))));
    }
}
