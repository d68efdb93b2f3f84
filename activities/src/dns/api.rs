//! The PowerDNS HTTP API client: what each call sends, and how each answer becomes a value
//! or a classified error.
//!
//! PowerDNS's API has no TLS of its own, so it listens on its container's own loopback
//! only, and each request reaches it through the Engine that runs the container: a relay
//! kept running in the container for the process (`relay.rs`) carries each request to the
//! API over a connection of its own. Over an SSH endpoint the Engine is reached through the
//! host's SSH connection, so the key in the request's header never crosses a network in
//! clear, and no proxy setting or redirect can send it elsewhere.

use std::time::Duration;

use bytes::Bytes;
use foundry_core::{ActivityCx, ActivityError, SecretRef};
use hyper::header::{
    ACCEPT, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderValue, TRANSFER_ENCODING,
};
use hyper::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::relay;
use crate::container::Endpoint;

/// Seconds one API request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// How much of an error body is quoted.
const QUOTE_MAX: usize = 300;
/// The port the API listens on in its container, by default.
pub const API_PORT: u16 = 8081;

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
            .body(body)
            .map_err(|e| ActivityError::permanent(format!("{what}: {e}")))?;
        match tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(&what, request)).await {
            Ok(answer) => answer,
            Err(_) => Err(ActivityError::transient(format!(
                "{what}: no answer within {} s",
                REQUEST_TIMEOUT.as_secs()
            ))),
        }
    }

    /// One request through the server's relay.
    async fn exchange(
        &self,
        what: &str,
        request: hyper::Request<Bytes>,
    ) -> Result<(StatusCode, String), ActivityError> {
        let target = relay::Target {
            endpoint: self.api.endpoint.clone(),
            container: self.api.container.clone(),
            port: self.api.port,
        };
        let answer = relay::exchange(&target, what, encode(request)).await?;
        let (status, body) = decode(&answer)
            .map_err(|e| ActivityError::transient(format!("{what}: reading the answer: {e}")))?;
        if let Some(e) = crate::http::redirected(status, what) {
            return Err(e);
        }
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
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

/// A request as HTTP/1.1 puts it on the wire: its line, its headers, a `Content-Length`
/// when it has a body or its method expects one, and its body.
fn encode(request: hyper::Request<Bytes>) -> Vec<u8> {
    let (parts, body) = request.into_parts();
    let mut out = Vec::with_capacity(512 + body.len());
    out.extend_from_slice(format!("{} {} HTTP/1.1\r\n", parts.method, parts.uri).as_bytes());
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !body.is_empty() || matches!(parts.method, Method::POST | Method::PUT | Method::PATCH) {
        out.extend_from_slice(format!("{CONTENT_LENGTH}: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
    out
}

/// How many header lines an answer may have.
const HEADERS_MAX: usize = 64;

/// An answer as the API sent it, whole (its connection closed after it): its status and
/// body, by its `Content-Length`, in chunks, or up to its end.
fn decode(answer: &[u8]) -> Result<(StatusCode, Vec<u8>), String> {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(answer) {
        Ok(httparse::Status::Complete(head)) => head,
        Ok(httparse::Status::Partial) => return Err("the answer ends within its head".into()),
        Err(e) => return Err(format!("not an HTTP answer: {e}")),
    };
    let code = response.code.unwrap_or_default();
    let status = StatusCode::from_u16(code).map_err(|_| format!("a status of {code}"))?;
    let header = |name: &hyper::header::HeaderName| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name.as_str()))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    let rest = &answer[head..];
    if header(&TRANSFER_ENCODING).is_some_and(|t| t.ends_with("chunked")) {
        return dechunk(rest).map(|body| (status, body));
    }
    match header(&CONTENT_LENGTH) {
        Some(length) => {
            let length: usize = length
                .parse()
                .map_err(|_| format!("a Content-Length of {length:?}"))?;
            let body = rest.get(..length).ok_or_else(|| {
                format!("the body ends after {} of its {length} bytes", rest.len())
            })?;
            Ok((status, body.to_vec()))
        }
        None => Ok((status, rest.to_vec())),
    }
}

/// A body sent in chunks, joined.
fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("a chunk's size line has no end")?;
        let line = String::from_utf8_lossy(&rest[..end]);
        let hex = line.split(';').next().unwrap_or_default().trim();
        let size =
            usize::from_str_radix(hex, 16).map_err(|_| format!("a chunk size of {hex:?}"))?;
        rest = &rest[end + 2..];
        if size == 0 {
            return Ok(body);
        }
        let chunk = rest.get(..size).ok_or("the body ends within a chunk")?;
        body.extend_from_slice(chunk);
        rest = rest.get(size + 2..).ok_or("the body ends within a chunk")?;
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
    fn a_request_is_put_on_the_wire_with_its_length_and_body() {
        let request = hyper::Request::builder()
            .method(Method::PATCH)
            .uri("/api/v1/servers/localhost/zones/lab.local.")
            .header(HOST, "127.0.0.1:8081")
            .header("X-API-Key", "k")
            .body(Bytes::from_static(b"{}"))
            .expect("request");
        assert_eq!(
            String::from_utf8(encode(request)).expect("utf8"),
            "PATCH /api/v1/servers/localhost/zones/lab.local. HTTP/1.1\r\nhost: 127.0.0.1:8081\r\n\
             x-api-key: k\r\ncontent-length: 2\r\n\r\n{}"
        );
        let get = hyper::Request::builder()
            .uri("/api/v1/servers/localhost")
            .body(Bytes::new())
            .expect("request");
        assert_eq!(
            String::from_utf8(encode(get)).expect("utf8"),
            "GET /api/v1/servers/localhost HTTP/1.1\r\n\r\n"
        );
    }

    #[test]
    fn an_answer_is_read_by_its_length_in_chunks_or_to_its_end() {
        let by_length = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
        assert_eq!(
            decode(by_length).expect("answer"),
            (StatusCode::OK, b"{}".to_vec())
        );
        let chunked =
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{\"\r\n3;x=y\r\na\"}\r\n0\r\n\r\n";
        assert_eq!(
            decode(chunked).expect("answer"),
            (StatusCode::CREATED, b"{\"a\"}".to_vec())
        );
        let to_the_end = b"HTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(
            decode(to_the_end).expect("answer"),
            (StatusCode::NO_CONTENT, Vec::new())
        );
        let short = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{}";
        assert_eq!(
            decode(short).expect_err("short"),
            "the body ends after 2 of its 5 bytes"
        );
        assert_eq!(
            decode(b"HTTP/1.1 200 OK\r\nContent-Le").expect_err("partial"),
            "the answer ends within its head"
        );
        assert!(decode(b"\x00garbage\r\n\r\n").is_err());
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
