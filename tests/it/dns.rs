//! PowerDNS with a split horizon (`dns-install`) on a lab, against the real servers: the
//! image built here from Debian's packages, an internal and an external authoritative
//! server and a recursor as containers on the lab's network. Asked with `dig` from inside
//! the lab (a container on the lab's network) and from outside (a container on a network
//! of its own that only the external server joins). A second install sends no change; a
//! changed record patches exactly its rrset; the API key is in no journal byte and in no
//! JSON output. The APIs listen on their containers' loopback only (refused at the
//! containers' addresses) and answer through the Engine, also over SSH to the lab's engine
//! host; neither the key nor its hash is in any container's configuration (`docker
//! inspect`); the servers hold only the hash, in a file, so a `docker restart` and a
//! `docker stop`/`start` leave their APIs answering with the key, with no Foundry run in
//! between. Without OpenBAO the key is kept for the servers' life in a 0600 file of the
//! home, and in no run's store once that run ended. An install killed right after it made
//! the key, and one killed after it read the kept key, each resumed: the servers run with
//! the kept key and are not replaced.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};
use std::sync::Arc;

use foundry_activities::container::Endpoint;
use foundry_activities::dns::{
    ApiReady, DeleteRecords, DeleteZone, EnsureRecords, PdnsApi, verifies,
};
use foundry_core::secret::FileSecretStore;
use foundry_core::secret::SecretStore;
use foundry_core::{Activity, ActivityCx, SecretRef, SecretValue};
use foundry_tests::dns::dig;
use foundry_tests::docker::{Cleanup, unique};
use foundry_tests::lab::Lab;
use foundry_tests::leak::contains;
use foundry_tests::{Home, json_lines, killed};
use foundry_workflows::dns::DnsInput;
use serde_json::{Value, json};

/// Removes the install's data volumes when dropped (after its containers).
struct Volumes(Vec<String>);

impl Drop for Volumes {
    fn drop(&mut self) {
        for v in &self.0 {
            let _ = Command::new("docker")
                .args(["volume", "rm", "-f", v])
                .output();
        }
    }
}

use foundry_tests::docker::docker;

/// The `step_output` lines of a run's JSON events that say an rrset was patched.
fn patched(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["event"] == "step_output")
        .filter_map(|e| e["line"].as_str())
        .filter(|l| l.starts_with("patched "))
        .map(str::to_string)
        .collect()
}

/// The file setting a server's API key (hashed), as its container has it.
fn key_conf(container: &str) -> String {
    let out = docker(&[
        "exec",
        container,
        "cat",
        "/etc/powerdns/pdns.d/foundry-api-key.conf",
    ]);
    assert!(out.status.success(), "{container}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The container's id and its API key's reference label.
fn identity(container: &str) -> String {
    let out = docker(&[
        "inspect",
        "-f",
        "{{.Id}} {{index .Config.Labels \"foundry.secret-ref.PDNS_API_KEY\"}}",
        container,
    ]);
    assert!(out.status.success(), "{container}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

struct Install {
    home_input: std::path::PathBuf,
}

fn write_input(home: &Home, input: &Value) -> Install {
    let path = home
        .scratch()
        .join(format!("dns-{}.json", rand::random::<u32>()));
    std::fs::write(&path, serde_json::to_vec_pretty(input).expect("json")).expect("input");
    Install { home_input: path }
}

fn start(home: &Home, install: &Install, failpoints: Option<&str>) -> Output {
    let mut cmd = home.cmd(&[
        "workflow",
        "start",
        "dns-install",
        "--input",
        install.home_input.to_str().expect("utf8"),
        "--output",
        "json",
    ]);
    if let Some(points) = failpoints {
        cmd.env("FOUNDRY_FAILPOINTS", points);
    }
    cmd.output().expect("foundry")
}

fn ok(out: &Output, what: &str) -> Vec<Value> {
    foundry_tests::assert_success(out, what);
    json_lines(&out.stdout)
}

#[test]
fn dns_install_splits_the_horizon_and_sends_only_real_changes() {
    let lab = Lab::up("dns", 1);
    let host = lab.targets[0].address.clone();
    let prefix = host
        .rsplit_once('.')
        .expect("an IPv4 address")
        .0
        .to_string();
    let lab_net = format!("foundry-lab-{}", lab.name);
    let name = unique("dns");
    let (internal, external, recursor) = (
        format!("{prefix}.53"),
        format!("{prefix}.54"),
        format!("{prefix}.55"),
    );
    let outside = unique("dns-outside");
    let _volumes = Volumes(vec![
        format!("{name}-internal-data"),
        format!("{name}-external-data"),
    ]);
    let _cleanup = Cleanup {
        containers: ["internal", "external", "recursor"]
            .map(|r| format!("{name}-{r}"))
            .to_vec(),
        networks: vec![outside.clone()],
    };
    let home = &lab.home;
    let mut input = json!({
        "name": name,
        "network": lab_net,
        "internal_ipv4": internal,
        "external_ipv4": external,
        "recursor_ipv4": recursor,
        "allow_from": [format!("{prefix}.0/24")],
        "zones": [
            {"name": "lab.example.com", "public": true, "public_cname": "home.example.net",
             "records": [{"name": "web", "type": "A", "content": host}]},
            {"name": "lab.local",
             "records": [{"name": "db", "type": "A", "content": host}]},
        ],
    });
    let parsed: DnsInput = serde_json::from_value(input.clone()).expect("a dns-install input");

    // First install, killed once the key is made and kept but before that is journaled,
    // then resumed: the step runs again (a key nothing references is never used), and
    // everything is made, three rrsets patched.
    let first_input = write_input(home, &input);
    let made_key = start(home, &first_input, Some("api-key#0@effect"));
    assert!(killed(made_key.status), "{made_key:?}");
    let first_run = home.unfinished_run();
    let first = home
        .cmd(&["workflow", "resume", &first_run, "--output", "json"])
        .output()
        .expect("resume");
    let first_events = ok(&first, "the first install");
    assert!(
        first_events
            .iter()
            .any(|e| e["event"] == "step_in_doubt" && e["step"] == "api-key#0"),
        "{first_events:?}"
    );
    let mut made = patched(&first_events);
    made.sort();
    assert_eq!(
        made,
        [
            "patched db.lab.local./A",
            "patched web.lab.example.com./A",
            "patched web.lab.example.com./CNAME",
        ],
        "{first_events:?}"
    );

    // The key: kept for the servers' life in a 0600 file of the home (no OpenBAO here),
    // and in no run's store once that run ended; the servers' label names the reference
    // the runs handed it around under.
    let label = docker(&[
        "inspect",
        "-f",
        "{{index .Config.Labels \"foundry.secret-ref.PDNS_API_KEY\"}}",
        &format!("{name}-internal"),
    ]);
    let label_ref = SecretRef(String::from_utf8_lossy(&label.stdout).trim().to_string());
    assert!(label_ref.0.starts_with("local:"), "{label_ref}");
    let key_path = home.path().join("dns").join(format!("{name}-api-key"));
    let key = std::fs::read_to_string(&key_path)
        .expect("the key kept in the home")
        .trim()
        .to_string();
    assert!(key.len() >= 32);
    let mode = std::fs::metadata(&key_path)
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the kept key is not private");
    let kept_by_runs = foundry_tests::leak::files_under(&home.path().join("secrets"), &[])
        .into_values()
        .filter(|bytes| contains(bytes, &key))
        .count();
    assert_eq!(kept_by_runs, 0, "a finished run's store outlived it");
    let store = Arc::new(FileSecretStore::new(home.scratch().join("test-secrets")));
    let cx = ActivityCx::standalone("dns-test").with_secrets(store.clone());
    let key_ref = store.put(&SecretValue::new(key.clone())).expect("put");
    let [int_c, ext_c, rec_c] = ["internal", "external", "recursor"].map(|r| format!("{name}-{r}"));

    // Each server holds the key's hash, in the file it includes, and not the key.
    let conf = key_conf(&int_c);
    assert_eq!(key_conf(&ext_c), conf);
    assert!(!conf.contains(&key), "{conf}");
    let hashed = conf
        .lines()
        .find_map(|l| l.strip_prefix("api-key="))
        .expect("an api-key line")
        .to_string();
    assert!(hashed.starts_with("$scrypt$ln=10,p=1,r=8$"), "{hashed}");
    assert!(verifies(&hashed, &key), "the hash is not the key's");
    // Neither the key nor its hash (nor its salt or digest alone) is in any container's
    // configuration: not in its environment, command, arguments or labels, nor anywhere
    // else `docker inspect` shows.
    let hash_parts: Vec<&str> = hashed.rsplit('$').take(2).collect();
    for container in [&int_c, &ext_c, &rec_c] {
        let inspected = docker(&["inspect", container]);
        assert!(inspected.status.success(), "{inspected:?}");
        for secret in [key.as_str(), hashed.as_str()].iter().chain(&hash_parts) {
            assert!(
                !contains(&inspected.stdout, secret),
                "docker inspect {container} shows the API key or its hash"
            );
        }
        let config: Value = serde_json::from_slice(&inspected.stdout).expect("inspect JSON");
        let env = config[0]["Config"]["Env"].to_string();
        assert!(!env.contains("PDNS_API_KEY"), "{container}: {env}");
    }

    // The APIs are not on the container network: refused at the containers' addresses.
    for ip in [&internal, &external] {
        let refused = std::net::TcpStream::connect_timeout(
            &format!("{ip}:8081").parse().expect("an address"),
            std::time::Duration::from_secs(5),
        );
        assert_eq!(
            refused.as_ref().map_err(std::io::Error::kind).err(),
            Some(std::io::ErrorKind::ConnectionRefused),
            "{ip}:8081 answers: {refused:?}"
        );
    }

    // Inside the lab: A records, from both servers and through the recursor.
    for server in [&internal, &recursor] {
        let (status, answers) = dig(&lab_net, server, "web.lab.example.com", "A");
        assert_eq!(status, "NOERROR", "{server}: {answers:?}");
        assert_eq!(
            answers,
            [format!("web.lab.example.com. 300 IN A {host}")],
            "{server}"
        );
        let (status, answers) = dig(&lab_net, server, "db.lab.local", "A");
        assert_eq!(status, "NOERROR", "{server}");
        assert_eq!(
            answers,
            [format!("db.lab.local. 300 IN A {host}")],
            "{server}"
        );
    }
    // Outside: a network only the external server joins.
    assert!(docker(&["network", "create", &outside]).status.success());
    assert!(
        docker(&["network", "connect", &outside, &format!("{name}-external")])
            .status
            .success()
    );
    let addr = docker(&[
        "inspect",
        "-f",
        &format!("{{{{(index .NetworkSettings.Networks \"{outside}\").IPAddress}}}}"),
        &format!("{name}-external"),
    ]);
    let outside_addr = String::from_utf8_lossy(&addr.stdout).trim().to_string();
    assert!(!outside_addr.is_empty());
    let (status, answers) = dig(&outside, &outside_addr, "web.lab.example.com", "A");
    assert_eq!(status, "NOERROR");
    assert_eq!(
        answers,
        ["web.lab.example.com. 300 IN CNAME home.example.net."]
    );
    let (status, answers) = dig(&outside, &outside_addr, "db.lab.local", "A");
    assert!(answers.is_empty(), "{answers:?}");
    assert!(status == "REFUSED" || status == "NXDOMAIN", "{status}");
    let (_, answers) = dig(&outside, &outside_addr, "lab.local", "SOA");
    assert!(answers.is_empty(), "the private zone leaks: {answers:?}");

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let serials = || {
        rt.block_on(async {
            let mut found = Vec::new();
            for (ip, zone) in [
                (&int_c, "lab.example.com"),
                (&int_c, "lab.local"),
                (&ext_c, "lab.example.com"),
            ] {
                let api = PdnsApi::new(Endpoint::default(), ip.clone(), key_ref.clone());
                let client = api.client(&cx).expect("client");
                let z = client.zone(zone).await.expect("zone").expect("present");
                found.push(z.serial);
            }
            found
        })
    };
    let before = serials();

    // Live status.
    let status = rt
        .block_on(foundry_workflows::dns::status(
            &parsed,
            &key_ref,
            store.clone(),
        ))
        .expect("status");
    assert!(
        status.containers.iter().all(|(_, s)| s == "running"),
        "{status:?}"
    );
    assert!(
        status.internal.reachable && status.external.reachable,
        "{status:?}"
    );
    assert_eq!(status.internal.version.as_deref(), Some("4.7.3"));
    assert_eq!(
        (status.internal.zones, status.internal.private_zones),
        (2, 1)
    );
    assert_eq!(
        (status.external.zones, status.external.private_zones),
        (1, 0)
    );

    // Again, killed once its containers are there, then resumed: nothing patched, the
    // serials unchanged, the journal free of the key.
    let again = write_input(home, &input);
    let killed_run = start(home, &again, Some("ready/external#0@started"));
    assert!(killed(killed_run.status), "{killed_run:?}");
    let journal = home.runs_bytes();
    assert!(
        contains(&journal, &label_ref.0),
        "the journal holds the key's reference"
    );
    assert!(!contains(&journal, &key), "the journal holds the API key");
    let run = home.unfinished_run();
    let resumed = home
        .cmd(&["workflow", "resume", &run, "--output", "json"])
        .output()
        .expect("resume");
    let resumed_events = ok(&resumed, "the resumed install");
    assert_eq!(
        patched(&resumed_events),
        Vec::<String>::new(),
        "{resumed_events:?}"
    );
    assert_eq!(serials(), before, "a run with no change moved a serial");

    // Through SSH to the lab's engine host, the same API answers.
    let over_ssh = rt.block_on(
        ApiReady {
            api: PdnsApi::new(lab.engine(), int_c.clone(), key_ref.clone()),
            timeout_s: 30,
        }
        .apply(&cx),
    );
    assert_eq!(
        over_ssh.map(|info| info.version).map_err(|e| e.message),
        Ok("4.7.3".to_string())
    );

    // Restarted by the Engine alone, with no Foundry run in between (`docker restart`;
    // `docker stop` then `docker start`), each server answers with the key again, through
    // the same relay Foundry uses, and the live status is healthy.
    let ids = [identity(&int_c), identity(&ext_c)];
    assert!(docker(&["restart", &int_c]).status.success());
    assert!(docker(&["stop", &ext_c]).status.success());
    assert!(docker(&["start", &ext_c]).status.success());
    for container in [&int_c, &ext_c] {
        let again = rt.block_on(
            ApiReady {
                api: PdnsApi::new(Endpoint::default(), container.clone(), key_ref.clone()),
                timeout_s: 30,
            }
            .apply(&cx),
        );
        assert_eq!(
            again.map(|info| info.version).map_err(|e| e.message),
            Ok("4.7.3".to_string()),
            "{container} after its restart"
        );
    }
    let restarted = rt
        .block_on(foundry_workflows::dns::status(
            &parsed,
            &key_ref,
            store.clone(),
        ))
        .expect("status");
    assert!(
        restarted.internal.reachable
            && restarted.external.reachable
            && restarted.containers.iter().all(|(_, s)| s == "running"),
        "{restarted:?}"
    );
    assert_eq!(
        (restarted.internal.zones, restarted.external.zones),
        (2, 1),
        "{restarted:?}"
    );

    // A changed record: exactly its rrset is patched, one serial moves; the servers, with
    // their key, are left as they are.
    let moved = format!("{prefix}.99");
    input["zones"][0]["records"][0]["content"] = json!(moved);
    let third = start(home, &write_input(home, &input), None);
    let third_events = ok(&third, "the changed install");
    assert_eq!(patched(&third_events), ["patched web.lab.example.com./A"]);
    assert_eq!(
        [identity(&int_c), identity(&ext_c)],
        ids,
        "a server was replaced"
    );
    let after = serials();
    assert!(after[0] > before[0], "{before:?} -> {after:?}");
    assert_eq!(
        after[1..],
        before[1..],
        "only lab.example.com on the internal server changes"
    );
    let (_, answers) = dig(&lab_net, &internal, "web.lab.example.com", "A");
    assert_eq!(answers, [format!("web.lab.example.com. 300 IN A {moved}")]);

    // The activities on their own: a 422 quoted, a refused key named, deletions that
    // happen once.
    rt.block_on(async {
        let api = PdnsApi::new(Endpoint::default(), int_c.clone(), key_ref.clone());
        let outside_zone = EnsureRecords {
            api: api.clone(),
            zone: "lab.example.com".into(),
            name: "web.example.org".into(),
            rtype: "A".into(),
            ttl: 300,
            contents: vec![host.clone()],
        };
        let err = outside_zone
            .apply(&cx)
            .await
            .expect_err("a name out of the zone");
        assert!(!err.transient, "{err:?}");
        assert!(
            err.message.contains("PowerDNS refused the data (422)")
                && err.message.contains("web.example.org"),
            "{}",
            err.message
        );
        let wrong = store.put(&SecretValue::new("not-the-key")).expect("put");
        let bad = ApiReady {
            api: PdnsApi::new(Endpoint::default(), int_c.clone(), wrong),
            timeout_s: 5,
        };
        let err = bad.apply(&cx).await.expect_err("a wrong key");
        assert!(
            !err.transient && err.message.contains("refused the key"),
            "{}",
            err.message
        );
        assert!(!err.message.contains("not-the-key"), "{}", err.message);

        let ext = PdnsApi::new(Endpoint::default(), ext_c.clone(), key_ref.clone());
        let delete = DeleteRecords {
            api: ext.clone(),
            zone: "lab.example.com".into(),
            name: "WEB.lab.example.com".into(),
            rtype: "cname".into(),
        };
        assert!(delete.probe(&cx).await.expect("probe").is_none());
        assert!(delete.apply(&cx).await.expect("delete"));
        assert_eq!(delete.probe(&cx).await.expect("probe"), Some(false));
        assert!(!delete.apply(&cx).await.expect("delete again"));
        let zone = DeleteZone {
            api: ext,
            name: "lab.example.com".into(),
        };
        assert!(zone.apply(&cx).await.expect("delete zone"));
        assert_eq!(zone.probe(&cx).await.expect("probe"), Some(false));
        assert!(!zone.apply(&cx).await.expect("delete zone again"));
    });
    let (status, _) = dig(&outside, &outside_addr, "web.lab.example.com", "A");
    assert_eq!(status, "REFUSED", "the deleted zone still answers");

    // Killed once it read the kept key, before that is journaled, then resumed: the key
    // is read again, and the servers are left as they are.
    let ids = [identity(&int_c), identity(&ext_c)];
    let again = write_input(home, &input);
    let found_key = start(home, &again, Some("api-key#0@effect"));
    assert!(killed(found_key.status), "{found_key:?}");
    let run = home.unfinished_run();
    let fourth = home
        .cmd(&["workflow", "resume", &run, "--output", "json"])
        .output()
        .expect("resume");
    ok(&fourth, "the install resumed after reading the key");
    assert_eq!(
        [identity(&int_c), identity(&ext_c)],
        ids,
        "a server was replaced"
    );

    // The key in no output of any run, nor in any byte under runs/.
    for out in [
        &made_key,
        &first,
        &killed_run,
        &resumed,
        &third,
        &found_key,
        &fourth,
    ] {
        assert!(
            !contains(&out.stdout, &key),
            "JSON output holds the API key"
        );
        assert!(!contains(&out.stderr, &key), "logs hold the API key");
    }
    assert!(
        !contains(&home.runs_bytes(), &key),
        "a journal or run log holds the API key"
    );
}
