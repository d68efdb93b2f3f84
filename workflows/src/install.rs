//! What the installs of a one-container component (OpenBAO, the registry) share: the
//! defaults and checks of their inputs, and the steps that put the container in place
//! (its lab image built here when asked, the image brought to the host's Engine, the
//! container as specified).

use foundry_activities::container::{
    BuildImage, ContainerOutput, ContainerSpec, Endpoint, EnsureContainer, ImageOutput,
    ImageSource, LoadImage, PullImage,
};
use foundry_core::{Ctx, RunError};

pub(crate) fn yes() -> bool {
    true
}

/// The lab's base image, which component images are layered on.
pub(crate) fn lab_base_image() -> String {
    crate::image::LAB_IMAGE.into()
}

/// Each `(what, value)` is a plain Docker name: letters, digits, `-`, `_` and `.`.
pub(crate) fn check_names(names: &[(&str, &str)]) -> Result<(), String> {
    for (what, value) in names {
        let plain = !value.is_empty()
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !plain {
            return Err(format!(
                "{what} `{value}`: use letters, digits, `-`, `_` and `.`"
            ));
        }
    }
    Ok(())
}

pub(crate) fn check_ipv4(ipv4: &str) -> Result<(), String> {
    match ipv4.parse::<std::net::Ipv4Addr>() {
        Ok(_) => Ok(()),
        Err(_) => Err(format!("ipv4 `{ipv4}`: not an IPv4 address")),
    }
}

/// How a component's image reaches its Engine: the input's `image_source`, else `load`
/// for an image built here (the lab's) and `pull` for any other.
pub(crate) fn source(build_image: bool, image_source: Option<ImageSource>) -> ImageSource {
    image_source.unwrap_or(match build_image {
        true => ImageSource::Load,
        false => ImageSource::Pull,
    })
}

/// The step keyed `key` that puts `image` on `endpoint`'s Engine unless it is there (its
/// probe): pulled by that Engine (through `mirror` when given), or loaded from this
/// machine's Engine through the endpoint, SSH for a remote one.
pub(crate) async fn deliver(
    ctx: &Ctx,
    key: &str,
    endpoint: &Endpoint,
    image: &str,
    source: ImageSource,
    mirror: Option<String>,
) -> Result<ImageOutput, RunError> {
    match source {
        ImageSource::Pull => {
            let pull = PullImage {
                endpoint: endpoint.clone(),
                image: image.to_string(),
                mirror,
            };
            ctx.step(key, &pull).await
        }
        ImageSource::Load => {
            let load = LoadImage {
                source: Endpoint::default(),
                target: endpoint.clone(),
                image: image.to_string(),
            };
            ctx.step(key, &load).await
        }
    }
}

/// The container of a component, in steps keyed `<prefix>/image-build` (when `build` is
/// given), `<prefix>/image` (the image brought to the Engine by `source`) and
/// `<prefix>/container`.
pub(crate) async fn container(
    ctx: &Ctx,
    prefix: &str,
    endpoint: &Endpoint,
    build: Option<BuildImage>,
    (source, mirror): (ImageSource, Option<String>),
    spec: ContainerSpec,
) -> Result<ContainerOutput, RunError> {
    if let Some(build) = build {
        ctx.step(&format!("{prefix}/image-build"), &build).await?;
    }
    let key = format!("{prefix}/image");
    deliver(ctx, &key, endpoint, &spec.image, source, mirror).await?;
    let container = EnsureContainer {
        endpoint: endpoint.clone(),
        spec,
    };
    ctx.step(&format!("{prefix}/container"), &container).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_built_here_is_loaded_and_any_other_pulled_unless_the_input_says() {
        assert_eq!(source(true, None), ImageSource::Load);
        assert_eq!(source(false, None), ImageSource::Pull);
        assert_eq!(source(true, Some(ImageSource::Pull)), ImageSource::Pull);
        assert_eq!(source(false, Some(ImageSource::Load)), ImageSource::Load);
    }

    #[test]
    fn names_and_addresses_are_checked() {
        assert_eq!(check_names(&[("name", "foundry-registry_1.a")]), Ok(()));
        assert_eq!(
            check_names(&[("name", "ok"), ("volume", "a/b")]),
            Err("volume `a/b`: use letters, digits, `-`, `_` and `.`".into())
        );
        assert!(check_names(&[("network", "")]).is_err());
        assert_eq!(check_ipv4("10.77.251.20"), Ok(()));
        assert_eq!(
            check_ipv4("10.77.251"),
            Err("ipv4 `10.77.251`: not an IPv4 address".into())
        );
    }
}
