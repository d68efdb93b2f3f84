//! `foundry network` against a real lab: `detect-macs` reports what the Docker Engine
//! says each host's interface is (MAC, address, gateway), and a host cut off its network is
//! a failed row beside the others; `plan` proposes the lab network's gateway and subnet,
//! and a DHCP range and VIP that `validate` accepts; `--write` changes only the config's
//! network section; `validate` names the check that fails for a VIP that is a host's
//! address, a VIP something else answers at, a static address inside the DHCP range and a
//! missing address; and its DNS check waits for PowerDNS, then asks it. `foundry setup`'s
//! network phase writes what the config lacks, stops the setup before the stack phase while
//! a check fails (no container made), and resumes to completion once the config is fixed.

use std::process::Output;

use foundry_tests::docker::{Cleanup, docker, test_image, unique};
use foundry_tests::json_lines;
use foundry_tests::lab::Lab;
use serde_json::Value;

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `foundry --config <lab's config> ARGS`.
fn run(lab: &Lab, args: &[&str]) -> Output {
    let config = lab.config.display().to_string();
    let mut all = vec!["--config", config.as_str()];
    all.extend(args);
    lab.home.run(&all)
}

/// The container's interface on the lab's network, as the Engine reports it.
fn engine_view(lab: &Lab, host: &str) -> Value {
    let out = docker(&[
        "inspect",
        "-f",
        "{{json .NetworkSettings.Networks}}",
        &lab.container(host),
    ]);
    assert!(out.status.success(), "docker inspect: {out:?}");
    let networks: Value = serde_json::from_slice(&out.stdout).expect("JSON from docker inspect");
    networks[format!("foundry-lab-{}", lab.name)].clone()
}

/// The lab network's subnet, and its gateway as host-1's endpoint has it, as the Engine
/// reports them.
fn lab_network(lab: &Lab) -> (String, String) {
    let out = docker(&[
        "network",
        "inspect",
        "-f",
        "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
        &format!("foundry-lab-{}", lab.name),
    ]);
    assert!(out.status.success(), "docker network inspect: {out:?}");
    let subnet = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let gateway = engine_view(lab, "host-1")["Gateway"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        !subnet.is_empty() && !gateway.is_empty(),
        "{subnet} {gateway}"
    );
    (subnet, gateway)
}

/// The checks that did not pass, as `check subject` (`validate --output json`).
fn failed(out: &Output) -> Vec<String> {
    json_lines(&out.stdout)
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| {
            format!(
                "{} {}",
                c["check"].as_str().unwrap_or(""),
                c["subject"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn check<'a>(checks: &'a [Value], name: &str) -> Vec<&'a Value> {
    checks.iter().filter(|c| c["check"] == name).collect()
}

/// The text without its top-level `network:` section.
fn without_network(text: &str) -> Vec<&str> {
    let mut inside = false;
    text.lines()
        .filter(|l| {
            if l.starts_with("network:") {
                inside = true;
            } else if !l.is_empty() && !l.starts_with(' ') {
                inside = false;
            }
            !inside
        })
        .collect()
}

#[test]
fn lab_detect_macs_reports_each_hosts_interface_and_a_cut_host_as_its_own_row() {
    let lab = Lab::up("netmac", 3);
    let (_, gateway) = lab_network(&lab);
    let out = run(&lab, &["network", "detect-macs", "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let rows = json_lines(&out.stdout);
    assert_eq!(rows.len(), 3, "{}", text(&out));
    for (row, host) in rows.iter().zip(&lab.names) {
        let engine = engine_view(&lab, host);
        assert_eq!(row["host"], host.as_str());
        assert_eq!(row["interface"], "eth0", "{row}");
        assert_eq!(
            row["mac"], engine["MacAddress"],
            "{host}: {row} vs {engine}"
        );
        assert_eq!(row["address"], engine["IPAddress"], "{host}: {row}");
        assert_eq!(row["prefix_len"], engine["IPPrefixLen"], "{host}: {row}");
        assert_eq!(row["gateway"], gateway.as_str(), "{host}: {row}");
        assert_eq!(row["desired_address"], engine["IPAddress"], "{host}: {row}");
        assert_eq!(row["error"], Value::Null, "{row}");
    }
    let human = run(&lab, &["network", "detect-macs"]);
    let table = String::from_utf8_lossy(&human.stdout).to_string();
    assert!(
        table.starts_with("HOST") && table.contains("MAC") && table.contains("DESIRED ADDRESS"),
        "{}",
        text(&human)
    );
    let mac = engine_view(&lab, "host-2")["MacAddress"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(!mac.is_empty() && table.contains(&mac), "{table}");

    // One host off its network: its row says why, the others are reported, exit 1.
    lab.cut("host-3");
    let out = run(
        &lab,
        &[
            "network",
            "detect-macs",
            "--output",
            "json",
            "--timeout",
            "5s",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let rows = json_lines(&out.stdout);
    assert_eq!(rows.len(), 3, "{}", text(&out));
    assert!(
        rows[2]["error"].is_string() && rows[2]["mac"].is_null(),
        "{}",
        rows[2]
    );
    assert!(
        rows[..2]
            .iter()
            .all(|r| r["error"].is_null() && r["mac"].is_string()),
        "{}",
        text(&out)
    );
    let human = run(&lab, &["network", "detect-macs", "--timeout", "5s"]);
    let err = String::from_utf8_lossy(&human.stderr);
    assert_eq!(human.status.code(), Some(1));
    assert!(
        err.contains("1 of 3 hosts could not be asked"),
        "{}",
        text(&human)
    );
}

#[test]
fn lab_plan_writes_a_network_validate_accepts_and_validate_names_what_fails() {
    let lab = Lab::up("netplan", 2);
    let (subnet, gateway) = lab_network(&lab);
    // Comments of the user's own, outside the section plan writes; no VIP or DHCP range
    // yet (the lab's config has them).
    let original = std::fs::read_to_string(&lab.config).expect("the lab's config");
    let original: String = original
        .lines()
        .filter(|l| {
            !["k8s_vip:", "dhcp_range:", "start:", "end:"]
                .iter()
                .any(|field| l.trim_start().starts_with(field))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let commented = format!(
        "# my lab, by hand\n{}",
        original.replace("\ndns:\n", "\n# names, by hand\ndns:\n")
    );
    std::fs::write(&lab.config, &commented).expect("writing the config");

    let out = run(&lab, &["network", "plan", "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let plan = &json_lines(&out.stdout)[0];
    let network = &plan["network"];
    assert_eq!(network["gateway"], gateway.as_str(), "{plan}");
    assert_eq!(network["subnet"], subnet.as_str(), "{plan}");
    let fields: Vec<&str> = plan["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter_map(|c| c["field"].as_str())
        .collect();
    assert_eq!(fields, ["network.dhcp_range", "network.k8s_vip"], "{plan}");
    let prefix = subnet.trim_end_matches(".0/24");
    let last = |v: &Value| -> u32 {
        let text = v.as_str().unwrap_or_default();
        assert!(
            text.starts_with(&format!("{prefix}.")),
            "{text} in {subnet}"
        );
        text.rsplit('.')
            .next()
            .and_then(|l| l.parse().ok())
            .expect("an address")
    };
    let (start, end) = (
        last(&network["dhcp_range"]["start"]),
        last(&network["dhcp_range"]["end"]),
    );
    let vip = last(&network["k8s_vip"]);
    assert!(start <= end && !(start..=end).contains(&vip), "{plan}");
    // No host's address, nor the lab's services' (.240 and up), inside the range.
    for taken in [1, 11, 12, 240, 241, 242, 243, 244] {
        assert!(
            !(start..=end).contains(&taken) && vip != taken,
            "{taken}: {plan}"
        );
    }

    // --write asks first; with no terminal to ask on, it writes nothing.
    let refused = run(&lab, &["network", "plan", "--write"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--yes"));
    assert_eq!(
        std::fs::read_to_string(&lab.config).expect("config"),
        commented
    );

    let wrote = run(&lab, &["network", "plan", "--write", "--yes"]);
    assert!(wrote.status.success(), "{}", text(&wrote));
    let written = std::fs::read_to_string(&lab.config).expect("config");
    assert_eq!(
        without_network(&written),
        without_network(&commented),
        "{written}"
    );
    assert!(
        written.contains(&format!("k8s_vip: \"{prefix}.{vip}\"")),
        "{written}"
    );
    assert!(
        written.contains(&format!("start: \"{prefix}.{start}\"")),
        "{written}"
    );

    // Planned again: nothing to change.
    let again = run(&lab, &["network", "plan", "--output", "json"]);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(
        json_lines(&again.stdout)[0]["changes"],
        serde_json::json!([]),
        "{}",
        text(&again)
    );

    let out = run(&lab, &["network", "validate", "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let checks = json_lines(&out.stdout);
    assert!(failed(&out).is_empty(), "{}", text(&out));
    for name in [
        "config",
        "required",
        "vip-unique",
        "static-outside-dhcp",
        "reachable",
        "vip-unused",
        "dns",
    ] {
        assert!(
            !check(&checks, name).is_empty(),
            "no {name} check: {}",
            text(&out)
        );
    }
    assert_eq!(check(&checks, "reachable").len(), 2);
    assert_eq!(
        check(&checks, "vip-unused")[0]["status"],
        "pass",
        "{}",
        text(&out)
    );
    // PowerDNS is not installed: the DNS check waits for it, with a note.
    let dns = check(&checks, "dns");
    assert!(
        dns.len() == 1 && dns[0]["status"] == "skip",
        "{}",
        text(&out)
    );
    let human = run(&lab, &["network", "validate"]);
    assert!(human.status.success(), "{}", text(&human));
    let lines = String::from_utf8_lossy(&human.stdout).to_string();
    assert!(
        lines.lines().any(|l| l.starts_with("pass  vip-unused")),
        "{lines}"
    );

    let edit = |from: &str, to: &str| {
        assert!(written.contains(from), "{from} in {written}");
        std::fs::write(&lab.config, written.replace(from, to)).expect("writing the config");
    };
    let vip_line = format!("k8s_vip: \"{prefix}.{vip}\"");

    // The VIP is host-2's address: not unique, and host-2 answers at it.
    edit(&vip_line, &format!("k8s_vip: \"{prefix}.12\""));
    let out = run(&lab, &["network", "validate", "--output", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let fails = failed(&out);
    assert!(
        fails.contains(&format!("vip-unique {prefix}.12")),
        "{fails:?}"
    );
    assert!(
        fails.contains(&format!("vip-unused {prefix}.12")),
        "{fails:?}"
    );
    let checks = json_lines(&out.stdout);
    let said_unique = check(&checks, "vip-unique")[0]["detail"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(said_unique.contains("host `host-2`"), "{said_unique}");
    let human = run(&lab, &["network", "validate"]);
    assert_eq!(human.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&human.stdout)
            .contains(&format!("FAIL  vip-unique           {prefix}.12")),
        "{}",
        text(&human)
    );

    // The VIP is no one's in the config, but a machine on the network answers at it.
    let mut cleanup = Cleanup::default();
    let squatter = unique("net-squatter");
    cleanup.containers.push(squatter.clone());
    let at = format!("{prefix}.{}", vip);
    let started = docker(&[
        "run",
        "-d",
        "--name",
        &squatter,
        "--network",
        &format!("foundry-lab-{}", lab.name),
        "--ip",
        &at,
        test_image(),
    ]);
    assert!(started.status.success(), "docker run: {started:?}");
    std::fs::write(&lab.config, &written).expect("writing the config");
    let out = run(&lab, &["network", "validate", "--output", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(failed(&out), [format!("vip-unused {at}")], "{}", text(&out));
    let checks = json_lines(&out.stdout);
    let said = check(&checks, "vip-unused")[0]["detail"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        said.contains("answered") && said.contains("host-1"),
        "{said}"
    );
    // Planned now, the VIP moves off the address in use.
    let moved = run(&lab, &["network", "plan", "--output", "json"]);
    assert!(moved.status.success(), "{}", text(&moved));
    let moved = &json_lines(&moved.stdout)[0];
    assert_ne!(moved["network"]["k8s_vip"], at.as_str(), "{moved}");
    drop(cleanup);

    // A DHCP range that holds host-1's address.
    edit(
        &format!("start: \"{prefix}.{start}\""),
        &format!("start: \"{prefix}.11\""),
    );
    let out = run(&lab, &["network", "validate", "--output", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let fails = failed(&out);
    assert!(
        fails.contains(&format!("static-outside-dhcp host host-1 {prefix}.11")),
        "{fails:?}"
    );
    assert!(
        fails.contains(&format!("static-outside-dhcp host host-2 {prefix}.12")),
        "{fails:?}"
    );
    // The container that held the VIP is gone: host-1's neighbour entry for it, which a
    // container may not flush, is not taken for an answer.
    assert!(
        !fails.iter().any(|f| f.starts_with("vip-unused")),
        "{fails:?}"
    );

    // No VIP at all.
    edit(&format!("  {vip_line}\n"), "");
    let out = run(&lab, &["network", "validate", "--output", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(failed(&out), ["required network.k8s_vip"], "{}", text(&out));
}

#[test]
fn lab_validate_asks_powerdns_for_each_zone_once_it_runs() {
    let lab = Lab::up("netdns", 1);
    let wrote = run(&lab, &["network", "plan", "--write", "--yes"]);
    assert!(wrote.status.success(), "{}", text(&wrote));
    let dns_rows = |out: &Output| -> Vec<Value> {
        json_lines(&out.stdout)
            .into_iter()
            .filter(|c| c["check"] == "dns")
            .collect()
    };

    // Before PowerDNS is installed: skipped, with what to do.
    let before = run(&lab, &["network", "validate", "--output", "json"]);
    assert!(before.status.success(), "{}", text(&before));
    let rows = dns_rows(&before);
    assert!(
        rows.len() == 1 && rows[0]["status"] == "skip" && rows[0]["hint"].is_string(),
        "{}",
        text(&before)
    );

    let install = run(&lab, &["component", "install", "openbao", "dns"]);
    assert!(install.status.success(), "{}", text(&install));
    let after = run(&lab, &["network", "validate", "--output", "json"]);
    assert!(after.status.success(), "{}", text(&after));
    let rows = dns_rows(&after);
    let zones: Vec<&str> = rows.iter().filter_map(|r| r["subject"].as_str()).collect();
    assert_eq!(zones.len(), 2, "{}", text(&after));
    assert!(
        zones[0].starts_with(&format!("{}.lab.local. at ", lab.name)),
        "{zones:?}"
    );
    assert!(
        rows.iter().all(|r| r["status"] == "pass"
            && r["detail"].as_str().is_some_and(|d| d.starts_with("SOA "))),
        "{}",
        text(&after)
    );

    // The internal server stopped while the others run: a failure, not "not installed".
    let internal = format!("foundry-lab-{}-dns-internal", lab.name);
    // `lab down` removes the lab's running containers; this one is stopped.
    let _cleanup = Cleanup {
        containers: vec![internal.clone()],
        networks: Vec::new(),
    };
    let stopped = docker(&["stop", &internal]);
    assert!(stopped.status.success(), "docker stop: {stopped:?}");
    let down = run(&lab, &["network", "validate", "--output", "json"]);
    assert_eq!(down.status.code(), Some(1), "{}", text(&down));
    let rows = dns_rows(&down);
    assert!(
        rows.len() == 1 && rows[0]["status"] == "fail",
        "{}",
        text(&down)
    );
    assert_eq!(failed(&down).len(), 1, "{}", text(&down));
}

/// The lab's config with each line for which `edit` gives a replacement replaced (none:
/// the line removed).
fn edit_lines(lab: &Lab, edit: impl Fn(&str) -> Option<Option<String>>) {
    let text = std::fs::read_to_string(&lab.config).expect("the lab's config");
    let mut out = String::new();
    let mut hits = 0;
    for line in text.lines() {
        match edit(line) {
            Some(Some(new)) => {
                hits += 1;
                out.push_str(&new);
                out.push('\n');
            }
            Some(None) => hits += 1,
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    assert!(hits > 0, "no line to edit in {text}");
    std::fs::write(&lab.config, out).expect("writing the config");
}

/// `foundry setup --yes` on the lab's config, timed.
fn setup(lab: &Lab) -> (Output, std::time::Duration) {
    let started = std::time::Instant::now();
    let out = run(lab, &["setup", "--yes"]);
    (out, started.elapsed())
}

/// The containers of the lab's stack the Engine has, running or not.
fn stack_containers(lab: &Lab) -> Vec<String> {
    let out = docker(&[
        "ps",
        "-a",
        "--format",
        "{{.Names}}",
        "--filter",
        &format!("name=foundry-lab-{}-", lab.name),
    ]);
    assert!(out.status.success(), "docker ps: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|n| {
            ["openbao", "dns-", "zot"]
                .iter()
                .any(|c| n.starts_with(&format!("foundry-lab-{}-{c}", lab.name)))
        })
        .map(str::to_string)
        .collect()
}

/// The step keys of the home's one unfinished setup run.
fn steps_of_setup(lab: &Lab) -> Vec<String> {
    let run = lab.home.unfinished_run();
    lab.home.show(&run)["step_list"]
        .as_array()
        .map(|steps| {
            steps
                .iter()
                .filter_map(|s| {
                    s["key"]
                        .as_str()
                        .map(|k| k.trim_end_matches("#0").to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `foundry setup` on a lab whose config lacks the VIP and whose DHCP range holds host-2:
/// the network phase writes the VIP (the only field missing, the user's comment and range
/// kept), then stops the setup before the stack phase naming host-2, exit 3, no container
/// made; the range fixed and something answering at the VIP, `foundry setup` resumes the
/// run and stops again naming the VIP; once nothing answers there it resumes and
/// completes, DNS answering; run again, nothing changes.
#[test]
fn lab_setup_plans_the_missing_network_and_stops_before_the_stack_until_it_validates() {
    let lab = Lab::up("netsetup", 2);
    let (subnet, _) = lab_network(&lab);
    let prefix = subnet.trim_end_matches(".0/24").to_string();

    // The lab's own config validates as it is written (DNS waits for PowerDNS).
    let out = run(&lab, &["network", "validate", "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(failed(&out).is_empty(), "{}", text(&out));

    let original = std::fs::read_to_string(&lab.config).expect("the lab's config");
    std::fs::write(&lab.config, format!("# my lab, by hand\n{original}")).expect("write");
    edit_lines(&lab, |l| {
        l.trim_start().starts_with("k8s_vip:").then_some(None)
    });
    let range_start = |last: u32| format!("    start: \"{prefix}.{last}\"");
    edit_lines(&lab, |l| {
        l.trim_start()
            .starts_with("start: ")
            .then(|| Some(range_start(12)))
    });
    let before = std::fs::read_to_string(&lab.config).expect("config");

    let (out, _) = setup(&lab);
    let said = text(&out);
    // The run failed (exit 3), and waits to be resumed.
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(
        said.contains("the network does not validate")
            && said.contains(&format!("static-outside-dhcp host host-2 {prefix}.12"))
            && said.contains("hint:"),
        "{said}"
    );
    assert!(!said.contains("panicked"), "{said}");
    assert_eq!(stack_containers(&lab), Vec::<String>::new(), "{said}");
    let steps = steps_of_setup(&lab);
    assert!(
        steps.contains(&"network/plan".to_string())
            && steps.contains(&"network/validate".to_string())
            && !steps.iter().any(|s| s.starts_with("stack/")),
        "{steps:?}"
    );
    // Only the VIP was written: the comment and the user's range stay.
    let written = std::fs::read_to_string(&lab.config).expect("config");
    assert!(written.starts_with("# my lab, by hand\n"), "{written}");
    assert!(written.contains(&range_start(12)), "{written}");
    let vip_line = written
        .lines()
        .find(|l| l.trim_start().starts_with("k8s_vip:"))
        .unwrap_or_else(|| panic!("no VIP written: {written}"))
        .to_string();
    let vip = vip_line
        .trim()
        .trim_start_matches("k8s_vip:")
        .trim()
        .trim_matches('"')
        .to_string();
    assert!(vip.starts_with(&format!("{prefix}.")), "{vip_line}");
    let mut rest: Vec<&str> = written.lines().filter(|l| *l != vip_line).collect();
    rest.sort_unstable();
    let mut was: Vec<&str> = before.lines().collect();
    was.sort_unstable();
    assert_eq!(rest, was, "only the VIP line is new: {written}");

    // The range fixed, and a machine answering at the VIP: resumed, stopped again.
    edit_lines(&lab, |l| {
        l.trim_start()
            .starts_with("start: ")
            .then(|| Some(range_start(221)))
    });
    let mut cleanup = Cleanup::default();
    let squatter = unique("net-setup-squatter");
    cleanup.containers.push(squatter.clone());
    let started = docker(&[
        "run",
        "-d",
        "--name",
        &squatter,
        "--network",
        &format!("foundry-lab-{}", lab.name),
        "--ip",
        &vip,
        test_image(),
    ]);
    assert!(started.status.success(), "docker run: {started:?}");
    let (out, _) = setup(&lab);
    let said = text(&out);
    // The run failed (exit 3), and waits to be resumed.
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(said.contains("resuming the unfinished setup"), "{said}");
    assert!(
        said.contains(&format!("vip-unused {vip}: {vip} answered ARP"))
            && !said.contains("static-outside-dhcp host"),
        "{said}"
    );
    assert_eq!(stack_containers(&lab), Vec::<String>::new(), "{said}");
    drop(cleanup);

    // Nothing answers there now: resumed, and the stack installed.
    let (out, _) = setup(&lab);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("resuming the unfinished setup"), "{said}");
    assert!(
        said.contains("network: planned and wrote network.k8s_vip into the config"),
        "{said}"
    );
    assert_eq!(stack_containers(&lab).len(), 5, "{said}");
    // Run again: a new run, its network phase only reads and checks, nothing changed.
    let (out, took) = setup(&lab);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("setup complete: nothing changed"), "{said}");
    eprintln!("a setup with nothing to change took {took:?}");
    let runs: Vec<Value> = lab
        .home
        .runs()
        .into_iter()
        .filter(|r| r["workflow"] == "setup")
        .collect();
    assert!(
        runs.len() == 2 && runs.iter().all(|r| r["state"] == "completed"),
        "{runs:?}"
    );
}
