//! The stack's CA and OpenBAO's certificate. The CA is made once, on the first OpenBAO
//! install, and kept in the home (`tls/ca.crt`, `tls/ca.key` 0600); it is never made again
//! while it is there, since every client pins it. OpenBAO's certificate is issued from it
//! with the server's addresses and names as SANs, kept beside it, and issued again only
//! when those change. The same step records where Foundry's token may be sent (the
//! binding, [`TokenBinding`]): those names, the port, and the CA's fingerprint.

use std::path::{Path, PathBuf};

use foundry_activities::openbao::CA_CERT_PATH;
use foundry_core::{Activity, ActivityCx, ActivityError, InDoubt, SecretValue};
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
                 one back; removing both makes a new CA that no client trusts yet",
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
        let url = reqwest_url(addr)?;
        let host = url.0.trim_start_matches('[').trim_end_matches(']');
        if url.1 != "https" || url.2 != self.port || !self.hosts.iter().any(|h| h == host) {
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

/// A URL's host, scheme and port (the scheme's default when none is written).
fn reqwest_url(addr: &str) -> Result<(String, String, u16), String> {
    let (scheme, rest) = addr
        .split_once("://")
        .ok_or_else(|| format!("`{addr}` is not a URL"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (
            host,
            port.parse::<u16>()
                .map_err(|_| format!("`{addr}`: `{port}` is not a port"))?,
        ),
        _ => (authority, if scheme == "https" { 443 } else { 80 }),
    };
    Ok((host.to_string(), scheme.to_string(), port))
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
    /// IP addresses and DNS names, the first one the subject's name.
    pub sans: Vec<String>,
    pub port: u16,
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

    /// The kept certificate, when it is for these names and the binding says so.
    fn kept(&self) -> Result<Option<CertOutput>, TlsError> {
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

    #[test]
    fn a_binding_allows_only_its_hosts_port_and_ca() {
        let binding = TokenBinding {
            hosts: vec!["10.77.0.20".into(), "foundry-openbao".into()],
            port: 8200,
            ca_sha256: fingerprint(b"ca"),
        };
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
