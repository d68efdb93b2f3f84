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
            status.more = more;
            Ok(status)
        })
    }

    fn volumes(&self, stack: &StackConfig) -> Vec<String> {
        self.place(stack)
            .map(|p| vec![container::single_volume(&p.name)])
            .unwrap_or_default()
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
