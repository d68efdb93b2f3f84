//! A throwaway PostgreSQL cluster, for tests and the benchmark: Debian's postgresql-15
//! (`scripts/peers.sh`), `initdb` in a temp dir, a unix socket there and a free loopback
//! port; stopped and removed on drop. As root, the server runs as the package's `postgres`
//! user (initdb refuses root). Every wait is `pg_ctl`'s own, bounded with `-t`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = "/usr/lib/postgresql/15/bin";
/// The role clients connect as, and its password over TCP (the socket trusts).
pub const USER: &str = "foundry";
pub const PASSWORD: &str = "test-password";
/// How long `pg_ctl` may wait for the server to start or stop, in seconds.
const WAIT_S: &str = "60";

pub struct Cluster {
    dir: tempfile::TempDir,
    pub port: u16,
    /// Whether the server speaks TLS (`server.crt` and `server.key` in its directory).
    tls: bool,
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

fn is_root() -> bool {
    rustix::process::getuid().is_root()
}

fn as_server_user(program: &str) -> Command {
    let path = format!("{BIN}/{program}");
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", &path]);
        c
    } else {
        Command::new(path)
    }
}

fn check(what: &str, out: std::io::Result<Output>) -> Result<String, String> {
    let out =
        out.map_err(|e| format!("{what}: {e}\nhint: install postgresql-15 (scripts/peers.sh)"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn give_to_server_user(path: &Path) -> Result<(), String> {
    if is_root() {
        check(
            "chown",
            Command::new("chown")
                .arg("postgres:postgres")
                .arg(path)
                .output(),
        )?;
    }
    Ok(())
}

impl Cluster {
    /// A new cluster in a temp dir under `parent` (the system's temp dir when `None`),
    /// started.
    pub fn start_in(parent: Option<&Path>) -> Result<Cluster, String> {
        Cluster::make(parent, None)
    }

    /// A new cluster in the system's temp dir that speaks TLS too (`ssl = on`) with the
    /// certificate `cert_pem` (its chain, PEM) and its key `key_pem`, started.
    pub fn start_with_tls(cert_pem: &str, key_pem: &str) -> Result<Cluster, String> {
        Cluster::make(None, Some((cert_pem, key_pem)))
    }

    fn make(parent: Option<&Path>, tls: Option<(&str, &str)>) -> Result<Cluster, String> {
        let mut builder = tempfile::Builder::new();
        builder.prefix("fpg");
        let dir = match parent {
            Some(p) => builder.tempdir_in(p),
            None => builder.tempdir(),
        }
        .map_err(|e| format!("making the cluster's directory: {e}"))?;
        give_to_server_user(dir.path())?;
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).map_err(|e| format!("writing the password file: {e}"))?;
        give_to_server_user(&pwfile)?;
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
        )?;
        if let Some((cert, key)) = tls {
            // TLS or nothing over TCP: a client that got in spoke TLS.
            let hba = data.join("pg_hba.conf");
            let rules =
                std::fs::read_to_string(&hba).map_err(|e| format!("reading pg_hba.conf: {e}"))?;
            std::fs::write(&hba, format!("hostnossl all all all reject\n{rules}"))
                .map_err(|e| format!("writing pg_hba.conf: {e}"))?;
            for (name, pem) in [("server.crt", cert), ("server.key", key)] {
                let path = dir.path().join(name);
                std::fs::write(&path, pem).map_err(|e| format!("writing {name}: {e}"))?;
                // The server refuses a key others may read.
                std::fs::set_permissions(
                    &path,
                    std::os::unix::fs::PermissionsExt::from_mode(0o600),
                )
                .map_err(|e| format!("chmod {name}: {e}"))?;
                give_to_server_user(&path)?;
            }
        }
        let cluster = Cluster {
            dir,
            port: free_port()?,
            tls: tls.is_some(),
        };
        cluster.start_again()?;
        Ok(cluster)
    }

    /// A new cluster in the system's temp dir; panics (for tests) when it cannot be made.
    #[cfg(test)]
    pub fn start() -> Cluster {
        Cluster::start_in(None).unwrap_or_else(|e| panic!("{e}"))
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `pg_ctl start`, waiting until it accepts connections.
    pub fn start_again(&self) -> Result<(), String> {
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on -c shared_buffers=16MB",
            self.port,
            self.dir.path().display()
        );
        if self.tls {
            let dir = self.dir.path().display();
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={dir}/server.crt -c ssl_key_file={dir}/server.key"
            ));
        }
        check(
            "pg_ctl start",
            as_server_user("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-o", &options, "-w", "-t", WAIT_S, "-l"])
                .arg(self.dir.path().join("log"))
                .arg("start")
                .output(),
        )
        .map(drop)
    }

    /// `pg_ctl stop -m fast`, waiting until it is down.
    pub fn stop(&self) -> Result<(), String> {
        check(
            "pg_ctl stop",
            as_server_user("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-m", "fast", "-w", "-t", WAIT_S, "stop"])
                .output(),
        )
        .map(drop)
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

    /// Runs SQL as the cluster's role through `psql` on the socket; its output.
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        check(
            "psql",
            Command::new(format!("{BIN}/psql"))
                .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
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
                .output(),
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_server_user("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "-t", WAIT_S, "stop"])
            .output();
    }
}

/// A CA named `ca_name` and a server certificate for 127.0.0.1 that it signed (ECDSA
/// P-256), made with the `openssl` command in `dir`: the CA's PEM, the server's
/// certificate and its key.
pub fn certificates(dir: &Path, ca_name: &str) -> Result<(String, String, String), String> {
    let openssl = |args: &[&str]| {
        check(
            "openssl",
            Command::new("openssl").args(args).current_dir(dir).output(),
        )
        .map(drop)
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca = [
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        &format!("/CN={ca_name}"),
    ];
    openssl(&[&["req", "-x509"][..], &ec, &ca].concat())?;
    let csr = [
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ];
    openssl(&[&["req"][..], &ec, &csr].concat())?;
    std::fs::write(dir.join("ext"), "subjectAltName=IP:127.0.0.1\n")
        .map_err(|e| format!("writing the extensions: {e}"))?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext",
    ])?;
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name)).map_err(|e| format!("reading {name}: {e}"))
    };
    Ok((read("ca.pem")?, read("server.crt")?, read("server.key")?))
}
