//! A certificate of the user's own for OpenBAO (`tls` in the install's input, as
//! `components.openbao.tls` gives it) against the real `bao` server: a certificate made
//! here from a CA of this test's own is served after the install, the home's clients pin
//! that CA (no stack CA is made), `secret get` works through it, and the key, given by
//! reference, is in no journal or log. A certificate for another name, with another key or
//! expired is refused before anything is installed.

use std::path::{Path, PathBuf};

use foundry_core::SecretValue;
use foundry_tests::docker::docker;
use foundry_tests::leak::{assert_nowhere, contains};
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::{Value, json};

use crate::openbao::{Install, Net};

/// The environment variable the key's reference `${secret:it/bao-tls:key}` reads.
const KEY_ENV: &str = "FOUNDRY_SECRET_it_bao_tls_key";
const KEY_REF: &str = "${secret:it/bao-tls:key}";

/// A CA of the test's own.
struct TestCa {
    pem: String,
    params: CertificateParams,
    key: KeyPair,
}

impl TestCa {
    fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("key");
        let pem = params.self_signed(&key).expect("self-signed").pem();
        TestCa { pem, params, key }
    }

    /// A server certificate for `names` and its key, both PEM; `expired` makes one whose
    /// validity ended in 2020.
    fn issue(&self, names: &[&str], expired: bool) -> (String, String) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        if expired {
            params.not_before = rcgen::date_time_ymd(2019, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 1, 1);
        }
        let key = KeyPair::generate().expect("key");
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("signed");
        (cert.pem(), key.serialize_pem())
    }
}

/// Gives the install's input `tls`: the certificate and CA as files in `dir`, the key by
/// reference.
fn bring(install: &Install, dir: &Path, cert_pem: &str, ca: &TestCa) {
    let cert = dir.join("bao.crt");
    let ca_path = dir.join("ca.crt");
    std::fs::write(&cert, cert_pem).expect("cert");
    std::fs::write(&ca_path, &ca.pem).expect("ca");
    let mut input: Value =
        serde_json::from_slice(&std::fs::read(&install.input).expect("input")).expect("json");
    input["tls"] = json!({"cert": cert, "key": KEY_REF, "ca": ca_path});
    std::fs::write(&install.input, input.to_string()).expect("input");
}

/// The container's name, as the install's handover file names it.
fn container(install: &Install) -> String {
    install
        .handover
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix("-init.txt"))
        .expect("the handover names the container")
        .to_string()
}

#[test]
fn openbao_serves_a_certificate_of_the_users_own_and_secret_get_works_through_it() {
    let net = Net::new();
    let install = Install::new(&net, 30);
    let ip = install.ip().to_string();
    let ca = TestCa::new();
    let (cert_pem, key_pem) = ca.issue(&[&ip, "bao.lab.example"], false);
    let dir = install.home.scratch();
    bring(&install, &dir, &cert_pem, &ca);

    let (first, printed) = install.install_with(&[(KEY_ENV, &key_pem)]);
    assert_eq!(first["initialized"], true, "{first}");
    let tls = install.home.path().join("tls");
    assert!(
        !tls.join("ca.key").exists(),
        "no stack CA is made when the user brings a certificate"
    );
    assert_eq!(
        std::fs::read_to_string(tls.join("ca.crt")).expect("the pinned CA"),
        ca.pem,
        "clients pin the CA the user gave"
    );

    // Only the test's CA is trusted here: the server presents a chain to it, which only
    // the certificate made above has.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let client = foundry_activities::openbao::BaoClient::pinned(&install.addr, ca.pem.as_bytes())
        .expect("client");
    let health = rt
        .block_on(client.health())
        .expect("OpenBAO answers over the user's TLS");
    assert!(health.initialized && !health.sealed, "{health:?}");

    // `secret get` reads through it with Foundry's token, pinned to the user's CA.
    let token = install.foundry_token();
    rt.block_on(client.kv_put(&token, "kv", "it/own", &json!({"v": "through-your-cert"})))
        .expect("kv put");
    let config = install.stack_config("");
    let got = install
        .home
        .cmd(&[
            "--config",
            config.to_str().expect("utf8"),
            "secret",
            "get",
            "it/own:v",
            "--yes",
        ])
        .output()
        .expect("foundry secret get");
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&got.stdout).trim(),
        "through-your-cert"
    );

    // Again: nothing changes, the certificate is the one kept.
    let (again, _) = install.install_with(&[(KEY_ENV, &key_pem)]);
    assert_eq!(again["container_created"], false, "{again}");
    assert_eq!(again["container_recreated"], false, "{again}");

    // The key is in the file OpenBAO's container is given and nowhere else in the home:
    // not in a journal, a log, or what the install printed.
    let key_file: PathBuf = tls.join(format!("{}.key", container(&install)));
    assert_eq!(
        std::fs::read_to_string(&key_file).expect("the kept key"),
        key_pem
    );
    let handed: Vec<PathBuf> = (1..=3)
        .map(|n| format!("unseal-key-{n}"))
        .chain(["root-token".to_string()])
        .map(|what| foundry_activities::openbao::handover_file(&install.handover, &what))
        .collect();
    let mut except: Vec<&Path> = vec![&install.handover, &install.token_file, &key_file];
    except.extend(handed.iter().map(PathBuf::as_path));
    assert_nowhere(
        &install.home.path(),
        &except,
        &|_, _| false,
        std::slice::from_ref(&key_pem),
        &[("the install's output", &printed)],
    );
    drop(SecretValue::new(key_pem));
}

#[test]
fn a_certificate_for_another_name_another_key_or_expired_is_refused_before_anything_is_installed() {
    let net = Net::new();
    let install = Install::new(&net, 31);
    let ip = install.ip().to_string();
    let ca = TestCa::new();
    let dir = install.home.scratch();
    let refused = |cert_pem: &str, key_pem: &str| -> String {
        bring(&install, &dir, cert_pem, &ca);
        let out = install
            .cmd()
            .env(KEY_ENV, key_pem)
            .output()
            .expect("foundry openbao install");
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "refused: {said}");
        assert!(!contains(&out.stdout, key_pem) && !said.contains(key_pem));
        said
    };

    let (cert, key) = ca.issue(&["bao.other.example"], false);
    let said = refused(&cert, &key);
    assert!(
        said.contains("does not cover") && said.contains(&ip),
        "names the address it must cover: {said}"
    );

    let (cert, _) = ca.issue(&[&ip], false);
    let (_, other_key) = ca.issue(&[&ip], false);
    let said = refused(&cert, &other_key);
    assert!(said.contains("is not the key of the certificate"), "{said}");

    let (cert, key) = ca.issue(&[&ip], true);
    let said = refused(&cert, &key);
    assert!(said.contains("has expired"), "{said}");

    let other_ca = TestCa::new();
    let (cert, key) = other_ca.issue(&[&ip], false);
    let said = refused(&cert, &key);
    assert!(said.contains("was not issued by the CA"), "{said}");

    // Nothing was installed: no container, no CA or certificate kept, no run.
    let inspect = docker(&["container", "inspect", &container(&install)]);
    assert!(!inspect.status.success(), "no container was made");
    assert!(
        !install.home.path().join("tls").exists(),
        "nothing kept in the home"
    );
    let runs = install.home.runs();
    assert!(runs.is_empty(), "no run was created: {runs:?}");
}
