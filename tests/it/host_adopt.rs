//! `host configure` on a host where a `foundry` user exists already, made there with
//! `docker exec` with a key and a password of someone else's: refused before anything
//! changes, listing that key (type, fingerprint, comment) and "password set", in human
//! output and in JSON; `--adopt` accepts the user as it is and says what it adopted; a
//! later plain `host configure` is quiet. A run killed with that look in doubt looks
//! again when resumed. Every check on the host is made with the
//! OpenSSH client or `docker exec`, independent witnesses.

use std::process::{Command, Output};

use foundry_tests::lab::Lab;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `sh -c SCRIPT sh ARGS…` as root in a lab host's container.
fn docker_sh(lab: &Lab, host: &str, script: &str, args: &[&str]) -> Output {
    let out = Command::new("docker")
        .args(["exec", &lab.container(host), "sh", "-c", script, "sh"])
        .args(args)
        .output()
        .expect("docker exec");
    assert!(out.status.success(), "{script}: {out:?}");
    out
}

#[test]
fn host_configure_refuses_an_existing_foundry_user_until_adopted() {
    let lab = Lab::up("adopt", 1);
    let home = &lab.home;
    let config = lab.config.to_str().expect("utf8");
    let host = lab.names[0].clone();
    let target = &lab.targets[0];

    // Someone else's key, and a password, on a `foundry` user made before Foundry came.
    let key = home.scratch().join("alice");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "alice@laptop", "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen");
    assert!(made.status.success(), "{made:?}");
    let public = key.with_extension("pub");
    let alice = std::fs::read_to_string(&public).expect("alice.pub");
    let listed = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&public)
        .output()
        .expect("ssh-keygen -l");
    let fingerprint = text(&listed.stdout)
        .split_whitespace()
        .nth(1)
        .expect("a fingerprint")
        .to_string();
    assert!(fingerprint.starts_with("SHA256:"), "{fingerprint}");
    let password = format!("pw-{}", rand::random::<u32>());
    docker_sh(
        &lab,
        &host,
        "useradd --create-home --shell /bin/bash foundry
         mkdir -p /home/foundry/.ssh
         printf '%s' \"$1\" > /home/foundry/.ssh/authorized_keys
         chown -R foundry:foundry /home/foundry/.ssh
         printf 'foundry:%s\\n' \"$2\" | chpasswd",
        &[alice.as_str(), password.as_str()],
    );
    let shadow =
        |lab: &Lab| text(&docker_sh(lab, &host, "getent shadow foundry | cut -d: -f2", &[]).stdout);
    let hash = shadow(&lab);
    assert!(hash.starts_with('$'), "a password is set: {hash}");
    let sudoers = |lab: &Lab| {
        lab.ssh(target, "sudo -n test -e /etc/sudoers.d/foundry")
            .status
            .success()
    };
    let keys = |lab: &Lab| {
        text(
            &lab.ssh(target, "sudo -n cat /home/foundry/.ssh/authorized_keys")
                .stdout,
        )
    };

    // Killed with its look at the user in doubt, the resumed run looks again (the step is
    // read-only, so it runs again): refused, listing what is there; nothing changed.
    let crashed = home
        .cmd(&["host", "configure", &host, "--config", config])
        .env(
            "FOUNDRY_FAILPOINTS",
            format!("{host}/existing-user#0@started"),
        )
        .output()
        .expect("foundry");
    assert!(foundry_tests::killed(crashed.status), "{crashed:?}");
    let run = home
        .runs()
        .into_iter()
        .find(|r| r["workflow"] == "host-configure" && r["state"] == "interrupted")
        .and_then(|r| r["run"].as_str().map(str::to_string))
        .expect("the interrupted run");
    let refused = home.run(&["workflow", "resume", &run]);
    let said = format!("{}{}", text(&refused.stdout), text(&refused.stderr));
    assert_ne!(refused.status.code(), Some(0), "{said}");
    assert!(!said.contains("panicked"), "{said}");
    for needle in [
        "the user `foundry` exists already",
        "nothing was changed",
        &format!("key ssh-ed25519 {fingerprint} alice@laptop"),
        "password set",
        "hint:",
        &format!("--adopt {host}"),
    ] {
        assert!(said.contains(needle), "lacks {needle:?}: {said}");
    }
    assert!(
        !said.contains(hash.trim()) && !said.contains(&password),
        "{said}"
    );
    assert!(!sudoers(&lab), "the sudoers file was written");
    assert_eq!(keys(&lab), alice, "the user's keys changed");

    // The same in JSON: the failed step's error lists them.
    let events = home.json(&["host", "configure", &host, "--config", config]);
    let failed = events
        .iter()
        .find(|e| e["event"] == "step_failed")
        .unwrap_or_else(|| panic!("no step_failed: {events:?}"));
    assert_eq!(
        failed["step"],
        format!("{host}/existing-user#0"),
        "{failed}"
    );
    let error = failed["error"].as_str().expect("error");
    assert!(
        error.contains(&fingerprint) && error.contains("password set"),
        "{error}"
    );
    assert!(!sudoers(&lab));

    // Adopted: configured, its key and password kept, and what was adopted said.
    let events = home.json(&["host", "configure", &host, "--adopt", "--config", config]);
    let result = events.last().expect("a result");
    let row = &result["hosts"][0];
    assert_eq!(
        row["adopted"],
        serde_json::json!([
            "password set",
            format!("key ssh-ed25519 {fingerprint} alice@laptop")
        ]),
        "{result}"
    );
    let changed = row["changed"].as_array().expect("changed");
    assert!(
        changed.contains(&"sudoers".into()) && changed.contains(&"ssh-key".into()),
        "{row}"
    );
    assert!(sudoers(&lab));
    let now = keys(&lab);
    assert!(now.starts_with(&alice) && now.lines().count() == 2, "{now}");
    assert_eq!(shadow(&lab), hash, "the password changed");

    // Foundry's sudoers file names it now: a plain run is quiet and changes nothing.
    let again = home.ok(&["host", "configure", &host, "--config", config]);
    assert!(again.contains("1 host, nothing changed"), "{again}");
    assert!(!again.contains("adopted"), "{again}");

    // On a host whose grant was taken away, `--adopt` says to people what it adopted.
    docker_sh(&lab, &host, "rm /etc/sudoers.d/foundry", &[]);
    let human = home.ok(&["host", "configure", &host, "--adopt", "--config", config]);
    assert!(
        human.contains(&format!(
            "{host}: adopted the existing user `foundry` with: password set; key ssh-ed25519 {fingerprint} alice@laptop"
        )),
        "{human}"
    );
}
