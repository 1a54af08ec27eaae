//! A throwaway PostgreSQL server for a test: `initdb` into a temporary directory, the
//! server on a free loopback port with its unix socket in that directory, stopped and
//! removed on drop. It uses Debian's `postgresql` package (the binaries under
//! /usr/lib/postgresql/*/bin) and fails loudly when it is missing: `tests/setup`
//! installs it.
//!
//! As root (the CI machines) the server runs as the `postgres` user, since initdb
//! refuses root; as anyone else, as the current user.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MISSING: &str = "PostgreSQL is not installed: these tests need Debian's `postgresql` \
     package (/usr/lib/postgresql/<version>/bin/initdb). Run tests/setup, or \
     `apt-get install postgresql`.";

/// The bin directory of the newest PostgreSQL installed.
fn bin_dir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .unwrap_or_else(|e| panic!("{MISSING} (/usr/lib/postgresql: {e})"))
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, b)| b)
        .unwrap_or_else(|| panic!("{MISSING}"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// A running (or stopped, see [`PgServer::stop`]) PostgreSQL server of one test.
pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_root: bool,
    running: bool,
    tls: bool,
}

impl PgServer {
    /// Creates a cluster and starts it.
    pub fn start() -> PgServer {
        let mut server = PgServer::init();
        server.start_again();
        server
    }

    /// Creates a cluster that accepts TLS with this certificate and key (PEM), and
    /// starts it.
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> PgServer {
        let mut server = PgServer::init();
        let data = server.data_dir();
        std::fs::write(data.join("server.crt"), cert_pem).unwrap();
        std::fs::write(data.join("server.key"), key_pem).unwrap();
        // The server refuses a key that others can read.
        std::fs::set_permissions(
            data.join("server.key"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        if server.as_root {
            let status = Command::new("chown")
                .arg("postgres:postgres")
                .arg(data.join("server.crt"))
                .arg(data.join("server.key"))
                .status()
                .expect("cannot run chown");
            assert!(status.success(), "chown of the TLS files failed");
        }
        server.tls = true;
        server.start_again();
        server
    }

    fn init() -> PgServer {
        let bin = bin_dir();
        let dir = tempfile::tempdir().expect("cannot create a temporary directory");
        // The owner of /proc/self is the process's effective user.
        let as_root = std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false);
        if as_root {
            // initdb refuses to run as root; the server's user must own the directory.
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("cannot run chown");
            assert!(
                status.success(),
                "chown to the `postgres` user failed: is Debian's `postgresql` package installed? {MISSING}"
            );
        }
        let server = PgServer {
            dir,
            bin,
            port: free_port(),
            as_root,
            running: false,
            tls: false,
        };
        let data = server.data_dir();
        let out = server.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "-A".as_ref(),
                "trust".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--locale=C".as_ref(),
                "--no-sync".as_ref(),
            ],
        );
        assert!(out.status.success(), "initdb failed: {}", text(&out));
        server
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs one of the PostgreSQL programs, as the `postgres` user when we are root.
    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) -> Output {
        let path = self.bin.join(program);
        let mut cmd = if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        cmd.args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()))
    }

    /// Starts the server again after [`stop`](Self::stop), with the data it had.
    pub fn start_again(&mut self) {
        let data = self.data_dir();
        let log = self.dir.path().join("server.log");
        let mut options = format!(
            "-c port={} -c listen_addresses=127.0.0.1 -c unix_socket_directories='{}' \
             -c max_connections=30 -c shared_buffers=16MB",
            self.port,
            self.dir.path().display()
        );
        if self.tls {
            options.push_str(" -c ssl=on");
        }
        let out = self.run(
            "pg_ctl",
            &[
                "start".as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\nserver log:\n{}",
            text(&out),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        self.running = true;
    }

    /// Stops the server (fast shutdown: sessions are cut, committed data kept), as an
    /// outage would.
    pub fn stop(&mut self) {
        self.stop_with("fast");
    }

    fn stop_with(&mut self, mode: &str) {
        if !self.running {
            return;
        }
        let data = self.data_dir();
        let out = self.run(
            "pg_ctl",
            &[
                "stop".as_ref(),
                "-w".as_ref(),
                "-m".as_ref(),
                mode.as_ref(),
                "-D".as_ref(),
                data.as_os_str(),
            ],
        );
        assert!(out.status.success(), "pg_ctl stop failed: {}", text(&out));
        self.running = false;
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates a database and returns its connection URL.
    pub fn create_database(&self, name: &str) -> String {
        let port = self.port.to_string();
        let out = self.run(
            "createdb",
            &[
                "-h".as_ref(),
                "127.0.0.1".as_ref(),
                "-p".as_ref(),
                port.as_ref(),
                "-U".as_ref(),
                "postgres".as_ref(),
                name.as_ref(),
            ],
        );
        assert!(
            out.status.success(),
            "createdb {name} failed: {}",
            text(&out)
        );
        self.url(name)
    }

    /// The connection URL of a database on this server.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgresql://postgres@127.0.0.1:{}/{database}?sslmode=disable",
            self.port
        )
    }

    /// Runs SQL in a database with psql (stopping at the first error) and returns what
    /// it printed (unaligned, tuples only).
    pub fn sql(&self, database: &str, sql: &str) -> String {
        let port = self.port.to_string();
        let out = self.run(
            "psql",
            &[
                "-h".as_ref(),
                "127.0.0.1".as_ref(),
                "-p".as_ref(),
                port.as_ref(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "-d".as_ref(),
                database.as_ref(),
                "-v".as_ref(),
                "ON_ERROR_STOP=1".as_ref(),
                "-At".as_ref(),
                "-c".as_ref(),
                sql.as_ref(),
            ],
        );
        assert!(out.status.success(), "psql failed: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The directory holding the cluster (and the unix socket).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // Immediate: the data is thrown away with the directory.
        if self.running {
            let data = self.data_dir();
            let _ = self.run(
                "pg_ctl",
                &[
                    "stop".as_ref(),
                    "-w".as_ref(),
                    "-m".as_ref(),
                    "immediate".as_ref(),
                    "-D".as_ref(),
                    data.as_os_str(),
                ],
            );
            self.running = false;
        }
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
