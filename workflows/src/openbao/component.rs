//! OpenBAO as a component of the stack: `components.openbao`, placed on `network.openbao_hosts`.

use std::path::{Path, PathBuf};

use foundry_core::{BoxFuture, Part};
use serde::Serialize;
use serde_json::Value;

use crate::component::container::{self, ContainerPlacement, Site};
use crate::component::{
    self as c, Component, ComponentError, ComponentStatus, InstallOptions, Placement,
};
use crate::config::StackConfig;

pub struct Openbao;

impl Openbao {
    fn place(&self, stack: &StackConfig) -> Result<ContainerPlacement, ComponentError> {
        container::place(
            stack,
            Site {
                component: self.name(),
                service: container::components(stack).openbao,
                hosts: container::hosts(stack, |n| &n.openbao_hosts),
                default_name: "foundry-openbao",
                default_image: super::OPENBAO_IMAGE,
                lab_image: super::OPENBAO_IMAGE,
            },
        )
    }
}

/// Where OpenBAO (the container `name`) hands the unseal keys and root token over, once.
pub fn handover_path(home: &Path, name: &str) -> PathBuf {
    home.join("openbao").join(format!("{name}-handover.txt"))
}

impl Component for Openbao {
    fn name(&self) -> &'static str {
        "openbao"
    }

    fn about(&self) -> &'static str {
        "OpenBAO: the stack's secrets"
    }

    fn keeps_secrets(&self) -> bool {
        true
    }

    fn placement(&self, stack: &StackConfig) -> Result<Placement, ComponentError> {
        Ok(self.place(stack)?.placement())
    }

    fn install(&self) -> Part {
        Part::of::<super::OpenbaoInstall>()
    }

    fn install_input(
        &self,
        stack: &StackConfig,
        home: &Path,
        options: &InstallOptions,
    ) -> Result<Value, ComponentError> {
        let place = self.place(stack)?;
        let name = place.name.as_str();
        c::input(
            self.name(),
            &super::OpenbaoInput {
                endpoint: place.endpoint.clone(),
                name: name.into(),
                image: place.image.clone(),
                build_image: place.build_image,
                image_source: place.image_source,
                registry_mirror: place.registry_mirror.clone(),
                base_image: crate::image::LAB_IMAGE.into(),
                network: place.network.clone(),
                ipv4: place.address.to_string(),
                volume: container::single_volume(name),
                shares: 3,
                threshold: 2,
                handover: handover_path(home, name),
                token_file: None,
                names: Vec::new(),
                keep_root_token: options.keep_root_token,
                tls: stack
                    .components
                    .as_ref()
                    .and_then(|c| c.openbao.tls.clone()),
            },
        )
    }

    fn changes(&self, output: Value) -> Result<Vec<String>, ComponentError> {
        Ok(c::output::<super::OpenbaoOutput>(self.name(), output)?.changes())
    }

    fn status<'a>(
        &'a self,
        stack: &'a StackConfig,
    ) -> BoxFuture<'a, Result<ComponentStatus, ComponentError>> {
        Box::pin(async move {
            let place = self.place(stack)?;
            let addr = format!("https://{}:{}", place.address, super::PORT);
            let found = super::status(&place.endpoint, &place.name, &addr)
                .await
                .map_err(|e| place.failed(e))?;
            let container = found.container.clone().unwrap_or_else(|| "missing".into());
            let (healthy, said) = match &found.health {
                Some(h) if !h.initialized => (false, "not initialized".to_string()),
                Some(h) if h.sealed => (false, "sealed".to_string()),
                Some(h) if h.standby => (false, "standby".to_string()),
                Some(_) => (true, "unsealed".to_string()),
                None => (
                    false,
                    format!("not answering: {}", found.error.clone().unwrap_or_default()),
                ),
            };
            let mut summary = format!("container {container}, {said}");
            let mut more = serde_json::Map::new();
            if healthy {
                let life = token_status(stack).await;
                summary = format!("{summary}; {}", life.said());
                more.insert("token".into(), serde_json::json!(life));
            }
            let version = found.health.as_ref().map(|h| h.version.clone());
            let healthy = healthy && container == "running";
            let mut status = place.status(
                healthy,
                summary,
                version,
                &found,
                [(place.name.clone(), container)],
            )?;
            if !stack_ca_made() {
                status.parts.insert(STACK_CA_PART.into(), "missing".into());
            }
            status.more = more;
            Ok(status)
        })
    }

    fn volumes(&self, stack: &StackConfig) -> Vec<String> {
        self.place(stack)
            .map(|p| vec![container::single_volume(&p.name)])
            .unwrap_or_default()
    }

    fn image(&self, stack: &StackConfig) -> Option<String> {
        self.place(stack).ok().map(|p| p.image)
    }

    fn running_image<'a>(
        &'a self,
        stack: &'a StackConfig,
    ) -> BoxFuture<'a, Result<Option<String>, ComponentError>> {
        Box::pin(async move {
            let place = self.place(stack)?;
            place.running_image(&place.name).await
        })
    }

    fn upgrade_steps(&self) -> &'static [&'static str] {
        // OpenBAO's upgrade guide (openbao.org/docs/upgrading/ha-upgrade): stop the server,
        // replace the binary, start it, unseal it, check the version `bao status` shows.
        // A server started on the new image comes back sealed.
        &["unseal it again with the unseal keys Foundry keeps"]
    }

    fn upgrade(&self) -> Part {
        Part::of::<OpenbaoUpgrade>()
    }

    fn upgrade_input(
        &self,
        stack: &StackConfig,
        home: &Path,
        image: &str,
    ) -> Result<Value, ComponentError> {
        let mut install: super::OpenbaoInput = c::output(
            self.name(),
            self.install_input(stack, home, &InstallOptions::default())?,
        )?;
        install.image = image.to_string();
        c::input(self.name(), &install)
    }

    fn upgrade_changes(&self, output: Value) -> Result<Vec<String>, ComponentError> {
        Ok(c::output::<UpgradeOutput>(self.name(), output)?.changes())
    }
}

/// `openbao-upgrade`: OpenBAO's container on another image, its raft data kept in its
/// volume, then unsealed again. The unseal keys Foundry keeps (the handover's files) are
/// read first, so a server whose keys are gone is never restarted sealed for good.
#[derive(Default)]
pub struct OpenbaoUpgrade;

/// What an OpenBAO upgrade did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct UpgradeOutput {
    pub image: String,
    pub container_recreated: bool,
    pub unsealed: bool,
}

impl UpgradeOutput {
    fn changes(&self) -> Vec<String> {
        let mut said = Vec::new();
        if self.container_recreated {
            said.push(format!("container recreated on {}", self.image));
        }
        if self.unsealed {
            said.push("unsealed".into());
        }
        said
    }
}

impl foundry_core::Workflow for OpenbaoUpgrade {
    const NAME: &'static str = "openbao-upgrade";
    const VERSION: u32 = 1;
    type Input = super::OpenbaoInput;
    type Output = UpgradeOutput;

    fn check(&self, input: &super::OpenbaoInput) -> Result<(), String> {
        super::OpenbaoInstall.check(input)
    }

    async fn run(
        &self,
        ctx: foundry_core::Ctx,
        input: super::OpenbaoInput,
    ) -> Result<UpgradeOutput, foundry_core::RunError> {
        let keys = KeptUnsealKeys {
            handover: input.handover.clone(),
            name: input.name.clone(),
            shares: input.shares,
            threshold: input.threshold,
        };
        let keys = ctx.step("openbao/unseal-keys", &keys).await?;
        let home = foundry_core::Home::from_env()
            .map_err(|e| foundry_core::RunError::workflow(e.to_string()))?;
        let cert = super::tls::OpenbaoCert {
            home: home.root().to_path_buf(),
            name: input.name.clone(),
            sans: input.sans(),
            port: super::PORT,
            own: input.tls.clone(),
        };
        let cert = ctx.step("openbao/tls", &cert).await?;
        let build = input
            .build_image
            .then(|| super::build_step(&input.image, &input.base_image));
        let source = crate::install::source(input.build_image, input.image_source);
        let delivery = (source, input.registry_mirror.clone());
        let spec = input.spec(&cert);
        let container =
            crate::install::container(&ctx, "openbao", &input.endpoint, build, delivery, spec)
                .await?;
        let ready = foundry_activities::openbao::BaoReady {
            addr: input.addr(),
            timeout_s: super::READY_TIMEOUT_S,
        };
        ctx.step("openbao/api", &ready).await?;
        let unseal = foundry_activities::openbao::BaoUnseal {
            addr: input.addr(),
            init: Some(keys),
        };
        let unsealed = ctx.step("openbao/unseal", &unseal).await?;
        Ok(UpgradeOutput {
            image: input.image,
            container_recreated: container.recreated || container.created,
            unsealed: unsealed.unsealed,
        })
    }
}

/// The unseal keys Foundry keeps for OpenBAO `name`: the handover's files
/// (`<handover stem>-unseal-key-<n>.txt`), kept in the run's store as an init answer
/// holds them (no root token), by reference only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct KeptUnsealKeys {
    pub handover: PathBuf,
    pub name: String,
    pub shares: u32,
    pub threshold: u32,
}

impl foundry_core::Activity for KeptUnsealKeys {
    type Output = foundry_core::SecretRef;

    fn kind(&self) -> &'static str {
        "openbao-kept-unseal-keys"
    }

    fn in_doubt(&self) -> foundry_core::InDoubt {
        // It reads files and keeps their values under a name their values give.
        foundry_core::InDoubt::Rerun
    }

    async fn probe(
        &self,
        _cx: &foundry_core::ActivityCx,
    ) -> Result<Option<foundry_core::SecretRef>, foundry_core::ActivityError> {
        Ok(None)
    }

    async fn apply(
        &self,
        cx: &foundry_core::ActivityCx,
    ) -> Result<foundry_core::SecretRef, foundry_core::ActivityError> {
        use foundry_activities::openbao::handover_file;
        let keys: Vec<String> = (1..=self.shares)
            .filter_map(|n| {
                let file = handover_file(&self.handover, &format!("unseal-key-{n}"));
                let text = std::fs::read_to_string(file).ok()?;
                Some(text.trim().to_string()).filter(|k| !k.is_empty())
            })
            .collect();
        if keys.len() < self.threshold as usize {
            return Err(foundry_core::ActivityError::permanent(format!(
                "OpenBAO `{}` comes back sealed on its new image, and Foundry keeps {} of the {}                  unseal keys it needs (in the files beside {}): nothing was changed
                 hint: put {} of its unseal keys back, one per file                  (`{}`), then upgrade again",
                self.name,
                keys.len(),
                self.threshold,
                self.handover.display(),
                self.threshold,
                handover_file(&self.handover, "unseal-key-1").display()
            )));
        }
        let answer = serde_json::json!({ "keys_base64": keys, "root_token": "" });
        let answer = foundry_core::SecretValue::new(answer.to_string());
        let kept = cx.keep(&answer)?;
        // Each key on its own is redacted from the run's events from now on.
        foundry_activities::openbao::InitMaterial::revealed(cx, &kept)?;
        Ok(kept)
    }
}

/// Foundry's OpenBAO token as `component status` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct TokenStatus {
    /// Seconds left (0: it never expires); none when it could not be asked.
    pub ttl_s: Option<u64>,
    /// Less than half its time left, and not renewable any further.
    pub low: bool,
    pub renewed: bool,
    pub error: Option<String>,
}

/// Foundry's token's life, asked of OpenBAO with the token itself.
async fn token_status(stack: &StackConfig) -> TokenStatus {
    let asked = async {
        let home = foundry_core::Home::from_env().map_err(|e| e.to_string())?;
        let vault =
            crate::secrets::Vault::of_stack(stack, home.root()).map_err(|e| e.message.clone())?;
        vault
            .token_life()
            .await
            .cloned()
            .map_err(|e| e.message.clone())
    };
    match asked.await {
        Ok(life) => TokenStatus {
            ttl_s: Some(life.ttl_s),
            low: life.low,
            renewed: life.renewed,
            error: None,
        },
        Err(error) => TokenStatus {
            ttl_s: None,
            low: false,
            renewed: false,
            error: Some(error),
        },
    }
}

impl TokenStatus {
    /// For the status line: `Foundry's token: 31d 23h left`.
    fn said(&self) -> String {
        match (&self.error, self.ttl_s) {
            (Some(e), _) => format!("Foundry's token: {e}"),
            (None, Some(ttl)) => {
                let left = foundry_activities::openbao::TokenLife {
                    ttl_s: ttl,
                    creation_ttl_s: 0,
                    renewed: self.renewed,
                    low: self.low,
                }
                .left();
                let low = if self.low {
                    " (LOW: not renewable; see `foundry secret recover-token`)"
                } else {
                    ""
                };
                match ttl {
                    0 => format!("Foundry's token never expires{low}"),
                    _ => format!("Foundry's token: {left} left{low}"),
                }
            }
            (None, None) => "Foundry's token: unknown".into(),
        }
    }
}

/// The part of OpenBAO's status that the stack's CA is (`$FOUNDRY_HOME/tls/ca.crt`): shown
/// only while it is missing, so a plan before the first install says it is to be made.
const STACK_CA_PART: &str = "the stack's CA (tls/ca.crt)";

/// Whether this home holds the stack's CA certificate.
fn stack_ca_made() -> bool {
    foundry_core::Home::from_env()
        .map(|home| {
            home.root()
                .join(foundry_activities::openbao::CA_CERT_PATH)
                .exists()
        })
        .unwrap_or(false)
}
