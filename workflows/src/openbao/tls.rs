//! The stack's CA and OpenBAO's certificate. The CA is made once, on the first OpenBAO
//! install, and kept in the home (`tls/ca.crt`, `tls/ca.key` 0600); it is never made again
//! while it is there, since every client pins it. OpenBAO's certificate is issued from it
//! with the server's addresses and names as SANs, kept beside it, and issued again only
//! when those change. The same step records where Foundry's token may be sent (the
//! binding, [`TokenBinding`]): those names, the port, and the CA's fingerprint.

use std::path::{Path, PathBuf};

use foundry_activities::openbao::CA_CERT_PATH;
use foundry_core::{Activity, ActivityCx, ActivityError, InDoubt, SecretValue};

use crate::config::{KeyField, OwnTls};
use crate::secret_ref;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The home's folder of TLS material.
pub const TLS_DIR: &str = "tls";
/// Where the home records what Foundry's OpenBAO token is for.
pub const BINDING_PATH: &str = "openbao/token-binding.json";

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

impl From<TlsError> for ActivityError {
    fn from(e: TlsError) -> Self {
        ActivityError::permanent(e.0)
    }
}

/// The CA's subject; fixed, so that the CA kept as a key and a certificate can issue again.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "Foundry stack CA");
    name.push(DnType::OrganizationName, "Foundry");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

/// The stack's CA: its certificate (PEM) and its key.
pub struct StackCa {
    pub cert_pem: String,
    key: KeyPair,
}

impl StackCa {
    /// The CA kept under `home`, made and kept first when there is none. A certificate
    /// without its key (or the reverse) is an error: making a new CA would break every
    /// client that pins the old one.
    pub fn ensure(home: &Path) -> Result<StackCa, TlsError> {
        let cert_path = home.join(CA_CERT_PATH);
        let key_path = home.join(TLS_DIR).join("ca.key");
        match (cert_path.exists(), key_path.exists()) {
            (true, true) => {
                let cert_pem = read(&cert_path)?;
                let key = KeyPair::from_pem(&read(&key_path)?).map_err(|e| {
                    TlsError(format!("{}: not a private key: {e}", key_path.display()))
                })?;
                Ok(StackCa { cert_pem, key })
            }
            (false, false) => {
                let key = KeyPair::generate()
                    .map_err(|e| TlsError(format!("making the stack's CA key: {e}")))?;
                let cert = ca_params()
                    .self_signed(&key)
                    .map_err(|e| TlsError(format!("making the stack's CA: {e}")))?;
                let cert_pem = cert.pem();
                write(&key_path, key.serialize_pem().as_bytes())?;
                write(&cert_path, cert_pem.as_bytes())?;
                Ok(StackCa { cert_pem, key })
            }
            _ => Err(TlsError(format!(
                "the stack's CA is half there: {} and {} go together\nhint: put the missing \
                 one back; removing both makes a new CA that no client trusts yet (a CA \
                 without its key here is the one of components.openbao.tls: give that \
                 section again)",
                cert_path.display(),
                key_path.display()
            ))),
        }
    }

    /// A server certificate for `sans` (IP addresses and DNS names) and its key (PEM).
    pub fn issue(&self, sans: &[String]) -> Result<(String, SecretValue), TlsError> {
        let mut params = CertificateParams::new(sans.to_vec())
            .map_err(|e| TlsError(format!("the names {sans:?}: {e}")))?;
        let mut name = DistinguishedName::new();
        name.push(
            DnType::CommonName,
            sans.first().cloned().unwrap_or_default(),
        );
        params.distinguished_name = name;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().map_err(|e| TlsError(format!("making a key: {e}")))?;
        let ca = ca_params();
        let issuer = Issuer::from_params(&ca, &self.key);
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|e| TlsError(format!("issuing a certificate for {sans:?}: {e}")))?;
        Ok((cert.pem(), SecretValue::new(key.serialize_pem())))
    }
}

/// A certificate the user brings (`components.openbao.tls`), read and checked: its chain,
/// its key and its CA.
pub struct OwnMaterial {
    pub chain_pem: Vec<u8>,
    pub key_pem: SecretValue,
    pub ca_pem: Vec<u8>,
}

/// Reads a certificate or key from its file or its reference (environment, then
/// `~/.foundryvars`; never OpenBAO, which needs the key to start).
fn own_source(what: &str, field: &KeyField) -> Result<SecretValue, TlsError> {
    match field {
        KeyField::File(path) => std::fs::read(path)
            .map_err(|e| TlsError(format!("reading OpenBAO's {what} {}: {e}", path.display())))
            .and_then(|bytes| {
                String::from_utf8(bytes).map(SecretValue::new).map_err(|_| {
                    TlsError(format!("OpenBAO's {what} {}: not PEM text", path.display()))
                })
            }),
        KeyField::Secret(reference) => {
            let vars = secret_ref::Foundryvars::load(&secret_ref::vars_path())
                .map_err(|e| TlsError(e.to_string()))?;
            let env = |name: &str| std::env::var(name).ok();
            let resolver = secret_ref::Resolver {
                namespace: secret_ref::STACK_NAMESPACE.into(),
                env: &env,
                vars: &vars,
                store: None,
            };
            resolver
                .resolve(reference)
                .map(|(value, _)| value)
                .map_err(|e| {
                    let (message, hint) = secret_ref::message_and_hint(&e);
                    let hint = hint.map(|h| format!("\nhint: {h}")).unwrap_or_default();
                    TlsError(format!("OpenBAO's {what}: {message}{hint}"))
                })
        }
    }
}

impl OwnTls {
    /// The certificate, key and CA, read now and checked as every client will check them:
    /// the key is the certificate's, the certificate chains to the CA, is valid now, and
    /// covers each of `names` (the addresses and names OpenBAO is reached at).
    pub fn check(&self, names: &[String]) -> Result<OwnMaterial, TlsError> {
        use rustls::client::WebPkiServerVerifier;
        use rustls::client::danger::ServerCertVerifier;
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
        use rustls::{CertificateError, Error, InconsistentKeys};

        let cert = self.cert.to_string();
        let ca = self.ca.display().to_string();
        if names.is_empty() {
            return Err(TlsError(format!(
                "OpenBAO's certificate {cert}: no address of OpenBAO's to check it against"
            )));
        }
        let chain_pem = own_source("certificate", &self.cert)?;
        let chain = CertificateDer::pem_slice_iter(chain_pem.expose().as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .ok()
            .filter(|chain| !chain.is_empty())
            .ok_or_else(|| {
                TlsError(format!(
                    "OpenBAO's certificate {cert}: no PEM certificate in it"
                ))
            })?;
        let key_pem = own_source("key", &self.key)?;
        // The key is a secret: an error about it never quotes it.
        let key = PrivateKeyDer::from_pem_slice(key_pem.expose().as_bytes())
            .map_err(|_| TlsError(format!("OpenBAO's key {}: not a PEM private key", self.key)))?;
        let ca_pem = std::fs::read(&self.ca)
            .map_err(|e| TlsError(format!("reading OpenBAO's CA {ca}: {e}")))?;
        let mut roots = rustls::RootCertStore::empty();
        for found in CertificateDer::pem_slice_iter(&ca_pem) {
            let der = found.map_err(|_| TlsError(format!("OpenBAO's CA {ca}: not PEM")))?;
            roots
                .add(der)
                .map_err(|e| TlsError(format!("OpenBAO's CA {ca}: {e}")))?;
        }
        if roots.is_empty() {
            return Err(TlsError(format!(
                "OpenBAO's CA {ca}: no PEM certificate in it"
            )));
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        match rustls::sign::CertifiedKey::from_der(chain.clone(), key, &provider) {
            Ok(_) => {}
            Err(Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
                return Err(TlsError(format!(
                    "OpenBAO's key {} is not the key of the certificate {cert}: give the key the certificate was made for",
                    self.key
                )));
            }
            Err(e) => {
                return Err(TlsError(format!(
                    "OpenBAO's key {}: cannot be used: {e}",
                    self.key
                )));
            }
        }
        let verifier =
            WebPkiServerVerifier::builder_with_provider(std::sync::Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError(format!("OpenBAO's CA {ca}: {e}")))?;
        for name in names {
            let server = ServerName::try_from(name.as_str())
                .map_err(|_| TlsError(format!("`{name}` is neither an address nor a DNS name")))?;
            let verified =
                verifier.verify_server_cert(&chain[0], &chain[1..], &server, &[], UnixTime::now());
            let why = match verified {
                Ok(_) => continue,
                Err(Error::InvalidCertificate(e)) => match e {
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. } => format!(
                        "does not cover `{name}`, where OpenBAO is reached: its subject alternative names must include each of {}",
                        names.join(", ")
                    ),
                    CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                        "has expired: give a current one".to_string()
                    }
                    CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                        "is not valid yet (check this machine's clock)".to_string()
                    }
                    CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                        format!("was not issued by the CA {ca} (with the chain in its file)")
                    }
                    other => format!("is refused: {other:?}"),
                },
                Err(other) => format!("is refused: {other}"),
            };
            return Err(TlsError(format!("OpenBAO's certificate {cert} {why}")));
        }
        Ok(OwnMaterial {
            chain_pem: chain_pem.expose().as_bytes().to_vec(),
            key_pem,
            ca_pem,
        })
    }
}

/// SHA-256 of a PEM file's bytes, hex: how a binding names the CA it was made under.
pub fn fingerprint(pem: &[u8]) -> String {
    hex::encode(Sha256::digest(pem))
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|e| TlsError(format!("reading {}: {e}", path.display())))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    foundry_core::files::write_private(path, bytes)
        .map_err(|e| TlsError(format!("writing {}: {e}", path.display())))
}

/// Where Foundry's token may be sent: OpenBAO at one of `hosts`, on `port`, over TLS under
/// the CA whose fingerprint is `ca_sha256`. Kept beside the token, never inside it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenBinding {
    pub hosts: Vec<String>,
    pub port: u16,
    pub ca_sha256: String,
}

impl TokenBinding {
    pub fn load(home: &Path) -> Result<Option<TokenBinding>, TlsError> {
        let path = home.join(BINDING_PATH);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| TlsError(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(TlsError(format!("reading {}: {e}", path.display()))),
        }
    }

    fn save(&self, home: &Path) -> Result<(), TlsError> {
        let text = serde_json::to_vec_pretty(self)
            .map_err(|e| TlsError(format!("the token's binding: {e}")))?;
        write(&home.join(BINDING_PATH), &text)
    }

    /// Whether `addr` (a URL) is where the token belongs, under the CA `ca_pem`. Checked
    /// before a client is made, so nothing is sent anywhere else.
    pub fn allows(&self, addr: &str, ca_pem: &[u8]) -> Result<(), String> {
        let (host, scheme, port) = reqwest_url(addr)?;
        if scheme != "https"
            || port != self.port
            || !self.hosts.iter().any(|h| h.eq_ignore_ascii_case(&host))
        {
            return Err(format!(
                "Foundry's token was minted for OpenBAO at {} (port {}, TLS), not for {addr}",
                self.hosts.join(", "),
                self.port
            ));
        }
        if fingerprint(ca_pem) != self.ca_sha256 {
            return Err(format!(
                "Foundry's token was minted for OpenBAO under another CA than the one in {CA_CERT_PATH} now"
            ));
        }
        Ok(())
    }
}

/// A URL's host (an IPv6 address without its brackets), scheme and port (the scheme's
/// default when none is written).
fn reqwest_url(addr: &str) -> Result<(String, String, u16), String> {
    let url = url::Url::parse(addr).map_err(|e| format!("`{addr}` is not a URL: {e}"))?;
    let host = match url.host() {
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        Some(host) => host.to_string(),
        None => return Err(format!("`{addr}` names no host")),
    };
    let port = url
        .port_or_known_default()
        .ok_or_else(|| format!("`{addr}` has no port"))?;
    Ok((host, url.scheme().to_string(), port))
}

/// The step that gives OpenBAO its certificate: the stack's CA (made when the home has
/// none), a certificate for `sans` issued from it unless the kept one is for exactly these
/// names, and the token's binding. Its probe: the kept certificate is for these names and
/// the binding says so.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenbaoCert {
    /// The home the CA and certificate are kept in.
    pub home: PathBuf,
    /// The container's name: the files are `tls/<name>.crt` and `tls/<name>.key`.
    pub name: String,
    /// IP addresses and DNS names, the first one the subject's name; with `own`, the
    /// names its certificate must cover.
    pub sans: Vec<String>,
    pub port: u16,
    /// The user's own certificate, served instead of one issued here; its CA is then the
    /// one clients pin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub own: Option<OwnTls>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertOutput {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// SHA-256 of each file's content (hex), for the container's spec.
    pub cert_sha256: String,
    pub key_sha256: String,
    /// This step issued a new certificate.
    pub issued: bool,
}

impl CertOutput {
    fn of(cert: PathBuf, key: PathBuf, issued: bool) -> Result<CertOutput, TlsError> {
        let digest = |path: &Path| -> Result<String, TlsError> {
            let bytes = std::fs::read(path)
                .map_err(|e| TlsError(format!("reading {}: {e}", path.display())))?;
            Ok(fingerprint(&bytes))
        };
        Ok(CertOutput {
            cert_sha256: digest(&cert)?,
            key_sha256: digest(&key)?,
            cert,
            key,
            issued,
        })
    }
}

impl OpenbaoCert {
    fn path(&self, ext: &str) -> PathBuf {
        self.home.join(TLS_DIR).join(format!("{}.{ext}", self.name))
    }

    fn binding(&self) -> Result<TokenBinding, TlsError> {
        let ca = std::fs::read(self.home.join(CA_CERT_PATH)).map_err(|e| {
            TlsError(format!(
                "reading the stack's CA in {}: {e}",
                self.home.display()
            ))
        })?;
        Ok(TokenBinding {
            hosts: self.sans.clone(),
            port: self.port,
            ca_sha256: fingerprint(&ca),
        })
    }

    /// The user's certificate as kept: its files hold exactly `own`'s, and the binding
    /// says so.
    fn own_kept(&self, own: &OwnMaterial) -> Result<bool, TlsError> {
        let same = |path: &Path, bytes: &[u8]| std::fs::read(path).is_ok_and(|kept| kept == bytes);
        Ok(same(&self.path("crt"), &own.chain_pem)
            && same(&self.path("key"), own.key_pem.expose().as_bytes())
            && same(&self.home.join(CA_CERT_PATH), &own.ca_pem)
            && TokenBinding::load(&self.home)?.as_ref() == Some(&self.binding()?))
    }

    /// Keeps the user's certificate where OpenBAO's container and every client find it:
    /// its CA becomes the home's `tls/ca.crt`. A home whose CA Foundry made (its key is
    /// there) is refused: replacing that CA silently would strand it.
    fn keep_own(&self, own: &OwnMaterial) -> Result<(), TlsError> {
        let ca_key = self.home.join(TLS_DIR).join("ca.key");
        let ca_cert = self.home.join(CA_CERT_PATH);
        if ca_key.exists() && !std::fs::read(&ca_cert).is_ok_and(|kept| kept == own.ca_pem) {
            return Err(TlsError(format!(
                "this home's OpenBAO certificate comes from the stack's own CA ({} and {}), \
                 which clients pin; it is not replaced by the CA of components.openbao.tls \
                 silently\nhint: to serve your own certificate, move both files away (your CA \
                 is then the one pinned) and install again",
                ca_cert.display(),
                ca_key.display()
            )));
        }
        write(&self.path("key"), own.key_pem.expose().as_bytes())?;
        write(&self.path("crt"), &own.chain_pem)?;
        write(&ca_cert, &own.ca_pem)?;
        self.binding()?.save(&self.home)
    }

    /// The kept certificate, when it is for these names and the binding says so.
    fn kept(&self) -> Result<Option<CertOutput>, TlsError> {
        if let Some(own) = &self.own {
            let own = own.check(&self.sans)?;
            return if self.own_kept(&own)? {
                CertOutput::of(self.path("crt"), self.path("key"), false).map(Some)
            } else {
                Ok(None)
            };
        }
        let (cert, key, sans) = (self.path("crt"), self.path("key"), self.path("sans"));
        if !(cert.exists() && key.exists() && self.home.join(CA_CERT_PATH).exists()) {
            return Ok(None);
        }
        let kept: Option<Vec<String>> = std::fs::read(&sans)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if kept.as_ref() != Some(&self.sans)
            || TokenBinding::load(&self.home)?.as_ref() != Some(&self.binding()?)
        {
            return Ok(None);
        }
        CertOutput::of(cert, key, false).map(Some)
    }
}

impl Activity for OpenbaoCert {
    type Output = CertOutput;

    fn kind(&self) -> &'static str {
        "openbao-cert"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<CertOutput>, ActivityError> {
        Ok(self.kept()?)
    }

    async fn apply(&self, _cx: &ActivityCx) -> Result<CertOutput, ActivityError> {
        if let Some(kept) = self.kept()? {
            return Ok(kept);
        }
        if let Some(own) = &self.own {
            self.keep_own(&own.check(&self.sans)?)?;
            return Ok(CertOutput::of(self.path("crt"), self.path("key"), true)?);
        }
        let ca = StackCa::ensure(&self.home)?;
        let (cert_pem, key) = ca.issue(&self.sans)?;
        write(&self.path("key"), key.expose().as_bytes())?;
        write(&self.path("crt"), cert_pem.as_bytes())?;
        let sans = serde_json::to_vec(&self.sans)
            .map_err(|e| ActivityError::permanent(format!("the names: {e}")))?;
        write(&self.path("sans"), &sans)?;
        self.binding()?.save(&self.home)?;
        Ok(CertOutput::of(self.path("crt"), self.path("key"), true)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_is_made_once_and_issues_certificates_for_the_names() {
        let home = tempfile::tempdir().expect("tempdir");
        let ca = StackCa::ensure(home.path()).expect("a new CA");
        let again = StackCa::ensure(home.path()).expect("the kept CA");
        assert_eq!(ca.cert_pem, again.cert_pem, "never made twice");
        let key = home.path().join("tls/ca.key");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).expect("key").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (cert, key) = again
            .issue(&["10.77.0.20".into(), "foundry-openbao".into()])
            .expect("issued");
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(key.expose().contains("PRIVATE KEY"));

        std::fs::remove_file(home.path().join("tls/ca.key")).expect("rm");
        let e = StackCa::ensure(home.path()).err().expect("half a CA");
        assert!(e.0.contains("half there"), "{e}");
    }

    /// A CA of the user's own, and a certificate for `names` it issued (valid until 2020
    /// when `expired`), as files in `dir`: the CA, the certificate and its key.
    fn users_own(dir: &Path, names: &[&str], expired: bool, tag: &str) -> OwnTls {
        let mut ca = CertificateParams::default();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let ca_key = KeyPair::generate().expect("key");
        let ca_pem = ca.self_signed(&ca_key).expect("ca").pem();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        if expired {
            params.not_before = rcgen::date_time_ymd(2019, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 1, 1);
        }
        let key = KeyPair::generate().expect("key");
        let cert = params
            .signed_by(&key, &Issuer::from_params(&ca, &ca_key))
            .expect("signed");
        let file = |name: &str, text: &str| {
            let path = dir.join(format!("{tag}-{name}"));
            std::fs::write(&path, text).expect("write");
            path
        };
        OwnTls {
            cert: KeyField::File(file("crt", &cert.pem())),
            key: KeyField::File(file("key", &key.serialize_pem())),
            ca: file("ca", &ca_pem),
        }
    }

    #[test]
    fn a_users_own_certificate_is_checked_as_clients_will_check_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let names = ["10.77.0.20".to_string(), "bao.lab.example".to_string()];
        let good = users_own(
            dir.path(),
            &["10.77.0.20", "bao.lab.example"],
            false,
            "good",
        );
        let material = good.check(&names).expect("a good certificate");
        assert!(material.key_pem.expose().contains("PRIVATE KEY"));

        let e = good
            .check(&["10.77.0.21".to_string()])
            .err()
            .expect("another address");
        assert!(e.0.contains("does not cover `10.77.0.21`"), "{e}");

        let expired = users_own(dir.path(), &["10.77.0.20"], true, "old");
        let e = expired.check(&names[..1]).err().expect("expired");
        assert!(e.0.contains("has expired"), "{e}");

        let other = users_own(dir.path(), &["10.77.0.20"], false, "other");
        let mismatched = OwnTls {
            key: other.key.clone(),
            ..good.clone()
        };
        let e = mismatched.check(&names).err().expect("another key");
        assert!(e.0.contains("is not the key of the certificate"), "{e}");
        let key_text = std::fs::read_to_string(other.key.file().expect("file")).expect("key");
        assert!(!e.0.contains(&key_text), "never quotes the key");

        let foreign = OwnTls {
            ca: other.ca.clone(),
            ..good.clone()
        };
        let e = foreign.check(&names).err().expect("another CA");
        assert!(e.0.contains("was not issued by the CA"), "{e}");

        let not_pem = OwnTls {
            key: KeyField::File(other.ca.clone()),
            ..good.clone()
        };
        let e = not_pem.check(&names).err().expect("no key");
        assert!(e.0.contains("not a PEM private key"), "{e}");
        let missing = OwnTls {
            cert: KeyField::File(dir.path().join("nowhere.crt")),
            ..good
        };
        let e = missing.check(&names).err().expect("no file");
        assert!(e.0.contains("nowhere.crt"), "{e}");
        assert!(expired.check(&[]).is_err(), "never checked against no name");
    }

    #[test]
    fn a_binding_allows_only_its_hosts_port_and_ca() {
        let binding = TokenBinding {
            hosts: vec![
                "10.77.0.20".into(),
                "foundry-openbao".into(),
                "fd00::20".into(),
            ],
            port: 8200,
            ca_sha256: fingerprint(b"ca"),
        };
        binding
            .allows("https://[fd00::20]:8200/v1/sys/health", b"ca")
            .expect("an IPv6 address, bracketed in the URL");
        binding
            .allows("https://Foundry-OpenBAO:8200", b"ca")
            .expect("a name in another case");
        binding
            .allows("https://10.77.0.20:8200", b"ca")
            .expect("its own");
        binding
            .allows("https://foundry-openbao:8200/", b"ca")
            .expect("its name");
        for other in [
            "https://10.77.0.21:8200",
            "http://10.77.0.20:8200",
            "https://10.77.0.20:8201",
            "https://10.77.0.20",
            "https://10.77.0.20.evil.example:8200",
            "https://foundry-openbao@10.77.0.21:8200",
            "not a url",
        ] {
            assert!(binding.allows(other, b"ca").is_err(), "{other}");
        }
        assert!(
            binding
                .allows("https://10.77.0.20:8200", b"other CA")
                .is_err()
        );
    }
}
