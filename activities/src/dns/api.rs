//! The PowerDNS HTTP API client: what each call sends, and how each answer becomes a value
//! or a classified error.
//!
//! PowerDNS's API has no TLS of its own, so it listens on its container's own loopback
//! only, and each request reaches it through the Engine that runs the container: a relay
//! started in the container (`exec`, stdin and stdout joined to `127.0.0.1:PORT`) carries
//! one HTTP/1.1 exchange. Over an SSH endpoint the Engine is reached through the host's
//! SSH connection, so the key in the request's header never crosses a network in clear,
//! and no proxy setting or redirect can send it elsewhere.

use std::time::Duration;

use bollard::Docker;
use bytes::Bytes;
use foundry_core::{ActivityCx, ActivityError, SecretRef};
use http_body_util::{BodyExt, Full};
use hyper::header::{ACCEPT, CONNECTION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::container::Endpoint;

/// Seconds one API request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// How much of an error body is quoted.
const QUOTE_MAX: usize = 300;
/// The port the API listens on in its container, by default.
pub const API_PORT: u16 = 8081;

/// The relay run in the server's container for each request: its stdin and stdout joined
/// to the API on the container's loopback (bash's `/dev/tcp`, which PowerDNS's Debian
/// images have). Arguments: the address and the port.
const RELAY: &str = r#"exec 3<>"/dev/tcp/$1/$2" || exit 111
cat <&3 &
cat >&3
kill "$!" 2>/dev/null
wait"#;

/// Where a PowerDNS API answers, and the reference of its key. Journaled: no secret here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PdnsApi {
    /// The Engine that runs the server's container.
    pub endpoint: Endpoint,
    /// The server's container; the API listens on its loopback.
    pub container: String,
    #[serde(default = "default_port")]
    pub port: u16,
    pub api_key: SecretRef,
    /// The server id in the API's paths; PowerDNS has only `localhost`.
    #[serde(default = "default_server")]
    pub server: String,
}

fn default_server() -> String {
    "localhost".into()
}

fn default_port() -> u16 {
    API_PORT
}

impl PdnsApi {
    pub fn new(endpoint: Endpoint, container: impl Into<String>, api_key: SecretRef) -> Self {
        PdnsApi {
            endpoint,
            container: container.into(),
            port: API_PORT,
            api_key,
            server: default_server(),
        }
    }

    /// The API, for people: `the API of foundry-dns-internal`.
    pub fn describe(&self) -> String {
        format!("the API of {}", self.container)
    }

    /// A client with the key revealed from the run's secret store.
    pub fn client(&self, cx: &ActivityCx) -> Result<Client, ActivityError> {
        let place = self.describe();
        let key = cx
            .reveal(&self.api_key)
            .map_err(|e| ActivityError::permanent(format!("the key of {place}: {}", e.message)))?;
        let mut header = HeaderValue::from_str(key.expose().trim()).map_err(|_| {
            ActivityError::permanent(format!(
                "the key of {place} ({}) is not a valid header value",
                self.api_key
            ))
        })?;
        header.set_sensitive(true);
        Ok(Client {
            api: self.clone(),
            key: header,
            base: format!("/api/v1/servers/{}", self.server),
            url: place,
            docker: tokio::sync::OnceCell::new(),
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
    api: PdnsApi,
    key: HeaderValue,
    /// The path every call's path is under.
    base: String,
    /// The API, named in errors.
    url: String,
    /// The Engine's client, made on the first call.
    docker: tokio::sync::OnceCell<Docker>,
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
        let path = match path {
            "" => self.base.clone(),
            _ => format!("{}/{path}", self.base),
        };
        let what = format!("{method} {path} at {}", self.url);
        let body = match body {
            Some(body) => Bytes::from(serde_json::to_vec(body).map_err(|e| {
                ActivityError::permanent(format!("{what}: encoding the request: {e}"))
            })?),
            None => Bytes::new(),
        };
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(&path)
            .header(HOST, format!("127.0.0.1:{}", self.api.port))
            .header(ACCEPT, "application/json")
            .header(CONNECTION, "close")
            .header("X-API-Key", self.key.clone());
        if !body.is_empty() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| ActivityError::permanent(format!("{what}: {e}")))?;
        match tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(&what, request)).await {
            Ok(answer) => answer,
            Err(_) => Err(ActivityError::transient(format!(
                "{what}: no answer within {} s",
                REQUEST_TIMEOUT.as_secs()
            ))),
        }
    }

    /// One request through a relay started in the server's container.
    async fn exchange(
        &self,
        what: &str,
        request: hyper::Request<Full<Bytes>>,
    ) -> Result<(StatusCode, String), ActivityError> {
        let docker = self
            .docker
            .get_or_try_init(|| self.api.endpoint.connect())
            .await?;
        let port = self.api.port.to_string();
        let stream = self
            .api
            .endpoint
            .exec_stream(
                docker,
                &self.api.container,
                &["bash", "-c", RELAY, "foundry-pdns-api", "127.0.0.1", &port],
            )
            .await
            .map_err(|e| ActivityError {
                message: format!("{what}: {}", e.message),
                ..e
            })?;
        let stderr = stream.stderr_handle();
        // A relay that could not connect ends without an answer; what it said is why.
        let broken = |e: hyper::Error| {
            let said = stderr.text();
            let why = match said.is_empty() {
                true => e.to_string(),
                false => said.lines().last().unwrap_or_default().to_string(),
            };
            ActivityError::transient(format!("{what}: the API does not answer: {why}"))
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(&broken)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "a PowerDNS API exchange ended");
            }
        });
        let response = sender.send_request(request).await.map_err(&broken)?;
        let status = response.status();
        if let Some(e) = crate::http::redirected(status, what) {
            return Err(e);
        }
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| ActivityError::transient(format!("{what}: reading the answer: {e}")))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
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
