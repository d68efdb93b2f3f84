//! A throwaway PostgreSQL cluster for tests: Debian's postgresql-15 (`scripts/peers.sh`),
//! `initdb` in a temp dir, a unix socket there and a free loopback port; stopped and
//! removed on drop. As root, the server runs as the package's `postgres` user (initdb
//! refuses root).

use std::path::PathBuf;
use std::process::{Command, Output};

const BIN: &str = "/usr/lib/postgresql/15/bin";
/// The role tests connect as, and its password over TCP (the socket trusts).
pub const USER: &str = "foundry";
pub const PASSWORD: &str = "test-password";

pub struct TestServer {
    dir: tempfile::TempDir,
    pub port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn as_server_user(program: &str) -> Command {
    let path = format!("{BIN}/{program}");
    if rustix::process::getuid().is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", &path]);
        c
    } else {
        Command::new(path)
    }
}

fn check(what: &str, out: std::io::Result<Output>) {
    let out = out
        .unwrap_or_else(|e| panic!("{what}: {e} (is postgresql-15 installed? scripts/peers.sh)"));
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestServer {
    pub fn start() -> TestServer {
        let dir = tempfile::Builder::new()
            .prefix("fpg")
            .tempdir()
            .expect("tempdir");
        if rustix::process::getuid().is_root() {
            check(
                "chown",
                Command::new("chown")
                    .args(["postgres:postgres", &dir.path().display().to_string()])
                    .output(),
            );
        }
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).expect("pwfile");
        if rustix::process::getuid().is_root() {
            check(
                "chown pw",
                Command::new("chown")
                    .args(["postgres:postgres", &pwfile.display().to_string()])
                    .output(),
            );
        }
        let data = dir.path().join("data");
        check(
            "initdb",
            as_server_user("initdb")
                .arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    USER,
                    "--no-sync",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                ])
                .arg(format!("--pwfile={}", pwfile.display()))
                .output(),
        );
        let server = TestServer {
            dir,
            port: free_port(),
        };
        server.start_again();
        server
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `pg_ctl start`, waiting (bounded) until it accepts connections.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on -c shared_buffers=16MB",
            self.port,
            self.dir.path().display()
        );
        check(
            "pg_ctl start",
            as_server_user("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-o", &options, "-w", "-t", "60", "-l"])
                .arg(self.dir.path().join("log"))
                .arg("start")
                .output(),
        );
    }

    /// `pg_ctl stop -m fast`, waiting (bounded) until it is down.
    pub fn stop(&self) {
        check(
            "pg_ctl stop",
            as_server_user("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-m", "fast", "-w", "-t", "60", "stop"])
                .output(),
        );
    }

    /// The URL of the database `postgres` over the unix socket (no password needed).
    pub fn socket_url(&self) -> String {
        format!(
            "postgres://{USER}@{}:{}/postgres",
            self.dir.path().display().to_string().replace('/', "%2F"),
            self.port
        )
    }

    /// A URL over loopback TCP, without its password.
    pub fn tcp_url(&self, db: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs SQL as the test role through `psql` on the socket; its output.
    pub fn psql(&self, sql: &str) -> String {
        let out = Command::new(format!("{BIN}/psql"))
            .args(["-X", "-A", "-t", "-h"])
            .arg(self.dir.path())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                USER,
                "-d",
                "postgres",
                "-c",
                sql,
            ])
            .output();
        let out = out.expect("psql");
        assert!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = as_server_user("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "-t", "60", "stop"])
            .output();
    }
}
