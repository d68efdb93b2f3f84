//! Upgrades: each placed component from the version it runs now (read live: the tag of
//! the image its container was created from, as its Engine says) to the version the
//! stack config pins (or one asked for), as one durable `stack-upgrade` run in the order
//! their needs give, through the same waves as `stack-install`. A component says, as
//! data, the versions an upgrade must not jump over ([`UpgradeStop`]); a jump over one is
//! refused before anything changes, naming the version to go through first.

use std::path::Path;

use foundry_core::{Ctx, RunError, Workflow};
use serde::Serialize;

use crate::component::UpgradeStop;
use crate::component::{Component, ComponentError};
use crate::config::StackConfig;
use crate::config::value::check_tag;
use crate::stack::{StackInput, StackInstall, StackOutput, StackPart};
use crate::version::{Version, skipped_minor, tag_of, tag_of_release, with_tag};

/// Why an upgrade may not go ahead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub message: String,
    pub hint: Option<String>,
}

/// One component's upgrade, as planned against what runs now.
#[derive(Clone, Debug, Serialize)]
pub struct UpgradePlan {
    pub component: String,
    pub host: String,
    /// The image its container runs now, and that image's version (its tag); none when
    /// nothing runs.
    pub running_image: Option<String>,
    pub running: Option<String>,
    pub target_image: String,
    pub target: Option<String>,
    /// It runs another image than the target.
    pub change: bool,
    /// Why it may not be upgraded, when it may not.
    pub refused: Option<Refusal>,
    /// What the upgrade does beyond the new image.
    pub steps: Vec<String>,
}

impl UpgradePlan {
    /// `4.7.3 -> 4.8.0`.
    pub fn said(&self) -> String {
        let running = self
            .running
            .clone()
            .or_else(|| self.running_image.clone())
            .unwrap_or_else(|| "nothing".into());
        let target = self
            .target
            .clone()
            .unwrap_or_else(|| self.target_image.clone());
        match self.change {
            true => format!("{running} -> {target}"),
            false => format!("{running}, nothing to do"),
        }
    }
}

/// The first stop strictly between `running` and `target`, or, among the stops whose
/// steps Foundry does not take, one that `target` reaches.
pub fn stop_in_the_way<'s>(
    stops: &'s [UpgradeStop],
    running: &Version,
    target: &Version,
) -> Option<&'s UpgradeStop> {
    stops.iter().find(|stop| {
        Version::parse(stop.version).is_some_and(|at| {
            *running < at && (at < *target || (at == *target && !stop.by_foundry))
        })
    })
}

/// Whether `c`, running `running_image`, may be upgraded to `target_image`, and how.
pub fn judge(
    c: &dyn Component,
    running_image: Option<&str>,
    target_image: &str,
) -> (bool, Option<Refusal>) {
    let name = c.name();
    let refuse = |message: String, hint: Option<String>| Some(Refusal { message, hint });
    let Some(running_image) = running_image else {
        return (
            true,
            refuse(
                format!("{name} does not run: there is nothing to upgrade"),
                Some(format!("install it: `foundry component install {name}`")),
            ),
        );
    };
    if running_image == target_image {
        return (false, None);
    }
    let running = tag_of(running_image).and_then(Version::parse);
    let target = tag_of(target_image).and_then(Version::parse);
    let (Some(running), Some(target)) = (running, target) else {
        // Tags that are no versions: nothing to compare, which is fine unless the
        // component has versions that must not be jumped over.
        if c.upgrade_stops().is_empty() && !c.one_minor_at_a_time() {
            return (true, None);
        }
        return (
            true,
            refuse(
                format!(
                    "{name}: cannot tell whether {running_image} -> {target_image} jumps over \
                     a version that needs steps: the tags are no versions"
                ),
                Some(match c.one_minor_at_a_time() {
                    true => format!(
                        "name the release: --to VERSION, or components.{name}.tag in the config"
                    ),
                    false => {
                        format!("pin components.{name}.image by its version tag (`name:1.2.3`)")
                    }
                }),
            ),
        );
    };
    if target < running {
        return (
            true,
            refuse(
                format!(
                    "{name}: {} is older than the running {}: a downgrade is no upgrade",
                    tag_of(target_image).unwrap_or_default(),
                    tag_of(running_image).unwrap_or_default()
                ),
                Some("name a version at least as new as the running one".into()),
            ),
        );
    }
    if c.one_minor_at_a_time()
        && let Some((major, minor)) = skipped_minor(&running, &target)
    {
        let from = tag_of(running_image).unwrap_or_default();
        let to = tag_of(target_image).unwrap_or_default();
        return (
            true,
            refuse(
                format!(
                    "{name}: {from} -> {to} skips minor version v{major}.{minor}: Kubernetes' \
                     version skew policy allows one minor version at a time"
                ),
                Some(format!(
                    "upgrade to a v{major}.{minor} release first (`foundry component upgrade \
                     {name} --to v{major}.{minor}.N`), then to {to}"
                )),
            ),
        );
    }
    if let Some(stop) = stop_in_the_way(c.upgrade_stops(), &running, &target) {
        let from = tag_of(running_image).unwrap_or_default();
        let to = tag_of(target_image).unwrap_or_default();
        let refusal = match stop.by_foundry {
            true => refuse(
                format!(
                    "{name}: {from} -> {to} jumps over {}, which needs steps of its own ({}): \
                     go through {} first",
                    stop.version, stop.steps, stop.version
                ),
                Some(format!(
                    "`foundry component upgrade {name} --to {}`, then upgrade again",
                    stop.version
                )),
            ),
            false => refuse(
                format!(
                    "{name}: {from} -> {to} passes through {}, which needs steps Foundry does \
                     not take ({})",
                    stop.version, stop.steps
                ),
                Some(format!(
                    "upgrade {name} to {} by hand as upstream's upgrade notes say; Foundry goes \
                     on from there",
                    stop.version
                )),
            ),
        };
        return (true, refusal);
    }
    (true, None)
}

/// `c`'s upgrade as the stack config places it, to `to` (a version, as the image's tag)
/// or else to the config's image, against the image that runs now.
pub async fn plan(
    stack: &StackConfig,
    c: &dyn Component,
    to: Option<&str>,
) -> Result<UpgradePlan, ComponentError> {
    let place = c.placement(stack)?;
    let image = c.image(stack).ok_or_else(|| {
        ComponentError::new(format!("{}: runs no image, so has no upgrade", c.name()))
    })?;
    // K3s spells its releases `v1.32.4+k3s1`; a tag has no `+`, and K3s's own image tags
    // spell it `-` (`rancher/k3s:v1.32.4-k3s1`).
    let to = to.map(tag_of_release);
    let target_image = match to.as_deref() {
        Some(version) if check_tag(version).is_err() => {
            return Err(ComponentError::new(format!(
                "--to `{}`: not an image tag",
                version.escape_debug()
            ))
            .hint("a version as the image's tags spell it: letters, digits, `_`, `.` and `-`"));
        }
        Some(version) => with_tag(&image, version),
        None => image,
    };
    let running_image = c.running_image(stack).await?;
    let (change, refused) = judge(c, running_image.as_deref(), &target_image);
    Ok(UpgradePlan {
        component: c.name().into(),
        host: place.host,
        running: running_image
            .as_deref()
            .and_then(tag_of)
            .map(str::to_string),
        running_image,
        target: tag_of(&target_image).map(str::to_string),
        target_image,
        change,
        refused,
        steps: match change {
            true => c.upgrade_steps().iter().map(|s| s.to_string()).collect(),
            false => Vec::new(),
        },
    })
}

/// The input of a `stack-upgrade` run taking each of `chosen` to its planned image.
pub fn stack_input(
    stack: &StackConfig,
    home: &Path,
    chosen: &[(&'static dyn Component, UpgradePlan)],
) -> Result<StackInput, ComponentError> {
    let parts = chosen
        .iter()
        .map(|(c, plan)| {
            let upgrade = c.upgrade();
            Ok(StackPart {
                component: c.name().into(),
                workflow: upgrade.name.into(),
                version: upgrade.version,
                input: c.upgrade_input(stack, home, &plan.target_image)?,
            })
        })
        .collect::<Result<Vec<_>, ComponentError>>()?;
    Ok(StackInput { parts })
}

/// The chosen components' upgrades as one run: `stack-install`'s waves, each part its
/// component's upgrade workflow.
#[derive(Default)]
pub struct StackUpgrade;

impl Workflow for StackUpgrade {
    const NAME: &'static str = "stack-upgrade";
    const VERSION: u32 = 1;
    type Input = StackInput;
    type Output = StackOutput;

    fn check(&self, input: &StackInput) -> Result<(), String> {
        StackInstall.check(input)
    }

    async fn run(&self, ctx: Ctx, input: StackInput) -> Result<StackOutput, RunError> {
        StackInstall.run(ctx, input).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STOPS: &[UpgradeStop] = &[
        UpgradeStop {
            version: "4.3.0",
            steps: "a schema change Foundry makes",
            by_foundry: true,
        },
        UpgradeStop {
            version: "4.7.0",
            steps: "a schema change by hand",
            by_foundry: false,
        },
    ];

    #[test]
    fn a_stop_may_be_reached_but_not_jumped_and_one_by_hand_not_even_reached() {
        let v = |t: &str| Version::parse(t).expect(t);
        let way = |a: &str, b: &str| stop_in_the_way(STOPS, &v(a), &v(b)).map(|s| s.version);
        assert_eq!(way("4.2.0", "4.3.0"), None);
        assert_eq!(way("4.2.0", "4.4.0"), Some("4.3.0"));
        assert_eq!(way("4.3.0", "4.6.9"), None);
        assert_eq!(way("4.3.0", "4.7.0"), Some("4.7.0"));
        assert_eq!(way("4.3.0", "4.8.0"), Some("4.7.0"));
        assert_eq!(way("4.7.0", "4.9.1"), None);
        assert_eq!(way("4.7.3", "4.8.0"), None);
    }
}
