//! Who an MQTT client of a platform listener is, read from its CONNECT exactly as the
//! platform's SDKs and the seed's mosquitto commands send it: the client id names the
//! class, organization and device or application (`d:<org>:<type>:<id>`,
//! `g:<org>:<type>:<id>`, `a:<org>:<appId>`, `A:<org>:<appId>[:<instance>]`), and the
//! user name says how the password is to be read (`use-token-auth` for a device's or
//! gateway's token, the API key `a-<org>-<random>` for an application's).
//!
//! This module only checks the shape of these names and how they fit together; whether
//! a token or key is right is the registry's business. Every refusal carries the CONNACK
//! answer the SDKs expect ([`Refusal`]).

use std::fmt;

/// The user name devices and gateways send with their token as the password.
pub const TOKEN_AUTH_USER: &str = "use-token-auth";

/// The organization that needs no registration and no credentials.
pub const QUICKSTART: &str = "quickstart";

/// The longest organization, type, device, application or instance id.
pub const MAX_ID: usize = 36;

/// Why a CONNECT is refused, as the platform's clients understand it: each maps to one
/// CONNACK return code of MQTT 3.1.1 and one reason code of 5.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 3.1.1: 2 (identifier rejected); 5.0: 0x85 (client identifier not valid).
    BadClientId,
    /// 3.1.1: 4 (bad user name or password); 5.0: 0x86. A wrong token included.
    BadCredentials,
    /// 3.1.1: 5 (not authorized); 5.0: 0x87.
    NotAuthorized,
}

impl Refusal {
    /// The MQTT 3.1.1 CONNACK return code.
    pub fn v3_code(self) -> u8 {
        match self {
            Refusal::BadClientId => 2,
            Refusal::BadCredentials => 4,
            Refusal::NotAuthorized => 5,
        }
    }

    /// The MQTT 5.0 CONNACK reason code.
    pub fn v5_code(self) -> u8 {
        match self {
            Refusal::BadClientId => 0x85,
            Refusal::BadCredentials => 0x86,
            Refusal::NotAuthorized => 0x87,
        }
    }
}

/// A CONNECT that does not make a platform identity: what was wrong, and how to answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{why}")]
pub struct IdentityError {
    pub refusal: Refusal,
    pub why: String,
}

impl IdentityError {
    fn bad_id(why: impl Into<String>) -> IdentityError {
        IdentityError {
            refusal: Refusal::BadClientId,
            why: why.into(),
        }
    }

    fn credentials(why: impl Into<String>) -> IdentityError {
        IdentityError {
            refusal: Refusal::BadCredentials,
            why: why.into(),
        }
    }

    fn not_authorized(why: impl Into<String>) -> IdentityError {
        IdentityError {
            refusal: Refusal::NotAuthorized,
            why: why.into(),
        }
    }
}

/// The class of a client, from the first field of its client id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// `d:` a device.
    Device,
    /// `g:` a gateway: a device that may act for the devices behind it.
    Gateway,
    /// `a:` an application.
    Application,
    /// `A:` a scalable application: connections with the same id share its messages.
    ScalableApplication,
}

/// A platform client id, checked: class, organization and the ids that follow.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientId {
    /// A device (`d:`) or gateway (`g:`).
    Device {
        gateway: bool,
        org: String,
        type_id: String,
        device_id: String,
    },
    /// An application (`a:`), or a scalable one (`A:`) with its optional instance id.
    Application {
        scalable: bool,
        org: String,
        app_id: String,
        instance: Option<String>,
    },
}

impl ClientId {
    /// Reads a client id; anything that is not one of the four forms with valid ids is
    /// [`Refusal::BadClientId`].
    pub fn parse(client_id: &str) -> Result<ClientId, IdentityError> {
        let mut fields = client_id.split(':');
        let class = fields.next().unwrap_or_default();
        let rest: Vec<&str> = fields.collect();
        let parsed = match (class, rest.as_slice()) {
            ("d" | "g", [org, type_id, device_id]) => ClientId::Device {
                gateway: class == "g",
                org: org_id(org)?,
                type_id: id("type id", type_id)?,
                device_id: id("device id", device_id)?,
            },
            ("a", [org, app_id]) => ClientId::Application {
                scalable: false,
                org: org_id(org)?,
                app_id: id("application id", app_id)?,
                instance: None,
            },
            ("A", [org, app_id, instance @ ..]) if instance.len() <= 1 => ClientId::Application {
                scalable: true,
                org: org_id(org)?,
                app_id: id("application id", app_id)?,
                instance: match instance.first() {
                    Some(i) => Some(id("instance id", i)?),
                    None => None,
                },
            },
            _ => {
                return Err(IdentityError::bad_id(format!(
                    "client id {:?} is not d:<org>:<type>:<id>, g:<org>:<type>:<id>, a:<org>:<appId> \
                     or A:<org>:<appId>[:<instance>]",
                    shorten(client_id)
                )))
            }
        };
        Ok(parsed)
    }

    /// The client's class.
    pub fn class(&self) -> Class {
        match self {
            ClientId::Device { gateway: false, .. } => Class::Device,
            ClientId::Device { gateway: true, .. } => Class::Gateway,
            ClientId::Application { scalable: false, .. } => Class::Application,
            ClientId::Application { scalable: true, .. } => Class::ScalableApplication,
        }
    }

    /// The organization the client id names.
    pub fn org(&self) -> &str {
        match self {
            ClientId::Device { org, .. } | ClientId::Application { org, .. } => org,
        }
    }

    /// Checks the user name against the class: devices and gateways send
    /// `use-token-auth` and their token; applications their API key (of this
    /// organization) and its token. The `quickstart` organization takes no credentials.
    /// Returns what the password is to be checked as.
    pub fn credentials<'a>(
        &self,
        user: Option<&'a str>,
        password: Option<&[u8]>,
    ) -> Result<Credentials<'a>, IdentityError> {
        if self.org() == QUICKSTART {
            return match self {
                ClientId::Application { scalable: true, .. } => Err(IdentityError::not_authorized(
                    "the quickstart organization has no scalable applications",
                )),
                _ => Ok(Credentials::Quickstart),
            };
        }
        let Some(user) = user else {
            return Err(IdentityError::credentials("a user name is required"));
        };
        if password.is_none_or(<[u8]>::is_empty) {
            return Err(IdentityError::credentials("a password (the token) is required"));
        }
        match self {
            ClientId::Device { .. } if user == TOKEN_AUTH_USER => Ok(Credentials::DeviceToken),
            ClientId::Device { .. } => Err(IdentityError::credentials(format!(
                "devices and gateways authenticate with the user name {TOKEN_AUTH_USER:?} and their token"
            ))),
            ClientId::Application { org, .. } => {
                let key_org = api_key_org(user).ok_or_else(|| {
                    IdentityError::credentials(format!(
                        "user name {:?} is not an API key (a-<org>-<id>)",
                        shorten(user)
                    ))
                })?;
                if key_org != org {
                    return Err(IdentityError::not_authorized(format!(
                        "API key of organization {key_org:?} used for organization {org:?}"
                    )));
                }
                Ok(Credentials::ApiKey(user))
            }
        }
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientId::Device {
                gateway,
                org,
                type_id,
                device_id,
            } => write!(f, "{}:{org}:{type_id}:{device_id}", if *gateway { "g" } else { "d" }),
            ClientId::Application {
                scalable,
                org,
                app_id,
                instance,
            } => {
                write!(f, "{}:{org}:{app_id}", if *scalable { "A" } else { "a" })?;
                match instance {
                    Some(instance) => write!(f, ":{instance}"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// What a CONNECT's password is to be checked as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials<'a> {
    /// The device's (or gateway's) authentication token.
    DeviceToken,
    /// The token of this API key.
    ApiKey(&'a str),
    /// Nothing to check (the quickstart organization).
    Quickstart,
}

/// The organization of an API key `a-<org>-<random>`, if the key has that shape.
pub fn api_key_org(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("a-")?;
    let (org, random) = rest.split_once('-')?;
    (is_org_id(org) && !random.is_empty() && random.len() <= 64 && random.bytes().all(is_id_byte)).then_some(org)
}

/// Whether `org` is a valid organization id: 1 to 36 of `[a-z0-9]`.
pub fn is_org_id(org: &str) -> bool {
    (1..=MAX_ID).contains(&org.len()) && org.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Whether `id` is a valid type, device, application or instance id: 1 to 36 of
/// `[A-Za-z0-9._-]`. Such an id is always one topic level without wildcards.
pub fn is_id(id: &str) -> bool {
    (1..=MAX_ID).contains(&id.len()) && id.bytes().all(is_id_byte)
}

fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

fn org_id(org: &str) -> Result<String, IdentityError> {
    if is_org_id(org) {
        Ok(org.to_string())
    } else {
        Err(IdentityError::bad_id(format!(
            "organization {:?} is not 1 to 36 of a-z and 0-9",
            shorten(org)
        )))
    }
}

fn id(what: &str, value: &str) -> Result<String, IdentityError> {
    if is_id(value) {
        Ok(value.to_string())
    } else {
        Err(IdentityError::bad_id(format!(
            "{what} {:?} is not 1 to 36 of A-Z, a-z, 0-9, '.', '_' and '-'",
            shorten(value)
        )))
    }
}

/// At most 80 characters of a name for a message (a client may send 65,535).
fn shorten(s: &str) -> &str {
    match s.char_indices().nth(80) {
        Some((at, _)) => &s[..at],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(org: &str, t: &str, d: &str) -> ClientId {
        ClientId::Device {
            gateway: false,
            org: org.into(),
            type_id: t.into(),
            device_id: d.into(),
        }
    }

    #[test]
    fn the_four_forms_are_read() {
        assert_eq!(
            ClientId::parse("d:za6xa7:test:4321").unwrap(),
            device("za6xa7", "test", "4321")
        );
        assert_eq!(ClientId::parse("d:za6xa7:test:4321").unwrap().class(), Class::Device);
        let g = ClientId::parse("g:org1:gw.type:gw_1-A").unwrap();
        assert_eq!(g.class(), Class::Gateway);
        assert_eq!(g.org(), "org1");
        let a = ClientId::parse("a:za6xa7:test2").unwrap();
        assert_eq!(a.class(), Class::Application);
        assert_eq!(
            ClientId::parse("A:za6xa7:app").unwrap(),
            ClientId::Application {
                scalable: true,
                org: "za6xa7".into(),
                app_id: "app".into(),
                instance: None
            }
        );
        let scaled = ClientId::parse("A:za6xa7:app:inst-3").unwrap();
        assert_eq!(scaled.class(), Class::ScalableApplication);
        assert_eq!(scaled.to_string(), "A:za6xa7:app:inst-3");
    }

    #[test]
    fn display_gives_back_the_client_id() {
        for id in ["d:o:t:d", "g:o:t:d", "a:o:app", "A:o:app", "A:o:app:i"] {
            assert_eq!(ClientId::parse(id).unwrap().to_string(), id);
        }
    }

    #[test]
    fn malformed_client_ids_are_refused_as_bad_ids() {
        let thirty_seven = "x".repeat(37);
        let bad = [
            "",
            "d",
            "d:org:type",
            "d:org:type:id:extra",
            "a:org",
            "a:org:app:extra",
            "A:org",
            "A:org:app:i:j",
            "x:org:type:id",
            "D:org:type:id",
            "d:Org:type:id",
            "d:or-g:type:id",
            "d::type:id",
            "d:org::id",
            "d:org:type:",
            "d:org:ty/pe:id",
            "d:org:type:i+d",
            "d:org:type:#",
            "a:org:app id",
            "d:org:type:dévice",
            "d:org:type:id\0",
            &format!("d:org:type:{thirty_seven}"),
            &format!("d:{thirty_seven}:type:id"),
            &format!("A:org:app:{thirty_seven}"),
        ];
        for id in bad {
            let e = ClientId::parse(id).unwrap_err();
            assert_eq!(e.refusal, Refusal::BadClientId, "{id:?}");
            assert!(!e.why.is_empty());
        }
        let longest = "x".repeat(36);
        assert!(ClientId::parse(&format!("d:{longest}:{longest}:{longest}")).is_ok());
    }

    #[test]
    fn a_huge_client_id_is_named_shortened() {
        let e = ClientId::parse(&format!("d:{}", "y".repeat(60_000))).unwrap_err();
        assert!(e.why.len() < 300, "{}", e.why.len());
    }

    #[test]
    fn devices_and_gateways_use_token_auth() {
        for id in ["d:org:t:d", "g:org:t:d"] {
            let c = ClientId::parse(id).unwrap();
            assert_eq!(
                c.credentials(Some("use-token-auth"), Some(b"tok")),
                Ok(Credentials::DeviceToken)
            );
            let refusal = |u: Option<&str>, p: Option<&[u8]>| c.credentials(u, p).unwrap_err().refusal;
            assert_eq!(refusal(Some("someone"), Some(b"tok")), Refusal::BadCredentials);
            assert_eq!(refusal(None, None), Refusal::BadCredentials);
            assert_eq!(refusal(Some("use-token-auth"), None), Refusal::BadCredentials);
            assert_eq!(refusal(Some("use-token-auth"), Some(b"")), Refusal::BadCredentials);
            assert_eq!(refusal(Some("a-org-abc"), Some(b"tok")), Refusal::BadCredentials);
        }
    }

    #[test]
    fn applications_use_an_api_key_of_their_own_organization() {
        let app = ClientId::parse("a:za6xa7:test1").unwrap();
        assert_eq!(
            app.credentials(Some("a-za6xa7-q1w2e3r4t5"), Some(b"token")),
            Ok(Credentials::ApiKey("a-za6xa7-q1w2e3r4t5"))
        );
        let refusal = |u: &str| app.credentials(Some(u), Some(b"token")).unwrap_err().refusal;
        assert_eq!(refusal("a-other1-q1w2e3r4t5"), Refusal::NotAuthorized);
        assert_eq!(refusal("use-token-auth"), Refusal::BadCredentials);
        assert_eq!(refusal("za6xa7"), Refusal::BadCredentials);
        assert_eq!(refusal("a-za6xa7-"), Refusal::BadCredentials);
        assert_eq!(refusal("a-ZA6XA7-abc"), Refusal::BadCredentials);
        let scalable = ClientId::parse("A:za6xa7:svc:1").unwrap();
        assert!(scalable.credentials(Some("a-za6xa7-k"), Some(b"t")).is_ok());
    }

    #[test]
    fn quickstart_takes_no_credentials_and_no_scalable_apps() {
        let d = ClientId::parse("d:quickstart:mosquitto:myDeviceId").unwrap();
        assert_eq!(d.credentials(None, None), Ok(Credentials::Quickstart));
        let a = ClientId::parse("a:quickstart:viewer").unwrap();
        assert_eq!(a.credentials(None, None), Ok(Credentials::Quickstart));
        let s = ClientId::parse("A:quickstart:viewer").unwrap();
        assert_eq!(s.credentials(None, None).unwrap_err().refusal, Refusal::NotAuthorized);
    }

    #[test]
    fn api_keys_name_their_organization() {
        assert_eq!(api_key_org("a-za6xa7-zzzz"), Some("za6xa7"));
        assert_eq!(api_key_org("a-org-with-dashes"), Some("org"));
        assert_eq!(api_key_org("b-za6xa7-zzzz"), None);
        assert_eq!(api_key_org("a--zzzz"), None);
        assert_eq!(api_key_org("a-za6xa7"), None);
        assert_eq!(api_key_org("a-za6xa7-zz zz"), None);
    }

    #[test]
    fn refusals_have_the_codes_the_sdks_expect() {
        assert_eq!(Refusal::BadClientId.v3_code(), 2);
        assert_eq!(Refusal::BadCredentials.v3_code(), 4);
        assert_eq!(Refusal::NotAuthorized.v3_code(), 5);
        assert_eq!(Refusal::BadClientId.v5_code(), 0x85);
        assert_eq!(Refusal::BadCredentials.v5_code(), 0x86);
        assert_eq!(Refusal::NotAuthorized.v5_code(), 0x87);
    }
}
