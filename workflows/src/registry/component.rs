//! The registry (Zot) as a component of the stack: `components.zot`, placed on
//! `network.zot_hosts`.

use std::path::Path;

use foundry_core::{BoxFuture, Part};
use serde_json::Value;

use crate::component::container::{self, ContainerPlacement, Site};
use crate::component::{
    self as c, Component, ComponentError, ComponentStatus, InstallOptions, Placement,
};
use crate::config::StackConfig;

pub struct Zot;

impl Zot {
    pub(crate) fn place(&self, stack: &StackConfig) -> Result<ContainerPlacement, ComponentError> {
        container::place(
            stack,
            Site {
                component: self.name(),
                service: container::components(stack).zot,
                hosts: container::hosts(stack, |n| &n.zot_hosts),
                default_name: "foundry-registry",
                default_image: super::ZOT_IMAGE,
                lab_image: super::REGISTRY_IMAGE,
            },
        )
    }
}

impl Component for Zot {
    fn name(&self) -> &'static str {
        "zot"
    }

    fn aliases(&self) -> &'static [&'static str] {
        &["registry"]
    }

    fn about(&self) -> &'static str {
        "the stack's OCI registry (Zot)"
    }

    fn placement(&self, stack: &StackConfig) -> Result<Placement, ComponentError> {
        Ok(self.place(stack)?.placement())
    }

    fn install(&self) -> Part {
        Part::of::<super::RegistryInstall>()
    }

    fn install_input(
        &self,
        stack: &StackConfig,
        _home: &Path,
        _options: &InstallOptions,
    ) -> Result<Value, ComponentError> {
        let place = self.place(stack)?;
        let name = place.name.as_str();
        c::input(
            self.name(),
            &super::RegistryInput {
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
                publish: None,
            },
        )
    }

    fn changes(&self, output: Value) -> Result<Vec<String>, ComponentError> {
        Ok(c::output::<super::RegistryOutput>(self.name(), output)?.changes())
    }

    fn status<'a>(
        &'a self,
        stack: &'a StackConfig,
    ) -> BoxFuture<'a, Result<ComponentStatus, ComponentError>> {
        Box::pin(async move {
            let place = self.place(stack)?;
            let addr = format!("http://{}:{}", place.address, super::PORT);
            let found = super::status(&place.endpoint, &place.name, &addr)
                .await
                .map_err(|e| place.failed(e))?;
            let container = found.container.clone().unwrap_or_else(|| "missing".into());
            let said = match (&found.error, found.api) {
                (_, true) => format!(
                    "API answers, {} repositories{}",
                    found.repositories.len(),
                    if place.build_image {
                        " (the lab's stand-in for Zot)"
                    } else {
                        ""
                    }
                ),
                (Some(e), false) => format!("not answering: {e}"),
                (None, false) => "not answering".into(),
            };
            let healthy = found.api && container == "running";
            let version = found.api_version.clone();
            place.status(
                healthy,
                format!("container {container}, {said}"),
                version,
                &found,
                [(place.name.clone(), container)],
            )
        })
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

    fn volumes(&self, stack: &StackConfig) -> Vec<String> {
        self.place(stack)
            .map(|p| vec![container::single_volume(&p.name)])
            .unwrap_or_default()
    }
}
