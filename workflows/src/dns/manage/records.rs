//! Records: an rrset set (replaced, sent only when it differs), listed, deleted; in a public
//! zone the external server's CNAME for the name follows.

use foundry_activities::dns::{DeleteRecords, EnsureRecords, Rrset, canonical_name};
use serde::Serialize;

use super::{DnsServers, Server, longest_zone, owner_in};
use crate::component::ComponentError;
use crate::dns::{has_public_name, in_zone, public_rrset};

/// An rrset to set: `name` relative to `zone` or fully qualified; without a zone, the
/// longest zone on the internal server that holds the name.
#[derive(Clone, Debug)]
pub struct RecordChange {
    pub name: String,
    pub rtype: String,
    pub values: Vec<String>,
    pub zone: Option<String>,
    /// Default: the rrset's TTL when it exists, else the install's.
    pub ttl: Option<u32>,
}

/// What setting an rrset did on one server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Settled {
    Added,
    Changed,
    Unchanged,
}

impl Settled {
    fn of(existed: bool, changed: bool) -> Settled {
        match (existed, changed) {
            (_, false) => Settled::Unchanged,
            (true, true) => Settled::Changed,
            (false, true) => Settled::Added,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Settled::Added => "added",
            Settled::Changed => "changed",
            Settled::Unchanged => "unchanged",
        }
    }
}

/// What setting an rrset did.
#[derive(Clone, Debug, Serialize)]
pub struct RecordsSet {
    pub zone: String,
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    pub ttl: u32,
    pub values: Vec<String>,
    /// On the internal server.
    pub outcome: Settled,
    /// In a public zone: the external server's CNAME for the name, and what became of it.
    pub external: Option<ExternalName>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ExternalName {
    pub cname: String,
    pub outcome: Settled,
}

/// An rrset as one server holds it.
#[derive(Clone, Debug, Serialize)]
pub struct RrsetListing {
    pub zone: String,
    /// `internal` or `external`.
    pub server: &'static str,
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    pub ttl: u32,
    pub values: Vec<String>,
}

/// What deleting an rrset did.
#[derive(Clone, Debug, Serialize)]
pub struct RecordsDeleted {
    pub zone: String,
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    /// What was deleted, as `internal` or `external CNAME`; empty when nothing was there.
    pub deleted: Vec<String>,
}

/// A record's zone and its owner name, both canonical.
struct Target {
    zone: String,
    owner: String,
}

/// The SOA is the zone's own: it goes with the zone, and PowerDNS keeps its serial.
fn not_soa(rtype: &str) -> Result<String, ComponentError> {
    let rtype = rtype.trim().to_ascii_uppercase();
    if rtype == "SOA" {
        return Err(ComponentError::new("the SOA record belongs to the zone")
            .hint("`foundry dns zone create` and `zone delete` make and remove it"));
    }
    if rtype.is_empty() || !rtype.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(
            ComponentError::new(format!("`{rtype}` is not a record type"))
                .hint("A, AAAA, CNAME, TXT, MX, SRV, NS, PTR, CAA, …"),
        );
    }
    Ok(rtype)
}

impl DnsServers {
    /// Where `name` goes: in `zone`, which the internal server must hold, or in the
    /// longest zone it holds that contains the name.
    async fn target(&self, name: &str, zone: Option<&str>) -> Result<Target, ComponentError> {
        let zones = self.zone_names(&self.internal).await?;
        let target = match zone {
            Some(zone) => {
                let zone = canonical_name(zone);
                if !zones.contains(&zone) {
                    return Err(ComponentError::new(format!(
                        "the internal server has no zone {zone}"
                    ))
                    .hint(format!(
                        "`foundry dns zone list` shows the zones; `foundry dns zone create {zone}` makes it"
                    )));
                }
                Target {
                    owner: owner_in(name, &zone),
                    zone,
                }
            }
            None => {
                let owner = canonical_name(name);
                let zone = longest_zone(&owner, &zones).ok_or_else(|| {
                    ComponentError::new(format!("no zone on the internal server holds {owner}"))
                        .hint("give the zone with --zone ZONE (NAME may then be relative to it), or make it with `foundry dns zone create`")
                })?;
                Target { zone, owner }
            }
        };
        if !in_zone(&target.owner, &target.zone) {
            return Err(ComponentError::new(format!(
                "{} is not in zone {}",
                target.owner, target.zone
            )));
        }
        Ok(target)
    }

    /// The zone as `server` holds it, if it does.
    async fn zone_on(
        &self,
        server: &Server,
        zone: &str,
    ) -> Result<Option<foundry_activities::dns::Zone>, ComponentError> {
        self.client(server)?
            .zone(zone)
            .await
            .map_err(|e| self.failed(server, e))
    }

    /// The rrset holds exactly these values, on the internal server; in a public zone the
    /// external server has the name's CNAME to the zone's public name.
    pub async fn set_records(&self, change: &RecordChange) -> Result<RecordsSet, ComponentError> {
        let rtype = not_soa(&change.rtype)?;
        if change.values.iter().all(|v| v.trim().is_empty()) {
            return Err(ComponentError::new("no value given")
                .hint("to remove the records, `foundry dns record delete NAME TYPE`"));
        }
        let Target { zone, owner } = self.target(&change.name, change.zone.as_deref()).await?;
        let inside = self.zone_on(&self.internal, &zone).await?;
        let live = inside.as_ref().and_then(|z| z.rrset(&owner, &rtype));
        let ttl = change.ttl.or(live.map(|r| r.ttl)).unwrap_or(self.ttl);
        let records = EnsureRecords {
            api: self.internal.api.clone(),
            zone: zone.clone(),
            name: owner.clone(),
            rtype: rtype.clone(),
            ttl,
            contents: change.values.clone(),
        };
        let changed = self.run(&self.internal, &records).await?.changed;
        let outcome = Settled::of(live.is_some(), changed);
        let external = self.follow_outside(&zone, &owner).await?;
        Ok(RecordsSet {
            zone,
            name: owner,
            rtype,
            ttl,
            values: change.values.clone(),
            outcome,
            external,
        })
    }

    /// In a public zone, the external server's CNAME for `owner`, as `dns-install` makes
    /// it; none in a private zone and at the apex.
    async fn follow_outside(
        &self,
        zone: &str,
        owner: &str,
    ) -> Result<Option<ExternalName>, ComponentError> {
        if !has_public_name(zone, owner) {
            return Ok(None);
        }
        let Some(outside) = self.zone_on(&self.external, zone).await? else {
            return Ok(None);
        };
        let cname = self.public_cname(zone).await?.ok_or_else(|| {
            ComponentError::new(format!(
                "zone {zone} is public, but its public name is neither in the config nor kept on the external server"
            ))
            .hint(format!(
                "`foundry dns zone create {zone} --public --public-cname NAME` sets it"
            ))
        })?;
        let Some((rtype, target)) = public_rrset(zone, owner, &cname) else {
            return Ok(None);
        };
        let live = outside.rrset(owner, &rtype);
        let records = EnsureRecords {
            api: self.external.api.clone(),
            zone: zone.to_string(),
            name: owner.to_string(),
            rtype,
            ttl: live.map_or(self.ttl, |r| r.ttl),
            contents: vec![target],
        };
        let changed = self.run(&self.external, &records).await?.changed;
        Ok(Some(ExternalName {
            outcome: Settled::of(live.is_some(), changed),
            cname,
        }))
    }

    /// The rrsets of `zone` (every zone when none is given), as each server that holds
    /// it has them, by name and type.
    pub async fn records(&self, zone: Option<&str>) -> Result<Vec<RrsetListing>, ComponentError> {
        let inside = self.zone_names(&self.internal).await?;
        let outside = self.zone_names(&self.external).await?;
        let zones: Vec<String> = match zone {
            Some(zone) => {
                let zone = canonical_name(zone);
                if !inside.contains(&zone) && !outside.contains(&zone) {
                    return Err(
                        ComponentError::new(format!("neither server has zone {zone}"))
                            .hint("`foundry dns zone list` shows the zones"),
                    );
                }
                vec![zone]
            }
            None => {
                let mut all: Vec<String> = inside.iter().chain(&outside).cloned().collect();
                all.sort();
                all.dedup();
                all
            }
        };
        let mut listed = Vec::new();
        for zone in zones {
            for server in [&self.internal, &self.external] {
                let Some(found) = self.zone_on(server, &zone).await? else {
                    continue;
                };
                let mut rrsets: Vec<&Rrset> = found.rrsets.iter().collect();
                rrsets.sort_by_key(|r| (canonical_name(&r.name), r.rtype.clone()));
                listed.extend(rrsets.into_iter().map(|r| RrsetListing {
                    zone: zone.clone(),
                    server: server.role,
                    name: canonical_name(&r.name),
                    rtype: r.rtype.clone(),
                    ttl: r.ttl,
                    values: r.records.iter().map(|v| v.content.clone()).collect(),
                }));
            }
        }
        Ok(listed)
    }

    /// The rrset gone from the internal server; in a public zone, the external server's
    /// CNAME for the name goes too once the name has no record left inside.
    pub async fn delete_records(
        &self,
        name: &str,
        rtype: &str,
        zone: Option<&str>,
    ) -> Result<RecordsDeleted, ComponentError> {
        let rtype = not_soa(rtype)?;
        let Target { zone, owner } = self.target(name, zone).await?;
        let mut deleted = Vec::new();
        let delete = |server: &Server, rtype: &str| DeleteRecords {
            api: server.api.clone(),
            zone: zone.clone(),
            name: owner.clone(),
            rtype: rtype.to_string(),
        };
        if self
            .run(&self.internal, &delete(&self.internal, &rtype))
            .await?
        {
            deleted.push("internal".to_string());
        }
        if self.zone_on(&self.external, &zone).await?.is_some() {
            let left_inside = self
                .zone_on(&self.internal, &zone)
                .await?
                .is_some_and(|z| z.rrsets.iter().any(|r| canonical_name(&r.name) == owner));
            let mut types = Vec::new();
            if rtype != "CNAME" {
                types.push(rtype.clone());
            }
            if !left_inside {
                types.push("CNAME".to_string());
            }
            for t in types {
                if self
                    .run(&self.external, &delete(&self.external, &t))
                    .await?
                {
                    deleted.push(format!("external {t}"));
                }
            }
        }
        Ok(RecordsDeleted {
            zone,
            name: owner,
            rtype,
            deleted,
        })
    }
}
