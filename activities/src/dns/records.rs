//! One rrset (a name and type with its records) in a zone: ensured or deleted. A PATCH
//! bumps the zone's serial even when it changes nothing, so the live rrset is compared
//! first, canonically, and only a real difference is sent.

use foundry_core::{Activity, ActivityCx, ActivityError, InDoubt, Stream};
use serde::{Deserialize, Serialize};

use super::api::{Client, PdnsApi, Rrset, canonical_name};

/// Record types whose content is (or ends with) a domain name.
const NAME_TYPES: [&str; 6] = ["CNAME", "NS", "PTR", "DNAME", "MX", "SRV"];

/// The rrset `name`/`type` holds exactly these records with this TTL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnsureRecords {
    pub api: PdnsApi,
    pub zone: String,
    /// The owner name, fully qualified (`web.lab.example.com`).
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    pub ttl: u32,
    pub contents: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordsOutput {
    /// `web.lab.example.com./A`.
    pub rrset: String,
    /// This step sent a change (the rrset differed or was missing).
    pub changed: bool,
}

/// A record's content as it is compared and sent: a domain name in it canonical (lower
/// case, trailing dot); TXT as given; anything else trimmed and in lower case (an AAAA's
/// hex digits).
pub fn canonical_content(rtype: &str, content: &str) -> String {
    let rtype = rtype.to_ascii_uppercase();
    let content = content.trim();
    if rtype == "TXT" || rtype == "SPF" {
        return content.to_string();
    }
    if NAME_TYPES.contains(&rtype.as_str()) {
        // MX and SRV end with the target: the name is the last word.
        return match content.rsplit_once(char::is_whitespace) {
            Some((head, target)) => format!(
                "{} {}",
                head.split_whitespace().collect::<Vec<_>>().join(" "),
                canonical_name(target)
            ),
            None => canonical_name(content),
        };
    }
    content.to_ascii_lowercase()
}

impl EnsureRecords {
    fn label(&self) -> String {
        format!(
            "{}/{}",
            canonical_name(&self.name),
            self.rtype.to_ascii_uppercase()
        )
    }

    fn wanted(&self) -> Vec<String> {
        let mut contents: Vec<String> = self
            .contents
            .iter()
            .map(|c| canonical_content(&self.rtype, c))
            .collect();
        contents.sort();
        contents.dedup();
        contents
    }

    /// Whether the live rrset is already what is wanted (order and case aside).
    fn matches(&self, live: Option<&Rrset>) -> bool {
        let Some(live) = live else {
            return false;
        };
        let mut have: Vec<String> = live
            .records
            .iter()
            .filter(|r| !r.disabled)
            .map(|r| canonical_content(&self.rtype, &r.content))
            .collect();
        have.sort();
        have.dedup();
        let all_enabled = live.records.iter().all(|r| !r.disabled);
        live.ttl == self.ttl && all_enabled && have == self.wanted()
    }

    async fn in_sync(&self, client: &Client) -> Result<bool, ActivityError> {
        let zone = client.zone(&self.zone).await?.ok_or_else(|| {
            ActivityError::permanent(format!(
                "zone {} does not exist at {}: ensure the zone before its records",
                canonical_name(&self.zone),
                self.api.describe()
            ))
        })?;
        Ok(self.matches(zone.rrset(&self.name, &self.rtype)))
    }
}

impl Activity for EnsureRecords {
    type Output = RecordsOutput;

    fn kind(&self) -> &'static str {
        "dns-records"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    async fn probe(&self, cx: &ActivityCx) -> Result<Option<RecordsOutput>, ActivityError> {
        let client = self.api.client(cx)?;
        Ok(self.in_sync(&client).await?.then(|| RecordsOutput {
            rrset: self.label(),
            changed: false,
        }))
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<RecordsOutput, ActivityError> {
        if self.contents.is_empty() {
            return Err(ActivityError::permanent(format!(
                "{}: no records given (delete the rrset instead)",
                self.label()
            )));
        }
        let client = self.api.client(cx)?;
        let changed = !self.in_sync(&client).await?;
        if changed {
            let wanted = self.wanted();
            client
                .patch_rrset(
                    &self.zone,
                    &self.name,
                    &self.rtype,
                    Some((self.ttl, &wanted)),
                )
                .await?;
            cx.output(Stream::Stdout, format!("patched {}", self.label()));
        } else {
            cx.output(Stream::Stdout, format!("in sync {}", self.label()));
        }
        Ok(RecordsOutput {
            rrset: self.label(),
            changed,
        })
    }
}

/// The rrset `name`/`type` is gone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRecords {
    pub api: PdnsApi,
    pub zone: String,
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
}

impl DeleteRecords {
    /// Whether the rrset is there; a missing zone has none.
    async fn present(&self, client: &Client) -> Result<bool, ActivityError> {
        Ok(client
            .zone(&self.zone)
            .await?
            .is_some_and(|z| z.rrset(&self.name, &self.rtype).is_some()))
    }
}

impl Activity for DeleteRecords {
    /// Whether this step deleted it (it was there).
    type Output = bool;

    fn kind(&self) -> &'static str {
        "dns-records-delete"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    async fn probe(&self, cx: &ActivityCx) -> Result<Option<bool>, ActivityError> {
        let client = self.api.client(cx)?;
        Ok((!self.present(&client).await?).then_some(false))
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<bool, ActivityError> {
        let client = self.api.client(cx)?;
        if !self.present(&client).await? {
            return Ok(false);
        }
        client
            .patch_rrset(&self.zone, &self.name, &self.rtype, None)
            .await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::api::Record;
    use foundry_core::SecretRef;

    fn ensure(rtype: &str, contents: &[&str]) -> EnsureRecords {
        EnsureRecords {
            api: PdnsApi::new(
                crate::container::Endpoint::default(),
                "foundry-dns-internal",
                SecretRef("local:x".into()),
            ),
            zone: "lab.example.com".into(),
            name: "web.lab.example.com".into(),
            rtype: rtype.into(),
            ttl: 300,
            contents: contents.iter().map(|c| c.to_string()).collect(),
        }
    }

    fn live(rtype: &str, ttl: u32, contents: &[&str]) -> Rrset {
        Rrset {
            name: "WEB.lab.example.com.".into(),
            rtype: rtype.into(),
            ttl,
            records: contents
                .iter()
                .map(|c| Record {
                    content: c.to_string(),
                    disabled: false,
                })
                .collect(),
        }
    }

    #[test]
    fn contents_compare_without_order_case_or_trailing_dots() {
        let want = ensure("A", &["10.0.0.2", "10.0.0.1"]);
        assert!(want.matches(Some(&live("A", 300, &["10.0.0.1", "10.0.0.2"]))));
        assert!(!want.matches(Some(&live("A", 60, &["10.0.0.1", "10.0.0.2"]))));
        assert!(!want.matches(Some(&live("A", 300, &["10.0.0.1"]))));
        assert!(!want.matches(None));
        let cname = ensure("CNAME", &["Home.Example.NET"]);
        assert!(cname.matches(Some(&live("CNAME", 300, &["home.example.net."]))));
        let mx = ensure("MX", &["10  Mail.example.com"]);
        assert!(mx.matches(Some(&live("MX", 300, &["10 mail.example.com."]))));
        let txt = ensure("TXT", &["\"Hello\""]);
        assert!(!txt.matches(Some(&live("TXT", 300, &["\"hello\""]))));
    }
}
