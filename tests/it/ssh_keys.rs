//! The hosts' login keys that Foundry made move into OpenBAO, on a fresh lab with the real
//! OpenBAO: `foundry host add` makes keys (0600 files), `component install openbao` moves
//! them (OpenBAO holds them, the files are gone, the config points there) while the lab's
//! own shared key stays where it is; logins then read the keys from OpenBAO (`host list`,
//! `host ssh`), and a second move changes nothing. Then the move is
//! killed at each of its step boundaries and resumed: the key ends in OpenBAO once, the
//! file gone, the config pointing there, and the key logs in.

use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};

use foundry_tests::lab::Lab;
use foundry_tests::{Home, killed};
use foundry_workflows::config::KeyField;
use serde_json::Value;

const PASSWORD: &str = "keys-pw-1";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `foundry --config CONFIG ARGS`, which must succeed; its stdout.
fn ok(home: &Home, config: &str, args: &[&str]) -> Vec<u8> {
    let mut all = vec!["--config", config];
    all.extend(args);
    let out = home.run(&all);
    assert!(
        out.status.success(),
        "foundry {args:?} failed ({:?}):\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    out.stdout
}

/// `foundry host add NAME` at `address` by password: Foundry makes the host's key.
fn host_add(home: &Home, config: &str, name: &str, address: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "--config",
        config,
        "host",
        "add",
        name,
        "--address",
        address,
        "--user",
        "admin",
        "--password-stdin",
        "--accept-new-host-key",
    ];
    args.extend(extra);
    let mut child = home
        .cmd(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("foundry host add");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .expect("password");
    let out = child.wait_with_output().expect("host add");
    assert!(out.status.success(), "host add {name}: {out:?}");
    out
}

/// The key OpenBAO holds for `host`, through `foundry secret get`.
fn held(home: &Home, config: &str, host: &str) -> Option<String> {
    let place = format!("foundry/ssh-keys/{host}:private_key");
    let out = home.run(&[
        "--config", config, "secret", "get", &place, "--yes", "-o", "json",
    ]);
    if !out.status.success() {
        return None;
    }
    let value: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    value["private_key"].as_str().map(str::to_string)
}

/// Where the config says `host`'s key is.
fn key_of(config: &Path, host: &str) -> Option<KeyField> {
    let stack = foundry_workflows::config::load(config).expect("config");
    stack.host(host).and_then(|h| h.key.clone())
}

fn in_openbao(host: &str) -> KeyField {
    KeyField::Secret(foundry_workflows::secret_ref::SecretRef {
        path: format!("foundry/ssh-keys/{host}"),
        key: "private_key".into(),
    })
}

/// `host` moved: OpenBAO holds `key`, the file is gone, the config points there, and a
/// command over a login with the key read from OpenBAO runs.
fn assert_moved(lab: &Lab, config: &str, host: &str, key: &str) {
    let home = &lab.home;
    assert_eq!(held(home, config, host).as_deref(), Some(key), "{host}");
    assert!(
        !home.path().join("keys").join(host).exists(),
        "{host}: the key file is still there"
    );
    assert_eq!(key_of(&lab.config, host), Some(in_openbao(host)), "{host}");
    let ssh = ok(home, config, &["host", "ssh", host, "--", "echo", "in"]);
    assert_eq!(text(&ssh).trim(), "in", "{host}");
}

#[test]
fn keys_foundry_made_move_into_openbao_and_logins_read_them_there() {
    let lab = Lab::up("keys", 2);
    let home = &lab.home;
    let config = lab.config.to_str().expect("utf8").to_string();
    let cfg = config.as_str();
    for name in &lab.names {
        lab.set_password(name, PASSWORD);
    }
    let (a1, a2) = (&lab.targets[0].address, &lab.targets[1].address);

    // Foundry makes a key for each host it adds: 0600 files in the home's key store.
    host_add(home, cfg, "k1", a1, &[]);
    host_add(home, cfg, "k2", a2, &[]);
    let keys = home.path().join("keys");
    let made = |h: &str| std::fs::read_to_string(keys.join(h)).expect("the key file");
    let (key1, key2) = (made("k1"), made("k2"));
    let lab_key = key_of(&lab.config, "host-1").expect("the lab's key");

    // OpenBAO's install moves them, and says so.
    let out = ok(
        home,
        cfg,
        &["component", "install", "openbao", "-o", "json"],
    );
    let lines = foundry_tests::json_lines(&out);
    let report = |h: &str| {
        lines
            .iter()
            .find(|v| v["host"] == h && v.get("moved").is_some())
            .cloned()
            .unwrap_or_else(|| panic!("no line for {h}: {lines:?}"))
    };
    for h in ["k1", "k2"] {
        assert_eq!(report(h)["moved"], true, "{h}");
        assert_eq!(report(h)["key"], format!("openbao foundry/ssh-keys/{h}"));
    }
    assert_eq!(report("host-1")["note"], "not Foundry's, left where it is");
    assert_moved(&lab, cfg, "k1", &key1);
    assert_moved(&lab, cfg, "k2", &key2);
    // The lab's shared key is the user's: untouched, still a file, still logging in.
    assert_eq!(key_of(&lab.config, "host-1"), Some(lab_key.clone()));
    let KeyField::File(lab_file) = &lab_key else {
        panic!("the lab's key is a file");
    };
    assert!(lab_file.exists());
    assert!(held(home, cfg, "host-1").is_none());
    // No key text went into the journal or the output.
    let runs = home.runs_bytes();
    for key in [&key1, &key2] {
        let body = key.lines().nth(1).expect("a key body line");
        assert!(
            !foundry_tests::leak::contains(&runs, body),
            "in the journal"
        );
        assert!(!foundry_tests::leak::contains(&out, body), "in the output");
    }

    // Logins read the keys from OpenBAO: `host list` (and `host ssh` above). (`host
    // configure` would rename these hosts, which a lab container may not do.)
    let listed = foundry_tests::json_lines(&ok(home, cfg, &["host", "list", "-o", "json"]));
    for h in ["k1", "k2"] {
        let row = listed.iter().find(|v| v["host"] == h).expect("listed");
        assert_eq!(row["reachable"], true, "{row}");
        assert_eq!(row["key"], format!("openbao foundry/ssh-keys/{h}"), "{row}");
    }

    // A second move changes nothing.
    let before = std::fs::read_to_string(&lab.config).expect("config");
    let again = foundry_tests::json_lines(&ok(home, cfg, &["host", "keys", "move", "-o", "json"]));
    assert!(again.iter().all(|v| v["moved"] == false), "{again:?}");
    assert_eq!(
        std::fs::read_to_string(&lab.config).expect("config"),
        before
    );

    // Adding a moved host again reuses its key from OpenBAO: no new key, no file.
    let readded: Value =
        serde_json::from_slice(&host_add(home, cfg, "k1", a1, &["-o", "json"]).stdout)
            .expect("one JSON object");
    assert_eq!(readded["new_key"], false, "{readded}");
    assert_moved(&lab, cfg, "k1", &key1);

    // Killed at each boundary of each step, then resumed: the move finishes.
    let mut n = 0;
    for step in ["store", "config", "remove"] {
        for phase in ["started", "effect", "completed"] {
            n += 1;
            let host = format!("c{n}");
            host_add(home, cfg, &host, a2, &[]);
            let key = made(&host);
            let point = format!("ssh-keys/{host}/{step}#0@{phase}");
            let ids = |home: &Home| -> Vec<String> {
                home.runs()
                    .iter()
                    .filter_map(|r| r["run"].as_str().map(str::to_string))
                    .collect()
            };
            let before = ids(home);
            let status = home
                .cmd(&["--config", cfg, "host", "keys", "move", &host])
                .env("FOUNDRY_FAILPOINTS", &point)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("move");
            assert!(killed(status), "{point}: not killed: {status:?}");
            let run = ids(home)
                .into_iter()
                .find(|id| !before.contains(id))
                .unwrap_or_else(|| panic!("{point}: no new run"));
            // The last step's completion is durable with the run's end: resuming such a
            // run says it completed.
            let resumed = home.run(&["workflow", "resume", &run]);
            assert!(resumed.status.success(), "{point}: {resumed:?}");
            assert_eq!(home.show(&run)["state"], "completed", "{point}");
            assert_moved(&lab, cfg, &host, &key);
        }
    }
}
