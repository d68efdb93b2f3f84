//! `foundry component install|status` from a fresh lab's stack config, against the real
//! services on the lab's engine host: OpenBAO (the real `bao` server), PowerDNS (Debian's
//! packages), and the registry (the lab's stand-in for Zot, which keeps Zot's image
//! contract with Debian's `docker-registry` behind it). Installed from nothing, then again: the
//! second install changes nothing and says so for each component. The PowerDNS API key is
//! made once and kept in OpenBAO. After it all, no secret (root token, unseal keys, the
//! API key, Foundry's token, a secret set by the user) is in any byte of the home but the
//! handover and token files, nor in any output or log line, nor in what `docker inspect`
//! shows of any container on the Engine, nor on any command line sampled during the
//! installs, on the lab's host and on this machine (whose `/proc` shows every container's
//! processes).

use std::process::Command;

use foundry_tests::Home;
use foundry_tests::dns::dig;
use foundry_tests::docker::{Cleanup, docker, test_image, unique};
use foundry_tests::lab::Lab;
use foundry_tests::leak::live::{Procs, Sampler, assert_no_container_shows, base64};
use foundry_tests::leak::{Handed, assert_nowhere};
use serde_json::Value;

/// Runs foundry with the lab's config, expecting success; returns stdout and stderr.
fn foundry(home: &Home, config: &str, args: &[&str]) -> (Vec<u8>, Vec<u8>) {
    let mut all = vec!["--config", config];
    all.extend(args);
    let out = home.ok_output(&all);
    (out.stdout, out.stderr)
}

/// The install summaries (one JSON object per component) among the run's events.
fn summaries(stdout: &[u8]) -> Vec<Value> {
    foundry_tests::json_lines(stdout)
        .into_iter()
        .filter(|v| v.get("component").is_some())
        .collect()
}

fn names(found: &[Value]) -> Vec<&str> {
    found
        .iter()
        .filter_map(|v| v["component"].as_str())
        .collect()
}

/// Strips terminal control sequences and carriage returns from a terminal's transcript.
fn plain(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    // Parameters, then one final letter (bounded by the text's length).
                    for next in chars.by_ref() {
                        if next.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
            }
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// Runs `foundry --config CONFIG ARGS` on a pseudo-terminal (util-linux `script`), answers
/// `y` each time `prompt` shows, and returns the terminal's transcript.
fn on_terminal(home: &Home, config: &str, args: &str, prompt: &str) -> String {
    use std::io::{Read, Write};
    let line = format!(
        "{} --config {config} {args}",
        foundry_tests::foundry_bin().display()
    );
    let mut child = Command::new("script")
        .args(["-qefc", &line, "/dev/null"])
        .env("FOUNDRY_HOME", home.path())
        .env("NO_COLOR", "1")
        .env("TERM", "xterm")
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("FOUNDRY_KEYRING")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("script");
    let mut stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let mut stdin = child.stdin.take().expect("stdin");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    let mut answered = 0;
    while std::time::Instant::now() < deadline {
        match rx.recv_timeout(std::time::Duration::from_millis(200)) {
            Ok(bytes) => seen.extend(bytes),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if plain(&seen).matches(prompt).count() > answered {
            stdin.write_all(b"y").expect("answer");
            stdin.flush().expect("flush");
            answered += 1;
        }
    }
    drop(stdin);
    let status = child.wait().expect("script");
    let _ = reader.join();
    let transcript = plain(&seen);
    assert!(answered > 0, "no prompt `{prompt}` shown:\n{transcript}");
    assert!(status.success(), "{status:?}:\n{transcript}");
    transcript
}

#[test]
fn every_component_installs_from_a_fresh_config_and_again_changes_nothing() {
    let lab = Lab::up("comp", 1);
    let home = &lab.home;
    let config = lab.config.to_str().expect("utf8").to_string();
    let stack = foundry_workflows::config::load(&lab.config).expect("the lab's config");
    let address = |c: &str| -> String {
        let components = stack.components.as_ref().expect("components");
        let service = match c {
            "openbao" => &components.openbao,
            "dns" => &components.dns,
            _ => &components.zot,
        };
        service.address.as_ref().expect("address").value.to_string()
    };
    // The lab's config names the lab's stand-in for Zot; a config without one gets
    // upstream Zot's image.
    assert_eq!(
        stack
            .components
            .as_ref()
            .and_then(|c| c.zot.image.as_deref()),
        Some(foundry_workflows::registry::REGISTRY_IMAGE)
    );
    let mut outputs: Vec<(String, Vec<u8>)> = Vec::new();

    // OpenBAO first, from nothing, on a terminal: the unseal keys and root token are shown
    // there once, and their file is deleted when the person says they are stored.
    let handover = home
        .path()
        .join("openbao")
        .join(format!("foundry-lab-{}-openbao-handover.txt", lab.name));
    // Command lines are sampled while the installs run: on the lab's host as its users see
    // them, and on this machine, every 200 ms, for at most 10 minutes.
    let every = std::time::Duration::from_millis(200);
    let host_procs = Sampler::start(Procs::Container(lab.container(&lab.names[0])), every, 3000);
    let local_procs = Sampler::start(Procs::Local, every, 3000);
    let asked = "Its file is then deleted [y/N]";
    let transcript = on_terminal(home, &config, "component install openbao", asked);
    let handed = Handed::parse(&transcript);
    // One key at a time, each confirmed before the next; the root token revoked.
    assert_eq!(transcript.matches(asked).count(), 3, "{transcript}");
    assert!(handed.root.is_none(), "{transcript}");
    assert!(
        transcript
            .lines()
            .any(|l| l.starts_with("openbao on host-1")
                && l.contains("initialized")
                && l.contains("keys handed over")),
        "{transcript}"
    );
    assert!(transcript.contains("Foundry keeps no copy"), "{transcript}");
    assert!(
        !handover.exists(),
        "the handover file outlived the confirmation"
    );

    // Then the others, from nothing, in order.
    let (stdout, stderr) = foundry(home, &config, &["component", "install", "-o", "json"]);
    let first = summaries(&stdout);
    assert_eq!(names(&first), ["openbao", "dns", "zot"], "{first:?}");
    assert_eq!(first[0]["changed"], false, "{first:?}");
    for summary in &first[1..] {
        assert_eq!(summary["changed"], true, "{summary}");
        assert_eq!(summary["host"], "host-1", "{summary}");
    }
    // The registry runs the stand-in, built here, with Zot's command.
    let zot = format!("foundry-lab-{}-zot", lab.name);
    let run = Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{.Config.Image}} {{json .Config.Cmd}}",
            &zot,
        ])
        .output()
        .expect("docker inspect");
    assert_eq!(
        String::from_utf8_lossy(&run.stdout).trim(),
        format!(
            r#"{} ["serve","/etc/zot/config.json"]"#,
            foundry_workflows::registry::REGISTRY_IMAGE
        )
    );
    let dns_changes = first[1]["changes"].to_string();
    assert!(dns_changes.contains("API key made"), "{dns_changes}");
    outputs.push(("first install".into(), [stdout, stderr].concat()));
    let host_procs = host_procs.stop();
    let local_procs = local_procs.stop();

    // Again, with every log line on: nothing changes, and each component says so.
    let mut again = home.cmd(&["--config", &config, "component", "install", "-vvv"]);
    let again = again.output().expect("foundry");
    assert!(again.status.success(), "{again:?}");
    let text = String::from_utf8_lossy(&again.stdout);
    for c in ["openbao", "dns", "zot"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{c} on host-1")) && l.ends_with("nothing changed")),
            "{c}: {text}"
        );
    }
    outputs.push((
        "second install".into(),
        [again.stdout, again.stderr].concat(),
    ));
    let (stdout, stderr) = foundry(
        home,
        &config,
        &["component", "install", "dns", "-o", "json"],
    );
    let third = summaries(&stdout);
    assert_eq!(names(&third), ["dns"]);
    assert_eq!(third[0]["changed"], false, "{third:?}");
    outputs.push(("third install".into(), [stdout, stderr].concat()));

    // The stack as one: every placed component installed in one run that changes
    // nothing now, each one validated, and the components listed with what they need.
    let (stdout, stderr) = foundry(home, &config, &["stack", "install", "-o", "json"]);
    let whole = summaries(&stdout);
    assert_eq!(names(&whole), ["openbao", "dns", "zot"], "{whole:?}");
    assert!(whole.iter().all(|s| s["changed"] == false), "{whole:?}");
    assert!(
        whole.iter().all(|s| s["run"] == whole[0]["run"]),
        "one run: {whole:?}"
    );
    outputs.push(("stack install".into(), [stdout, stderr].concat()));
    let (stdout, _) = foundry(home, &config, &["stack", "validate", "-o", "json"]);
    let valid = foundry_tests::json_lines(&stdout);
    assert_eq!(
        names(&valid),
        ["openbao", "dns", "zot", "k3s", "contour", "cert-manager"],
        "{valid:?}"
    );
    assert!(
        valid[..3]
            .iter()
            .all(|v| v["ok"] == true && v["host"] == "host-1"),
        "{valid:?}"
    );
    // The lab's config has no cluster: k3s and its charts are placed nowhere, which is no
    // error.
    assert!(
        valid[3..]
            .iter()
            .all(|v| v["placed"] == false && v["ok"] == true),
        "{valid:?}"
    );
    let (stdout, _) = foundry(home, &config, &["component", "list", "-o", "json"]);
    let listed = foundry_tests::json_lines(&stdout);
    assert_eq!(
        names(&listed),
        ["openbao", "dns", "zot", "k3s", "contour", "cert-manager"],
        "{listed:?}"
    );
    assert_eq!(listed[3]["placed"], serde_json::Value::Null, "{listed:?}");
    assert_eq!(
        listed[1]["needs"],
        serde_json::json!(["openbao"]),
        "{listed:?}"
    );
    assert_eq!(listed[2]["placed"]["host"], "host-1", "{listed:?}");

    // Live status: every component healthy, at the config's addresses.
    let (stdout, stderr) = foundry(home, &config, &["component", "status", "-o", "json"]);
    let status = foundry_tests::json_lines(&stdout);
    assert_eq!(names(&status), ["openbao", "dns", "zot"], "{status:?}");
    for s in &status {
        let c = s["component"].as_str().expect("component");
        assert_eq!(s["healthy"], true, "{s}");
        assert_eq!(s["address"], address(c), "{s}");
    }
    assert_eq!(status[0]["version"], "2.7.2", "{status:?}");
    // Foundry's token: a month to live, not low, shown on the status line too.
    let ttl = status[0]["token"]["ttl_s"]
        .as_u64()
        .expect("the token's TTL");
    assert!(ttl > 30 * 86_400, "{status:?}");
    assert_eq!(status[0]["token"]["low"], false, "{status:?}");
    let summary = status[0]["summary"].as_str().expect("summary");
    assert!(summary.contains("Foundry's token: 3"), "{summary}");
    outputs.push(("status".into(), [stdout, stderr].concat()));

    // The lab's names answer inside the lab, through the recursor.
    let network = stack
        .components
        .as_ref()
        .expect("components")
        .dns
        .docker_network
        .clone()
        .expect("network");
    let recursor = stack.components.as_ref().expect("components").dns.addresses["recursor"]
        .value
        .to_string();
    let zone = &stack.dns.as_ref().expect("dns").infrastructure_zones[0];
    let (status, answers) = dig(
        &network,
        &recursor,
        &format!("openbao.{}", zone.name.value.as_str()),
        "A",
    );
    assert_eq!(status, "NOERROR", "{answers:?}");
    assert!(
        answers
            .iter()
            .any(|a| a.ends_with(&format!(" A {}", address("openbao")))),
        "{answers:?}"
    );

    // The PowerDNS API key was made once and is kept in OpenBAO.
    let (stdout, stderr) = foundry(
        home,
        &config,
        &[
            "secret",
            "get",
            "foundry-core/dns:api_key",
            "--yes",
            "-o",
            "json",
        ],
    );
    let api_key = serde_json::from_slice::<Value>(&stdout).expect("json")["api_key"]
        .as_str()
        .expect("the key")
        .to_string();
    assert_eq!(api_key.len(), 64, "a 32-byte hex key");
    drop((stdout, stderr));

    // A secret the user sets, and the config as Foundry shows it.
    let mut set = home.cmd(&[
        "--config",
        &config,
        "secret",
        "set",
        "apps/grafana:admin_password",
        "--stdin",
    ]);
    let mut child = set
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let user_secret = "correct-horse-battery-staple-7c1d";
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(user_secret.as_bytes()).expect("write");
    }
    let set = child.wait_with_output().expect("secret set");
    assert!(set.status.success(), "{set:?}");
    outputs.push(("secret set".into(), [set.stdout, set.stderr].concat()));
    for args in [
        vec!["config", "show"],
        vec!["config", "show", "-o", "json"],
        vec!["secret", "list", "-o", "json"],
        vec!["workflow", "list", "--all", "-o", "json"],
    ] {
        let (stdout, stderr) = foundry(home, &config, &args);
        outputs.push((args.join(" "), [stdout, stderr].concat()));
    }

    // No secret anywhere but the token file (the handover file is gone).
    let token_file = home.path().join("openbao").join("token");
    let token = std::fs::read_to_string(&token_file).expect("Foundry's token");
    let mut secrets = handed.secrets();
    secrets.extend([
        api_key.clone(),
        token.trim().to_string(),
        user_secret.to_string(),
    ]);
    // No secret on a command line seen while the installs ran. The samplers saw the
    // installs' own processes, so they cannot pass for having seen nothing: Foundry's SSH
    // sessions on the lab's host, PowerDNS and OpenBAO on this machine.
    let user = &lab.targets[0].user;
    assert!(
        host_procs.samples >= 5 && host_procs.saw(|l| l.starts_with(&format!("sshd: {user}"))),
        "no SSH session of {user} seen on the lab's host in {} samples: {:?}",
        host_procs.samples,
        host_procs.lines
    );
    assert!(
        local_procs.saw(|l| l.contains("pdns_server"))
            && local_procs.saw(|l| l.contains("bao") && l.contains("server")),
        "PowerDNS or OpenBAO never seen in {} samples",
        local_procs.samples
    );
    host_procs.assert_clean("the lab's host", &secrets);
    local_procs.assert_clean("this machine", &secrets);
    // Nor in any container's configuration on the Engine; the stack's and the lab's among
    // those searched.
    let searched = assert_no_container_shows(&secrets);
    for c in [
        "openbao",
        "dns-internal",
        "dns-external",
        "dns-recursor",
        "zot",
        "host-1",
    ] {
        let name = format!("/foundry-lab-{}-{c}", lab.name);
        assert!(
            searched.contains(&name),
            "{name} not searched: {searched:?}"
        );
    }

    // The run keeps the API key for its own clients in its private store; only there may
    // its value be.
    let store = home.path().join("secrets");
    let outputs: Vec<(&str, &[u8])> = outputs
        .iter()
        .map(|(what, bytes)| (what.as_str(), bytes.as_slice()))
        .collect();
    assert_nowhere(
        &home.path(),
        &[&token_file],
        &|path, secret| path.starts_with(&store) && secret == api_key,
        &secrets,
        &outputs,
    );

    // `lab down` takes the services with it: containers and data volumes.
    home.ok(&["lab", "down", "--name", &lab.name]);
    let left = Command::new("docker")
        .args(["ps", "-a", "--format", "{{.Names}}", "--filter"])
        .arg(format!("name=foundry-lab-{}-", lab.name))
        .output()
        .expect("docker ps");
    assert_eq!(
        String::from_utf8_lossy(&left.stdout).trim(),
        "",
        "containers left"
    );
    let volumes = Command::new("docker")
        .args(["volume", "ls", "-q", "--filter"])
        .arg(format!("name=foundry-lab-{}-", lab.name))
        .output()
        .expect("docker volume ls");
    assert_eq!(
        String::from_utf8_lossy(&volumes.stdout).trim(),
        "",
        "volumes left"
    );
}

/// The live leak search can fail: a secret planted as is in a container's command, one as
/// base64 in its labels and one as hex in its environment are each found in `docker
/// inspect`, and the first on the command lines sampled on this machine and inside the
/// container.
#[test]
fn the_live_leak_search_finds_planted_secrets() {
    let image = test_image();
    let planted = || format!("planted-{:016x}", rand::random::<u64>());
    let (in_cmd, in_label, in_env) = (planted(), planted(), planted());
    let hex: String = in_env.bytes().map(|b| format!("{b:02x}")).collect();
    let name = unique("leak");
    let _cleanup = Cleanup {
        containers: vec![name.clone()],
        networks: Vec::new(),
    };
    let started = docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--label",
        &format!("foundry.test={}", base64(in_label.as_bytes(), b"+/")),
        "-e",
        &format!("PLANTED={hex}"),
        image,
        "sh",
        "-c",
        &format!("sleep 600; true {in_cmd}"),
    ]);
    assert!(started.status.success(), "{started:?}");
    let found = |secret: &str| {
        let secrets = vec![secret.to_string()];
        std::panic::catch_unwind(|| assert_no_container_shows(&secrets)).is_err()
    };
    for secret in [&in_cmd, &in_label, &in_env] {
        assert!(found(secret), "a planted secret was not found");
    }
    assert!(!found(&planted()), "a secret never planted was found");

    let every = std::time::Duration::from_millis(50);
    for procs in [Procs::Local, Procs::Container(name.clone())] {
        let seen = Sampler::start(procs.clone(), every, 2).stop();
        assert!(seen.samples >= 1, "{procs:?}: no sample");
        let secrets = vec![in_cmd.clone()];
        assert!(
            std::panic::catch_unwind(|| seen.assert_clean("the test", &secrets)).is_err(),
            "{procs:?}: the planted command line was not found"
        );
        seen.assert_clean("the test", &[planted()]);
    }
}

/// `stack plan` of a fresh lab's config, before anything is installed (no OpenBAO, so no
/// stack CA, no kubeconfig): every component is to be installed, the cluster's nodes and
/// the charts among them, and the plan exits 0, as text and as JSON. Nothing is made.
#[test]
fn a_fresh_configs_plan_lists_every_component_to_install_before_openbao_exists() {
    let lab = Lab::up_with("plan", 2, &["--systemd"]);
    let home = &lab.home;
    let config = lab.config.to_str().expect("utf8").to_string();
    let stack = foundry_workflows::config::load(&lab.config).expect("the lab's config");
    let nodes: Vec<String> = stack
        .cluster
        .as_ref()
        .expect("a systemd lab's config has a cluster")
        .nodes
        .iter()
        .map(|n| n.hostname.value.clone())
        .collect();

    let runs = home.runs().len();
    let (out, _) = foundry(home, &config, &["stack", "plan", "--output", "json"]);
    let planned = foundry_tests::json_lines(&out);
    let placed: Vec<&str> = foundry_workflows::stack::placed(&stack)
        .iter()
        .map(|c| c.name())
        .collect();
    assert_eq!(names(&planned), placed, "{planned:?}");
    for name in ["openbao", "dns", "zot", "k3s", "contour", "cert-manager"] {
        assert!(placed.contains(&name), "{name} is not placed: {placed:?}");
    }
    let plan_of = |c: &str| -> String {
        planned
            .iter()
            .find(|p| p["component"] == c)
            .map(|p| p["plan"].to_string())
            .unwrap_or_default()
    };
    for p in &planned {
        let steps = p["plan"].as_array().expect("a plan");
        assert!(!steps.is_empty(), "nothing planned for {p}");
    }
    let openbao = plan_of("openbao");
    assert!(
        openbao.contains("create the stack's CA") && openbao.contains("create container"),
        "{openbao}"
    );
    let k3s = plan_of("k3s");
    for node in &nodes {
        assert!(k3s.contains(&format!(" on {node}")), "{node}: {k3s}");
    }
    assert!(
        plan_of("contour").contains("create HelmChart kube-system/contour"),
        "{}",
        plan_of("contour")
    );
    assert!(
        plan_of("cert-manager").contains("create HelmChart kube-system/cert-manager"),
        "{}",
        plan_of("cert-manager")
    );

    // The same as text, exit 0.
    let (text, _) = foundry(home, &config, &["stack", "plan"]);
    let text = String::from_utf8_lossy(&text);
    assert!(
        text.contains("openbao on host-1:") && text.contains("create the stack's CA"),
        "{text}"
    );
    assert!(!text.contains("nothing to do"), "{text}");

    // A plan makes nothing: no run (but the lab's own), no CA.
    assert_eq!(home.runs().len(), runs, "a plan started a run");
    assert!(
        !home.path().join("tls").join("ca.crt").exists(),
        "a plan made the stack's CA"
    );
}
