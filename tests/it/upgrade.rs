//! `foundry stack upgrade` and `foundry component upgrade` on a lab: the real services
//! (the `bao` server, PowerDNS from Debian's packages, the registry stand-in) in the lab's
//! images, installed at one version and upgraded to another.
//!
//! Versions here are stand-ins too: Foundry reads a component's running version as the
//! tag of the image its container was created from, so the same build of a lab image,
//! tagged under two release names, stands in for two releases (`foundry-lab-pdns:4.8.0`
//! is the stand-in for PowerDNS 4.8.0, nothing else differs). What is proven is what
//! Foundry does with them: each container recreated on the new image with its data volume
//! kept (a DNS zone still answers, a secret set before still reads from OpenBAO, which is
//! unsealed again with the keys Foundry keeps), an upgrade over a version that needs steps
//! of its own refused with nothing changed, no upgrade without --yes and no terminal, a
//! kill between the old container's removal and the new one's creation resumed with each
//! container created once (the Engine's events), and a second upgrade changing nothing.

use foundry_tests::dns::dig;
use foundry_tests::docker::docker;
use foundry_tests::lab::Lab;
use foundry_tests::{Home, killed};
use foundry_workflows::config::StackConfig;
use serde_json::Value;

use crate::setup::Creations;

/// Each component's lab image (built here) and the release names it stands in for.
struct StandIn {
    component: &'static str,
    built: &'static str,
    /// `name:tag` without the tag.
    name: &'static str,
}

const STAND_INS: [StandIn; 3] = [
    StandIn {
        component: "openbao",
        built: foundry_workflows::openbao::OPENBAO_IMAGE,
        name: "foundry-lab-openbao",
    },
    StandIn {
        component: "dns",
        built: foundry_workflows::dns::PDNS_IMAGE,
        name: "foundry-lab-pdns",
    },
    StandIn {
        component: "zot",
        built: foundry_workflows::registry::REGISTRY_IMAGE,
        name: "foundry-lab-registry",
    },
];

/// The releases: OpenBAO 2.4.0 to 2.5.0, PowerDNS 4.7.3 to 4.8.0 (and 4.6.2, before 4.7's
/// schema change), Zot v2.1.19 to v2.1.20.
const BEFORE: [&str; 3] = ["2.4.0", "4.7.3", "v2.1.19"];
const AFTER: [&str; 3] = ["2.5.0", "4.8.0", "v2.1.20"];
const PDNS_BEFORE_SCHEMA: &str = "4.6.2";

/// The lab's images built (as an install builds them), each tagged under every release
/// name it stands in for.
fn stand_ins() {
    use foundry_core::Activity as _;
    let base = foundry_workflows::lab::LAB_IMAGE;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let cx = foundry_core::ActivityCx::standalone("image");
    rt.block_on(foundry_workflows::openbao::build_step(STAND_INS[0].built, base).apply(&cx))
        .expect("the OpenBAO image");
    let mirror = "http://deb.debian.org/debian";
    rt.block_on(foundry_workflows::dns::build_image(STAND_INS[1].built, mirror).apply(&cx))
        .expect("the PowerDNS image");
    rt.block_on(
        foundry_workflows::registry::image::build_step(STAND_INS[2].built, base).apply(&cx),
    )
    .expect("the registry image");
    for (i, s) in STAND_INS.iter().enumerate() {
        let mut tags = vec![BEFORE[i], AFTER[i]];
        if s.component == "dns" {
            tags.push(PDNS_BEFORE_SCHEMA);
        }
        for tag in tags {
            let out = docker(&["tag", s.built, &format!("{}:{tag}", s.name)]);
            assert!(out.status.success(), "{out:?}");
        }
    }
}

/// The lab's config with each component's image at `tags` (carried to the host by load,
/// as the lab's images are).
fn pin(lab: &Lab, tags: [&str; 3]) {
    let mut stack: StackConfig = foundry_workflows::config::load(&lab.config).expect("config");
    let components = stack.components.as_mut().expect("components");
    for (i, service) in [
        &mut components.openbao,
        &mut components.dns,
        &mut components.zot,
    ]
    .into_iter()
    .enumerate()
    {
        service.image = Some(format!("{}:{}", STAND_INS[i].name, tags[i]));
        service.image_source = Some(foundry_activities::container::ImageSource::Load);
    }
    foundry_workflows::config::save(&lab.config, &stack, "the upgrade test's versions")
        .expect("save");
}

/// Each container's id and image, as its Engine says.
fn images(lab: &Lab) -> Vec<String> {
    crate::setup::containers(lab)
        .iter()
        .map(|c| {
            let out = docker(&["inspect", "-f", "{{.Id}} {{.Config.Image}}", c]);
            assert!(out.status.success(), "{c}: {out:?}");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        })
        .collect()
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn foundry(home: &Home, config: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--config", config];
    all.extend(args);
    home.run(&all)
}

fn ok(home: &Home, config: &str, args: &[&str]) -> String {
    let out = foundry(home, config, args);
    assert!(out.status.success(), "foundry {args:?}: {}", text(&out));
    text(&out)
}

/// The lab's `openbao` name answers through the recursor.
fn zone_answers(lab: &Lab) {
    let stack = foundry_workflows::config::load(&lab.config).expect("config");
    let components = stack.components.as_ref().expect("components");
    let network = components.dns.docker_network.clone().expect("network");
    let recursor = components.dns.addresses["recursor"].value.to_string();
    let openbao = components
        .openbao
        .address
        .as_ref()
        .expect("address")
        .value
        .to_string();
    let zone = &stack.dns.as_ref().expect("dns").infrastructure_zones[0];
    let name = format!("openbao.{}", zone.name.value.as_str());
    let (status, answers) = dig(&network, &recursor, &name, "A");
    assert_eq!(status, "NOERROR", "{answers:?}");
    assert!(
        answers
            .iter()
            .any(|a| a.ends_with(&format!(" A {openbao}"))),
        "{answers:?}"
    );
}

const SECRET: &str = "kept-across-the-upgrade-41c9";

fn secret_reads(home: &Home, config: &str) {
    let said = ok(
        home,
        config,
        &["secret", "get", "apps/upgrade:note", "--yes", "-o", "json"],
    );
    assert!(said.contains(SECRET), "{said}");
}

fn stack_upgrades(home: &Home) -> usize {
    home.runs()
        .iter()
        .filter(|r| r["workflow"] == "stack-upgrade")
        .count()
}

#[test]
fn a_stack_upgrades_live_versions_keeping_its_data_refuses_what_it_must_and_resumes() {
    let lab = Lab::up("upg", 1);
    stand_ins();
    let home = &lab.home;
    let config = lab.config.to_str().expect("utf8").to_string();

    // Installed at the earlier releases, PowerDNS before its 4.7 schema change.
    pin(&lab, [BEFORE[0], PDNS_BEFORE_SCHEMA, BEFORE[2]]);
    ok(home, &config, &["stack", "install"]);

    // The plan reads the running versions live. PowerDNS 4.6.2 -> 4.8.0 passes through
    // 4.7.0's schema change, which Foundry does not make: the whole upgrade is refused,
    // naming it, and nothing changes; so does its dry run.
    pin(&lab, AFTER);
    let before = images(&lab);
    for flag in ["--dry-run", "--yes"] {
        let out = foundry(home, &config, &["stack", "upgrade", flag]);
        let said = text(&out);
        assert!(!out.status.success(), "{said}");
        assert!(said.contains("openbao on host-1: 2.4.0 -> 2.5.0"), "{said}");
        assert!(said.contains("dns on host-1: 4.6.2 -> 4.8.0"), "{said}");
        assert!(said.contains("passes through 4.7.0"), "{said}");
        assert!(
            said.contains("hint: upgrade dns to 4.7.0 by hand"),
            "{said}"
        );
    }
    let out = foundry(
        home,
        &config,
        &["component", "upgrade", "dns", "--to", "4.7.3", "--yes"],
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("4.7.0"), "{}", text(&out));
    // A downgrade is refused too.
    let out = foundry(
        home,
        &config,
        &["component", "upgrade", "openbao", "--to", "2.3.0", "--yes"],
    );
    assert!(
        text(&out).contains("a downgrade is no upgrade"),
        "{}",
        text(&out)
    );
    assert_eq!(images(&lab), before, "a refused upgrade changed something");
    assert_eq!(stack_upgrades(home), 0, "a refused upgrade started a run");

    // A person takes PowerDNS past 4.7.0 (here an install moves the stand-in, which has
    // no schema to change), then sets a secret.
    pin(&lab, [BEFORE[0], BEFORE[1], BEFORE[2]]);
    ok(home, &config, &["stack", "install"]);
    zone_answers(&lab);
    let mut set = home.cmd(&[
        "--config",
        &config,
        "secret",
        "set",
        "apps/upgrade:note",
        "--stdin",
    ]);
    let mut child = set
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(SECRET.as_bytes()).expect("write");
    }
    let set = child.wait_with_output().expect("secret set");
    assert!(set.status.success(), "{set:?}");
    secret_reads(home, &config);

    // Without --yes and with no terminal to ask on, nothing is upgraded; a dry run says
    // what would be.
    pin(&lab, AFTER);
    let before = images(&lab);
    let said = ok(home, &config, &["stack", "upgrade", "--dry-run"]);
    assert!(said.contains("openbao on host-1: 2.4.0 -> 2.5.0"), "{said}");
    assert!(said.contains("then: unseal it again"), "{said}");
    assert!(said.contains("dns on host-1: 4.7.3 -> 4.8.0"), "{said}");
    assert!(said.contains("zot on host-1: v2.1.19 -> v2.1.20"), "{said}");
    assert_eq!(images(&lab), before);
    let out = foundry(home, &config, &["stack", "upgrade"]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("no terminal to ask on"), "{said}");
    assert!(said.contains("hint: add --yes"), "{said}");
    assert_eq!(images(&lab), before);

    // Killed between OpenBAO's old container's removal and its new one's creation, then
    // resumed: it completes, and each container was created once.
    let creations = Creations::follow(&lab);
    let openbao = format!("foundry-lab-{}-openbao", lab.name);
    let out = home
        .cmd(&["--config", &config, "stack", "upgrade", "--yes"])
        .env("FOUNDRY_FAILPOINTS", format!("{openbao}/removed@effect"))
        .output()
        .expect("upgrade");
    assert!(killed(out.status), "not killed: {}", text(&out));
    assert!(
        !docker(&["inspect", &openbao]).status.success(),
        "the old container outlived the kill"
    );
    let run = home.unfinished_run();
    ok(home, &config, &["workflow", "resume", &run]);
    let created = creations.names();
    for name in crate::setup::containers(&lab) {
        let times = created.iter().filter(|l| **l == name).count();
        assert_eq!(times, 1, "{name} created {times} times: {created:?}");
    }
    let after = images(&lab);
    for ((old, new), (i, tag)) in before
        .iter()
        .zip(&after)
        .zip(AFTER.iter().enumerate().flat_map(|(i, t)| {
            let times = if i == 1 { 3 } else { 1 };
            std::iter::repeat_n((i, *t), times)
        }))
    {
        assert_ne!(old, new, "not recreated");
        assert!(
            new.ends_with(&format!(" {}:{tag}", STAND_INS[i].name)),
            "{new}: not on {tag}"
        );
    }
    // Its data kept: OpenBAO unsealed again and the secret still there, the zone still
    // answering, every component healthy.
    secret_reads(home, &config);
    zone_answers(&lab);
    let status = ok(home, &config, &["stack", "status"]);
    assert!(!status.contains("unhealthy"), "{status}");

    // Upgraded again: nothing to do, no run, no container made.
    let out = foundry(home, &config, &["stack", "upgrade", "--yes", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let plans: Vec<Value> = foundry_tests::json_lines(&out.stdout);
    assert_eq!(plans.len(), 3, "{}", text(&out));
    assert!(plans.iter().all(|p| p["change"] == false), "{plans:?}");
    assert!(text(&out).contains("nothing to upgrade"), "{}", text(&out));
    assert_eq!(stack_upgrades(home), 1);
    assert_eq!(images(&lab), after);
    drop(creations);
    drop(lab);
    for (i, s) in STAND_INS.iter().enumerate() {
        for tag in [BEFORE[i], AFTER[i], PDNS_BEFORE_SCHEMA] {
            let _ = docker(&["rmi", &format!("{}:{tag}", s.name)]);
        }
    }
}
