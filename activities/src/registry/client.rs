//! A small client of the OCI distribution API: only the calls Foundry makes. Lists follow
//! the `Link: <…>; rel="next"` pages the API answers in, a bounded number of times.

use foundry_core::ActivityError;
use reqwest::StatusCode;
use reqwest::header::LINK;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::http;

/// The header a registry names its API version in (`registry/2.0`).
pub const API_VERSION_HEADER: &str = "Docker-Distribution-Api-Version";

/// Pages of a list followed at most: far more repositories or tags than a stack holds.
const MAX_PAGES: usize = 100;

/// A registry at an address such as `http://10.77.3.30:5000`.
#[derive(Clone, Debug)]
pub struct RegistryClient {
    pub(super) addr: String,
    pub(super) http: reqwest::Client,
}

#[derive(Deserialize)]
struct Catalog {
    #[serde(default)]
    repositories: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Tags {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// A list answer: its items and the path of its next page, if any.
struct Page<T> {
    items: T,
    next: Option<String>,
}

impl RegistryClient {
    pub fn new(addr: &str) -> Result<RegistryClient, ActivityError> {
        Ok(RegistryClient {
            addr: addr.trim_end_matches('/').to_string(),
            http: http::client(addr)?,
        })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    async fn get(&self, path: &str) -> Result<reqwest::Response, ActivityError> {
        let url = format!("{}{path}", self.addr);
        let response = self.http.get(&url).send().await.map_err(|e| {
            ActivityError::transient(format!(
                "GET {path} at {}: {}",
                self.addr,
                http::without_url(&e)
            ))
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        Err(http::refused(
            status,
            format!(
                "GET {path} at {}: {status}{}",
                self.addr,
                errors(status, &body)
            ),
        ))
    }

    async fn json<T: DeserializeOwned>(&self, path: &str) -> Result<Page<T>, ActivityError> {
        let response = self.get(path).await?;
        let next = response
            .headers()
            .get(LINK)
            .and_then(|v| v.to_str().ok())
            .and_then(next_page);
        let text = response.text().await.map_err(|e| {
            ActivityError::transient(format!(
                "GET {path} at {}: reading the answer: {}",
                self.addr,
                http::without_url(&e)
            ))
        })?;
        let items = serde_json::from_str(&text).map_err(|e| {
            ActivityError::permanent(format!(
                "GET {path} at {}: unexpected answer: {e}",
                self.addr
            ))
        })?;
        Ok(Page { items, next })
    }

    /// Every item of a paged list, starting at `path`.
    async fn list<T: DeserializeOwned>(
        &self,
        path: &str,
        items: impl Fn(T) -> Option<Vec<String>>,
    ) -> Result<Vec<String>, ActivityError> {
        let mut all = Vec::new();
        let mut next = Some(path.to_string());
        for _ in 0..MAX_PAGES {
            let Some(path) = next.take() else {
                return Ok(all);
            };
            let page = self.json::<T>(&path).await?;
            all.extend(items(page.items).unwrap_or_default());
            next = page.next;
        }
        Err(ActivityError::permanent(format!(
            "GET {path} at {}: more than {MAX_PAGES} pages",
            self.addr
        )))
    }

    /// `GET /v2/`: the registry serves the distribution API (and needs no credentials);
    /// the API version it names in `Docker-Distribution-Api-Version`, if it names one.
    pub async fn ping(&self) -> Result<Option<String>, ActivityError> {
        let response = self.get("/v2/").await?;
        Ok(response
            .headers()
            .get(API_VERSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string))
    }

    /// `GET /v2/_catalog`: the repositories, in the registry's order (lexical).
    pub async fn catalog(&self) -> Result<Vec<String>, ActivityError> {
        self.list("/v2/_catalog", |c: Catalog| c.repositories).await
    }

    /// `GET /v2/<repo>/tags/list`: a repository's tags. An unknown repository is an error
    /// (404, `NAME_UNKNOWN`).
    pub async fn tags(&self, repo: &str) -> Result<Vec<String>, ActivityError> {
        if !valid_repository(repo) {
            return Err(ActivityError::permanent(format!(
                "tags at {}: `{repo}` is not a repository name (lowercase letters, digits, \
                 and `.`, `_`, `-` between them, in `/`-separated parts)",
                self.addr
            )));
        }
        self.list(&format!("/v2/{repo}/tags/list"), |t: Tags| t.tags)
            .await
    }
}

/// A repository name as the distribution spec allows it: `/`-separated parts of lowercase
/// letters and digits, with `.`, `_` or `-` only between them. Nothing else may reach a
/// path.
pub(super) fn valid_repository(repo: &str) -> bool {
    let part = |p: &str| {
        let bytes = p.as_bytes();
        let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        !bytes.is_empty()
            && bytes.first().is_some_and(alnum)
            && bytes.last().is_some_and(alnum)
            && bytes
                .iter()
                .all(|b| alnum(b) || matches!(b, b'.' | b'_' | b'-'))
            && !p.contains("..")
    };
    repo.len() <= 255 && repo.split('/').all(part)
}

/// The path of the next page from a `Link` header: `</v2/_catalog?last=a&n=100>; rel="next"`.
/// Only a path on the same registry is followed.
fn next_page(link: &str) -> Option<String> {
    link.split(',').find_map(|one| {
        let (target, params) = one.trim().split_once(';')?;
        let next = params
            .split(';')
            .any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"));
        let path = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        (next && path.starts_with("/v2/")).then(|| path.to_string())
    })
}

/// What a refusal says: the `errors` of the distribution API (`CODE message`), else a
/// word for the common statuses.
pub(super) fn errors(status: StatusCode, body: &str) -> String {
    let said: Vec<String> = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["errors"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|e| {
            let code = e["code"].as_str().unwrap_or_default();
            let message = e["message"].as_str().unwrap_or_default();
            format!("{code} {message}").trim().to_string()
        })
        .filter(|e| !e.is_empty())
        .collect();
    if !said.is_empty() {
        return format!(": {}", said.join("; "));
    }
    match status {
        StatusCode::UNAUTHORIZED => ": the registry asks for credentials".into(),
        StatusCode::NOT_FOUND => ": no distribution API here".into(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_are_checked_before_they_reach_a_path() {
        for ok in ["busybox", "foundry/busybox", "a.b_c-d/e__f", "0/1"] {
            assert!(valid_repository(ok), "{ok}");
        }
        for bad in [
            "", "Busybox", "foundry/", "/busybox", "a//b", "../v2", "a/../b", "a?b", "a b", "-a",
            "a-", "a%2fb",
        ] {
            assert!(!valid_repository(bad), "{bad}");
        }
    }

    #[test]
    fn the_next_page_is_read_from_the_link_header() {
        assert_eq!(
            next_page("</v2/_catalog?last=b&n=2>; rel=\"next\""),
            Some("/v2/_catalog?last=b&n=2".to_string())
        );
        assert_eq!(next_page("</v2/_catalog?last=b>; rel=\"prev\""), None);
        // Another host is never followed.
        assert_eq!(
            next_page("<http://10.0.0.1/v2/_catalog?last=b>; rel=\"next\""),
            None
        );
        assert_eq!(next_page("garbage"), None);
    }

    #[test]
    fn a_refusal_quotes_the_apis_errors() {
        let body = r#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry","detail":{"name":"x"}}]}"#;
        assert_eq!(
            errors(StatusCode::NOT_FOUND, body),
            ": NAME_UNKNOWN repository name not known to registry"
        );
        assert_eq!(
            errors(StatusCode::UNAUTHORIZED, ""),
            ": the registry asks for credentials"
        );
        assert_eq!(errors(StatusCode::BAD_GATEWAY, "<html>"), "");
    }

    #[tokio::test]
    async fn a_registry_that_does_not_answer_is_named_in_the_error() {
        // Port 9 on loopback: nothing listens there.
        let client = RegistryClient::new("http://127.0.0.1:9/").expect("client");
        let e = client.ping().await.expect_err("nothing listens");
        assert!(e.transient, "{}", e.message);
        assert!(
            e.message
                .starts_with("GET /v2/ at http://127.0.0.1:9: cannot connect"),
            "{}",
            e.message
        );
        let e = client.tags("Bad/Name").await.expect_err("a bad name");
        assert!(
            !e.transient && e.message.contains("`Bad/Name`"),
            "{}",
            e.message
        );
    }
}
