//! A zone on a PowerDNS server: ensured (Native, with its nameservers) or deleted.

use foundry_core::{Activity, ActivityCx, ActivityError, InDoubt};
use serde::{Deserialize, Serialize};

use super::api::{PdnsApi, canonical_name};

/// A Native zone exists. An existing zone is left as it is (its rrsets belong to
/// `EnsureRecords`); one of another kind is an error, never silently replaced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnsureZone {
    pub api: PdnsApi,
    pub name: String,
    /// The apex's NS records when the zone is created.
    pub nameservers: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneOutput {
    /// The zone's canonical name.
    pub name: String,
    /// This step created it.
    pub created: bool,
}

impl EnsureZone {
    fn check_kind(&self, kind: &str) -> Result<(), ActivityError> {
        if kind.is_empty() || kind.eq_ignore_ascii_case("Native") {
            return Ok(());
        }
        Err(ActivityError::permanent(format!(
            "zone {} at {} is of kind {kind}, not Native: delete it or change it by hand",
            canonical_name(&self.name),
            self.api.describe()
        )))
    }
}

impl Activity for EnsureZone {
    type Output = ZoneOutput;

    fn kind(&self) -> &'static str {
        "dns-zone"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    async fn probe(&self, cx: &ActivityCx) -> Result<Option<ZoneOutput>, ActivityError> {
        let client = self.api.client(cx)?;
        match client.zone(&self.name).await? {
            Some(zone) => {
                self.check_kind(&zone.kind)?;
                Ok(Some(ZoneOutput {
                    name: canonical_name(&self.name),
                    created: false,
                }))
            }
            None => Ok(None),
        }
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<ZoneOutput, ActivityError> {
        if let Some(found) = self.probe(cx).await? {
            return Ok(found);
        }
        let client = self.api.client(cx)?;
        let created = client.create_zone(&self.name, &self.nameservers).await?;
        if !created {
            // 409: made meanwhile by someone else; it must still be a Native zone.
            let zone = client.zone(&self.name).await?.ok_or_else(|| {
                ActivityError::transient(format!(
                    "zone {} at {}: creating it answered 409, yet it is not there",
                    canonical_name(&self.name),
                    self.api.describe()
                ))
            })?;
            self.check_kind(&zone.kind)?;
        }
        Ok(ZoneOutput {
            name: canonical_name(&self.name),
            created,
        })
    }
}

/// A zone is gone, with all its records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteZone {
    pub api: PdnsApi,
    pub name: String,
}

impl Activity for DeleteZone {
    /// Whether this step deleted it (it existed).
    type Output = bool;

    fn kind(&self) -> &'static str {
        "dns-zone-delete"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    async fn probe(&self, cx: &ActivityCx) -> Result<Option<bool>, ActivityError> {
        let client = self.api.client(cx)?;
        Ok(client.zone(&self.name).await?.is_none().then_some(false))
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<bool, ActivityError> {
        self.api.client(cx)?.delete_zone(&self.name).await
    }
}

/// One kind of a zone's metadata holds exactly these values (order aside). Foundry keeps
/// what it must remember about a zone there, under kinds starting with `X-FOUNDRY-`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnsureZoneMetadata {
    pub api: PdnsApi,
    pub zone: String,
    pub kind: String,
    pub values: Vec<String>,
}

impl EnsureZoneMetadata {
    /// Whether the zone's metadata already holds the values; an error when there is no zone.
    async fn in_sync(&self, client: &super::api::Client) -> Result<bool, ActivityError> {
        let mut have = client
            .metadata(&self.zone, &self.kind)
            .await?
            .ok_or_else(|| {
                ActivityError::permanent(format!(
                    "zone {} does not exist at {}: ensure the zone before its metadata",
                    canonical_name(&self.zone),
                    self.api.describe()
                ))
            })?;
        let mut want = self.values.clone();
        have.sort();
        want.sort();
        Ok(have == want)
    }
}

impl Activity for EnsureZoneMetadata {
    /// Whether this step changed it.
    type Output = bool;

    fn kind(&self) -> &'static str {
        "dns-zone-metadata"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    async fn probe(&self, cx: &ActivityCx) -> Result<Option<bool>, ActivityError> {
        let client = self.api.client(cx)?;
        Ok(self.in_sync(&client).await?.then_some(false))
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<bool, ActivityError> {
        let client = self.api.client(cx)?;
        if self.in_sync(&client).await? {
            return Ok(false);
        }
        client
            .set_metadata(&self.zone, &self.kind, &self.values)
            .await?;
        Ok(true)
    }
}
