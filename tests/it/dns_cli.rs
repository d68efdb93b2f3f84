//! `foundry dns` on a fresh lab, against the real PowerDNS servers `foundry component
//! install` runs from the lab's config: zones made private and public (and the split
//! horizon's refusals), records added, changed and left alone, both servers' views listed,
//! each server asked over DNS by `dns test` (an address inside, a CNAME outside, a `.local`
//! name unanswered outside), records and zones deleted, twice. The API key is in no byte
//! of any output, even when the key given is wrong.

use std::process::Output;

use foundry_tests::lab::Lab;
use foundry_tests::leak::contains;
use foundry_tests::{Home, json_lines};
use serde_json::Value;

/// `foundry --config <config> <args>`.
fn run(home: &Home, config: &str, args: &[&str]) -> Output {
    let mut all = vec!["--config", config];
    all.extend(args);
    home.run(&all)
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every output of the test, to look for the key in at the end.
#[derive(Default)]
struct Seen(Vec<(String, Vec<u8>)>);

impl Seen {
    fn keep(&mut self, args: &[&str], out: &Output) {
        self.0.push((
            args.join(" "),
            [out.stdout.clone(), out.stderr.clone()].concat(),
        ));
    }

    /// Runs the command, expecting success; its JSON lines.
    fn json(&mut self, home: &Home, config: &str, args: &[&str]) -> Vec<Value> {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let out = run(home, config, &all);
        self.keep(&all, &out);
        assert!(out.status.success(), "foundry {all:?}: {}", text(&out));
        json_lines(&out.stdout)
    }

    /// The one JSON object the command prints.
    fn one(&mut self, home: &Home, config: &str, args: &[&str]) -> Value {
        let lines = self.json(home, config, args);
        assert_eq!(lines.len(), 1, "foundry {args:?}: {lines:?}");
        lines.into_iter().next().expect("one line")
    }

    /// Runs the command, expecting exit 1; its stderr.
    fn refused(&mut self, home: &Home, config: &str, args: &[&str]) -> String {
        let out = run(home, config, args);
        self.keep(args, &out);
        assert_eq!(
            out.status.code(),
            Some(1),
            "foundry {args:?}: {}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

fn zone<'a>(zones: &'a [Value], name: &str) -> Option<&'a Value> {
    zones.iter().find(|z| z["zone"] == name)
}

/// The server's row of `dns test`.
fn server<'a>(rows: &'a [Value], role: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["server"] == role)
        .unwrap_or_else(|| panic!("no {role} row: {rows:?}"))
}

/// The answer records of a row, as `TYPE value`.
fn answers(row: &Value) -> Vec<String> {
    row["answers"]
        .as_array()
        .expect("answers")
        .iter()
        .map(|a| {
            format!(
                "{} {}",
                a["type"].as_str().unwrap_or(""),
                a["value"].as_str().unwrap_or("")
            )
        })
        .collect()
}

#[test]
fn dns_commands_work_on_the_labs_servers_and_never_show_the_key() {
    let lab = Lab::up("dnscli", 1);
    let home = &lab.home;
    let config = lab.config.to_str().expect("utf8").to_string();
    let config = config.as_str();
    let mut seen = Seen::default();

    let install = ["component", "install", "openbao", "dns"];
    let out = run(home, config, &install);
    seen.keep(&install, &out);
    assert!(out.status.success(), "install: {}", text(&out));

    let lab_local = format!("{}.lab.local.", lab.name);
    let lab_public = format!("{}.lab.example.test.", lab.name);
    let private = format!("apps.{}.lab.local.", lab.name);
    let public = format!("{}.pub.example.test.", lab.name);

    // Zones: a private one (below the config's .local zone) and a public one, each twice.
    let made = seen.one(home, config, &["dns", "zone", "create", &private]);
    assert_eq!(made["created"], true, "{made}");
    assert_eq!(made["public"], false, "{made}");
    let again = seen.one(home, config, &["dns", "zone", "create", &private]);
    assert_eq!(again["created"], false, "{again}");
    assert_eq!(again["changes"], serde_json::json!([]), "{again}");
    let out = run(home, config, &["dns", "zone", "create", &private]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("already there, unchanged"),
        "{}",
        text(&out)
    );
    let pub_args = [
        "dns",
        "zone",
        "create",
        public.as_str(),
        "--public",
        "--public-cname",
        "edge.example.test",
    ];
    let made = seen.one(home, config, &pub_args);
    assert_eq!(made["created"], true, "{made}");
    assert_eq!(made["public_cname"], "edge.example.test.", "{made}");
    assert!(
        made["changes"]
            .to_string()
            .contains("external: zone created"),
        "{made}"
    );
    let again = seen.one(home, config, &pub_args);
    assert_eq!(again["changes"], serde_json::json!([]), "{again}");

    // The split horizon's refusals: nothing is made.
    let bad_local = format!("bad.{}.lab.local", lab.name);
    let err = seen.refused(
        home,
        config,
        &[
            "dns",
            "zone",
            "create",
            &bad_local,
            "--public",
            "--public-cname",
            "x.example.test",
        ],
    );
    assert!(err.contains(".local") && err.contains("hint:"), "{err}");
    let no_cname = format!("nocname.{}.example.test", lab.name);
    let err = seen.refused(
        home,
        config,
        &["dns", "zone", "create", &no_cname, "--public"],
    );
    assert!(err.contains("--public-cname"), "{err}");

    // Every zone, both servers' view.
    let zones = seen.json(home, config, &["dns", "zone", "list"]);
    let z = zone(&zones, &lab_local).unwrap_or_else(|| panic!("{zones:?}"));
    assert_eq!(
        (z["kind"].as_str(), z["external"].as_bool()),
        (Some("private"), Some(false)),
        "{z}"
    );
    assert_eq!(z["in_config"], true, "{z}");
    assert!(z["records"].as_u64() > Some(3), "{z}");
    assert!(z["serial"].as_u64() > Some(0), "{z}");
    let z = zone(&zones, &lab_public).unwrap_or_else(|| panic!("{zones:?}"));
    assert_eq!(
        (z["kind"].as_str(), z["external"].as_bool()),
        (Some("public"), Some(true)),
        "{z}"
    );
    assert_eq!(z["public_cname"], "home.example.test.", "{z}");
    let z = zone(&zones, &private).unwrap_or_else(|| panic!("{zones:?}"));
    assert_eq!(
        (z["kind"].as_str(), z["in_config"].as_bool()),
        (Some("private"), Some(false)),
        "{z}"
    );
    let z = zone(&zones, &public).unwrap_or_else(|| panic!("{zones:?}"));
    assert_eq!(
        (z["kind"].as_str(), z["external"].as_bool()),
        (Some("public"), Some(true)),
        "{z}"
    );
    assert_eq!(z["public_cname"], "edge.example.test.", "{z}");
    for refused in [&bad_local, &no_cname] {
        assert!(
            !zones.iter().any(|z| z["zone"]
                .as_str()
                .is_some_and(|n| n.starts_with(refused.as_str()))),
            "{refused} was made: {zones:?}"
        );
    }

    // Records: added (the zone found from the name), again unchanged, then changed.
    let web = format!("web.{public}");
    let web_plain = web.trim_end_matches('.').to_string();
    let set = seen.one(
        home,
        config,
        &["dns", "record", "add", &web_plain, "A", "10.9.8.7"],
    );
    assert_eq!(set["zone"], public, "{set}");
    assert_eq!(set["outcome"], "added", "{set}");
    assert_eq!(set["external"]["cname"], "edge.example.test.", "{set}");
    assert_eq!(set["external"]["outcome"], "added", "{set}");
    let set = seen.one(
        home,
        config,
        &["dns", "record", "add", &web_plain, "A", "10.9.8.7"],
    );
    assert_eq!(set["outcome"], "unchanged", "{set}");
    assert_eq!(set["external"]["outcome"], "unchanged", "{set}");
    let out = run(
        home,
        config,
        &["dns", "record", "add", &web_plain, "A", "10.9.8.7"],
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(": unchanged"),
        "{}",
        text(&out)
    );
    let set = seen.one(
        home,
        config,
        &[
            "dns", "record", "add", "web", "A", "10.9.8.8", "--zone", &public,
        ],
    );
    assert_eq!(
        (set["name"].as_str(), set["outcome"].as_str()),
        (Some(web.as_str()), Some("changed")),
        "{set}"
    );
    assert_eq!(set["external"]["outcome"], "unchanged", "{set}");
    let db = format!("db.{private}");
    let set = seen.one(
        home,
        config,
        &[
            "dns", "record", "add", "db", "A", "10.9.8.9", "--zone", &private, "--ttl", "60",
        ],
    );
    assert_eq!(
        (set["name"].as_str(), set["outcome"].as_str()),
        (Some(db.as_str()), Some("added")),
        "{set}"
    );
    assert_eq!(set["ttl"], 60, "{set}");
    assert_eq!(set["external"], Value::Null, "{set}");

    // Both servers' views of the public zone.
    let rrsets = seen.json(home, config, &["dns", "record", "list", &public]);
    let view = |role: &str, rtype: &str| {
        rrsets
            .iter()
            .find(|r| r["server"] == role && r["name"] == web && r["type"] == rtype)
            .map(|r| r["values"].clone())
    };
    assert_eq!(
        view("internal", "A"),
        Some(serde_json::json!(["10.9.8.8"])),
        "{rrsets:?}"
    );
    assert_eq!(
        view("external", "CNAME"),
        Some(serde_json::json!(["edge.example.test."])),
        "{rrsets:?}"
    );
    assert_eq!(view("external", "A"), None, "{rrsets:?}");
    let all = seen.json(home, config, &["dns", "record", "list"]);
    assert!(all.iter().any(|r| r["name"] == db), "{all:?}");

    // Over DNS: the public name is an address inside and a CNAME outside.
    let rows = seen.json(home, config, &["dns", "test", &web_plain]);
    let inside = server(&rows, "internal");
    assert_eq!(
        (inside["status"].as_str(), inside["zone"].as_str()),
        (Some("NOERROR"), Some(public.as_str())),
        "{inside}"
    );
    assert_eq!(answers(inside), ["A 10.9.8.8"], "{inside}");
    let outside = server(&rows, "external");
    assert_eq!(
        (outside["status"].as_str(), outside["zone"].as_str()),
        (Some("NOERROR"), Some(public.as_str())),
        "{outside}"
    );
    assert_eq!(answers(outside), ["CNAME edge.example.test."], "{outside}");
    let recursor = server(&rows, "recursor");
    assert_eq!(recursor["status"], "NOERROR", "{recursor}");
    assert!(
        answers(recursor).contains(&"A 10.9.8.8".to_string()),
        "{recursor}"
    );

    // The .local name: answered inside, from the longest zone; never outside.
    let rows = seen.json(home, config, &["dns", "test", &db]);
    let inside = server(&rows, "internal");
    assert_eq!(inside["zone"], private, "{inside}");
    assert_eq!(answers(inside), ["A 10.9.8.9"], "{inside}");
    let outside = server(&rows, "external");
    assert!(
        ["REFUSED", "NXDOMAIN"].contains(&outside["status"].as_str().unwrap_or_default()),
        "{outside}"
    );
    assert_eq!(answers(outside), Vec::<String>::new(), "{outside}");
    assert_eq!(outside["zone"], Value::Null, "{outside}");
    let out = run(home, config, &["dns", "test", &db]);
    assert!(out.status.success(), "{}", text(&out));
    seen.keep(&["dns", "test"], &out);

    // Records deleted on both servers, then again: nothing there, no error.
    let gone = seen.one(home, config, &["dns", "record", "delete", &web_plain, "A"]);
    assert_eq!(
        gone["deleted"],
        serde_json::json!(["internal", "external CNAME"]),
        "{gone}"
    );
    let gone = seen.one(home, config, &["dns", "record", "delete", &web_plain, "A"]);
    assert_eq!(gone["deleted"], serde_json::json!([]), "{gone}");
    let rrsets = seen.json(home, config, &["dns", "record", "list", &public]);
    assert!(!rrsets.iter().any(|r| r["name"] == web), "{rrsets:?}");

    // Zones deleted: refused without a terminal or --yes, then deleted, then again.
    let err = seen.refused(home, config, &["dns", "zone", "delete", &private]);
    assert!(err.contains("--yes"), "{err}");
    let zones = seen.json(home, config, &["dns", "zone", "list"]);
    assert!(
        zone(&zones, &private).is_some(),
        "deleted without --yes: {zones:?}"
    );
    let gone = seen.one(home, config, &["dns", "zone", "delete", &private, "--yes"]);
    assert_eq!(gone["deleted"], serde_json::json!(["internal"]), "{gone}");
    let gone = seen.one(home, config, &["dns", "zone", "delete", &public, "--yes"]);
    assert_eq!(
        gone["deleted"],
        serde_json::json!(["internal", "external"]),
        "{gone}"
    );
    let gone = seen.one(home, config, &["dns", "zone", "delete", &public, "--yes"]);
    assert_eq!(gone["deleted"], serde_json::json!([]), "{gone}");
    let zones = seen.json(home, config, &["dns", "zone", "list"]);
    assert!(
        zone(&zones, &private).is_none() && zone(&zones, &public).is_none(),
        "{zones:?}"
    );
    assert!(zone(&zones, &lab_local).is_some(), "{zones:?}");

    // A wrong key: refused by the servers, said so with a hint, and not shown.
    let wrong = "0123456789abcdef-not-the-key-4c1d";
    let mut cmd = home.cmd(&["--config", config, "dns", "zone", "list"]);
    let out = cmd
        .env("FOUNDRY_SECRET_foundry_core_dns_api_key", wrong)
        .output()
        .expect("foundry");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refused the key") && err.contains("hint:"),
        "{err}"
    );
    assert!(
        !contains(&[out.stdout.clone(), out.stderr.clone()].concat(), wrong),
        "{err}"
    );

    // A config that places no DNS.
    let bare = home.scratch().join("bare.yaml");
    std::fs::write(
        &bare,
        "hosts:\n  - name: infra-1\n    address: 10.9.0.10\n    user: admin\n",
    )
    .expect("bare config");
    let err = seen.refused(home, bare.to_str().expect("utf8"), &["dns", "zone", "list"]);
    assert!(
        err.contains("places dns on no host") && err.contains("hint:"),
        "{err}"
    );

    // The API key is in no output.
    let key = seen.one(
        home,
        config,
        &["secret", "get", "foundry-core/dns:api_key", "--yes"],
    )["api_key"]
        .as_str()
        .expect("the key")
        .to_string();
    seen.0.pop();
    assert_eq!(key.len(), 64, "a 32-byte hex key");
    for (what, bytes) in &seen.0 {
        assert!(
            !contains(bytes, &key),
            "the API key is in the output of {what}"
        );
    }
}
