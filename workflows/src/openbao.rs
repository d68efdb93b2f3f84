//! `openbao-install`: OpenBAO as a container on an infra host's Docker Engine, on a
//! network at a fixed address, its raft data in a named volume; initialized, unsealed,
//! with a KV v2 mount at `kv/`, Foundry's policy and Foundry's own token. The unseal keys
//! and root token are handed to the user once, in a private file, and then forgotten.
//! `status` answers from the live container and server only.

pub mod component;
pub mod image;
pub mod recover;
pub mod tls;
pub mod token_store;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use foundry_activities::container::{ContainerFile, ContainerSpec, labelled_state};
use foundry_activities::openbao::{
    BaoClient, BaoHandover, BaoInit, BaoInitStatus, BaoKvMount, BaoPolicy, BaoReady, BaoRevokeRoot,
    BaoToken, BaoUnseal, ForgetInit, Health, InitMaterial, InitOutput, TokenStore,
};
use foundry_core::{ActivityError, Ctx, RunError, SecretValue, Workflow};
use serde::{Deserialize, Serialize};

use crate::install;

pub use foundry_activities::container::Endpoint;
pub use image::{OPENBAO_IMAGE, build_step};
pub use token_store::FileTokenStore;

/// The label on OpenBAO's container, with its name.
pub const OPENBAO_LABEL: &str = "foundry.openbao";
/// Where Foundry keeps its secrets, and its policy's name.
pub const KV_MOUNT: &str = "kv";
pub const POLICY: &str = "foundry";
/// The API port.
pub const PORT: u16 = 8200;
/// How long the API may take to answer once the container runs.
const READY_TIMEOUT_S: u64 = 60;

/// Foundry's policy: its KV mount, reading its own mount and policy, and its own token.
pub const POLICY_RULES: &str = r#"path "kv/*" {
  capabilities = ["create", "read", "update", "patch", "delete", "list"]
}

path "sys/mounts/kv" {
  capabilities = ["read"]
}

path "sys/policies/acl/foundry" {
  capabilities = ["read"]
}

path "auth/token/lookup-self" {
  capabilities = ["read"]
}

path "auth/token/renew-self" {
  capabilities = ["update"]
}
"#;

fn default_image() -> String {
    OPENBAO_IMAGE.into()
}

fn one() -> u32 {
    1
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenbaoInput {
    /// The infra host's Docker Engine.
    #[serde(default)]
    pub endpoint: Endpoint,
    /// The container's name (`foundry-openbao`).
    pub name: String,
    #[serde(default = "default_image")]
    pub image: String,
    /// Build the image on this machine's Engine when it is missing (the lab's image).
    #[serde(default = "crate::install::yes")]
    pub build_image: bool,
    /// How the image reaches the Engine when it is not there: `pull` (by that Engine, from
    /// its registry) or `load` (from this machine's Engine, through the endpoint); by
    /// default `load` for an image built here and `pull` for any other.
    #[serde(default)]
    pub image_source: Option<foundry_activities::container::ImageSource>,
    /// A registry (`host[:port][/prefix]`) the Engine pulls the image through instead of
    /// its own registry.
    #[serde(default)]
    pub registry_mirror: Option<String>,
    #[serde(default = "crate::install::lab_base_image")]
    pub base_image: String,
    /// The Docker network to join, and the fixed address on it.
    pub network: String,
    pub ipv4: String,
    /// The named volume holding the raft data.
    pub volume: String,
    #[serde(default = "one")]
    pub shares: u32,
    #[serde(default = "one")]
    pub threshold: u32,
    /// The file the unseal keys and root token are handed over in, once.
    pub handover: PathBuf,
    /// A file to keep Foundry's token in; unless given, the home's store that
    /// `FOUNDRY_KEYRING` chooses (the OS keyring, else `$FOUNDRY_HOME/openbao/token`).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Other addresses and DNS names OpenBAO is reached at (a host's address it is
    /// published on), for its certificate beside its container address and name.
    #[serde(default)]
    pub names: Vec<String>,
    /// Hand the root token over instead of revoking it once Foundry's token is made.
    #[serde(default)]
    pub keep_root_token: bool,
    /// A certificate of the user's own (`components.openbao.tls`), served instead of one
    /// issued from the stack's CA: where it is, never its key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::config::OwnTls>,
}

impl OpenbaoInput {
    pub fn addr(&self) -> String {
        format!("https://{}:{PORT}", self.ipv4)
    }

    /// The certificate's names: the container's address, its name, then `names`. A
    /// certificate of the user's own must cover the address and `names`, where clients
    /// reach OpenBAO; the container's name is Foundry's, not theirs.
    pub fn sans(&self) -> Vec<String> {
        let mut sans = vec![self.ipv4.clone()];
        if self.tls.is_none() {
            sans.push(self.name.clone());
        }
        for name in &self.names {
            if !sans.contains(name) {
                sans.push(name.clone());
            }
        }
        sans
    }

    /// The file naming the kept init answer's reference while the run needs it.
    fn ref_file(&self) -> PathBuf {
        self.handover
            .with_file_name(format!(".{}-init.ref", self.name))
    }

    fn token_store(&self) -> Result<Arc<dyn TokenStore>, RunError> {
        if let Some(path) = &self.token_file {
            return Ok(Arc::new(FileTokenStore::new(path)));
        }
        let home = foundry_core::Home::from_env().map_err(|e| RunError::workflow(e.to_string()))?;
        token_store::for_home(home.root()).map_err(|e| RunError::workflow(e.with_hint()))
    }

    fn spec(&self, cert: &tls::CertOutput) -> ContainerSpec {
        let addr = self.addr();
        let cluster = format!("https://{}:{}", self.ipv4, PORT + 1);
        let file = |source: &PathBuf, sha256: &str, mode: u32| ContainerFile {
            source: source.clone(),
            sha256: sha256.to_string(),
            mode,
            uid: 0,
            gid: 0,
        };
        ContainerSpec {
            name: self.name.clone(),
            image: self.image.clone(),
            cmd: Some(vec![
                "server".into(),
                format!("-config={}", image::CONFIG_PATH),
            ]),
            entrypoint: None,
            env: BTreeMap::from([
                ("BAO_API_ADDR".to_string(), addr),
                ("BAO_CLUSTER_ADDR".to_string(), cluster),
            ]),
            labels: BTreeMap::from([(OPENBAO_LABEL.to_string(), self.name.clone())]),
            hostname: Some(self.name.clone()),
            network: Some(self.network.clone()),
            ipv4: Some(self.ipv4.clone()),
            privileged: false,
            binds: vec![format!("{}:{}", self.volume, image::DATA_PATH)],
            files: BTreeMap::from([
                (
                    image::TLS_CERT_PATH.to_string(),
                    file(&cert.cert, &cert.cert_sha256, 0o644),
                ),
                (
                    image::TLS_KEY_PATH.to_string(),
                    file(&cert.key, &cert.key_sha256, 0o600),
                ),
            ]),
            ..ContainerSpec::default()
        }
    }
}

/// What the install did; every field false on a run that changed nothing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpenbaoOutput {
    pub addr: String,
    pub container_created: bool,
    pub container_recreated: bool,
    /// This run initialized the server.
    pub initialized: bool,
    pub unsealed: bool,
    pub kv_mounted: bool,
    pub policy_written: bool,
    pub token_created: bool,
    /// The unseal keys (and the root token, if kept) are in their files (this run's
    /// init).
    pub handed_over: bool,
    /// The file saying what was handed over and where.
    pub handover: PathBuf,
    /// The files holding one secret each: the unseal keys in order, then the root token.
    #[serde(default)]
    pub handover_files: Vec<PathBuf>,
    /// The root token of this run's init was revoked once Foundry's token was made.
    #[serde(default)]
    pub root_token_revoked: bool,
}

impl OpenbaoOutput {
    pub fn changed(&self) -> bool {
        !self.changes().is_empty()
    }

    /// What this run changed, for people; empty when nothing changed.
    pub fn changes(&self) -> Vec<String> {
        [
            (self.container_created, "container created"),
            (self.container_recreated, "container replaced"),
            (self.initialized, "initialized"),
            (self.unsealed, "unsealed"),
            (self.kv_mounted, "KV mounted at kv/"),
            (self.policy_written, "policy written"),
            (self.token_created, "Foundry's token made"),
            (self.handed_over, "keys handed over"),
            (self.root_token_revoked, "root token revoked"),
        ]
        .into_iter()
        .filter(|(done, _)| *done)
        .map(|(_, what)| what.to_string())
        .collect()
    }
}

/// The token privileged steps act with: the root token of this install's init while it is
/// kept, else Foundry's stored token (a re-run). Revealed here, never journaled.
async fn privileged(ctx: &Ctx, init: &InitOutput, store: &dyn TokenStore) -> Option<SecretValue> {
    let root = init
        .reference
        .as_ref()
        .and_then(|r| ctx.reveal(r).ok())
        .and_then(|answer| InitMaterial::parse(&answer).ok())
        .map(|m| m.root_token);
    match root {
        Some(root) => Some(root),
        None => store.fetch().await.ok().flatten(),
    }
}

#[derive(Default)]
pub struct OpenbaoInstall;

impl Workflow for OpenbaoInstall {
    const NAME: &'static str = "openbao-install";
    const VERSION: u32 = 1;
    type Input = OpenbaoInput;
    type Output = OpenbaoOutput;

    fn check(&self, input: &OpenbaoInput) -> Result<(), String> {
        install::check_names(&[
            ("name", &input.name),
            ("network", &input.network),
            ("volume", &input.volume),
        ])?;
        install::check_ipv4(&input.ipv4)?;
        if input.threshold == 0 || input.shares == 0 || input.threshold > input.shares {
            return Err(format!(
                "threshold {} of {} shares: need 1 <= threshold <= shares",
                input.threshold, input.shares
            ));
        }
        if input.shares > 10 {
            return Err(format!("{} shares: at most 10", input.shares));
        }
        if input.handover.file_name().is_none() {
            return Err(format!(
                "handover `{}`: expected a file path",
                input.handover.display()
            ));
        }
        // A certificate of the user's own is checked before anything is installed.
        if let Some(own) = &input.tls {
            own.check(&input.sans()).map_err(|e| e.0)?;
        }
        Ok(())
    }

    async fn run(&self, ctx: Ctx, input: OpenbaoInput) -> Result<OpenbaoOutput, RunError> {
        let addr = input.addr();
        let store = input.token_store()?;

        let home = foundry_core::Home::from_env().map_err(|e| RunError::workflow(e.to_string()))?;
        let cert = tls::OpenbaoCert {
            home: home.root().to_path_buf(),
            name: input.name.clone(),
            sans: input.sans(),
            port: PORT,
            own: input.tls.clone(),
        };
        let cert = ctx.step("openbao/tls", &cert).await?;
        let build = input
            .build_image
            .then(|| build_step(&input.image, &input.base_image));
        let spec = input.spec(&cert);
        let source = install::source(input.build_image, input.image_source);
        let delivery = (source, input.registry_mirror.clone());
        let container =
            install::container(&ctx, "openbao", &input.endpoint, build, delivery, spec).await?;
        let ready = BaoReady {
            addr: addr.clone(),
            timeout_s: READY_TIMEOUT_S,
        };
        ctx.step("openbao/api", &ready).await?;

        let before = BaoInitStatus { addr: addr.clone() };
        let before = ctx.step("openbao/init-status", &before).await?;
        let init = BaoInit {
            addr: addr.clone(),
            endpoint: input.endpoint.clone(),
            container: input.name.clone(),
            shares: input.shares,
            threshold: input.threshold,
            initialized_before: before.initialized,
            ref_file: input.ref_file(),
            lost_hint: format!(
                "if nothing is stored in it yet, remove the container and its data \
                 (`docker rm -f {}` and `docker volume rm {}`) and install again",
                input.name, input.volume
            ),
        };
        let init = ctx.step("openbao/init", &init).await?;
        let unseal = BaoUnseal {
            addr: addr.clone(),
            init: init.reference.clone(),
        };
        let unsealed = ctx.step("openbao/unseal", &unseal).await?;

        let token = privileged(&ctx, &init, store.as_ref()).await;
        let kv = BaoKvMount {
            addr: addr.clone(),
            path: KV_MOUNT.into(),
            token: token.clone(),
        };
        let kv = ctx.step("openbao/kv", &kv).await?;
        let policy = BaoPolicy {
            addr: addr.clone(),
            name: POLICY.into(),
            rules: POLICY_RULES.into(),
            token: token.clone(),
        };
        let policy = ctx.step("openbao/policy", &policy).await?;
        let foundry_token = BaoToken {
            addr: addr.clone(),
            policy: POLICY.into(),
            period: recover::TOKEN_PERIOD.into(),
            token,
            store,
        };
        let foundry_token = ctx.step("openbao/token", &foundry_token).await?;
        let revoke = BaoRevokeRoot {
            addr: addr.clone(),
            init: init.reference.clone(),
            keep: input.keep_root_token,
        };
        let revoked = ctx.step("openbao/revoke-root", &revoke).await?;

        let handover = BaoHandover {
            init: init.reference.clone(),
            path: input.handover.clone(),
            addr: addr.clone(),
            name: input.name.clone(),
            threshold: input.threshold,
            keep_root_token: input.keep_root_token,
        };
        let handover = ctx.step("openbao/handover", &handover).await?;
        let forget = ForgetInit {
            init: init.reference.clone(),
            ref_file: input.ref_file(),
        };
        ctx.step("openbao/forget", &forget).await?;

        Ok(OpenbaoOutput {
            addr,
            container_created: container.created,
            container_recreated: container.recreated,
            initialized: init.reference.is_some(),
            unsealed: unsealed.unsealed,
            kv_mounted: kv.mounted,
            policy_written: policy.written,
            token_created: foundry_token.created,
            handed_over: handover.handed_over,
            handover: handover.path,
            handover_files: handover.files,
            root_token_revoked: revoked.revoked,
        })
    }
}

/// OpenBAO as it is now: its container, and what `sys/health` says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenbaoStatus {
    pub name: String,
    pub addr: String,
    /// The container's state (`running`, `exited`, …); none when there is no container.
    pub container: Option<String>,
    /// None when the API does not answer.
    pub health: Option<Health>,
    /// Why the API did not answer.
    pub error: Option<String>,
}

/// Asks the Engine and the server, now: nothing is remembered.
pub async fn status(
    endpoint: &Endpoint,
    name: &str,
    addr: &str,
) -> Result<OpenbaoStatus, ActivityError> {
    let container = labelled_state(endpoint, OPENBAO_LABEL, name).await?;
    // Without the stack's CA (before the first install makes it) no client can be
    // made: OpenBAO is then not answering, which is no error of the status itself.
    let health = match BaoClient::new(addr) {
        Ok(client) => client.health().await,
        Err(e) => Err(e),
    };
    let (health, error) = match health {
        Ok(h) => (Some(h), None),
        Err(e) => (None, Some(e.message)),
    };
    Ok(OpenbaoStatus {
        name: name.to_string(),
        addr: addr.to_string(),
        container,
        health,
        error,
    })
}
