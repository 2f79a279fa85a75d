//! IBM's Watson IoT Platform Python SDK (wiotp-sdk 1.0.1, unmodified) run against the
//! real broker. The SDK talks only to `<org>.messaging.<domain>:8883` and
//! `https://<org>.<domain>`, so the broker and a check script run inside a network
//! namespace of their own (`unshare --net --mount`, as root) where a hosts file
//! bind-mounted over /etc/hosts sends those names to 127.0.0.1
//! (tests/interop/wiotp_netns.sh). The SDK trusts a test CA through its `caFile` option
//! and `REQUESTS_CA_BUNDLE`.

use super::peer_available;
use super::pki::Ca;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The virtualenv .ci/run makes for the SDK (it needs paho-mqtt below 2).
pub const SDK_PYTHON: &str = "/opt/tern-wiotp/bin/python";

/// Whether the SDK and root (for the namespace) are here; absent: skipped, or a failure
/// under CI=true.
pub fn sdk_ready() -> bool {
    let installed = Command::new(SDK_PYTHON)
        .args([
            "-c",
            "import wiotp.sdk.application, wiotp.sdk.device, wiotp.sdk.gateway",
        ])
        .status()
        .is_ok_and(|s| s.success());
    let sdk = "wiotp-sdk 1.0.1 in /opt/tern-wiotp (python3 -m venv /opt/tern-wiotp; pip install wiotp-sdk==1.0.1)";
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() == 0 };
    peer_available(sdk, installed) && peer_available("root (for a network namespace)", root)
}

/// An organization's host names, a CA and a server certificate for them, in `dir`.
pub struct Platform {
    pub org: String,
    pub domain: String,
    pub ca: Ca,
    pub cert: PathBuf,
    pub key: PathBuf,
    dir: PathBuf,
}

impl Platform {
    pub fn new(dir: &Path, org: &str, domain: &str) -> Platform {
        let ca = Ca::new(dir, "platform");
        let (messaging, rest) = (format!("{org}.messaging.{domain}"), format!("{org}.{domain}"));
        let (cert, key) = ca.server_for("server", &[&messaging, &rest]);
        Platform {
            org: org.into(),
            domain: domain.into(),
            ca,
            cert,
            key,
            dir: dir.to_path_buf(),
        }
    }

    /// The listener lines for TLS with this certificate.
    pub fn tls_lines(&self) -> String {
        format!("certfile {}\nkeyfile {}\n", self.cert.display(), self.key.display())
    }

    /// Runs `tern broker -c` with `config` and then `script ARGS` with the SDK's Python,
    /// both in the namespace; asserts the script passed every check ("N passed, 0
    /// failed"), showing its output and the broker's log otherwise.
    pub fn run_check(&self, config: &str, script: &str, args: &[String]) {
        let conf = self.dir.join("tern.conf");
        std::fs::write(&conf, config).unwrap();
        let hosts = self.dir.join("hosts");
        let names = format!("{0}.messaging.{1} {0}.{1}", self.org, self.domain);
        std::fs::write(&hosts, format!("127.0.0.1 localhost\n127.0.0.1 {names}\n")).unwrap();
        let log = self.dir.join("broker.log");
        let interop = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop");
        let out = Command::new("unshare")
            .args(["--net", "--mount", "bash", &format!("{interop}/wiotp_netns.sh")])
            .args([
                env!("CARGO_BIN_EXE_tern"),
                conf.to_str().unwrap(),
                hosts.to_str().unwrap(),
            ])
            .args([log.to_str().unwrap(), SDK_PYTHON, &format!("{interop}/{script}")])
            .args([&self.org, &self.domain, self.ca.cafile().to_str().unwrap()])
            .args(args)
            .env("REQUESTS_CA_BUNDLE", self.ca.cafile())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        eprintln!("{stdout}");
        assert!(
            out.status.success() && stdout.contains(" 0 failed"),
            "{stdout}\n{}\nbroker log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
}
