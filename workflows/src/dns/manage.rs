//! The stack's DNS servers, worked on directly (`foundry dns`): zones and records changed
//! through the same activities `dns-install` runs, here run once each, outside any run, and
//! what each server answers asked over DNS itself. The servers are found from the stack
//! config as `foundry component status dns` finds them, and the API key is resolved the
//! same way: kept in this process's memory only, never printed.
//!
//! The split-horizon rules are the install's: a public zone is on both servers, each name
//! below its apex a CNAME to the zone's public name on the external one; a `.local` zone
//! is never public. A public zone the config does not declare keeps its public name in the
//! external zone's metadata (`X-FOUNDRY-PUBLIC-CNAME`), so later records find it.

mod lookup;
mod records;
mod zones;

use std::net::Ipv4Addr;

use foundry_activities::dns::{Client, PdnsApi, canonical_name};
use foundry_core::{Activity, ActivityCx, ActivityError};

use super::component::{Dns, dns_input, dns_key, dns_key_kept};
use super::{ZoneInput, in_zone};
use crate::component::ComponentError;
use crate::config::StackConfig;

pub use lookup::Lookup;
pub use records::{RecordChange, RecordsDeleted, RecordsSet, RrsetListing, Settled};
pub use zones::{ZoneCreated, ZoneDeleted, ZoneListing};

/// The metadata kind of an external zone that holds its public name.
const PUBLIC_CNAME_KIND: &str = "X-FOUNDRY-PUBLIC-CNAME";

/// One authoritative server: its role, its address, its API.
pub struct Server {
    /// `internal` or `external`.
    pub role: &'static str,
    pub address: Ipv4Addr,
    api: PdnsApi,
}

/// The stack's DNS servers, with the API key at hand.
pub struct DnsServers {
    pub internal: Server,
    pub external: Server,
    pub recursor: Ipv4Addr,
    /// The zones the stack config declares, as `dns-install` gets them.
    declared: Vec<ZoneInput>,
    /// The recursor sends names outside the declared zones to forwarders of the config's
    /// (without any, to the internal server).
    forwarders: bool,
    /// The TTL of records made without one, as the install's.
    ttl: u32,
    /// Where the key is, for hints.
    key_place: String,
    cx: ActivityCx,
}

impl DnsServers {
    /// The servers the stack config places, and the API key as the stack resolves it.
    pub async fn of_stack(stack: &StackConfig) -> Result<DnsServers, ComponentError> {
        let place = Dns.place(stack)?;
        let input = dns_input(stack, &place)?;
        let (key, secrets) = dns_key_kept(stack, &place).await?;
        let address = |text: &str| {
            text.parse::<Ipv4Addr>()
                .map_err(|_| ComponentError::new(format!("`{text}` is not an IPv4 address")))
        };
        let stack_key = dns_key(stack);
        Ok(DnsServers {
            internal: Server {
                role: "internal",
                address: address(&input.internal_ipv4)?,
                api: input.api("internal", &key),
            },
            external: Server {
                role: "external",
                address: address(&input.external_ipv4)?,
                api: input.api("external", &key),
            },
            recursor: address(&input.recursor_ipv4)?,
            declared: input.zones,
            forwarders: !input.forwarders.is_empty(),
            ttl: input.ttl,
            key_place: format!("${{secret:{}:{}}}", stack_key.path, stack_key.key),
            cx: ActivityCx::standalone("dns").with_secrets(secrets),
        })
    }

    /// An error from `server`, with what the user can do about it when there is something.
    fn failed(&self, server: &Server, e: ActivityError) -> ComponentError {
        let error = ComponentError::new(e.message.clone());
        if e.message.contains("refused the key") {
            error.hint(format!(
                "the key in {} is not the one the servers run with: \
                 `foundry component install dns` gives them the stack's key",
                self.key_place
            ))
        } else if e.transient {
            error.hint(format!(
                "is the {} server at {} running? `foundry component status dns` asks its containers",
                server.role, server.address
            ))
        } else {
            error
        }
    }

    fn client(&self, server: &Server) -> Result<Client, ComponentError> {
        server
            .api
            .client(&self.cx)
            .map_err(|e| self.failed(server, e))
    }

    /// Runs an activity once, now, against `server`.
    async fn run<A: Activity>(
        &self,
        server: &Server,
        activity: &A,
    ) -> Result<A::Output, ComponentError> {
        activity
            .apply(&self.cx)
            .await
            .map_err(|e| self.failed(server, e))
    }

    /// The canonical names of the zones `server` holds.
    async fn zone_names(&self, server: &Server) -> Result<Vec<String>, ComponentError> {
        let zones = self
            .client(server)?
            .zones()
            .await
            .map_err(|e| self.failed(server, e))?;
        Ok(zones.iter().map(|z| canonical_name(&z.name)).collect())
    }

    /// The zone the stack config declares by this (canonical) name.
    fn declared(&self, zone: &str) -> Option<&ZoneInput> {
        self.declared
            .iter()
            .find(|z| canonical_name(&z.name) == zone)
    }

    /// The public name of a public zone: the config's, else the one kept in the external
    /// zone's metadata; none when neither says.
    async fn public_cname(&self, zone: &str) -> Result<Option<String>, ComponentError> {
        if let Some(cname) = self.declared(zone).and_then(|z| z.public_cname.clone()) {
            return Ok(Some(canonical_name(&cname)));
        }
        let kept = self
            .client(&self.external)?
            .metadata(zone, PUBLIC_CNAME_KIND)
            .await
            .map_err(|e| self.failed(&self.external, e))?;
        Ok(kept.and_then(|values| values.into_iter().next()))
    }

    /// The recursor asks the internal server for this name (it asks forwarders for the
    /// names of zones the config does not declare, when the config names forwarders).
    fn recursor_asks_internal(&self, zone: &str) -> bool {
        !self.forwarders || self.declared(zone).is_some()
    }
}

/// The longest of `zones` that holds `name` (all canonical).
fn longest_zone<'a>(name: &str, zones: impl IntoIterator<Item = &'a String>) -> Option<String> {
    zones
        .into_iter()
        .filter(|z| in_zone(name, z))
        .max_by_key(|z| z.len())
        .cloned()
}

/// A name as given, fully qualified in `zone` (canonical): one ending in a dot, or one
/// that already ends with the zone's name, is taken as it is; any other is relative to the
/// zone (`@`: the apex).
fn owner_in(name: &str, zone: &str) -> String {
    let plain = canonical_name(name);
    if in_zone(&plain, zone) {
        plain
    } else {
        super::qualify(name, zone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_qualified_in_its_zone_and_finds_the_longest_zone() {
        let zone = "lab.example.test.";
        assert_eq!(owner_in("web", zone), "web.lab.example.test.");
        assert_eq!(owner_in("@", zone), zone);
        assert_eq!(
            owner_in("Web.Lab.Example.Test", zone),
            "web.lab.example.test."
        );
        assert_eq!(
            owner_in("web.lab.example.test.", zone),
            "web.lab.example.test."
        );
        assert_eq!(owner_in("lab", "lab.local."), "lab.lab.local.");
        let zones = vec!["example.test.".to_string(), zone.to_string()];
        assert_eq!(
            longest_zone("a.b.lab.example.test.", &zones).as_deref(),
            Some(zone)
        );
        assert_eq!(
            longest_zone("other.example.test.", &zones).as_deref(),
            Some("example.test.")
        );
        assert_eq!(
            longest_zone("xlab.example.test.", &["lab.example.test.".to_string()]),
            None
        );
    }
}
