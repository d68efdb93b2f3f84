//! Foundry's OpenBAO token over its life, against the real `bao` server (as in
//! `openbao.rs`): renewed when it is used with less than half its time left, a warning
//! when OpenBAO will not renew it, its time shown by `component status`, and the recovery
//! of a lost token from the root token or a quorum of unseal keys.

use std::process::Output;
use std::time::{Duration, Instant};

use foundry_activities::openbao::TokenTtl;
use foundry_core::SecretValue;
use serde_json::{Value, json};

use crate::openbao::{Install, Net, run_foundry};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("runtime")
}

/// A token with Foundry's policy made with the root token and `options`, put where the
/// install keeps Foundry's token.
fn foundry_token_with(install: &Install, root: &SecretValue, options: Value) -> SecretValue {
    let client = install.client();
    let mut body = json!({"policies": ["foundry"], "no_parent": true});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), options.as_object()) {
        body.extend(extra.clone());
    }
    let token = rt()
        .block_on(client.create_token_with(root, body))
        .expect("a token");
    foundry_core::files::write_private(&install.token_file, token.expose().as_bytes())
        .expect("the token file");
    token
}

fn ttl(install: &Install, token: &SecretValue) -> Option<TokenTtl> {
    let client = install.client();
    rt().block_on(client.token_ttl(token)).expect("lookup-self")
}

/// Waits, within a deadline, until `token` has less than `left` seconds to live (asked
/// every 200 ms: each look is a round trip to the server).
fn wait_ttl_below(install: &Install, token: &SecretValue, left: u64) {
    let end = Instant::now() + Duration::from_secs(30);
    while ttl(install, token).is_none_or(|t| t.ttl >= left) {
        assert!(
            Instant::now() < end,
            "the token's TTL not below {left} s in 30 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn foundry(install: &Install, args: &[&str], stdin: Option<&str>) -> Output {
    run_foundry(&install.home, args, stdin, &[])
}

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A periodic token of 20 s, used once more than half of it is spent, is renewed: its TTL
/// is back to its period, and it still works once the first 20 s are over. A token that
/// cannot be renewed past its maximum is used with a warning that says what to do.
#[test]
fn a_half_spent_token_is_renewed_on_use_and_one_past_its_max_is_warned_about() {
    let net = Net::new();
    let install = Install::with(&net, 60, json!({"keep_root_token": true}));
    install.install();
    install.stack_config("");
    let root = SecretValue::new(install.handed().root.expect("the kept root token"));

    let token = foundry_token_with(&install, &root, json!({"period": "20s"}));
    let made = Instant::now();
    let set = foundry(
        &install,
        &["secret", "set", "it/ttl:v", "--stdin"],
        Some("one"),
    );
    assert!(set.status.success(), "{}", said(&set));
    wait_ttl_below(&install, &token, 9);
    let before = ttl(&install, &token).expect("known").ttl;
    let listed = foundry(&install, &["secret", "list"], None);
    assert!(listed.status.success(), "{}", said(&listed));
    let after = ttl(&install, &token).expect("known");
    assert!(
        after.ttl > before && after.ttl >= 15,
        "not renewed: {before} s before, {after:?} after"
    );
    assert!(
        !said(&listed).contains("does not renew"),
        "{}",
        said(&listed)
    );
    let over = Duration::from_secs(21);
    if let Some(left) = over.checked_sub(made.elapsed()) {
        // Time passing is the condition itself: the first 20 s must be over.
        std::thread::sleep(left);
    }
    let got = foundry(&install, &["secret", "get", "it/ttl:v", "--yes"], None);
    assert!(got.status.success(), "{}", said(&got));
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "one");

    // At most 20 s, whatever a renewal asks: used past half of it, it warns.
    let capped = foundry_token_with(
        &install,
        &root,
        json!({"ttl": "20s", "explicit_max_ttl": "20s", "renewable": true}),
    );
    wait_ttl_below(&install, &capped, 9);
    let listed = foundry(&install, &["secret", "list"], None);
    assert!(listed.status.success(), "{}", said(&listed));
    let text = said(&listed);
    assert!(
        text.contains("does not renew it any further") && text.contains("recover-token"),
        "{text}"
    );
    assert!(ttl(&install, &capped).expect("known").ttl < 10);
}

/// Foundry's token revoked: `secret` commands say how to get a new one; `secret
/// recover-token` mints one from the root token read on stdin, and again from two unseal
/// keys (a root token generated for it and revoked at once). No key or token in any byte
/// of the home but the handover and token files, nor in any output.
#[test]
fn a_revoked_token_is_recovered_from_the_root_token_and_from_unseal_keys() {
    let net = Net::new();
    let install = Install::with(&net, 61, json!({"keep_root_token": true}));
    let (_, printed) = install.install();
    install.stack_config("");
    let handed = install.handed();
    let rt = rt();
    let client = install.client();
    let mut outputs: Vec<(String, Vec<u8>)> = vec![("the install".into(), printed)];
    let mut tokens = vec![install.foundry_token()];
    let set = foundry(
        &install,
        &["secret", "set", "it/r:v", "--stdin"],
        Some("kept"),
    );
    assert!(set.status.success(), "{}", said(&set));

    let sources: [(&str, Vec<&str>, String); 2] = [
        (
            "root token",
            vec![],
            format!("{}\n", handed.root.clone().expect("the kept root token")),
        ),
        (
            "unseal keys",
            vec!["--unseal-keys"],
            format!("{}\n{}\n", handed.keys[2], handed.keys[0]),
        ),
    ];
    for (source, flags, stdin) in sources {
        let token = install.foundry_token();
        rt.block_on(client.revoke_self(&token)).expect("revoke");
        let refused = foundry(&install, &["secret", "get", "it/r:v", "--yes"], None);
        assert_eq!(
            refused.status.code(),
            Some(1),
            "{source}: {}",
            said(&refused)
        );
        let text = said(&refused);
        assert!(
            text.contains("no longer accepts Foundry's token") && text.contains("recover-token"),
            "{source}: {text}"
        );
        let mut args = vec!["secret", "recover-token"];
        args.extend(flags);
        let recovered = foundry(&install, &args, Some(&stdin));
        assert!(recovered.status.success(), "{source}: {}", said(&recovered));
        assert!(
            said(&recovered).contains("Foundry has a new OpenBAO token"),
            "{source}: {}",
            said(&recovered)
        );
        let new = install.foundry_token();
        assert_ne!(new, token, "{source}: the same token");
        let life = rt
            .block_on(client.token_ttl(&new))
            .expect("lookup")
            .expect("the new token works");
        assert!(life.policies.contains(&"foundry".to_string()), "{life:?}");
        let got = foundry(&install, &["secret", "get", "it/r:v", "--yes"], None);
        assert!(got.status.success(), "{source}: {}", said(&got));
        assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "kept");
        // Recovering again while the token works makes nothing.
        let again = foundry(&install, &["secret", "recover-token"], None);
        assert!(again.status.success(), "{source}: {}", said(&again));
        assert!(said(&again).contains("still works"), "{}", said(&again));
        assert_eq!(install.foundry_token(), new);
        tokens.push(new);
        for (what, out) in [("refused", refused), ("recovery", recovered), ("get", got)] {
            outputs.push((
                format!("{source}: {what}"),
                [out.stdout, out.stderr].concat(),
            ));
        }
    }
    // No generation was left in progress.
    let status = rt.block_on(client.generate_root_status()).expect("status");
    assert!(!status.started, "{status:?}");
    // A quorum that is not one is refused without a token.
    let token = install.foundry_token();
    rt.block_on(client.revoke_self(&token)).expect("revoke");
    let short = foundry(
        &install,
        &["secret", "recover-token", "--unseal-keys"],
        Some(&format!("{}\n", handed.keys[1])),
    );
    assert_eq!(short.status.code(), Some(1), "{}", said(&short));
    assert!(said(&short).contains("stdin ended"), "{}", said(&short));
    let status = rt.block_on(client.generate_root_status()).expect("status");
    assert!(
        !status.started,
        "a cancelled generation remains: {status:?}"
    );
    outputs.push(("short".into(), [short.stdout, short.stderr].concat()));

    let mut secrets = handed.secrets();
    secrets.extend(tokens.iter().map(|t| t.expose().to_string()));
    let extra: Vec<(&str, &[u8])> = outputs
        .iter()
        .map(|(w, b)| (w.as_str(), b.as_slice()))
        .collect();
    crate::openbao::assert_no_leak(&install, &secrets, &extra);
}

/// Unless kept, the root token is revoked once Foundry's token is made, and it is not
/// handed over: read from the run's store while the run is stopped just before the
/// revocation, it works then, and OpenBAO refuses it (403) once the run is resumed.
#[test]
fn the_root_token_is_revoked_after_the_install_unless_kept() {
    let net = Net::new();
    let install = Install::new(&net, 62);
    let status = install
        .cmd()
        .env("FOUNDRY_FAILPOINTS", "openbao/revoke-root#0@started")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("install");
    assert!(foundry_tests::killed(status), "not killed: {status:?}");
    let kept = foundry_tests::leak::files_under(&install.home.path().join("secrets"), &[]);
    let root = kept
        .values()
        .filter_map(|bytes| serde_json::from_slice::<Value>(bytes).ok())
        .find_map(|answer| answer["root_token"].as_str().map(SecretValue::new))
        .expect("the kept init answer");
    let client = install.client();
    let rt = rt();
    assert!(
        rt.block_on(client.lookup_self(&root))
            .expect("lookup")
            .is_some(),
        "the root token did not work before the revocation"
    );
    let run = install.home.only_run();
    let out = install.home.run(&["workflow", "resume", &run]);
    assert!(out.status.success(), "{}", said(&out));
    assert_eq!(
        rt.block_on(client.lookup_self(&root)).expect("lookup"),
        None,
        "the root token still works"
    );
    let handed = install.handed();
    assert!(handed.root.is_none(), "the revoked root token handed over");
    let index = std::fs::read_to_string(&install.handover).expect("index");
    assert!(index.contains("root token was revoked"), "{index}");
    let mut secrets = handed.secrets();
    secrets.push(root.expose().to_string());
    secrets.push(install.foundry_token().expose().to_string());
    crate::openbao::assert_no_leak(&install, &secrets, &[("the resume", &out.stdout)]);
}
