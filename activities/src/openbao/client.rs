//! A small client of OpenBAO's HTTP API (the Vault API): only the calls Foundry makes.
//! Tokens travel in the `X-Vault-Token` header and never appear in an error message; an
//! error quotes only the `errors` OpenBAO answered.

use foundry_core::{ActivityError, SecretValue};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::http;

/// The path that tells a token what OpenBAO knows of it.
const LOOKUP_SELF: &str = "auth/token/lookup-self";

/// OpenBAO at an address such as `http://10.77.3.20:8200`.
#[derive(Clone, Debug)]
pub struct BaoClient {
    addr: String,
    http: reqwest::Client,
}

/// What `sys/health` says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub initialized: bool,
    pub sealed: bool,
    /// Unsealed but not (yet) the active node: it cannot serve requests.
    #[serde(default)]
    pub standby: bool,
    #[serde(default)]
    pub version: String,
}

/// What `sys/seal-status` and `sys/unseal` say.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct SealStatus {
    pub initialized: bool,
    pub sealed: bool,
    /// Keys needed to unseal.
    #[serde(rename = "t")]
    pub threshold: u32,
    /// Keys given so far.
    pub progress: u32,
}

/// A secret engine mounted at a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub kind: String,
    /// The `version` option (`"2"` for KV v2), if any.
    pub version: Option<String>,
}

/// An answer: its status and its body as JSON (`Null` when empty).
struct Answer {
    status: StatusCode,
    body: Value,
}

/// Where the home keeps the stack's CA certificate, the one OpenBAO clients pin.
pub const CA_CERT_PATH: &str = "tls/ca.crt";

impl BaoClient {
    /// OpenBAO at `addr`: `https://`, with the stack's CA of the home `$FOUNDRY_HOME` as
    /// the only root of trust; `http://` only on loopback.
    pub fn new(addr: &str) -> Result<BaoClient, ActivityError> {
        match transport(addr)? {
            Transport::Plain => BaoClient::build(addr, None),
            Transport::Tls => {
                let home = foundry_core::Home::from_env()
                    .map_err(|e| ActivityError::permanent(format!("OpenBAO at {addr}: {e}")))?;
                let path = home.root().join(CA_CERT_PATH);
                let ca = std::fs::read(&path).map_err(|e| {
                    ActivityError::permanent(format!(
                        "OpenBAO at {addr}: reading the stack's CA {}: {e}\n\
                         hint: OpenBAO's install makes it; install OpenBAO with this home first",
                        path.display()
                    ))
                })?;
                BaoClient::build(addr, Some(&ca))
            }
        }
    }

    /// OpenBAO at `addr`, trusting only the CA certificate `ca_pem` (PEM) for `https://`.
    pub fn pinned(addr: &str, ca_pem: &[u8]) -> Result<BaoClient, ActivityError> {
        transport(addr)?;
        BaoClient::build(addr, Some(ca_pem))
    }

    fn build(addr: &str, ca_pem: Option<&[u8]>) -> Result<BaoClient, ActivityError> {
        let mut builder = http::builder();
        if let Some(pem) = ca_pem {
            let not_pem = |e: String| {
                ActivityError::permanent(format!(
                    "OpenBAO at {addr}: the CA certificate to pin is not a PEM certificate{e}"
                ))
            };
            let cas = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| not_pem(format!(": {e}")))?;
            if cas.is_empty() {
                return Err(not_pem(String::new()));
            }
            builder = builder.tls_built_in_root_certs(false).https_only(true);
            for ca in cas {
                builder = builder.add_root_certificate(ca);
            }
        }
        Ok(BaoClient {
            addr: addr.trim_end_matches('/').to_string(),
            http: http::build(addr, builder)?,
        })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&SecretValue>,
        body: Option<Value>,
    ) -> Result<Answer, ActivityError> {
        let url = format!("{}/v1/{path}", self.addr);
        let mut request = self.http.request(method.clone(), &url);
        if let Some(token) = token {
            request = request.header("X-Vault-Token", token.expose());
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| {
            ActivityError::transient(format!(
                "{method} {path} at {}: {}",
                self.addr,
                http::without_url(&e)
            ))
        })?;
        let status = response.status();
        if let Some(e) = http::redirected(status, &format!("{method} {path} at {}", self.addr)) {
            return Err(e);
        }
        let text = response.text().await.map_err(|e| {
            ActivityError::transient(format!(
                "{method} {path} at {}: reading the answer: {}",
                self.addr,
                http::without_url(&e)
            ))
        })?;
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::Null)
        };
        Ok(Answer { status, body })
    }

    /// `call`, with any answer but a success refused as `what`.
    async fn succeeded(
        &self,
        what: &str,
        method: Method,
        path: &str,
        token: Option<&SecretValue>,
        body: Option<Value>,
    ) -> Result<Answer, ActivityError> {
        let answer = self.call(method, path, token, body).await?;
        if !answer.status.is_success() {
            return Err(self.refused(what, &answer));
        }
        Ok(answer)
    }

    /// An answer that is not what the call expects, as an error: a 5xx (and 429) is worth
    /// another attempt, anything else is not.
    fn refused(&self, what: &str, answer: &Answer) -> ActivityError {
        let errors: Vec<String> = answer.body["errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let detail = match errors.is_empty() {
            true => String::new(),
            false => format!(": {}", errors.join("; ")),
        };
        let message = format!("{what} at {}: {}{detail}", self.addr, answer.status);
        http::refused(answer.status, message)
    }

    fn decode<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        body: Value,
    ) -> Result<T, ActivityError> {
        serde_json::from_value(body).map_err(|e| {
            ActivityError::permanent(format!("{what} at {}: unexpected answer: {e}", self.addr))
        })
    }

    /// `sys/health`, whatever state the server is in (it answers 501 before init, 503
    /// while sealed).
    pub async fn health(&self) -> Result<Health, ActivityError> {
        let what = "GET sys/health";
        let answer = self
            .succeeded(
                what,
                Method::GET,
                "sys/health?standbyok=true&perfstandbyok=true&sealedcode=200&uninitcode=200",
                None,
                None,
            )
            .await?;
        self.decode(what, answer.body)
    }

    /// Whether the server is initialized (`GET sys/init`).
    pub async fn init_status(&self) -> Result<bool, ActivityError> {
        let what = "GET sys/init";
        let answer = self
            .succeeded(what, Method::GET, "sys/init", None, None)
            .await?;
        answer.body["initialized"].as_bool().ok_or_else(|| {
            ActivityError::permanent(format!(
                "{what} at {}: the answer does not say whether it is initialized",
                self.addr
            ))
        })
    }

    pub async fn seal_status(&self) -> Result<SealStatus, ActivityError> {
        let what = "GET sys/seal-status";
        let answer = self
            .succeeded(what, Method::GET, "sys/seal-status", None, None)
            .await?;
        self.decode(what, answer.body)
    }

    /// Seals the server (`PUT sys/seal`, root's right).
    pub async fn seal(&self, token: &SecretValue) -> Result<(), ActivityError> {
        let what = "PUT sys/seal";
        self.succeeded(what, Method::PUT, "sys/seal", Some(token), None)
            .await?;
        Ok(())
    }

    /// Gives one unseal key; the seal status after it.
    pub async fn unseal(&self, key: &SecretValue) -> Result<SealStatus, ActivityError> {
        let what = "PUT sys/unseal";
        let body = json!({"key": key.expose()});
        let answer = self
            .succeeded(what, Method::PUT, "sys/unseal", None, Some(body))
            .await?;
        self.decode(what, answer.body)
    }

    /// Forgets the keys given so far (`sys/unseal` with `reset`).
    pub async fn unseal_reset(&self) -> Result<(), ActivityError> {
        let what = "PUT sys/unseal (reset)";
        let body = json!({"reset": true});
        self.succeeded(what, Method::PUT, "sys/unseal", None, Some(body))
            .await?;
        Ok(())
    }

    /// The secret engine mounted at `path`, if any.
    pub async fn mount(
        &self,
        token: &SecretValue,
        path: &str,
    ) -> Result<Option<Mount>, ActivityError> {
        let what = format!("GET sys/mounts/{path}");
        let answer = self
            .call(
                Method::GET,
                &format!("sys/mounts/{path}"),
                Some(token),
                None,
            )
            .await?;
        // An absent mount answers 400 "No secret engine mount at …".
        if answer.status == StatusCode::BAD_REQUEST || answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !answer.status.is_success() {
            return Err(self.refused(&what, &answer));
        }
        let data = match answer.body.get("data") {
            Some(d) if d.is_object() => d.clone(),
            _ => answer.body,
        };
        Ok(Some(Mount {
            kind: data["type"].as_str().unwrap_or_default().to_string(),
            version: data["options"]["version"].as_str().map(str::to_string),
        }))
    }

    /// Mounts KV version 2 at `path`.
    pub async fn mount_kv2(&self, token: &SecretValue, path: &str) -> Result<(), ActivityError> {
        let what = format!("POST sys/mounts/{path}");
        let body = json!({"type": "kv", "options": {"version": "2"}});
        let answer = self
            .call(
                Method::POST,
                &format!("sys/mounts/{path}"),
                Some(token),
                Some(body),
            )
            .await?;
        if !answer.status.is_success() {
            return Err(self.refused(&what, &answer));
        }
        Ok(())
    }

    /// An ACL policy's text, if it exists.
    pub async fn policy(
        &self,
        token: &SecretValue,
        name: &str,
    ) -> Result<Option<String>, ActivityError> {
        let what = format!("GET sys/policies/acl/{name}");
        let answer = self
            .call(
                Method::GET,
                &format!("sys/policies/acl/{name}"),
                Some(token),
                None,
            )
            .await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !answer.status.is_success() {
            return Err(self.refused(&what, &answer));
        }
        Ok(answer.body["data"]["policy"].as_str().map(str::to_string))
    }

    pub async fn put_policy(
        &self,
        token: &SecretValue,
        name: &str,
        rules: &str,
    ) -> Result<(), ActivityError> {
        let what = format!("PUT sys/policies/acl/{name}");
        let answer = self
            .call(
                Method::PUT,
                &format!("sys/policies/acl/{name}"),
                Some(token),
                Some(json!({"policy": rules})),
            )
            .await?;
        if !answer.status.is_success() {
            return Err(self.refused(&what, &answer));
        }
        Ok(())
    }

    /// A new periodic token with `policies` and no parent (so it outlives the token that
    /// made it); the token itself.
    pub async fn create_token(
        &self,
        token: &SecretValue,
        policies: &[String],
        display_name: &str,
        period: &str,
    ) -> Result<SecretValue, ActivityError> {
        let body = json!({
            "policies": policies,
            "no_parent": true,
            "no_default_policy": false,
            "display_name": display_name,
            "period": period,
        });
        self.create_token_with(token, body).await
    }

    /// A new token made with `options` as `auth/token/create` takes them; the token itself.
    pub async fn create_token_with(
        &self,
        token: &SecretValue,
        options: Value,
    ) -> Result<SecretValue, ActivityError> {
        let what = "POST auth/token/create";
        let answer = self
            .succeeded(
                what,
                Method::POST,
                "auth/token/create",
                Some(token),
                Some(options),
            )
            .await?;
        answer.body["auth"]["client_token"]
            .as_str()
            .map(SecretValue::new)
            .ok_or_else(|| {
                ActivityError::permanent(format!(
                    "{what} at {}: the answer holds no token",
                    self.addr
                ))
            })
    }

    /// What OpenBAO says of a token (`lookup-self`'s `data`), or `None` when it does not
    /// know the token (403: revoked or expired).
    async fn lookup_self_data(&self, token: &SecretValue) -> Result<Option<Value>, ActivityError> {
        let answer = self
            .call(Method::GET, LOOKUP_SELF, Some(token), None)
            .await?;
        if answer.status == StatusCode::FORBIDDEN {
            return Ok(None);
        }
        if !answer.status.is_success() {
            return Err(self.refused(&format!("GET {LOOKUP_SELF}"), &answer));
        }
        Ok(Some(answer.body["data"].clone()))
    }

    /// The policies of a token, or `None` when OpenBAO does not know it (403).
    pub async fn lookup_self(
        &self,
        token: &SecretValue,
    ) -> Result<Option<Vec<String>>, ActivityError> {
        let Some(data) = self.lookup_self_data(token).await? else {
            return Ok(None);
        };
        let policies = data["policies"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some(policies))
    }

    /// Writes a KV v2 secret at `mount`/`path`.
    pub async fn kv_put(
        &self,
        token: &SecretValue,
        mount: &str,
        path: &str,
        data: &Value,
    ) -> Result<(), ActivityError> {
        let at = format!("{mount}/data/{path}");
        let answer = self
            .call(Method::POST, &at, Some(token), Some(json!({"data": data})))
            .await?;
        if !answer.status.is_success() {
            return Err(self.refused(&format!("POST {at}"), &answer));
        }
        Ok(())
    }

    /// A KV v2 secret's current data, or `None` when there is none (or it was deleted).
    pub async fn kv_get(
        &self,
        token: &SecretValue,
        mount: &str,
        path: &str,
    ) -> Result<Option<Value>, ActivityError> {
        let at = format!("{mount}/data/{path}");
        let answer = self.call(Method::GET, &at, Some(token), None).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !answer.status.is_success() {
            return Err(self.refused(&format!("GET {at}"), &answer));
        }
        Ok(Some(answer.body["data"]["data"].clone()).filter(|d| !d.is_null()))
    }

    /// The keys under a KV v2 folder (a trailing `/` marks a folder).
    pub async fn kv_list(
        &self,
        token: &SecretValue,
        mount: &str,
        path: &str,
    ) -> Result<Vec<String>, ActivityError> {
        let at = format!("{mount}/metadata/{path}");
        let answer = self
            .call(
                Method::from_bytes(b"LIST").unwrap_or(Method::GET),
                &at,
                Some(token),
                None,
            )
            .await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        if !answer.status.is_success() {
            return Err(self.refused(&format!("LIST {at}"), &answer));
        }
        Ok(answer.body["data"]["keys"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|k| k.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Deletes a KV v2 secret with all its versions; an absent one is no error.
    pub async fn kv_delete(
        &self,
        token: &SecretValue,
        mount: &str,
        path: &str,
    ) -> Result<(), ActivityError> {
        let at = format!("{mount}/metadata/{path}");
        let answer = self.call(Method::DELETE, &at, Some(token), None).await?;
        if !answer.status.is_success() && answer.status != StatusCode::NOT_FOUND {
            return Err(self.refused(&format!("DELETE {at}"), &answer));
        }
        Ok(())
    }
}

/// How OpenBAO at an address is reached.
enum Transport {
    Tls,
    /// Plain HTTP: only to a loopback address, where nothing crosses a network.
    Plain,
}

/// `https://` anywhere, `http://` only on loopback; anything else is refused before a byte
/// is sent.
fn transport(addr: &str) -> Result<Transport, ActivityError> {
    let url = reqwest::Url::parse(addr).map_err(|e| {
        ActivityError::permanent(format!(
            "OpenBAO at `{addr}`: not a URL ({e})\nhint: write it as https://HOST:8200"
        ))
    })?;
    let host = url.host_str().unwrap_or_default();
    let loopback = match host.trim_start_matches('[').trim_end_matches(']').parse() {
        Ok(ip) => std::net::IpAddr::is_loopback(&ip),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    };
    match url.scheme() {
        "https" => Ok(Transport::Tls),
        "http" if loopback => Ok(Transport::Plain),
        "http" => Err(ActivityError::permanent(format!(
            "OpenBAO at {addr}: plain HTTP is refused for an address that is not loopback, \
             since tokens and keys would cross the network in clear\n\
             hint: use https://, with the certificate OpenBAO's install made"
        ))),
        other => Err(ActivityError::permanent(format!(
            "OpenBAO at {addr}: `{other}` is not a scheme OpenBAO is reached with\n\
             hint: write it as https://HOST:8200"
        ))),
    }
}

impl BaoClient {
    /// A token's time to live as OpenBAO sees it now, or `None` when OpenBAO does not
    /// know the token (403: revoked or expired).
    pub async fn token_ttl(&self, token: &SecretValue) -> Result<Option<TokenTtl>, ActivityError> {
        match self.lookup_self_data(token).await? {
            Some(data) => Ok(Some(self.decode(&format!("GET {LOOKUP_SELF}"), data)?)),
            None => Ok(None),
        }
    }

    /// Renews a token by itself (`auth/token/renew-self`, no increment: a periodic token
    /// gets its period again); its time to live after the renewal, in seconds.
    pub async fn renew_self(&self, token: &SecretValue) -> Result<u64, ActivityError> {
        let what = "PUT auth/token/renew-self";
        let answer = self
            .succeeded(
                what,
                Method::PUT,
                "auth/token/renew-self",
                Some(token),
                Some(json!({})),
            )
            .await?;
        answer.body["auth"]["lease_duration"]
            .as_u64()
            .ok_or_else(|| {
                ActivityError::permanent(format!(
                    "{what} at {}: the answer holds no lease duration",
                    self.addr
                ))
            })
    }

    /// Revokes a token by itself (`auth/token/revoke-self`); a token OpenBAO no longer
    /// knows (403) is no error.
    pub async fn revoke_self(&self, token: &SecretValue) -> Result<(), ActivityError> {
        let what = "PUT auth/token/revoke-self";
        let answer = self
            .call(Method::PUT, "auth/token/revoke-self", Some(token), None)
            .await?;
        if !answer.status.is_success() && answer.status != StatusCode::FORBIDDEN {
            return Err(self.refused(what, &answer));
        }
        Ok(())
    }

    /// Where a root token generation stands (`GET sys/generate-root/attempt`).
    pub async fn generate_root_status(&self) -> Result<GenerateRoot, ActivityError> {
        let what = "GET sys/generate-root/attempt";
        let answer = self
            .succeeded(what, Method::GET, "sys/generate-root/attempt", None, None)
            .await?;
        self.decode(what, answer.body)
    }

    /// Starts a root token generation; OpenBAO makes the one-time password, which only
    /// this answer carries.
    pub async fn generate_root_start(&self) -> Result<GenerateRoot, ActivityError> {
        let what = "PUT sys/generate-root/attempt";
        let answer = self
            .succeeded(
                what,
                Method::PUT,
                "sys/generate-root/attempt",
                None,
                Some(json!({})),
            )
            .await?;
        self.decode(what, answer.body)
    }

    /// Gives one unseal key to the generation `nonce`; with the last one needed, the answer
    /// carries the encoded root token.
    pub async fn generate_root_update(
        &self,
        key: &SecretValue,
        nonce: &str,
    ) -> Result<GenerateRoot, ActivityError> {
        let what = "PUT sys/generate-root/update";
        let body = json!({"key": key.expose(), "nonce": nonce});
        let answer = self
            .succeeded(
                what,
                Method::PUT,
                "sys/generate-root/update",
                None,
                Some(body),
            )
            .await?;
        self.decode(what, answer.body)
    }

    /// Cancels the root token generation in progress, if any.
    pub async fn generate_root_cancel(&self) -> Result<(), ActivityError> {
        let what = "DELETE sys/generate-root/attempt";
        self.succeeded(
            what,
            Method::DELETE,
            "sys/generate-root/attempt",
            None,
            None,
        )
        .await?;
        Ok(())
    }
}

/// What `auth/token/lookup-self` says of a token's life, in seconds (0 for a token that
/// never expires, such as a root token).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenTtl {
    pub ttl: u64,
    /// The time to live it was given when made (for a periodic token, its period).
    #[serde(default)]
    pub creation_ttl: u64,
    #[serde(default)]
    pub renewable: bool,
    #[serde(default)]
    pub policies: Vec<String>,
}

/// A root token generation (`sys/generate-root`): how far it is, and at its end the
/// encoded token. The one-time password is a secret, never printed.
#[derive(Clone, Deserialize)]
pub struct GenerateRoot {
    #[serde(default)]
    pub started: bool,
    #[serde(default)]
    pub nonce: String,
    #[serde(default)]
    pub progress: u32,
    #[serde(default)]
    pub required: u32,
    #[serde(default)]
    pub complete: bool,
    #[serde(default)]
    pub encoded_token: String,
    #[serde(default, deserialize_with = "secret_text")]
    pub otp: Option<SecretValue>,
}

impl std::fmt::Debug for GenerateRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenerateRoot")
            .field("started", &self.started)
            .field("progress", &self.progress)
            .field("required", &self.required)
            .field("complete", &self.complete)
            .finish_non_exhaustive()
    }
}

fn secret_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SecretValue>, D::Error> {
    Ok(Option::<String>::deserialize(d)?
        .filter(|s| !s.is_empty())
        .map(SecretValue::new))
}

#[cfg(test)]
mod tests {
    use std::io::{ErrorKind, Read, Write};
    use std::net::TcpListener;

    use super::*;

    /// A listener on loopback that answers every request with `answer` and keeps what it
    /// was sent; a thread of its own, ended with the test process.
    fn stand_in(answer: String) -> (String, std::sync::mpsc::Receiver<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = format!("http://{}", listener.local_addr().expect("addr"));
        let (sent, received) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(4) {
                let Ok(mut stream) = stream else { return };
                let mut request = vec![0u8; 8192];
                let n = stream.read(&mut request).unwrap_or(0);
                request.truncate(n);
                let _ = sent.send(request);
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        (addr, received)
    }

    #[tokio::test]
    async fn a_redirect_is_refused_and_never_followed_with_the_token() {
        // Where the redirect points: it must never hear from the client.
        let elsewhere = TcpListener::bind("127.0.0.1:0").expect("bind");
        elsewhere.set_nonblocking(true).expect("nonblocking");
        let target = format!(
            "http://{}/v1/kv/data/x",
            elsewhere.local_addr().expect("addr")
        );
        let (addr, received) = stand_in(format!(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: {target}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ));
        let token = SecretValue::new("s.redirected-token-1234");
        let client = BaoClient::new(&addr).expect("client");

        let e = client
            .kv_get(&token, "kv", "x")
            .await
            .expect_err("a 307 is an error");
        assert!(!e.transient, "{e:?}");
        assert!(
            e.message.contains("307") && e.message.contains("redirects are not followed"),
            "{}",
            e.message
        );
        assert!(!e.message.contains(token.expose()));
        let asked = received.recv().expect("the stand-in was asked");
        assert!(String::from_utf8_lossy(&asked).contains("x-vault-token"));
        match elsewhere.accept() {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            other => panic!("the redirect was followed: {other:?}"),
        }
    }

    #[test]
    fn plain_http_is_refused_off_loopback() {
        for addr in ["http://10.77.0.20:8200", "http://openbao.example.com:8200"] {
            let e = BaoClient::new(addr).expect_err(addr);
            assert!(
                e.message.contains("plain HTTP is refused") && e.message.contains("hint:"),
                "{}",
                e.message
            );
        }
        for addr in [
            "http://127.0.0.1:8200",
            "http://[::1]:8200",
            "http://localhost:8200",
        ] {
            BaoClient::new(addr).expect(addr);
        }
        let e = BaoClient::new("-oProxyCommand=x").expect_err("not a URL");
        assert!(e.message.contains("not a URL"), "{}", e.message);
        let e = BaoClient::pinned("https://10.77.0.20:8200", b"not pem").expect_err("bad CA");
        assert!(
            !e.transient && e.message.contains("not a PEM certificate"),
            "{}",
            e.message
        );
    }
}
