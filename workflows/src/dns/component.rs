//! DNS (PowerDNS, split horizon) as a component of the stack: `components.dns`, placed on
//! `network.dns_hosts`, its zones and records from `dns:`. Its API key is kept in OpenBAO,
//! so OpenBAO is installed first.

use std::path::Path;
use std::sync::Arc;

use foundry_core::secret::SecretStore;
use foundry_core::{BoxFuture, Part, SecretRef};
use serde_json::Value;

use crate::component::container::{self, ContainerPlacement, Site};
use crate::component::{
    self as c, Component, ComponentError, ComponentStatus, InstallOptions, Placement,
};
use crate::config::StackConfig;

pub struct Dns;

/// The reference the PowerDNS API key is kept under when the config gives none.
pub const DNS_KEY_PATH: &str = "foundry-core/dns";
pub const DNS_KEY_KEY: &str = "api_key";

impl Dns {
    pub(crate) fn place(&self, stack: &StackConfig) -> Result<ContainerPlacement, ComponentError> {
        container::place(
            stack,
            Site {
                component: self.name(),
                service: container::components(stack).dns,
                hosts: container::hosts(stack, |n| &n.dns_hosts),
                default_name: "foundry-dns",
                default_image: super::PDNS_IMAGE,
                lab_image: super::PDNS_IMAGE,
            },
        )
    }
}

impl Component for Dns {
    fn name(&self) -> &'static str {
        "dns"
    }

    fn aliases(&self) -> &'static [&'static str] {
        &["powerdns"]
    }

    fn about(&self) -> &'static str {
        "PowerDNS: the stack's names, in a private and a public view"
    }

    fn needs(&self) -> &'static [&'static str] {
        &["openbao"]
    }

    fn placement(&self, stack: &StackConfig) -> Result<Placement, ComponentError> {
        Ok(self.place(stack)?.placement())
    }

    fn install(&self) -> Part {
        Part::of::<super::DnsInstall>()
    }

    fn install_input(
        &self,
        stack: &StackConfig,
        _home: &Path,
        _options: &InstallOptions,
    ) -> Result<Value, ComponentError> {
        c::input(self.name(), &dns_input(stack, &self.place(stack)?)?)
    }

    fn changes(&self, output: Value) -> Result<Vec<String>, ComponentError> {
        Ok(c::output::<super::DnsOutput>(self.name(), output)?.changes())
    }

    fn status<'a>(
        &'a self,
        stack: &'a StackConfig,
    ) -> BoxFuture<'a, Result<ComponentStatus, ComponentError>> {
        Box::pin(async move {
            let place = self.place(stack)?;
            let input = dns_input(stack, &place)?;
            let (reference, secrets) = dns_key_kept(stack, &place).await?;
            let found = super::status(&input, &reference, secrets)
                .await
                .map_err(|e| place.failed(e))?;
            let running = found.containers.iter().all(|(_, state)| state == "running");
            let containers: Vec<String> = found
                .containers
                .iter()
                .map(|(role, state)| format!("{role} {state}"))
                .collect();
            let zones = |i: &super::InstanceStatus| match (&i.error, i.reachable) {
                (_, true) => format!("{} zones", i.zones),
                (Some(e), false) => format!("not answering: {e}"),
                (None, false) => "not answering".into(),
            };
            let summary = format!(
                "{}; internal: {}, external: {}",
                containers.join(", "),
                zones(&found.internal),
                zones(&found.external)
            );
            let healthy = running && found.internal.reachable && found.external.reachable;
            let parts = found
                .containers
                .iter()
                .map(|(role, state)| (format!("{}-{role}", place.name), state.clone()));
            place.status(
                healthy,
                summary,
                found.internal.version.clone(),
                &found,
                parts,
            )
        })
    }

    fn upgrade_stops(&self) -> &'static [crate::component::UpgradeStop] {
        PDNS_STOPS
    }

    fn image(&self, stack: &StackConfig) -> Option<String> {
        self.place(stack).ok().map(|p| p.image)
    }

    fn running_image<'a>(
        &'a self,
        stack: &'a StackConfig,
    ) -> BoxFuture<'a, Result<Option<String>, ComponentError>> {
        Box::pin(async move {
            let place = self.place(stack)?;
            place
                .running_image(&format!("{}-internal", place.name))
                .await
        })
    }

    fn volumes(&self, stack: &StackConfig) -> Vec<String> {
        let Ok(place) = self.place(stack) else {
            return Vec::new();
        };
        ["internal", "external"]
            .into_iter()
            .map(|role| super::volume(&place.name, role))
            .collect()
    }
}

/// The PowerDNS Authoritative versions whose SQLite schema (the servers' databases, in
/// their volumes) changed: upstream ships one migration per step,
/// `4.0.0_to_4.2.0_schema.sqlite3.sql`, `4.2.0_to_4.3.0_…`, `4.3.0_to_4.3.1_…` and
/// `4.3.1_to_4.7.0_…` (Debian's pdns-backend-sqlite3, `/usr/share/pdns-backend-sqlite3/
/// schema/`; "Upgrade Notes", doc.powerdns.com/authoritative/upgrading.html, "schema
/// changes" under each). Foundry does not run them yet, so an upgrade that reaches one is
/// refused and a person applies it. 4.7 to 4.8 and 4.8 to 4.9 change no SQL schema (4.8's
/// new schema is LMDB's, which Foundry does not use).
const PDNS_STOPS: &[crate::component::UpgradeStop] = &[
    pdns_schema("4.2.0", "SQLite schema change 4.0.0_to_4.2.0"),
    pdns_schema("4.3.0", "SQLite schema change 4.2.0_to_4.3.0"),
    pdns_schema("4.3.1", "SQLite schema change 4.3.0_to_4.3.1"),
    pdns_schema("4.7.0", "SQLite schema change 4.3.1_to_4.7.0"),
];

const fn pdns_schema(version: &'static str, steps: &'static str) -> crate::component::UpgradeStop {
    crate::component::UpgradeStop {
        version,
        steps,
        by_foundry: false,
    }
}

/// Where the PowerDNS API key is: the config's `dns.api_key` reference, else the default
/// place in OpenBAO, where the install generates it.
pub fn dns_key(stack: &StackConfig) -> crate::secrets::EnsureStackSecret {
    let named = stack
        .dns
        .as_ref()
        .and_then(|d| d.api_key.as_ref())
        .map(|field| field.0.clone());
    let (path, key) = match named {
        Some(r) => (r.path, r.key),
        None => (DNS_KEY_PATH.into(), DNS_KEY_KEY.into()),
    };
    crate::secrets::EnsureStackSecret {
        path,
        key,
        purpose: "PowerDNS API key".into(),
        openbao: stack.openbao_url(),
        generate: true,
        holder: None,
    }
}

/// The input `dns-install` gets from the stack config, for the DNS placed at `place`.
pub(crate) fn dns_input(
    stack: &StackConfig,
    place: &ContainerPlacement,
) -> Result<super::DnsInput, ComponentError> {
    use super::{RecordInput, ZoneInput};
    let dns = stack.dns.clone().unwrap_or_default();
    let zones = dns
        .infrastructure_zones
        .iter()
        .chain(&dns.kubernetes_zones)
        .map(|z| ZoneInput {
            name: z.name.value.as_str().to_string(),
            public: z.public,
            public_cname: z.public_cname.as_ref().map(|n| n.as_str().to_string()),
            nameservers: Vec::new(),
            records: z
                .records
                .iter()
                .map(|r| RecordInput {
                    name: r.name.clone(),
                    rtype: format!("{:?}", r.kind),
                    content: r.value.clone(),
                    ttl: r.ttl,
                })
                .collect(),
        })
        .collect();
    let mut allow_from = vec!["127.0.0.0/8".to_string()];
    if let Some(subnet) = stack.network.as_ref().and_then(|n| n.cidr()) {
        allow_from.push(subnet.to_string());
    }
    Ok(super::DnsInput {
        endpoint: place.endpoint.clone(),
        name: place.name.clone(),
        image: place.image.clone(),
        build_image: place.build_image,
        image_source: place.image_source,
        registry_mirror: place.registry_mirror.clone(),
        mirror: super::DEFAULT_MIRROR.into(),
        network: place.network.clone(),
        internal_ipv4: place.address.to_string(),
        external_ipv4: place.role("external")?.to_string(),
        recursor_ipv4: place.role("recursor")?.to_string(),
        allow_from,
        forwarders: dns.forwarders.iter().map(|f| f.value.to_string()).collect(),
        api_key: None,
        api_key_from: Some(dns_key(stack)),
        ttl: 300,
        wait_s: 60,
        zones,
    })
}

/// The PowerDNS API key as the stack resolves it now (environment, `~/.foundryvars`,
/// OpenBAO), kept in a store of this process only, and its reference there: the servers'
/// clients reveal it from there, and it is never printed.
pub(crate) async fn dns_key_kept(
    stack: &StackConfig,
    place: &ContainerPlacement,
) -> Result<(SecretRef, Arc<dyn SecretStore>), ComponentError> {
    let key = dns_key(stack);
    key.held()
        .await
        .map_err(|e| ComponentError::new(format!("dns on {}: {}", place.host, e.message)))?
        .ok_or_else(|| {
            ComponentError::new(format!(
                "the PowerDNS API key (${{secret:{}:{}}}) is set nowhere",
                key.path, key.key
            ))
            .hint("install DNS with `foundry component install dns`, which makes one")
        })
}
