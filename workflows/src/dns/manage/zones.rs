//! Zones: listed from both servers, created and deleted on both as the split horizon wants.

use std::collections::BTreeSet;

use foundry_activities::dns::{
    DeleteZone, EnsureRecords, EnsureZone, EnsureZoneMetadata, Zone, canonical_name,
};
use serde::Serialize;

use super::{DnsServers, PUBLIC_CNAME_KIND};
use crate::component::ComponentError;
use crate::dns::{ZoneInput, is_private, public_rrset};

/// A zone as the servers hold it now.
#[derive(Clone, Debug, Serialize)]
pub struct ZoneListing {
    pub zone: String,
    /// `public` (the external server holds it, or the config says so) or `private`.
    pub kind: &'static str,
    pub internal: bool,
    pub external: bool,
    /// The SOA serial (the internal server's, when it holds the zone).
    pub serial: u64,
    /// Records in the zone (the internal server's, when it holds it), SOA and NS included.
    pub records: usize,
    /// Where its names point from outside, for a public zone.
    pub public_cname: Option<String>,
    /// The stack config declares it: `foundry component install dns` keeps it as declared.
    pub in_config: bool,
}

/// What creating a zone did.
#[derive(Clone, Debug, Serialize)]
pub struct ZoneCreated {
    pub zone: String,
    pub public: bool,
    pub public_cname: Option<String>,
    /// The internal server did not hold it before.
    pub created: bool,
    /// What changed, for people (`internal: zone created`); empty when nothing did.
    pub changes: Vec<String>,
    pub in_config: bool,
    /// What the user should know about the zone, for people.
    pub notes: Vec<String>,
}

/// What deleting a zone did.
#[derive(Clone, Debug, Serialize)]
pub struct ZoneDeleted {
    pub zone: String,
    /// The servers it was deleted from; empty when neither held it.
    pub deleted: Vec<&'static str>,
    pub in_config: bool,
}

fn record_count(zone: &Zone) -> usize {
    zone.rrsets.iter().map(|r| r.records.len()).sum()
}

impl DnsServers {
    /// Every zone either server holds, in name order.
    pub async fn zones(&self) -> Result<Vec<ZoneListing>, ComponentError> {
        let inside: BTreeSet<String> = self.zone_names(&self.internal).await?.into_iter().collect();
        let outside: BTreeSet<String> =
            self.zone_names(&self.external).await?.into_iter().collect();
        let mut listed = Vec::new();
        for name in inside.union(&outside) {
            let (internal, external) = (inside.contains(name), outside.contains(name));
            let server = if internal {
                &self.internal
            } else {
                &self.external
            };
            let zone = self
                .client(server)?
                .zone(name)
                .await
                .map_err(|e| self.failed(server, e))?;
            let public_cname = if external {
                self.public_cname(name).await?
            } else {
                None
            };
            let declared = self.declared(name);
            let public = external || declared.is_some_and(|z| z.public);
            listed.push(ZoneListing {
                zone: name.clone(),
                kind: if public { "public" } else { "private" },
                internal,
                external,
                serial: zone.as_ref().map_or(0, |z| z.serial),
                records: zone.as_ref().map_or(0, record_count),
                public_cname,
                in_config: declared.is_some(),
            });
        }
        Ok(listed)
    }

    /// The zone on the internal server, and on the external one too when it is public
    /// (its names CNAMEs to its public name there). A zone already there is left as it is,
    /// but a private zone made public gets its external half.
    pub async fn create_zone(&self, zone: &ZoneInput) -> Result<ZoneCreated, ComponentError> {
        let name = zone.check().map_err(|e| {
            let hint = if zone.public && is_private(&zone.name) {
                "a .local zone stays inside the network: create it without --public"
            } else if zone.public && zone.public_cname.is_none() {
                "add --public-cname NAME: the name its records point to from outside"
            } else {
                "a zone is a domain name: letters, digits, `-`, separated by dots"
            };
            ComponentError::new(e).hint(hint)
        })?;
        let cname = zone.public_cname.as_deref().map(canonical_name);
        if let Some(declared) = self.declared(&name) {
            let declared_cname = declared.public_cname.as_deref().map(canonical_name);
            if declared.public != zone.public || declared_cname != cname {
                let said = match (&declared.public, &declared_cname) {
                    (true, Some(c)) => format!("public, its names pointing to {c}"),
                    _ => "private".to_string(),
                };
                return Err(ComponentError::new(format!(
                    "the stack config declares zone {name} {said}"
                ))
                .hint("change it in the config, then run `foundry component install dns`"));
            }
        }
        if !zone.public && self.zone_names(&self.external).await?.contains(&name) {
            return Err(ComponentError::new(format!(
                "zone {name} is public: the external server holds it"
            ))
            .hint("add --public --public-cname NAME, or delete the zone first"));
        }
        let mut changes = Vec::new();
        let nameservers = zone.nameservers();
        let inside = EnsureZone {
            api: self.internal.api.clone(),
            name: name.clone(),
            nameservers: nameservers.clone(),
        };
        let created = self.run(&self.internal, &inside).await?.created;
        if created {
            changes.push("internal: zone created".to_string());
        }
        if let Some(cname) = &cname {
            changes.extend(self.publish(&name, nameservers, cname).await?);
        }
        let in_config = self.declared(&name).is_some();
        let mut notes = Vec::new();
        if !in_config && !self.recursor_asks_internal(&name) {
            notes.push(format!(
                "the recursor sends only the config's zones to the internal server: add {name} \
                 to dns.infrastructure_zones and run `foundry component install dns` for its \
                 clients to see it"
            ));
        }
        Ok(ZoneCreated {
            zone: name,
            public: zone.public,
            public_cname: cname,
            created,
            changes,
            in_config,
            notes,
        })
    }

    /// The external half of a public zone: the zone, its public name kept in its metadata,
    /// and a CNAME to it for every name the internal zone has below its apex.
    async fn publish(
        &self,
        name: &str,
        nameservers: Vec<String>,
        cname: &str,
    ) -> Result<Vec<String>, ComponentError> {
        let mut changes = Vec::new();
        let outside = EnsureZone {
            api: self.external.api.clone(),
            name: name.to_string(),
            nameservers,
        };
        let created = self.run(&self.external, &outside).await?.created;
        if created {
            changes.push("external: zone created".to_string());
        }
        let kept = EnsureZoneMetadata {
            api: self.external.api.clone(),
            zone: name.to_string(),
            kind: PUBLIC_CNAME_KIND.into(),
            values: vec![cname.to_string()],
        };
        if self.run(&self.external, &kept).await? && !created {
            changes.push(format!("external: names now point to {cname}"));
        }
        let inside = self
            .client(&self.internal)?
            .zone(name)
            .await
            .map_err(|e| self.failed(&self.internal, e))?;
        let owners: BTreeSet<String> = inside
            .iter()
            .flat_map(|z| z.rrsets.iter().map(|r| canonical_name(&r.name)))
            .collect();
        for owner in owners {
            let Some((rtype, target)) = public_rrset(name, &owner, cname) else {
                continue;
            };
            let records = EnsureRecords {
                api: self.external.api.clone(),
                zone: name.to_string(),
                name: owner.clone(),
                rtype: rtype.clone(),
                ttl: self.ttl,
                contents: vec![target],
            };
            if self.run(&self.external, &records).await?.changed {
                changes.push(format!("external: {owner} {rtype} {cname}"));
            }
        }
        Ok(changes)
    }

    /// The zone gone from both servers, with its records; a zone neither holds is no error.
    pub async fn delete_zone(&self, zone: &str) -> Result<ZoneDeleted, ComponentError> {
        let name = canonical_name(zone);
        let mut deleted = Vec::new();
        for server in [&self.internal, &self.external] {
            let delete = DeleteZone {
                api: server.api.clone(),
                name: name.clone(),
            };
            if self.run(server, &delete).await? {
                deleted.push(server.role);
            }
        }
        Ok(ZoneDeleted {
            in_config: self.declared(&name).is_some(),
            zone: name,
            deleted,
        })
    }
}
