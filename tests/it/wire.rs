//! Secrets on the wire, against the real `bao` server with TLS: Foundry's token never goes
//! through a proxy named in the environment, and never to an OpenBAO it was not minted for,
//! even one that shows a certificate of the stack's own CA (a loopback TLS listener this
//! test runs with `openssl s_server`, posing as OpenBAO).

use std::io::{ErrorKind, Read};
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use foundry_tests::leak::contains;
use foundry_tests::{Home, wait_for};
use foundry_workflows::openbao::tls::StackCa;

use crate::openbao::{Install, Net, run_foundry};

/// Foundry's token as the install kept it (the home's token file: no keyring here).
fn token(install: &Install) -> String {
    std::fs::read_to_string(&install.token_file)
        .expect("the token file")
        .trim()
        .to_string()
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_token_goes_through_no_proxy_named_in_the_environment() {
    let net = Net::new();
    let install = Install::new(&net, 60);
    install.install();
    install.stack_config("");
    let proxy = TcpListener::bind("127.0.0.1:0").expect("bind");
    proxy.set_nonblocking(true).expect("nonblocking");
    let url = format!("http://{}", proxy.local_addr().expect("addr"));
    let env: Vec<(&str, &str)> = [
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
    ]
    .iter()
    .map(|name| (*name, url.as_str()))
    .collect();

    let set = run_foundry(
        &install.home,
        &["secret", "set", "it/proxy:k", "--stdin"],
        Some("through-no-proxy"),
        &env,
    );
    ok(&set, "secret set with proxy variables set");
    let got = run_foundry(
        &install.home,
        &["secret", "get", "it/proxy:k", "--yes"],
        None,
        &env,
    );
    ok(&got, "secret get with proxy variables set");
    assert_eq!(
        String::from_utf8_lossy(&got.stdout).trim(),
        "through-no-proxy"
    );
    match proxy.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        Ok((mut stream, _)) => {
            let mut seen = vec![0u8; 4096];
            let n = stream.read(&mut seen).unwrap_or(0);
            panic!(
                "the proxy was asked: {}",
                String::from_utf8_lossy(&seen[..n])
            );
        }
        Err(e) => panic!("the proxy listener: {e}"),
    }
}

/// `openssl s_server` on `ip:8200` with a certificate of the home's own CA for `ip`: it
/// prints whatever a client sends once the handshake is done.
struct Impostor {
    child: Child,
    out: std::path::PathBuf,
}

impl Impostor {
    fn start(home: &Home, ip: &str) -> Impostor {
        let ca = StackCa::ensure(&home.path()).expect("the home's CA");
        let (cert, key) = ca.issue(&[ip.to_string()]).expect("a certificate");
        let dir = home.scratch();
        let (cert_path, key_path, out) = (
            dir.join("impostor.crt"),
            dir.join("impostor.key"),
            dir.join("impostor.out"),
        );
        std::fs::write(&cert_path, cert).expect("cert");
        std::fs::write(&key_path, key.expose()).expect("key");
        let log = std::fs::File::create(&out).expect("out");
        let child = Command::new("openssl")
            .args(["s_server", "-accept", &format!("{ip}:8200"), "-cert"])
            .arg(&cert_path)
            .arg("-key")
            .arg(&key_path)
            .stdin(Stdio::piped())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("openssl s_server");
        let impostor = Impostor { child, out };
        wait_for("s_server to listen", Duration::from_secs(10), || {
            impostor.printed().contains("ACCEPT")
        });
        impostor
    }

    fn printed(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for Impostor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_token_goes_only_to_the_openbao_it_was_minted_for() {
    let net = Net::new();
    let install = Install::new(&net, 61);
    install.install();
    let home = &install.home;
    let ip = format!("127.0.0.{}", 2 + rand::random::<u8>() % 250);
    let impostor = Impostor::start(home, &ip);
    // An untrusted config that puts OpenBAO at the impostor, with a reference to resolve.
    let config = home.path().join("stack.yaml");
    std::fs::write(
        &config,
        format!(
            "components:\n  openbao:\n    address: {ip}\ndns:\n  api_key: ${{secret:foundry-core/dns:api_key}}\n"
        ),
    )
    .expect("config");

    let validate = run_foundry(home, &["config", "validate"], None, &[]);
    let got = run_foundry(home, &["secret", "get", "it/x:k", "--yes"], None, &[]);
    assert!(!got.status.success(), "secret get at the impostor answered");
    let said = String::from_utf8_lossy(&got.stderr);
    assert!(
        said.contains("not sent there") && said.contains("hint:"),
        "{said}"
    );
    let token = token(&install);
    let printed = impostor.printed();
    drop(impostor);
    assert!(
        !printed.to_ascii_lowercase().contains("x-vault-token") && !printed.contains(&token),
        "the impostor received the token: {printed}"
    );
    for (what, out) in [("validate", &validate), ("secret get", &got)] {
        assert!(
            !contains(&out.stdout, &token) && !contains(&out.stderr, &token),
            "{what} printed the token"
        );
    }

    // The real OpenBAO, at the address the token was minted for, still answers.
    install.stack_config("");
    let set = run_foundry(
        home,
        &["secret", "set", "it/x:k", "--stdin"],
        Some("v"),
        &[],
    );
    ok(&set, "secret set at the real OpenBAO");
}
