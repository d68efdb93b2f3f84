//! The stack config as users meet it: `config init`, `validate`, `show`, `list`, and a
//! table of bad configs, each refused with what and where (file, line, column), a non-zero
//! exit and no panic, kept as one snapshot.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use foundry_tests::Home;

/// A valid base the bad cases are variations of.
const GOOD: &str = "\
hosts:
  - name: infra-1
    address: 10.9.0.10
    user: admin
  - name: node-1
    address: 10.9.0.21
network:
  subnet: 10.9.0.0/24
  gateway: 10.9.0.1
  dhcp_range: {start: 10.9.0.100, end: 10.9.0.200}
  openbao_hosts: [infra-1]
  dns_hosts: [10.9.0.10]
  k8s_vip: 10.9.0.50
dns:
  infrastructure_zones:
    - name: infra.local
    - name: lab.example.com
      public: true
      public_cname: home.example.net
      records:
        - {name: web, type: A, value: 10.9.0.10}
  forwarders: [9.9.9.9]
  api_key: ${secret:foundry-core/dns:api_key}
cluster:
  name: production
  nodes:
    - {hostname: node-1, role: control-plane}
components:
  openbao:
  dns: {image_tag: '49'}
  k3s: {tag: v1.28.5+k3s1}
observability:
  prometheus: {retention: 30d}
";

/// The cases: a name, and the file's bytes.
fn bad_configs() -> Vec<(&'static str, Vec<u8>)> {
    let edit = |from: &str, to: &str| -> Vec<u8> {
        assert!(GOOD.contains(from), "the base has `{from}`");
        GOOD.replacen(from, to, 1).into_bytes()
    };
    vec![
        ("empty file", Vec::new()),
        ("only comments", b"# nothing yet\n".to_vec()),
        (
            "binary file",
            vec![0x7f, b'E', b'L', b'F', 0, 0xff, 0xfe, 0, 1, 2],
        ),
        (
            "yaml syntax: unclosed flow",
            b"hosts: [\n  {name: a\n".to_vec(),
        ),
        (
            "yaml syntax: bad indentation",
            edit("  gateway: 10.9.0.1", "   gateway: 10.9.0.1"),
        ),
        (
            "yaml syntax: tab indentation",
            edit("  gateway: 10.9.0.1", "\tgateway: 10.9.0.1"),
        ),
        ("unknown top-level field", edit("network:", "netwrok:")),
        (
            "unknown field in network",
            edit("  k8s_vip: 10.9.0.50", "  vipp: 10.9.0.50"),
        ),
        (
            "unknown field in a host",
            edit("    user: admin", "    usr: admin"),
        ),
        (
            "wrong type: port is text",
            edit("    user: admin", "    port: twenty"),
        ),
        (
            "wrong type: port out of range",
            edit("    user: admin", "    port: 99999"),
        ),
        (
            "wrong type: hosts is a mapping",
            b"hosts: {infra-1: 10.9.0.10}\n".to_vec(),
        ),
        (
            "wrong type: network is a list",
            b"network: [10.9.0.0/24]\n".to_vec(),
        ),
        ("missing field: gateway", edit("  gateway: 10.9.0.1\n", "")),
        ("bad CIDR: prefix 33", edit("10.9.0.0/24", "10.9.0.0/33")),
        (
            "bad CIDR: host bits set",
            edit("10.9.0.0/24", "10.9.0.7/24"),
        ),
        ("bad CIDR: no prefix", edit("10.9.0.0/24", "10.9.0.0")),
        (
            "bad address: gateway",
            edit("gateway: 10.9.0.1", "gateway: 10.9.0.256"),
        ),
        (
            "gateway outside the subnet",
            edit("gateway: 10.9.0.1", "gateway: 10.8.0.1"),
        ),
        (
            "netmask that is not a mask",
            edit("  subnet: 10.9.0.0/24", "  netmask: 255.0.255.0"),
        ),
        (
            "dhcp range backwards",
            edit(
                "{start: 10.9.0.100, end: 10.9.0.200}",
                "{start: 10.9.0.200, end: 10.9.0.100}",
            ),
        ),
        (
            "vip inside the dhcp range",
            edit("k8s_vip: 10.9.0.50", "k8s_vip: 10.9.0.150"),
        ),
        (
            "vip is a host's address",
            edit("k8s_vip: 10.9.0.50", "k8s_vip: 10.9.0.21"),
        ),
        (
            "missing host: openbao_hosts",
            edit("openbao_hosts: [infra-1]", "openbao_hosts: [infra-2]"),
        ),
        (
            "missing host: cluster node",
            edit("{hostname: node-1,", "{hostname: node-9,"),
        ),
        (
            "no hosts at all",
            GOOD.split_once("network:")
                .map(|(_, rest)| format!("network:{rest}"))
                .expect("split")
                .into_bytes(),
        ),
        (
            "node role unknown",
            edit("role: control-plane", "role: master"),
        ),
        (
            "no control plane",
            edit("role: control-plane", "role: worker"),
        ),
        (
            "host name used twice",
            edit("  - name: node-1", "  - name: infra-1"),
        ),
        (
            "host name with shell characters",
            edit("  - name: node-1", "  - name: 'node-1;reboot'"),
        ),
        (
            "public zone without public_cname",
            edit("      public_cname: home.example.net\n", ""),
        ),
        (
            ".local zone made public",
            edit(
                "    - name: infra.local",
                "    - name: infra.local\n      public: true\n      public_cname: home.example.net",
            ),
        ),
        (
            "bad zone name",
            edit("name: lab.example.com", "name: lab..example.com"),
        ),
        (
            "zone declared twice",
            edit("    - name: infra.local", "    - name: LAB.example.com."),
        ),
        ("unknown record type", edit("type: A,", "type: AAAAA,")),
        (
            "A record that is no address",
            edit("value: 10.9.0.10}", "value: web.example.com}"),
        ),
        (
            "secret written in the file",
            edit("${secret:foundry-core/dns:api_key}", "hunter2-literal"),
        ),
        (
            "malformed secret reference",
            edit(
                "${secret:foundry-core/dns:api_key}",
                "${secret:foundry-core/dns}",
            ),
        ),
        (
            "dangling secret reference",
            edit(
                "${secret:foundry-core/dns:api_key}",
                "${secret:foundry-core/nowhere:api_key}",
            ),
        ),
        (
            "retention that is no duration",
            edit("retention: 30d", "retention: forever"),
        ),
        (
            "image and image_tag both",
            edit(
                "dns: {image_tag: '49'}",
                "dns: {image_tag: '49', image: 'pdns:4.9'}",
            ),
        ),
        (
            "two VIPs that differ",
            edit(
                "  name: production",
                "  name: production\n  k8s_vip: 10.9.0.60",
            ),
        ),
        (
            "address that is an ssh option",
            edit(
                "    address: 10.9.0.21",
                "    address: '-oProxyCommand=touch${IFS}/tmp/x'",
            ),
        ),
        (
            "address with a shell character",
            edit("    address: 10.9.0.21", "    address: 'node-1;reboot'"),
        ),
        (
            "host_key that is no key",
            edit(
                "    user: admin",
                "    user: admin\n    host_key: ssh-ed25519 AAAA-not-a-key",
            ),
        ),
        (
            "user that is no user name",
            edit("user: admin", "user: '-admin'"),
        ),
        (
            "host listed twice in openbao_hosts",
            edit(
                "openbao_hosts: [infra-1]",
                "openbao_hosts: [infra-1, 10.9.0.10]",
            ),
        ),
        (
            "host name longer than a DNS label",
            edit("  - name: node-1", &format!("  - name: {}", "n".repeat(64))),
        ),
        (
            "zone label longer than 63 bytes",
            edit(
                "name: lab.example.com",
                &format!("name: {}.example.com", "l".repeat(64)),
            ),
        ),
        (
            "cluster name that is no DNS label",
            edit("  name: production", "  name: prod.uction"),
        ),
        (
            "string longer than 4 KiB",
            edit(
                "  name: production",
                &format!("  name: {}", "p".repeat(5000)),
            ),
        ),
        (
            "vip is the gateway",
            edit("k8s_vip: 10.9.0.50", "k8s_vip: 10.9.0.1"),
        ),
        (
            "vip is a service address",
            edit(
                "dns: {image_tag: '49'}",
                "dns: {image_tag: '49', address: 10.9.0.50}",
            ),
        ),
        ("k3s tag without its build", edit("v1.28.5+k3s1", "v1.28.5")),
        (
            "image tag that is no tag",
            edit("image_tag: '49'", "image_tag: '-49'"),
        ),
        (
            "image that is no image reference",
            edit("dns: {image_tag: '49'}", "dns: {image: 'PowerDNS:4.9'}"),
        ),
        (
            "version that is no version",
            edit(
                "dns: {image_tag: '49'}",
                "dns: {image_tag: '49', version: latest}",
            ),
        ),
        (
            "container name that is an option",
            edit("dns: {image_tag: '49'}", "dns: {name: '--privileged'}"),
        ),
        (
            "record name that is no name",
            edit("{name: web, type: A,", "{name: 'we b', type: A,"),
        ),
        (
            "record given twice",
            edit(
                "        - {name: web, type: A, value: 10.9.0.10}",
                "        - {name: web, type: A, value: 10.9.0.10}\n        - {name: WEB, type: A, value: 10.9.0.10}",
            ),
        ),
        (
            "own certificate for a service that is not OpenBAO",
            edit(
                "dns: {image_tag: '49'}",
                "dns: {image_tag: '49', tls: {cert: /etc/c.pem, key: /etc/k.pem, ca: /etc/ca.pem}}",
            ),
        ),
        (
            "own certificate by a relative path",
            edit(
                "  openbao:\n",
                "  openbao:\n    tls: {cert: bao.pem, key: '${secret:foundry-core/tls:key}', ca: /etc/ca.pem}\n",
            ),
        ),
        (
            "own certificate with an unknown field",
            edit(
                "  openbao:\n",
                "  openbao:\n    tls: {cert: /etc/c.pem, key: /etc/k.pem, ca: /etc/ca.pem, chain: /x}\n",
            ),
        ),
        (
            "url that is no url",
            edit(
                "observability:",
                "storage:\n  truenas: {api_url: 'truenas.lab', api_key: '${secret:foundry-core/dns:api_key}'}\nobservability:",
            ),
        ),
        (
            "duplicate key",
            edit(
                "  gateway: 10.9.0.1",
                "  gateway: 10.9.0.1\n  gateway: 10.9.0.2",
            ),
        ),
    ]
}

fn validate(home: &Home, path: &Path) -> Output {
    home.cmd(&[
        "--config",
        path.to_str().expect("utf8"),
        "config",
        "validate",
    ])
    .env("HOME", home.scratch())
    .env("FOUNDRY_SECRET_foundry_core_dns_api_key", "not-shown-1")
    // The report is about the config, not where Foundry's token is kept: no keyring runs
    // here, and `off` uses the file without warning about it.
    .env("FOUNDRY_KEYRING", "off")
    .output()
    .expect("foundry")
}

#[test]
fn bad_configs_are_refused_with_file_line_and_column() {
    let home = Home::new();
    let dir = home.scratch();
    let good = dir.join("good.yaml");
    std::fs::write(&good, GOOD).expect("write");
    let ok = validate(&home, &good);
    assert!(
        ok.status.success(),
        "the base is valid: {}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let cases = bad_configs();
    assert!(cases.len() >= 25, "at least 25 cases");
    let mut report = String::new();
    for (i, (name, bytes)) in cases.iter().enumerate() {
        let path = dir.join(format!("case-{i}.yaml"));
        std::fs::write(&path, bytes).expect("write");
        let out = validate(&home, &path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: exit 1: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        assert!(out.stdout.is_empty(), "{name}: nothing on stdout");
        assert!(
            stderr.contains(path.to_str().expect("utf8")),
            "{name}: names the file: {stderr}"
        );
        assert!(
            !stderr.contains("hunter2") && !stderr.contains("not-shown-1"),
            "{name}: no secret value: {stderr}"
        );
        // The config is left as it was.
        assert_eq!(
            &std::fs::read(&path).expect("read"),
            bytes,
            "{name}: file untouched"
        );
        let text = stderr
            .replace(path.to_str().expect("utf8"), "CONFIG")
            .replace(dir.to_str().expect("utf8"), "HOME");
        report.push_str(&format!("## {name}\n{}\n", text.trim_end()));
    }
    insta::assert_snapshot!("bad_configs", report);
}

#[test]
fn environment_beats_foundryvars_and_an_open_foundryvars_is_refused() {
    let home = Home::new();
    let dir = home.scratch();
    let path = dir.join("stack.yaml");
    std::fs::write(&path, GOOD).expect("write");
    let vars = dir.join(".foundryvars");
    std::fs::write(&vars, "foundry-core/dns:api_key=from-the-file\n").expect("write");
    std::fs::set_permissions(&vars, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let json = |env: bool| {
        let mut cmd = home.cmd(&[
            "--config",
            path.to_str().expect("utf8"),
            "config",
            "validate",
            "--output",
            "json",
        ]);
        cmd.env("HOME", &dir)
            .env_remove("FOUNDRY_SECRET_foundry_core_dns_api_key");
        if env {
            cmd.env("FOUNDRY_SECRET_foundry_core_dns_api_key", "from-the-env");
        }
        let out = cmd.output().expect("foundry");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(!text.contains("from-the"), "values never shown: {text}");
        let report: serde_json::Value = serde_json::from_str(&text).expect("json");
        report["references"][0]["from"]
            .as_str()
            .expect("from")
            .to_string()
    };
    assert_eq!(json(true), "environment");
    assert_eq!(json(false), "foundryvars");

    std::fs::set_permissions(&vars, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = home
        .cmd(&[
            "--config",
            path.to_str().expect("utf8"),
            "config",
            "validate",
        ])
        .env("HOME", &dir)
        .output()
        .expect("foundry");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("others may read it") && stderr.contains("chmod 600"),
        "{stderr}"
    );
    assert!(!stderr.contains("from-the-file"), "{stderr}");
}

#[test]
fn init_writes_a_valid_config_and_show_and_list_read_it() {
    let home = Home::new();
    let out = home.ok(&["config", "init", "--name", "prod"]);
    let path = home.path().join("prod.yaml");
    assert!(out.contains(path.to_str().expect("utf8")), "{out}");
    let again = home.run(&["config", "init", "--name", "prod"]);
    assert_eq!(
        again.status.code(),
        Some(1),
        "never overwritten without --force"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));

    // The only config in the home is the one commands use.
    let validated = home.ok(&["config", "validate"]);
    assert!(validated.contains("valid"), "{validated}");
    let shown = home.ok(&["config", "show"]);
    assert!(shown.contains("subnet: 192.168.1.0/24"), "{shown}");

    // A second config: nothing is chosen by guessing.
    std::fs::write(home.path().join("lab.yaml"), GOOD).expect("write");
    let refused = home.run(&["config", "show"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr.contains("lab.yaml") && stderr.contains("prod.yaml"),
        "{stderr}"
    );
    let listed = home.json(&["config", "list"]);
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(
        listed
            .iter()
            .all(|e| e["selected"] == false && e["error"].is_null())
    );
    let chosen = home.json(&[
        "--config",
        home.path().join("lab.yaml").to_str().expect("utf8"),
        "config",
        "list",
    ]);
    assert!(
        chosen
            .iter()
            .any(|e| e["name"] == "lab" && e["selected"] == true),
        "{chosen:?}"
    );

    // Show keeps secret references as references.
    let shown = home.ok(&[
        "--config",
        home.path().join("lab.yaml").to_str().expect("utf8"),
        "config",
        "show",
    ]);
    assert!(
        shown.contains("${secret:foundry-core/dns:api_key}"),
        "{shown}"
    );
}

#[test]
fn validate_says_when_it_did_not_ask_openbao() {
    let home = Home::new();
    let path = home.scratch().join("stack.yaml");
    std::fs::write(&path, GOOD).expect("write");
    let out = validate(&home, &path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: OpenBAO not asked") && stderr.contains("not installed"),
        "a skipped OpenBAO is said: {stderr}"
    );
    let json = home
        .cmd(&[
            "--config",
            path.to_str().expect("utf8"),
            "config",
            "validate",
            "--output",
            "json",
        ])
        .env("HOME", home.scratch())
        .env("FOUNDRY_SECRET_foundry_core_dns_api_key", "not-shown-1")
        .env("FOUNDRY_KEYRING", "off")
        .output()
        .expect("foundry");
    assert!(json.status.success());
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    let skipped = report["openbao_skipped"].as_str().expect("a reason");
    assert!(skipped.contains("no OpenBAO token"), "{report}");

    // With no reference to ask about, nothing is skipped and nothing is said.
    let plain = GOOD.replace("  api_key: ${secret:foundry-core/dns:api_key}\n", "");
    std::fs::write(&path, plain).expect("write");
    let out = validate(&home, &path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("OpenBAO not asked"), "{stderr}");
}

/// A CA and a certificate it issued for `names`, as PEM: (CA, certificate, key).
fn own_certificate(names: &[&str]) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().expect("key");
    let ca_pem = ca.self_signed(&ca_key).expect("ca").pem();
    let params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .expect("params");
    let key = KeyPair::generate().expect("key");
    let cert = params
        .signed_by(&key, &Issuer::from_params(&ca, &ca_key))
        .expect("signed");
    (ca_pem, cert.pem(), key.serialize_pem())
}

#[test]
fn validate_checks_a_certificate_the_config_brings_for_openbao() {
    let home = Home::new();
    let dir = home.scratch();
    let path = dir.join("stack.yaml");
    let with = |names: &[&str]| {
        let (ca, cert, key) = own_certificate(names);
        for (file, text) in [("ca.crt", &ca), ("bao.crt", &cert), ("bao.key", &key)] {
            std::fs::write(dir.join(file), text).expect("write");
        }
        let tls = format!(
            "  openbao:\n    docker_network: lab\n    address: 10.9.0.40\n    tls:\n      cert: {}\n      key: {}\n      ca: {}\n",
            dir.join("bao.crt").display(),
            dir.join("bao.key").display(),
            dir.join("ca.crt").display()
        );
        std::fs::write(&path, GOOD.replace("  openbao:\n", &tls)).expect("write");
        key
    };
    with(&["10.9.0.40", "bao.lab.example"]);
    let out = validate(&home, &path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let key = with(&["bao.other.example"]);
    let out = validate(&home, &path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("line 33 column 7: components.openbao.tls")
            && stderr.contains("does not cover `10.9.0.40`"),
        "{stderr}"
    );
    assert!(!stderr.contains(key.trim()), "the key is never shown");
}
