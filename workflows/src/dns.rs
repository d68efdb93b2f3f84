//! `dns-install`: PowerDNS with a split horizon, as containers on an infra host's Docker
//! Engine. An *internal* authoritative server answers the lab's clients: every zone, with
//! the hosts' own records, `.local` zones included. An *external* one holds only the
//! public zones, each name a CNAME to the zone's public name; private zones are never
//! created there. A recursor in front of the internal server forwards the zones to it and
//! every other name to the configured forwarders. Both servers keep their data in SQLite
//! on a named volume. Each server's API listens on its container's own loopback only and is
//! reached through the Engine (over SSH on a host), never over the container network. Its
//! key is journaled by reference only; the servers hold only its scrypt hash, in a
//! configuration file put into each container before it starts (never in its environment,
//! command or labels), so a server restarted by its Engine or a reboot serves its API again
//! with nothing from Foundry.

pub mod component;
mod image;
pub mod manage;
mod status;

use std::collections::BTreeMap;

use foundry_activities::container::{
    ContainerFile, ContainerSpec, Endpoint, EnsureContainer, SECRET_REF_LABEL_PREFIX,
};
use foundry_activities::dns::{
    ApiKeyConf, ApiReady, EnsureRecords, EnsureZone, KeyHolder, NewApiKey, PdnsApi, canonical_name,
};
use foundry_core::{Ctx, RunError, SecretRef, Workflow};
use serde::{Deserialize, Serialize};

pub use image::{PDNS_IMAGE, build_image};
pub use status::{DnsStatus, InstanceStatus, status};

/// The label every DNS container carries, with the install's name.
pub const DNS_LABEL: &str = "foundry.dns";
/// The container's role: `internal`, `external` or `recursor`.
pub const ROLE_LABEL: &str = "foundry.dns.role";
/// The name the API key's reference is labelled under on each server's container
/// (`foundry.secret-ref.PDNS_API_KEY`), where a later run finds the key it runs with.
const API_KEY_VAR: &str = "PDNS_API_KEY";
/// Where each server's container gets the configuration file setting its API key (hashed):
/// a folder PowerDNS includes (`include-dir`), in the upstream image as in the lab's.
const API_KEY_CONF: &str = "/etc/powerdns/pdns.d/foundry-api-key.conf";
/// The lab's images whose servers took the key from a file Foundry wrote after each
/// start (`:2`) or from their environment (`:1`); a run started with one is refused.
const OLDER_IMAGES: [&str; 2] = ["foundry-lab-pdns:1", "foundry-lab-pdns:2"];
/// The port of the servers' API, on each container's loopback.
pub use foundry_activities::dns::API_PORT;

fn default_name() -> String {
    "foundry-dns".into()
}
fn default_image() -> String {
    PDNS_IMAGE.into()
}
/// The Debian mirror the lab's image is built from.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

fn default_mirror() -> String {
    DEFAULT_MIRROR.into()
}
fn default_ttl() -> u32 {
    300
}
fn default_allow() -> Vec<String> {
    vec!["127.0.0.0/8".into()]
}
fn default_wait() -> u64 {
    60
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsInput {
    /// The infra host's Docker Engine.
    #[serde(default)]
    pub endpoint: Endpoint,
    /// Prefix of the containers' and volumes' names, and the value of their `foundry.dns`
    /// label.
    #[serde(default = "default_name")]
    pub name: String,
    #[serde(default = "default_image")]
    pub image: String,
    /// Build the image on this machine's Engine when it is missing (the lab's image).
    #[serde(default = "crate::install::yes")]
    pub build_image: bool,
    /// The Debian mirror the image is built from, when it is missing.
    #[serde(default = "default_mirror")]
    pub mirror: String,
    /// How the image reaches the Engine when it is not there: `pull` (by that Engine, from
    /// its registry) or `load` (from this machine's Engine, through the endpoint); by
    /// default `load` for an image built here and `pull` for any other.
    #[serde(default)]
    pub image_source: Option<foundry_activities::container::ImageSource>,
    /// A registry (`host[:port][/prefix]`) the Engine pulls the image through instead of
    /// its own registry.
    #[serde(default)]
    pub registry_mirror: Option<String>,
    /// The Docker network the containers join, at these addresses.
    pub network: String,
    pub internal_ipv4: String,
    pub external_ipv4: String,
    pub recursor_ipv4: String,
    /// Who may use the APIs and ask the recursor (CIDRs).
    #[serde(default = "default_allow")]
    pub allow_from: Vec<String>,
    /// Where the recursor sends names outside the zones; none: to the internal server.
    #[serde(default)]
    pub forwarders: Vec<String>,
    /// The API key of both servers; none: the one this machine keeps for them
    /// (`$FOUNDRY_HOME/dns/<name>-api-key`), made on the first install.
    #[serde(default)]
    pub api_key: Option<SecretRef>,
    /// The API key as the stack names it, in its secret store (generated in OpenBAO when
    /// set nowhere); used instead of `api_key`.
    #[serde(default)]
    pub api_key_from: Option<crate::secrets::EnsureStackSecret>,
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    /// Seconds to wait for each API to answer.
    #[serde(default = "default_wait")]
    pub wait_s: u64,
    pub zones: Vec<ZoneInput>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneInput {
    pub name: String,
    /// Also served by the external server, each name a CNAME to `public_cname`.
    #[serde(default)]
    pub public: bool,
    #[serde(default)]
    pub public_cname: Option<String>,
    /// The apex's NS records; default `ns1.<zone>`.
    #[serde(default)]
    pub nameservers: Vec<String>,
    #[serde(default)]
    pub records: Vec<RecordInput>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordInput {
    /// Relative to the zone (`web`, `@` for the apex) or fully qualified (ending in a dot).
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    pub content: String,
    #[serde(default)]
    pub ttl: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DnsOutput {
    pub api_key: SecretRef,
    /// This run made the API key (and kept it in OpenBAO).
    #[serde(default)]
    pub api_key_generated: bool,
    /// Containers this run created or replaced.
    #[serde(default)]
    pub containers_changed: Vec<String>,
    pub internal_version: String,
    pub external_version: String,
    /// Zones this run created, as `internal:lab.example.com.`.
    pub zones_created: Vec<String>,
    /// Rrsets this run changed, as `internal:web.lab.example.com./A`.
    pub changed: Vec<String>,
}

impl DnsOutput {
    /// What this run changed, for people; empty when nothing changed.
    pub fn changes(&self) -> Vec<String> {
        let mut changes = Vec::new();
        if self.api_key_generated {
            changes.push("API key made".to_string());
        }
        changes.extend(
            self.containers_changed
                .iter()
                .map(|c| format!("container {c}")),
        );
        changes.extend(self.zones_created.iter().map(|z| format!("zone {z}")));
        changes.extend(self.changed.iter().map(|r| format!("records {r}")));
        changes
    }
}

/// The data volume of the server `role` (`internal`, `external`) of the install `name`.
pub fn volume(name: &str, role: &str) -> String {
    format!("{name}-{role}-data")
}

/// A zone name is private when it ends in `.local`.
fn is_private(zone: &str) -> bool {
    let zone = canonical_name(zone);
    zone == "local." || zone.ends_with(".local.")
}

/// A record's owner name, fully qualified and canonical.
fn qualify(name: &str, zone: &str) -> String {
    let zone = canonical_name(zone);
    match name.trim() {
        "" | "@" => zone,
        n if n.ends_with('.') => canonical_name(n),
        n => canonical_name(&format!("{n}.{zone}")),
    }
}

/// Whether `owner` is `zone` or a name below it (both canonical).
fn in_zone(owner: &str, zone: &str) -> bool {
    owner == zone || owner.ends_with(&format!(".{zone}"))
}

impl ZoneInput {
    /// The zone's canonical name, once its split-horizon rules hold: a domain name; public
    /// only with a `public_cname`, and never a `.local` zone; its records inside it.
    pub fn check(&self) -> Result<String, String> {
        let name = canonical_name(&self.name);
        if name == "."
            || !self
                .name
                .trim_end_matches('.')
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err(format!("zone `{}`: not a domain name", self.name));
        }
        if self.public && is_private(&name) {
            return Err(format!(
                "zone {name}: a .local zone is private and cannot be public"
            ));
        }
        if self.public && self.public_cname.is_none() {
            return Err(format!(
                "zone {name}: a public zone needs `public_cname`, the name its records point to from outside"
            ));
        }
        for r in &self.records {
            let owner = qualify(&r.name, &name);
            if !in_zone(&owner, &name) {
                return Err(format!("record {owner} is not in zone {name}"));
            }
        }
        Ok(name)
    }

    /// The apex's NS records a new zone gets: the ones given, else `ns1.<zone>`.
    fn nameservers(&self) -> Vec<String> {
        if self.nameservers.is_empty() {
            vec![format!("ns1.{}", canonical_name(&self.name))]
        } else {
            self.nameservers.iter().map(|n| canonical_name(n)).collect()
        }
    }
}

/// Whether `owner` has a name on the external server in a public zone: every name below
/// the apex does; the apex cannot be a CNAME (it has SOA and NS).
fn has_public_name(zone: &str, owner: &str) -> bool {
    canonical_name(owner) != canonical_name(zone)
}

/// The external server's rrset for `owner` in a public zone: a CNAME to the zone's
/// `public_cname`.
fn public_rrset(zone: &str, owner: &str, cname: &str) -> Option<(String, String)> {
    has_public_name(zone, owner).then(|| ("CNAME".to_string(), canonical_name(cname)))
}

/// The rrsets of a zone: records grouped by owner name and type, in a stable order.
fn rrsets(zone: &ZoneInput, ttl: u32) -> BTreeMap<(String, String), (u32, Vec<String>)> {
    let mut sets: BTreeMap<(String, String), (u32, Vec<String>)> = BTreeMap::new();
    for r in &zone.records {
        let key = (qualify(&r.name, &zone.name), r.rtype.to_ascii_uppercase());
        let entry = sets
            .entry(key)
            .or_insert((r.ttl.unwrap_or(ttl), Vec::new()));
        entry.1.push(r.content.clone());
    }
    sets
}

impl DnsInput {
    /// The container whose environment holds the API key once it runs.
    fn key_holder(&self) -> KeyHolder {
        KeyHolder {
            endpoint: self.endpoint.clone(),
            container: self.container("internal"),
            var: API_KEY_VAR.into(),
        }
    }

    pub fn container(&self, role: &str) -> String {
        format!("{}-{role}", self.name)
    }

    /// The API of the server `role` (`internal`, `external`).
    pub fn api(&self, role: &str, key: &SecretRef) -> PdnsApi {
        PdnsApi::new(self.endpoint.clone(), self.container(role), key.clone())
    }

    fn spec(&self, role: &str, ipv4: &str, cmd: &str) -> ContainerSpec {
        let mut spec = ContainerSpec {
            name: self.container(role),
            image: self.image.clone(),
            cmd: Some(vec![cmd.to_string()]),
            hostname: Some(self.container(role)),
            network: Some(self.network.clone()),
            ipv4: Some(ipv4.to_string()),
            labels: [
                (DNS_LABEL.to_string(), self.name.clone()),
                (ROLE_LABEL.to_string(), role.to_string()),
            ]
            .into_iter()
            .collect(),
            ..ContainerSpec::default()
        };
        spec.env
            .insert("PDNS_ALLOW_FROM".into(), self.allow_from.join(","));
        spec
    }

    /// A server's container: the API key's reference as a label (a later run reuses the
    /// key the servers run with) and its hash as a file; both are in the spec's hash, so a
    /// new key recreates the container.
    fn server_spec(
        &self,
        role: &str,
        ipv4: &str,
        key: &SecretRef,
        conf: &ContainerFile,
    ) -> ContainerSpec {
        let mut spec = self.spec(role, ipv4, "auth");
        spec.binds = vec![format!("{}:/var/lib/powerdns", volume(&self.name, role))];
        spec.labels.insert(
            format!("{SECRET_REF_LABEL_PREFIX}{API_KEY_VAR}"),
            key.0.clone(),
        );
        spec.files.insert(API_KEY_CONF.into(), conf.clone());
        spec
    }

    /// Where this machine keeps the servers' key configuration (the hash, 0600), the
    /// source of the file put into their containers.
    fn key_conf_path(&self) -> Result<std::path::PathBuf, RunError> {
        self.home_file("api-key.conf")
    }

    /// `$FOUNDRY_HOME/dns/<name>-<what>`: what this machine keeps for these servers.
    fn home_file(&self, what: &str) -> Result<std::path::PathBuf, RunError> {
        let home = foundry_core::Home::from_env().map_err(|e| RunError::workflow(e.to_string()))?;
        Ok(home
            .root()
            .join("dns")
            .join(format!("{}-{what}", self.name)))
    }

    fn recursor_spec(&self) -> ContainerSpec {
        let mut spec = self.spec("recursor", &self.recursor_ipv4, "recursor");
        let zones: Vec<String> = self
            .zones
            .iter()
            .map(|z| {
                format!(
                    "{}={}",
                    canonical_name(&z.name).trim_end_matches('.'),
                    self.internal_ipv4
                )
            })
            .collect();
        spec.env
            .insert("PDNS_FORWARD_ZONES".into(), zones.join(","));
        spec.env
            .insert("PDNS_FORWARDERS".into(), self.forwarders.join(";"));
        spec
    }
}

#[derive(Default)]
pub struct DnsInstall;

impl Workflow for DnsInstall {
    const NAME: &'static str = "dns-install";
    const VERSION: u32 = 3;
    type Input = DnsInput;
    type Output = DnsOutput;

    fn check(&self, input: &DnsInput) -> Result<(), String> {
        let simple = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        };
        if !simple(&input.name) {
            return Err(format!(
                "name `{}`: use letters, digits, `-`, `_`, `.`",
                input.name
            ));
        }
        for ip in [
            &input.internal_ipv4,
            &input.external_ipv4,
            &input.recursor_ipv4,
        ] {
            ip.parse::<std::net::Ipv4Addr>()
                .map_err(|_| format!("`{ip}` is not an IPv4 address"))?;
        }
        let mut seen = std::collections::BTreeSet::new();
        for zone in &input.zones {
            let name = zone.check()?;
            if !seen.insert(name.clone()) {
                return Err(format!("zone {name} is given twice"));
            }
        }
        Ok(())
    }

    async fn run(&self, ctx: Ctx, input: DnsInput) -> Result<DnsOutput, RunError> {
        refuse_older_image(&input.image)?;
        if input.build_image {
            ctx.step("image", &build_image(&input.image, &input.mirror))
                .await?;
        }
        let source = crate::install::source(input.build_image, input.image_source);
        let mirror = input.registry_mirror.clone();
        crate::install::deliver(
            &ctx,
            "image/deliver",
            &input.endpoint,
            &input.image,
            source,
            mirror,
        )
        .await?;

        let api_key = match (&input.api_key_from, &input.api_key) {
            (Some(from), _) => {
                let from = crate::secrets::EnsureStackSecret {
                    holder: Some(input.key_holder()),
                    ..from.clone()
                };
                let kept = ctx.step("api-key", &from).await?;
                (kept.secret, kept.source == crate::secrets::GENERATED)
            }
            (None, Some(key)) => (key.clone(), false),
            (None, None) => {
                let key = NewApiKey {
                    purpose: "PowerDNS API key".into(),
                    path: input.home_file("api-key")?,
                };
                let made = ctx.step("api-key", &key).await?;
                (made.api_key, !made.reused)
            }
        };
        let (api_key, api_key_generated) = api_key;

        let conf = ApiKeyConf {
            path: input.key_conf_path()?,
            api_key: api_key.clone(),
        };
        let written = ctx.step("api-key-conf", &conf).await?;
        let conf = ContainerFile {
            source: conf.path,
            sha256: written.sha256,
            mode: 0o600,
            uid: 0,
            gid: 0,
        };
        let containers = [
            input.server_spec("internal", &input.internal_ipv4, &api_key, &conf),
            input.server_spec("external", &input.external_ipv4, &api_key, &conf),
            input.recursor_spec(),
        ];
        // The three servers are independent of one another: each is ensured, and each API
        // waited for, side by side; every step runs to its end before an error is said.
        let [internal_c, external_c, recursor_c] = containers.map(|spec| {
            let key = format!("container/{}", spec.name);
            let ensure = EnsureContainer {
                endpoint: input.endpoint.clone(),
                spec,
            };
            (key, ensure)
        });
        let (a, b, c) = tokio::join!(
            ctx.step(&internal_c.0, &internal_c.1),
            ctx.step(&external_c.0, &external_c.1),
            ctx.step(&recursor_c.0, &recursor_c.1)
        );
        let mut containers_changed = Vec::new();
        for (done, (_, ensure)) in [(a?, internal_c), (b?, external_c), (c?, recursor_c)] {
            if done.created || done.recreated {
                containers_changed.push(ensure.spec.name);
            }
        }

        let internal = input.api("internal", &api_key);
        let external = input.api("external", &api_key);
        let ready = |api: &PdnsApi| ApiReady {
            api: api.clone(),
            timeout_s: input.wait_s,
        };
        let (ready_internal, ready_external) = (ready(&internal), ready(&external));
        let (internal_version, external_version) = tokio::join!(
            ctx.step("ready/internal", &ready_internal),
            ctx.step("ready/external", &ready_external)
        );

        let mut out = DnsOutput {
            api_key: api_key.clone(),
            api_key_generated,
            containers_changed,
            internal_version: internal_version?.version,
            external_version: external_version?.version,
            zones_created: Vec::new(),
            changed: Vec::new(),
        };
        // Each server's zones in order, the two servers side by side (each has a database
        // of its own); what changed is said zone by zone, internal before external.
        let inside = async {
            let mut said = Vec::new();
            for zone in &input.zones {
                let sets = rrsets(zone, input.ttl);
                said.push(ensure_zone(&ctx, "internal", &internal, zone, &sets).await?);
            }
            Ok::<_, RunError>(said)
        };
        let outside = async {
            let mut said = Vec::new();
            for zone in &input.zones {
                if !zone.public {
                    said.push(None);
                    continue;
                }
                let cname = zone.public_cname.as_deref().unwrap_or_default();
                let mut public = BTreeMap::new();
                for (owner, _) in rrsets(zone, input.ttl).keys() {
                    if let Some((rtype, target)) = public_rrset(&zone.name, owner, cname) {
                        public.insert((owner.clone(), rtype), (input.ttl, vec![target]));
                    }
                }
                said.push(Some(
                    ensure_zone(&ctx, "external", &external, zone, &public).await?,
                ));
            }
            Ok::<_, RunError>(said)
        };
        let (inside, outside) = tokio::join!(inside, outside);
        for (inner, outer) in inside?.into_iter().zip(outside?) {
            for (created, changed) in std::iter::once(inner).chain(outer) {
                out.zones_created.extend(created);
                out.changed.extend(changed);
            }
        }
        Ok(out)
    }
}

/// What [`ensure_zone`] changed: the zone created (`internal:lab.example.com.`), and each
/// rrset changed (`internal:web.lab.example.com./A`).
type ZoneChanges = (Option<String>, Vec<String>);

/// A run started with one of the lab's older images (recorded in its input) is refused:
/// its servers wait for a key this version no longer writes.
fn refuse_older_image(image: &str) -> Result<(), RunError> {
    if OLDER_IMAGES.contains(&image) {
        return Err(RunError::workflow(format!(
            "this run was started by an older Foundry with the image {image}, whose servers \
             wait at each start for an API key this version no longer writes\n\
             hint: start the install again (`foundry component install dns`); it replaces \
             the containers and keeps their data and key"
        )));
    }
    Ok(())
}

/// A zone on one server with these rrsets; says what changed.
async fn ensure_zone(
    ctx: &Ctx,
    role: &str,
    api: &PdnsApi,
    zone: &ZoneInput,
    sets: &BTreeMap<(String, String), (u32, Vec<String>)>,
) -> Result<ZoneChanges, RunError> {
    let name = canonical_name(&zone.name);
    let ensure = EnsureZone {
        api: api.clone(),
        name: name.clone(),
        nameservers: zone.nameservers(),
    };
    let created = ctx
        .step(&format!("{role}/zone/{name}"), &ensure)
        .await?
        .created
        .then(|| format!("{role}:{name}"));
    let mut changed = Vec::new();
    for ((owner, rtype), (ttl, contents)) in sets {
        let records = EnsureRecords {
            api: api.clone(),
            zone: name.clone(),
            name: owner.clone(),
            rtype: rtype.clone(),
            ttl: *ttl,
            contents: contents.clone(),
        };
        let done = ctx
            .step(&format!("{role}/records/{owner}/{rtype}"), &records)
            .await?;
        if done.changed {
            changed.push(format!("{role}:{}", done.rrset));
        }
    }
    Ok((created, changed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_of_an_older_image_is_refused() {
        for image in OLDER_IMAGES {
            let err = refuse_older_image(image).expect_err(image).to_string();
            assert!(
                err.contains(image) && err.contains("component install dns"),
                "{err}"
            );
        }
        assert!(refuse_older_image(PDNS_IMAGE).is_ok());
    }

    #[test]
    fn names_are_qualified_in_their_zone() {
        assert_eq!(qualify("web", "lab.example.com"), "web.lab.example.com.");
        assert_eq!(qualify("@", "lab.example.com."), "lab.example.com.");
        assert_eq!(
            qualify("Web.Lab.Example.com.", "lab.example.com"),
            "web.lab.example.com."
        );
        assert!(is_private("db.lab.local"));
        assert!(!is_private("lab.example.com"));
    }

    #[test]
    fn a_zone_keeps_the_split_horizon_rules() {
        let zone = |name: &str, public: bool, cname: Option<&str>| ZoneInput {
            name: name.into(),
            public,
            public_cname: cname.map(str::to_string),
            nameservers: Vec::new(),
            records: Vec::new(),
        };
        assert_eq!(
            zone("Apps.Example.com", true, Some("home.example.net")).check(),
            Ok("apps.example.com.".to_string())
        );
        assert_eq!(
            zone("apps.lab.local", false, None).check(),
            Ok("apps.lab.local.".into())
        );
        let local = zone("apps.lab.local", true, Some("home.example.net")).check();
        assert!(local.is_err_and(|e| e.contains(".local")));
        let no_cname = zone("apps.example.com", true, None).check();
        assert!(no_cname.is_err_and(|e| e.contains("public_cname")));
        assert!(zone("a b.example.com", false, None).check().is_err());
        let mut outside = zone("apps.example.com", false, None);
        outside.records.push(RecordInput {
            name: "web.other.com.".into(),
            rtype: "A".into(),
            content: "10.0.0.1".into(),
            ttl: None,
        });
        assert!(outside.check().is_err());
        assert_eq!(
            public_rrset(
                "apps.example.com",
                "web.apps.example.com.",
                "Home.Example.net"
            ),
            Some(("CNAME".into(), "home.example.net.".into()))
        );
        assert_eq!(
            public_rrset("apps.example.com", "apps.example.com.", "home.example.net"),
            None
        );
    }
}
