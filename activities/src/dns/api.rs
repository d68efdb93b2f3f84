//! The PowerDNS HTTP API client: what each call sends, and how each answer becomes a value
//! or a classified error.

use std::time::Duration;

use foundry_core::{ActivityCx, ActivityError, SecretRef};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Seconds one API request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// How much of an error body is quoted.
const QUOTE_MAX: usize = 300;

/// Where a PowerDNS API answers, and the reference of its key. Journaled: no secret here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PdnsApi {
    /// `http://10.77.0.53:8081`.
    pub url: String,
    pub api_key: SecretRef,
    /// The server id in the API's paths; PowerDNS has only `localhost`.
    #[serde(default = "default_server")]
    pub server: String,
}

fn default_server() -> String {
    "localhost".into()
}

impl PdnsApi {
    pub fn new(url: impl Into<String>, api_key: SecretRef) -> Self {
        PdnsApi {
            url: url.into(),
            api_key,
            server: default_server(),
        }
    }

    /// A client with the key revealed from the run's secret store.
    pub fn client(&self, cx: &ActivityCx) -> Result<Client, ActivityError> {
        let key = cx.reveal(&self.api_key).map_err(|e| {
            ActivityError::permanent(format!("the API key of {}: {}", self.url, e.message))
        })?;
        let mut headers = reqwest::header::HeaderMap::new();
        let mut value =
            reqwest::header::HeaderValue::from_str(key.expose().trim()).map_err(|_| {
                ActivityError::permanent(format!(
                    "the API key of {} ({}) is not a valid header value",
                    self.url, self.api_key
                ))
            })?;
        value.set_sensitive(true);
        headers.insert("X-API-Key", value);
        let http = crate::http::build(
            &self.url,
            crate::http::builder()
                .default_headers(headers)
                .timeout(REQUEST_TIMEOUT),
        )?;
        Ok(Client {
            http,
            base: format!(
                "{}/api/v1/servers/{}",
                self.url.trim_end_matches('/'),
                self.server
            ),
            url: self.url.clone(),
        })
    }
}

/// A zone as the zone list shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneSummary {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub serial: u64,
}

/// One record of an rrset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub content: String,
    #[serde(default)]
    pub disabled: bool,
}

/// A name and type with its records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rrset {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    #[serde(default)]
    pub ttl: u32,
    #[serde(default)]
    pub records: Vec<Record>,
}

/// A zone with its rrsets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Zone {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub serial: u64,
    #[serde(default)]
    pub rrsets: Vec<Rrset>,
}

impl Zone {
    /// The rrset at `name` of type `rtype`, names compared canonically.
    pub fn rrset(&self, name: &str, rtype: &str) -> Option<&Rrset> {
        let name = canonical_name(name);
        self.rrsets
            .iter()
            .find(|r| canonical_name(&r.name) == name && r.rtype.eq_ignore_ascii_case(rtype))
    }
}

/// A name as PowerDNS wants it and as names are compared: lower case, one trailing dot.
pub fn canonical_name(name: &str) -> String {
    format!(
        "{}.",
        name.trim().trim_end_matches('.').to_ascii_lowercase()
    )
}

/// A PowerDNS API, reachable with its key.
pub struct Client {
    http: reqwest::Client,
    base: String,
    url: String,
}

/// The zone's id in a path: its canonical name, with `/` escaped as PowerDNS does.
fn zone_path(zone: &str) -> String {
    format!("zones/{}", canonical_name(zone).replace('/', "=2F"))
}

impl Client {
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, String), ActivityError> {
        let url = match path {
            "" => self.base.clone(),
            _ => format!("{}/{path}", self.base),
        };
        let mut request = self.http.request(method.clone(), &url);
        if let Some(body) = body {
            request = request.json(body);
        }
        let what = format!("{method} {url}");
        let response = request.send().await.map_err(|e| {
            // A refused or timed-out connection: the server may be starting.
            ActivityError::transient(format!("{what}: {}", without_url(&e)))
        })?;
        let status = response.status();
        if let Some(e) = crate::http::redirected(status, &what) {
            return Err(e);
        }
        let text = response
            .text()
            .await
            .map_err(|e| ActivityError::transient(format!("{what}: reading the answer: {e}")))?;
        Ok((status, text))
    }

    /// An answer that is not what the call expects, as an error: 5xx and 429 are worth
    /// another attempt; 401/403 name the key; 422 quotes what PowerDNS refused.
    fn refusal(&self, doing: &str, status: StatusCode, body: &str) -> ActivityError {
        let detail = quote(body);
        let message = match status.as_u16() {
            401 | 403 => format!(
                "{doing} at {}: the API refused the key ({status}){detail}",
                self.url
            ),
            422 => format!(
                "{doing} at {}: PowerDNS refused the data (422){detail}",
                self.url
            ),
            _ => format!("{doing} at {}: {status}{detail}", self.url),
        };
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            ActivityError::transient(message)
        } else {
            ActivityError::permanent(message)
        }
    }

    fn decode<T: DeserializeOwned>(&self, doing: &str, body: &str) -> Result<T, ActivityError> {
        serde_json::from_str(body).map_err(|e| {
            ActivityError::permanent(format!(
                "{doing} at {}: an answer that is not the API's JSON: {e}",
                self.url
            ))
        })
    }

    /// `GET servers/localhost`: the server's version.
    pub async fn version(&self) -> Result<String, ActivityError> {
        let doing = "reading the server's version";
        let (status, body) = self.send(Method::GET, "", None).await?;
        if status != StatusCode::OK {
            return Err(self.refusal(doing, status, &body));
        }
        let server: Value = self.decode(doing, &body)?;
        Ok(server["version"].as_str().unwrap_or_default().to_string())
    }

    pub async fn zones(&self) -> Result<Vec<ZoneSummary>, ActivityError> {
        let doing = "listing zones";
        let (status, body) = self.send(Method::GET, "zones", None).await?;
        if status != StatusCode::OK {
            return Err(self.refusal(doing, status, &body));
        }
        self.decode(doing, &body)
    }

    /// A zone with its rrsets, or `None` when the server has no such zone.
    pub async fn zone(&self, name: &str) -> Result<Option<Zone>, ActivityError> {
        let doing = format!("reading zone {}", canonical_name(name));
        let (status, body) = self.send(Method::GET, &zone_path(name), None).await?;
        match status {
            StatusCode::OK => self.decode(&doing, &body).map(Some),
            _ if no_such_zone(status, &body) => Ok(None),
            _ => Err(self.refusal(&doing, status, &body)),
        }
    }

    /// Creates a Native zone; `false` when it existed already (409).
    pub async fn create_zone(
        &self,
        name: &str,
        nameservers: &[String],
    ) -> Result<bool, ActivityError> {
        let name = canonical_name(name);
        let body = serde_json::json!({
            "name": name,
            "kind": "Native",
            "nameservers": nameservers.iter().map(|n| canonical_name(n)).collect::<Vec<_>>(),
        });
        let (status, text) = self.send(Method::POST, "zones", Some(&body)).await?;
        match status {
            StatusCode::CREATED => Ok(true),
            StatusCode::CONFLICT => Ok(false),
            _ => Err(self.refusal(&format!("creating zone {name}"), status, &text)),
        }
    }

    /// Deletes a zone; `false` when there was none.
    pub async fn delete_zone(&self, name: &str) -> Result<bool, ActivityError> {
        let doing = format!("deleting zone {}", canonical_name(name));
        let (status, body) = self.send(Method::DELETE, &zone_path(name), None).await?;
        match status {
            StatusCode::NO_CONTENT | StatusCode::OK => Ok(true),
            _ if no_such_zone(status, &body) => Ok(false),
            _ => Err(self.refusal(&doing, status, &body)),
        }
    }

    /// The values of one kind of a zone's metadata; empty when it has none, `None` when
    /// the server has no such zone.
    pub async fn metadata(
        &self,
        zone: &str,
        kind: &str,
    ) -> Result<Option<Vec<String>>, ActivityError> {
        let doing = format!("reading {kind} of zone {}", canonical_name(zone));
        let path = format!("{}/metadata/{kind}", zone_path(zone));
        let (status, body) = self.send(Method::GET, &path, None).await?;
        match status {
            StatusCode::OK => {
                let found: Value = self.decode(&doing, &body)?;
                Ok(Some(
                    found["metadata"]
                        .as_array()
                        .map(|values| {
                            values
                                .iter()
                                .filter_map(|v| v.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default(),
                ))
            }
            _ if no_such_zone(status, &body) => Ok(None),
            _ => Err(self.refusal(&doing, status, &body)),
        }
    }

    /// Replaces one kind of a zone's metadata with these values (PowerDNS keeps any kind
    /// starting with `X-` as given).
    pub async fn set_metadata(
        &self,
        zone: &str,
        kind: &str,
        values: &[String],
    ) -> Result<(), ActivityError> {
        let doing = format!("setting {kind} of zone {}", canonical_name(zone));
        let path = format!("{}/metadata/{kind}", zone_path(zone));
        let body = serde_json::json!({ "kind": kind, "metadata": values });
        let (status, text) = self.send(Method::PUT, &path, Some(&body)).await?;
        match status {
            StatusCode::OK | StatusCode::NO_CONTENT => Ok(()),
            _ => Err(self.refusal(&doing, status, &text)),
        }
    }

    /// Replaces one rrset with these records (`None`: deletes it).
    pub async fn patch_rrset(
        &self,
        zone: &str,
        name: &str,
        rtype: &str,
        change: Option<(u32, &[String])>,
    ) -> Result<(), ActivityError> {
        let name = canonical_name(name);
        let rtype = rtype.to_ascii_uppercase();
        let rrset = match change {
            Some((ttl, contents)) => serde_json::json!({
                "name": name, "type": rtype, "ttl": ttl, "changetype": "REPLACE",
                "records": contents.iter()
                    .map(|c| serde_json::json!({"content": c, "disabled": false}))
                    .collect::<Vec<_>>(),
            }),
            None => serde_json::json!({"name": name, "type": rtype, "changetype": "DELETE"}),
        };
        let body = serde_json::json!({ "rrsets": [rrset] });
        let doing = format!("changing {name} {rtype} in zone {}", canonical_name(zone));
        let (status, text) = self
            .send(Method::PATCH, &zone_path(zone), Some(&body))
            .await?;
        match status {
            StatusCode::NO_CONTENT | StatusCode::OK => Ok(()),
            _ => Err(self.refusal(&doing, status, &text)),
        }
    }
}

/// A reqwest error without its URL (the caller names the request already).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(&format!(" ({url})"), "");
        text = text.replace(url.as_str(), "the API");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// The API's error body, quoted: its JSON `error` field, or its text, shortened.
fn quote(body: &str) -> String {
    let text = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.trim().to_string());
    if text.is_empty() {
        return String::new();
    }
    let short: String = text.chars().take(QUOTE_MAX).collect();
    let more = if short.len() < text.len() { "…" } else { "" };
    format!(": \"{short}{more}\"")
}

/// Whether PowerDNS says the zone does not exist: 4.7 answers 404, older ones 422
/// "Could not find domain".
fn no_such_zone(status: StatusCode, body: &str) -> bool {
    status == StatusCode::NOT_FOUND
        || (status == StatusCode::UNPROCESSABLE_ENTITY && body.contains("Could not find domain"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_canonical_with_one_trailing_dot_in_lower_case() {
        assert_eq!(
            canonical_name("Web.Lab.Example.COM"),
            "web.lab.example.com."
        );
        assert_eq!(
            canonical_name("web.lab.example.com."),
            "web.lab.example.com."
        );
        assert_eq!(zone_path("lab.local"), "zones/lab.local.");
    }

    #[test]
    fn an_error_body_is_quoted_from_its_json_error_field() {
        assert_eq!(
            quote(r#"{"error": "RRset web.lab. IN A: Name is out of zone"}"#),
            ": \"RRset web.lab. IN A: Name is out of zone\""
        );
        assert_eq!(quote("Conflict"), ": \"Conflict\"");
        assert_eq!(quote(""), "");
    }
}
