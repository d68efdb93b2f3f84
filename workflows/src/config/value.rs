//! The config's value types that check themselves as they are read, so a bad value is
//! reported at its own line and column: subnets, DNS names, secret fields, durations, and
//! `At<T>`, a value that remembers where it stood for the checks that compare fields.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::secret_ref::{self, SecretRef};

/// A value and its place in the file (line and column from 1; 0 when it was not read
/// from a file). Equality looks at the value only.
#[derive(Clone, Debug)]
pub struct At<T> {
    pub value: T,
    pub line: u64,
    pub column: u64,
}

impl<T> At<T> {
    /// A value made in code, with no place in a file.
    pub fn new(value: T) -> Self {
        At {
            value,
            line: 0,
            column: 0,
        }
    }

    /// `line L column C: ` for an error about this value, or nothing when it has no place.
    pub fn place(&self) -> String {
        if self.line == 0 {
            String::new()
        } else {
            format!("line {} column {}: ", self.line, self.column)
        }
    }
}

impl<T: PartialEq> PartialEq for At<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<T: Eq> Eq for At<T> {}

impl<T> std::ops::Deref for At<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for At<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = serde_saphyr::Spanned::<T>::deserialize(d)?;
        Ok(At {
            value: spanned.value,
            line: spanned.referenced.line(),
            column: spanned.referenced.column(),
        })
    }
}

impl<T: Serialize> Serialize for At<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

/// A host's address: an IP address or a DNS name, and nothing else. Checked where the
/// config is read, so no address can reach `ssh` as an option (`-oProxyCommand=…`) or
/// carry a space or a shell character.
pub fn check_address(text: &str) -> Result<(), String> {
    if text.parse::<std::net::IpAddr>().is_ok() || text.parse::<DnsName>().is_ok() {
        return Ok(());
    }
    Err(format!(
        "address `{}` is not an address: give an IP address or a DNS name",
        shown(text)
    ))
}

/// `text` as an error may quote it: at most 80 characters, control characters escaped.
pub fn shown(text: &str) -> String {
    let mut out: String = text.chars().take(80).flat_map(char::escape_debug).collect();
    if text.chars().count() > 80 {
        out.push('…');
    }
    out
}

/// `deserialize_with` for a host's address: see [`check_address`].
pub(crate) fn address<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let text = String::deserialize(d)?;
    check_address(&text).map_err(serde::de::Error::custom)?;
    Ok(text)
}

/// The most bytes a string of the config may hold.
pub const MAX_STRING: usize = 4096;

/// An image tag: `[\w][\w.-]{0,127}` (the OCI distribution grammar).
pub fn check_tag(tag: &str) -> Result<(), String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let valid = tag.len() <= 128
        && tag.chars().next().is_some_and(word)
        && tag.chars().all(|c| word(c) || c == '.' || c == '-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "image tag `{}` is not a tag: up to 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`",
            shown(tag)
        ))
    }
}

/// An image reference by the OCI distribution grammar: `[domain[:port]/]path[:tag][@digest]`,
/// each path component lower-case letters and digits joined by `.`, `_`, `__` or dashes.
pub fn check_image(text: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "image `{}` is not an image reference like `registry.example/team/name:1.2`: {why}",
            shown(text)
        ))
    };
    let (rest, digest) = match text.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (text, None),
    };
    if let Some(digest) = digest {
        let valid = digest.split_once(':').is_some_and(|(algorithm, encoded)| {
            !algorithm.is_empty()
                && algorithm.split(['+', '.', '_', '-']).all(|c| {
                    !c.is_empty()
                        && c.chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                })
                && encoded.len() >= 32
                && encoded
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '=' | '_' | '-'))
        });
        if !valid {
            return bad("the digest is not `algorithm:hex` (like sha256:…)");
        }
    }
    let (name, tag) = match rest.rfind(':') {
        Some(at) if !rest[at..].contains('/') => (&rest[..at], Some(&rest[at + 1..])),
        _ => (rest, None),
    };
    if let Some(tag) = tag {
        check_tag(tag)?;
    }
    if name.is_empty() || name.len() > 255 {
        return bad("the name is empty or longer than 255 bytes");
    }
    let mut components: Vec<&str> = name.split('/').collect();
    if components.len() > 1 && (components[0].contains(['.', ':']) || components[0] == "localhost")
    {
        let domain = components.remove(0);
        let (host, port) = match domain.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || domain.starts_with('[') => {
                (host, Some(port))
            }
            _ => (domain, None),
        };
        let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
            None => host.split('.').all(|label| {
                !label.is_empty()
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            }),
        };
        let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok());
        if !host_ok || !port_ok {
            return bad("the registry is not a host name or address with an optional port");
        }
    }
    if !components.iter().all(|c| path_component(c)) {
        return bad(
            "each part of the name is lower-case letters and digits, joined by `.`, `_`, `__` or `-`",
        );
    }
    Ok(())
}

/// `[a-z0-9]+ (separator [a-z0-9]+)*` with separators `.`, `_`, `__` and runs of `-`.
fn path_component(text: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !text.starts_with(alnum) || !text.ends_with(alnum) {
        return false;
    }
    text.split(alnum)
        .filter(|separator| !separator.is_empty())
        .all(|separator| {
            matches!(separator, "." | "_" | "__") || separator.chars().all(|c| c == '-')
        })
}

/// A K3s release: `v1.28.5+k3s1`, or a release candidate `v1.28.5-rc1+k3s1`.
pub fn check_k3s_tag(text: &str) -> Result<(), String> {
    let number = |n: &str| !n.is_empty() && n.len() <= 9 && n.chars().all(|c| c.is_ascii_digit());
    let valid = text
        .strip_prefix('v')
        .and_then(|rest| rest.split_once("+k3s"))
        .is_some_and(|(version, build)| {
            let (version, rc) = match version.split_once("-rc") {
                Some((version, rc)) => (version, Some(rc)),
                None => (version, None),
            };
            number(build)
                && rc.is_none_or(number)
                && version.split('.').count() == 3
                && version.split('.').all(number)
        });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "k3s tag `{}` is not a K3s release like v1.28.5+k3s1",
            shown(text)
        ))
    }
}

/// A version a component reports: `2.1.0`, `v4.7.3`, `1.2.0-rc1`: numbers joined by dots,
/// then an optional `-` or `+` suffix of letters, digits, `.` and `-`.
pub fn check_version(text: &str) -> Result<(), String> {
    let rest = text.strip_prefix('v').unwrap_or(text);
    let (numbers, suffix) = match rest.find(['-', '+']) {
        Some(at) => (&rest[..at], Some(&rest[at + 1..])),
        None => (rest, None),
    };
    let valid = text.len() <= 128
        && numbers
            .split('.')
            .all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        && suffix.is_none_or(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'))
        });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "version `{}` is not a version like 2.1.0 or v4.7.3",
            shown(text)
        ))
    }
}

/// A container or network name for the container engine: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at
/// most 63 bytes.
pub fn check_container_name(text: &str) -> Result<(), String> {
    let valid = text.len() <= 63
        && text
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a container engine name: up to 63 letters, digits, `_`, `.` and `-`, starting with a letter or digit",
            shown(text)
        ))
    }
}

/// A registry mirror, `host[:port][/prefix]`: what an image reference's name may start
/// with (an image's path is put after it).
pub fn check_registry_mirror(text: &str) -> Result<(), String> {
    let first = text.split('/').next().unwrap_or_default();
    let registry = first.contains(['.', ':']) || first == "localhost";
    if !registry || text.ends_with('/') || check_image(&format!("{text}/x")).is_err() {
        return Err(format!(
            "registry mirror `{}` is not a registry like `mirror.example:5000` or \
             `mirror.example/prefix`",
            shown(text)
        ));
    }
    Ok(())
}

/// `deserialize_with` for an optional string checked by `$check`, so a bad value is
/// reported at its line and column.
macro_rules! checked_option {
    ($name:ident, $check:path) => {
        pub(crate) fn $name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
            let text = Option::<String>::deserialize(d)?;
            if let Some(text) = &text {
                $check(text).map_err(serde::de::Error::custom)?;
            }
            Ok(text)
        }
    };
}

checked_option!(image, check_image);
checked_option!(tag, check_tag);
checked_option!(k3s_tag, check_k3s_tag);
checked_option!(version, check_version);
checked_option!(container_name, check_container_name);
checked_option!(registry_mirror, check_registry_mirror);

/// Checks a host's public host key (`ssh-ed25519 AAAA…`) by parsing it as a key.
pub fn check_host_key(text: &str) -> Result<(), String> {
    foundry_activities::ssh::fingerprint_of(text)
        .map(|_| ())
        .map_err(|_| {
            format!(
                "host_key `{}` is not an SSH public key like `ssh-ed25519 AAAA…`",
                shown(text)
            )
        })
}

/// `deserialize_with` for a host's host key: see [`check_host_key`].
pub(crate) fn host_key<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let text = Option::<String>::deserialize(d)?;
    if let Some(text) = &text {
        check_host_key(text).map_err(serde::de::Error::custom)?;
    }
    Ok(text)
}

/// Implements `Display`, string (de)serialization and `TryFrom<String>` from `FromStr`.
macro_rules! text_value {
    ($ty:ty) => {
        impl TryFrom<String> for $ty {
            type Error = String;
            fn try_from(text: String) -> Result<Self, String> {
                text.parse()
            }
        }

        impl From<$ty> for String {
            fn from(value: $ty) -> String {
                value.to_string()
            }
        }
    };
}

/// An IPv4 network, `10.1.2.0/24` (ipnet's `Ipv4Net`), with no host bits set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr(ipnet::Ipv4Net);

impl Cidr {
    /// The network's own address (`10.1.2.0`).
    pub fn network(&self) -> Ipv4Addr {
        self.0.network()
    }

    /// The prefix's length in bits (`24`).
    pub fn prefix_len(&self) -> u8 {
        self.0.prefix_len()
    }

    /// Whether `addr` lies in this network.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        self.0.contains(&addr)
    }

    /// The network of `addr` under the dotted mask `netmask`.
    pub fn from_netmask(addr: Ipv4Addr, netmask: Ipv4Addr) -> Result<Cidr, String> {
        ipnet::Ipv4Net::with_netmask(addr, netmask)
            .map(|net| Cidr(net.trunc()))
            .map_err(|_| {
                format!("netmask {netmask} is not a run of ones then zeros (like 255.255.255.0)")
            })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(text: &str) -> Result<Cidr, String> {
        let net: ipnet::Ipv4Net = text.parse().map_err(|_| {
            format!(
                "`{}` is not an IPv4 network like 192.168.1.0/24",
                shown(text)
            )
        })?;
        if net.trunc() != net {
            return Err(format!(
                "`{}` has host bits set: the network is {}",
                shown(text),
                net.trunc()
            ));
        }
        Ok(Cidr(net))
    }
}

text_value!(Cidr);

/// A DNS name: dot-separated labels of letters, digits and `-`, kept as written without
/// a trailing dot; compared without regard to case.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DnsName(String);

impl DnsName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name with a trailing dot, in lower case, as DNS servers write it.
    pub fn canonical(&self) -> String {
        format!("{}.", self.0.to_ascii_lowercase())
    }

    /// Whether the zone is private to the network (`.local`).
    pub fn is_local(&self) -> bool {
        let lower = self.0.to_ascii_lowercase();
        lower == "local" || lower.ends_with(".local")
    }
}

impl PartialEq for DnsName {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}

impl Eq for DnsName {}

impl fmt::Display for DnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for DnsName {
    type Err = String;
    fn from_str(text: &str) -> Result<DnsName, String> {
        let name = text.strip_suffix('.').unwrap_or(text);
        let label_ok = |l: &str| {
            (1..=63).contains(&l.len())
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
            return Err(format!(
                "`{}` is not a DNS name: labels of up to 63 letters, digits and `-`, separated by dots, 253 bytes in all",
                shown(text)
            ));
        }
        Ok(DnsName(name.to_string()))
    }
}

text_value!(DnsName);

/// A field that holds a secret: always a reference `${secret:path:key}`, resolved where it
/// is used. A value written in the file itself is refused, and never quoted back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SecretField(pub SecretRef);

impl fmt::Display for SecretField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for SecretField {
    type Err = String;
    fn from_str(text: &str) -> Result<SecretField, String> {
        const LITERAL: &str = "a secret field takes a reference like `${secret:path/to/secret:key}`, never the secret itself (the value is not repeated here)";
        let found = secret_ref::references(text).map_err(|e| e.to_string())?;
        match found.as_slice() {
            [(0, reference)] if reference.to_string() == text => Ok(SecretField(reference.clone())),
            _ => Err(LITERAL.to_string()),
        }
    }
}

text_value!(SecretField);

/// Where a host's login key (or another private key, or a certificate) is: a file, or a
/// secret reference (`${secret:foundry/ssh-keys/web-1:private_key}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum KeyField {
    File(std::path::PathBuf),
    Secret(SecretRef),
}

impl KeyField {
    /// The file, when it is one.
    pub fn file(&self) -> Option<&std::path::Path> {
        match self {
            KeyField::File(path) => Some(path),
            KeyField::Secret(_) => None,
        }
    }

    /// Where the key lives, for people: `file PATH` or `openbao PATH`.
    pub fn place(&self) -> String {
        match self {
            KeyField::File(path) => format!("file {}", path.display()),
            KeyField::Secret(reference) => format!("openbao {}", reference.path),
        }
    }
}

impl From<std::path::PathBuf> for KeyField {
    fn from(path: std::path::PathBuf) -> KeyField {
        KeyField::File(path)
    }
}

impl fmt::Display for KeyField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyField::File(path) => write!(f, "{}", path.display()),
            KeyField::Secret(reference) => reference.fmt(f),
        }
    }
}

impl FromStr for KeyField {
    type Err = String;
    fn from_str(text: &str) -> Result<KeyField, String> {
        if text.starts_with("${") {
            return Ok(KeyField::Secret(text.parse::<SecretField>()?.0));
        }
        Ok(KeyField::File(text.into()))
    }
}

text_value!(KeyField);

/// How long something is kept: a duration as humantime reads it (`30d`, `12h`, `2w 3d`),
/// more than zero; kept as written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Retention(String);

impl Retention {
    pub fn duration(&self) -> std::time::Duration {
        humantime::parse_duration(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Retention {
    type Err = String;
    fn from_str(text: &str) -> Result<Retention, String> {
        let bad =
            |why: String| format!("`{}` is not a duration like 30d or 12h: {why}", shown(text));
        let duration = humantime::parse_duration(text).map_err(|e| bad(e.to_string()))?;
        if duration.is_zero() {
            return Err(bad("it is zero".into()));
        }
        Ok(Retention(text.to_string()))
    }
}

text_value!(Retention);

/// An `http://` or `https://` URL with a host, as the url crate reads it; kept as written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HttpUrl {
    text: String,
    url: url::Url,
}

impl HttpUrl {
    pub fn url(&self) -> &url::Url {
        &self.url
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for HttpUrl {
    type Err = String;
    fn from_str(text: &str) -> Result<HttpUrl, String> {
        let bad = |why: String| {
            format!(
                "`{}` is not a URL like https://truenas.lab.example: {why}",
                shown(text)
            )
        };
        let url = url::Url::parse(text).map_err(|e| bad(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad(format!(
                "the scheme is `{}`, not http or https",
                url.scheme()
            )));
        }
        if url.host().is_none() {
            return Err(bad("it names no host".into()));
        }
        Ok(HttpUrl {
            text: text.to_string(),
            url,
        })
    }
}

text_value!(HttpUrl);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_key_is_a_file_or_a_reference() {
        let file: KeyField = "/h/keys/web-1".parse().expect("file");
        assert_eq!(file, KeyField::File("/h/keys/web-1".into()));
        assert_eq!(file.place(), "file /h/keys/web-1");
        let stored: KeyField = "${secret:foundry/ssh-keys/web-1:private_key}"
            .parse()
            .expect("reference");
        assert_eq!(stored.place(), "openbao foundry/ssh-keys/web-1");
        assert_eq!(
            stored.to_string(),
            "${secret:foundry/ssh-keys/web-1:private_key}"
        );
        assert!("${secret:no-key}".parse::<KeyField>().is_err());
    }

    #[test]
    fn cidrs_are_checked_and_contain() {
        let net: Cidr = "10.1.2.0/24".parse().expect("cidr");
        assert_eq!(
            (net.network().octets(), net.prefix_len()),
            ([10, 1, 2, 0], 24)
        );
        assert!(net.contains("10.1.2.200".parse().expect("ip")));
        assert!(!net.contains("10.1.3.1".parse().expect("ip")));
        assert!(
            "10.1.2.1/24"
                .parse::<Cidr>()
                .expect_err("host bits")
                .contains("10.1.2.0/24")
        );
        assert!("10.1.2.0/33".parse::<Cidr>().is_err());
        assert!("10.1.2.0".parse::<Cidr>().is_err());
        let all: Cidr = "0.0.0.0/0".parse().expect("all");
        assert!(all.contains("8.8.8.8".parse().expect("ip")));
        assert_eq!(
            Cidr::from_netmask(
                "192.168.1.1".parse().expect("ip"),
                "255.255.255.0".parse().expect("mask")
            )
            .expect("mask")
            .to_string(),
            "192.168.1.0/24"
        );
        assert!(
            Cidr::from_netmask(
                "192.168.1.1".parse().expect("ip"),
                "255.0.255.0".parse().expect("mask")
            )
            .is_err()
        );
    }

    #[test]
    fn addresses_and_formats_keep_to_their_grammar() {
        for good in ["10.0.0.1", "fd00::1", "web-1", "web-1.lab.example.com"] {
            assert!(check_address(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-oProxyCommand=touch${IFS}/tmp/x",
            "-p2222",
            "a b",
            "host;reboot",
            "user@host",
            "$(id)",
            &"a".repeat(64),
        ] {
            assert!(check_address(bad).is_err(), "{bad}");
        }
        for good in [
            "pdns",
            "powerdns/pdns-auth-49:4.9.4",
            "ghcr.io/project-zot/zot-linux-amd64:v2.1.0",
            "localhost:5000/a/b__c.d-e:1",
            "[fd00::1]:5000/x",
            "registry.example/x@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(check_image(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Pdns:4.9",
            "pdns:",
            "pdns:-x",
            "pdns:a b",
            "-x/pdns",
            "a//b",
            "a_-b",
            "pdns@sha256:short",
            &format!("pdns:{}", "t".repeat(129)),
        ] {
            assert!(check_image(bad).is_err(), "{bad}");
        }
        assert!(check_tag("4.9_a-b.c").is_ok());
        assert!(check_tag(".x").is_err());
        for good in ["v1.28.5+k3s1", "v1.30.0-rc1+k3s2"] {
            assert!(check_k3s_tag(good).is_ok(), "{good}");
        }
        for bad in [
            "1.28.5+k3s1",
            "v1.28+k3s1",
            "v1.28.5",
            "v1.28.5+k3s",
            "v1.28.5+k3s1;x",
        ] {
            assert!(check_k3s_tag(bad).is_err(), "{bad}");
        }
        for good in ["2.1.0", "v4.7.3", "1.2.0-rc1", "49"] {
            assert!(check_version(good).is_ok(), "{good}");
        }
        for bad in ["", "latest", "1..2", "1.2-", "1.2 x"] {
            assert!(check_version(bad).is_err(), "{bad}");
        }
        assert!(check_container_name("foundry-dns_1.x").is_ok());
        assert!(check_container_name("-x").is_err());
        assert!(check_container_name(&"a".repeat(64)).is_err());
        let long = format!("{}.com", "a".repeat(64));
        assert!(long.parse::<DnsName>().is_err());
        let quoted = check_address(&"\u{1b}".repeat(200)).expect_err("bad");
        assert!(
            !quoted.contains('\u{1b}') && quoted.contains("…"),
            "{quoted}"
        );
    }

    #[test]
    fn names_secrets_and_durations() {
        assert!("Lab.Example.com.".parse::<DnsName>().is_ok());
        assert_eq!(
            "Lab.Example.com"
                .parse::<DnsName>()
                .expect("name")
                .canonical(),
            "lab.example.com."
        );
        for bad in ["", "a..b", "-a.com", "a_b.com", "a b"] {
            assert!(bad.parse::<DnsName>().is_err(), "{bad}");
        }
        assert!(
            "${secret:foundry-core/dns:api_key}"
                .parse::<SecretField>()
                .is_ok()
        );
        let literal = "hunter2".parse::<SecretField>().expect_err("literal");
        assert!(!literal.contains("hunter2"), "{literal}");
        assert!("x${secret:a:b}".parse::<SecretField>().is_err());
        assert!("30d".parse::<Retention>().is_ok());
        assert_eq!(
            "2w 1d".parse::<Retention>().expect("two units").duration(),
            std::time::Duration::from_secs(15 * 86_400)
        );
        assert!("30 parsecs".parse::<Retention>().is_err());
        assert!("forever".parse::<Retention>().is_err());
        assert!("0d".parse::<Retention>().is_err());
        let url: HttpUrl = "https://truenas.lab:8443/api".parse().expect("url");
        assert_eq!(url.to_string(), "https://truenas.lab:8443/api");
        assert_eq!(url.url().port(), Some(8443));
        for bad in [
            "truenas.lab",
            "ftp://x",
            "https://",
            "https://a b",
            "http://[::1",
        ] {
            assert!(bad.parse::<HttpUrl>().is_err(), "{bad}");
        }
    }
}
