//! A throwaway PostgreSQL server for the tests (Debian's `postgresql`): `initdb` into a
//! temporary directory, `pg_ctl start` listening on a Unix socket in that directory only
//! (no TCP port), trust authentication for the user `tern`.
//!
//! PostgreSQL refuses to run as root: when the tests run as root (CI) the server runs as
//! `nobody`, its directory handed to that user. [`shared`] starts one server per test
//! binary; a test that stops the server mid-run starts one of its own with
//! [`Postgres::start`]. Each server has a reaper, a small shell process reading the test
//! binary's end of a pipe: when the binary exits (however it exits) the pipe closes and
//! the reaper stops the server and removes its directory, so no server outlives its tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

/// The port in the socket's name (`.s.PGSQL.<port>`): each server has a directory of its
/// own and no TCP listener, so every one can use the default.
pub const PORT: u16 = 5432;

/// A running PostgreSQL server, stopped when dropped (and by its reaper if never dropped).
pub struct Postgres {
    /// Holds the data directory (`data`), the socket and the server's log (`log`).
    dir: PathBuf,
    bin: PathBuf,
    /// Who runs the server's programs: `Some("nobody")` when the tests run as root.
    user: Option<&'static str>,
    _reaper: Child,
}

/// The directory of the newest installed PostgreSQL's programs
/// (`/usr/lib/postgresql/<version>/bin`), if one is installed.
pub fn bin_dir() -> Option<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// The server shared by every test of this binary, started at the first call; `None` if
/// PostgreSQL is not installed (a skip, or a failure under CI=true).
pub fn shared() -> Option<&'static Postgres> {
    static SHARED: OnceLock<Option<Postgres>> = OnceLock::new();
    SHARED.get_or_init(Postgres::start).as_ref()
}

impl Postgres {
    /// Makes and starts a new server; `None` if PostgreSQL is not installed (see
    /// [`super::peer_available`]).
    pub fn start() -> Option<Postgres> {
        let found = bin_dir();
        if !super::peer_available("PostgreSQL (apt-get install postgresql)", found.is_some()) {
            return None;
        }
        let bin = found?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        let user = root.then_some("nobody");
        let dir = tempfile::Builder::new()
            .prefix("tern-pg-")
            .tempdir()
            .expect("a temporary directory for PostgreSQL")
            .keep();
        if let Some(user) = user {
            let status = Command::new("chown").arg(user).arg(&dir).status().expect("run chown");
            assert!(status.success(), "chown {user} {}", dir.display());
        }
        let reaper = Self::reaper(&bin, &dir, user);
        let pg = Postgres {
            dir,
            bin,
            user,
            _reaper: reaper,
        };
        let data = pg.data_dir();
        pg.run(
            "initdb",
            &[
                "-D",
                data.to_str().expect("a UTF-8 path"),
                "-U",
                "tern",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        pg.start_server();
        Some(pg)
    }

    /// The shell process that stops the server and removes its directory once the test
    /// binary's end of its standard input closes.
    fn reaper(bin: &Path, dir: &Path, user: Option<&str>) -> Child {
        let as_user = user.map(|u| format!("runuser -u {u} -- ")).unwrap_or_default();
        let script = format!(
            "cat >/dev/null; {as_user}'{}' -D '{}/data' -m immediate stop >/dev/null 2>&1; rm -rf '{}'",
            bin.join("pg_ctl").display(),
            dir.display(),
            dir.display()
        );
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the PostgreSQL reaper")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A command running one of PostgreSQL's programs as the server's user.
    fn program(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut command = match self.user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        };
        command.current_dir(&self.dir).stdin(Stdio::null());
        command
    }

    /// Runs one of PostgreSQL's programs as the server's user; panics with its output and
    /// the server's log if it fails.
    fn run(&self, program: &str, args: &[&str]) {
        let out = self
            .program(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    /// `pg_ctl start`, returning once the server accepts connections.
    pub fn start_server(&self) {
        let options = format!(
            "-k {} -p {PORT} -c listen_addresses='' -c fsync=off",
            self.dir.display()
        );
        let data = self.data_dir();
        let log = self.dir.join("log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().expect("a UTF-8 path"),
                "-l",
                log.to_str().expect("a UTF-8 path"),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
    }

    /// `pg_ctl stop -m fast`: clients are disconnected, the server shuts down cleanly.
    pub fn stop_fast(&self) {
        let data = self.data_dir();
        self.run(
            "pg_ctl",
            &["-D", data.to_str().expect("a UTF-8 path"), "-m", "fast", "-w", "stop"],
        );
    }

    /// What the server has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// A libpq-style connection string for database `db` (what `historian_postgres` takes).
    pub fn conn_str(&self, db: &str) -> String {
        format!("host={} port={PORT} user=tern dbname={db}", self.dir.display())
    }

    /// Runs `sql` with `psql` in database `db`; its rows, one a line, fields separated by
    /// `|`. Panics if psql fails.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.try_psql(db, sql).unwrap_or_else(|e| panic!("psql {sql:?}: {e}"))
    }

    /// Like [`Postgres::psql`], with psql's error instead of a panic.
    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let dir = self.dir.to_str().expect("a UTF-8 path");
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", dir, "-p", &PORT.to_string(), "-U", "tern", "-d", db, "-c", sql])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Creates a database of its own for one test.
    pub fn create_database(&self, db: &str) {
        self.psql("postgres", &format!("CREATE DATABASE \"{db}\""));
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data_dir();
        let _ = self
            .program("pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
