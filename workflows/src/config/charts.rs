//! The stack config of the charts Foundry installs into the cluster
//! (`components.contour`, `components.cert_manager`): a version (the component's pinned
//! one when absent), values merged over Foundry's defaults, and secret values as
//! references only, which reach the chart through a Kubernetes Secret, never inline.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::value::{self, At, HttpUrl, Retention, SecretField, shown};

/// A chart's values: a mapping, with no secret reference in it (a reference there would
/// be sent to the cluster as its text, inline in the HelmChart).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct ChartValues(pub Map<String, Value>);

// JSON read from YAML holds no NaN: equality is total.
impl Eq for ChartValues {}

impl ChartValues {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The dotted path of the first string under `value` that holds a secret reference.
fn reference_in(value: &Value, at: &str) -> Option<String> {
    match value {
        Value::String(s) if s.contains("${secret:") => Some(at.to_string()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| reference_in(v, &format!("{at}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            let path = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            reference_in(v, &path)
        }),
        _ => None,
    }
}

impl<'de> Deserialize<'de> for ChartValues {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ChartValues, D::Error> {
        use serde::de::Error;
        let values = match Value::deserialize(d)? {
            Value::Null => Map::new(),
            Value::Object(map) => map,
            other => {
                return Err(D::Error::custom(format!(
                    "a chart's values are a mapping (`key: value` lines), not `{}`",
                    shown(&other.to_string())
                )));
            }
        };
        if let Some(path) = reference_in(&Value::Object(values.clone()), "") {
            return Err(D::Error::custom(format!(
                "values.{path} holds a secret reference, which would be sent inline; give it \
                 under values_secrets instead (`{path}: ${{secret:path:key}}`)"
            )));
        }
        Ok(ChartValues(values))
    }
}

/// Where a secret goes in a chart's values: a dotted path, `auth.password`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ValuesPath(String);

impl ValuesPath {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ValuesPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ValuesPath {
    type Err = String;
    fn from_str(text: &str) -> Result<ValuesPath, String> {
        let part = |p: &str| {
            !p.is_empty()
                && p.len() <= 63
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        if text.len() > 253 || !text.split('.').all(part) {
            return Err(format!(
                "`{}` is not a values path like `auth.password` (names of letters, digits, \
                 `_` and `-`, joined by dots)",
                shown(text)
            ));
        }
        Ok(ValuesPath(text.to_string()))
    }
}

impl TryFrom<String> for ValuesPath {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl From<ValuesPath> for String {
    fn from(value: ValuesPath) -> String {
        value.0
    }
}

/// `components.contour`: a chart and nothing more.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChartConfig {
    /// The chart's version; the one Foundry pins when absent.
    #[serde(
        default,
        deserialize_with = "value::version",
        skip_serializing_if = "Option::is_none"
    )]
    pub version: Option<String>,
    /// Values merged over Foundry's defaults (a mapping replaces a mapping key by key).
    #[serde(default, skip_serializing_if = "ChartValues::is_empty")]
    pub values: ChartValues,
    /// Secret values, by values path: `${secret:path:key}` references only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values_secrets: BTreeMap<ValuesPath, SecretField>,
    /// An offline chart: a `.tgz` on this machine (`helm package`, `helm pull`), sent in the
    /// HelmChart's `chartContent` (at most 1 MiB once base64-encoded), at the version its
    /// Chart.yaml gives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart_file: Option<At<std::path::PathBuf>>,
}

/// `components.cert_manager`: its chart, and the ClusterIssuer made after it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertManagerConfig {
    #[serde(
        default,
        deserialize_with = "value::version",
        skip_serializing_if = "Option::is_none"
    )]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "ChartValues::is_empty")]
    pub values: ChartValues,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values_secrets: BTreeMap<ValuesPath, SecretField>,
    /// An offline chart: a `.tgz` on this machine (`helm package`, `helm pull`), sent in the
    /// HelmChart's `chartContent` (at most 1 MiB once base64-encoded), at the version its
    /// Chart.yaml gives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart_file: Option<At<std::path::PathBuf>>,
    /// The ClusterIssuer: a self-signed CA when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<IssuerConfig>,
}

impl CertManagerConfig {
    /// Its chart's part.
    pub fn chart(&self) -> ChartConfig {
        ChartConfig {
            version: self.version.clone(),
            values: self.values.clone(),
            values_secrets: self.values_secrets.clone(),
            chart_file: self.chart_file.clone(),
        }
    }
}

/// The ClusterIssuer cert-manager gets: a CA of its own (self-signed) by default, or ACME.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// Its name (`foundry-ca`, or `letsencrypt` for ACME, when absent).
    #[serde(
        default,
        deserialize_with = "kube_name",
        skip_serializing_if = "Option::is_none"
    )]
    pub name: Option<String>,
    /// ACME (Let's Encrypt by default) instead of the self-signed CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme: Option<AcmeConfig>,
    /// How long the install waits for the issuer to be Ready (`5m` by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_timeout: Option<Retention>,
}

impl IssuerConfig {
    pub const DEFAULT_READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

    pub fn ready_timeout(&self) -> std::time::Duration {
        self.ready_timeout
            .as_ref()
            .map_or(Self::DEFAULT_READY_TIMEOUT, Retention::duration)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeConfig {
    /// The account's email, to which the CA writes about expiring certificates.
    #[serde(deserialize_with = "email")]
    pub email: String,
    /// The ACME directory; Let's Encrypt's production one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<HttpUrl>,
}

/// A Kubernetes object's name: an RFC 1123 subdomain (lowercase letters, digits, `-` and
/// `.`, starting and ending alphanumeric, at most 253 characters).
pub fn check_kube_name(text: &str) -> Result<(), String> {
    let ok = !text.is_empty()
        && text.len() <= 253
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && text.starts_with(|c: char| c.is_ascii_alphanumeric())
        && text.ends_with(|c: char| c.is_ascii_alphanumeric());
    match ok {
        true => Ok(()),
        false => Err(format!(
            "`{}` is not a Kubernetes name (lowercase letters, digits, `-` and `.`, starting \
             and ending with a letter or digit)",
            shown(text)
        )),
    }
}

fn kube_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let text = Option::<String>::deserialize(d)?;
    if let Some(text) = &text {
        check_kube_name(text).map_err(serde::de::Error::custom)?;
    }
    Ok(text)
}

fn email<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let text = String::deserialize(d)?;
    let ok = text.len() <= 254
        && text.split_once('@').is_some_and(|(user, domain)| {
            !user.is_empty() && domain.contains('.') && !domain.starts_with('.')
        })
        && !text.chars().any(|c| c.is_whitespace() || c.is_control());
    if !ok {
        return Err(serde::de::Error::custom(format!(
            "`{}` is not an email address like ops@example.com",
            shown(&text)
        )));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_values_path_is_dotted_names() {
        assert!("auth.password".parse::<ValuesPath>().is_ok());
        assert!("envoy.service-x_1".parse::<ValuesPath>().is_ok());
        for bad in ["", "a..b", ".a", "a b", "a.$x", "a/b"] {
            assert!(bad.parse::<ValuesPath>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_reference_in_values_is_found_with_its_path() {
        let v = serde_json::json!({"a": {"b": ["x", "${secret:p:k}"]}, "c": 1});
        assert_eq!(reference_in(&v, "").as_deref(), Some("a.b[1]"));
        assert_eq!(reference_in(&serde_json::json!({"a": "plain"}), ""), None);
    }

    fn refused(text: &str) -> String {
        crate::config::parse(std::path::Path::new("stack.yaml"), text)
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn a_chart_config_refuses_unknown_fields_literal_secrets_and_bad_paths_where_they_are() {
        let e = refused("cluster:\n  name: lab\ncomponents:\n  contour:\n    vesion: 1.0.0\n");
        assert!(e.contains("unknown field") && e.contains("vesion"), "{e}");
        assert!(e.contains("line 5"), "{e}");
        let e = refused(
            "components:\n  cert_manager:\n    issuer:\n      acme:\n        email: nobody\n",
        );
        assert!(
            e.contains("not an email address") && e.contains("line 5"),
            "{e}"
        );
        let e = refused("components:\n  contour:\n    values:\n      a: ${secret:p:k}\n");
        assert!(e.contains("values.a holds a secret reference"), "{e}");
        let e = refused("components:\n  contour:\n    values: [1]\n");
        assert!(e.contains("a mapping"), "{e}");
        let e =
            refused("components:\n  contour:\n    values_secrets:\n      a..b: ${secret:p:k}\n");
        assert!(e.contains("not a values path"), "{e}");
        let e = refused("components:\n  contour:\n    values_secrets:\n      a: plain\n");
        assert!(e.contains("never the secret itself"), "{e}");
        let ok = crate::config::parse(
            std::path::Path::new("stack.yaml"),
            "components:\n  contour:\n    values:\n      x: {y: 1}\n    values_secrets:\n      \
             x.z: ${secret:p:k}\n",
        )
        .expect("a good config");
        let contour = ok.components.expect("components").contour;
        assert_eq!(contour.values.0["x"]["y"], 1);
        assert_eq!(contour.values_secrets.len(), 1);
    }

    #[test]
    fn kube_names() {
        assert!(check_kube_name("foundry-ca").is_ok());
        for bad in ["", "Foundry", "-a", "a-", "a_b"] {
            assert!(check_kube_name(bad).is_err(), "{bad}");
        }
    }
}
