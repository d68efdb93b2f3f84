//! The objects a chart's install applies once the chart is deployed (cert-manager's
//! ClusterIssuer), and the wait until each that reports a `Ready` condition says True.
//! One step: the objects and the wait are read again from the stack config at every
//! attempt, so an issuer fixed in the config after a failed wait is the one a resume
//! applies and waits for.
//!
//! A not-Ready condition's reason decides the wait: a reason the chart declares permanent
//! (waiting does not change it: a CA Secret whose certificate is not a CA) ends it at once;
//! any other (the CA's Secret not issued yet, an ACME server out of reach, no condition
//! yet) is waited through until the deadline. Either way the run fails naming the object,
//! the reason, cert-manager's message and the chart's hint for that reason, and `workflow
//! resume` tries again.

use std::path::PathBuf;

use foundry_activities::kube::{
    ApplyObjects, ApplyObjectsOutput, KubeAccess, KubeObject, object_live,
};
use foundry_core::{Activity, ActivityCx, ActivityError, InDoubt, PollPolicy};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How an install waits for its objects' `Ready` condition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadyWait {
    /// The kinds among the applied objects that report a `Ready` condition.
    pub kinds: Vec<String>,
    pub poll: PollPolicy,
    /// What each known not-Ready reason means; a reason not listed is waited through.
    pub reasons: Vec<NotReadyReason>,
}

/// One not-Ready reason: whether waiting can change it, and what a person can do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotReadyReason {
    pub reason: String,
    pub permanent: bool,
    pub hint: String,
}

/// An object's `Ready` condition as the API shows it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    Missing,
    /// No `Ready` condition yet: its controller has not looked at it.
    Unseen,
    NotReady {
        status: String,
        reason: String,
        message: String,
    },
}

impl Readiness {
    /// `object`'s readiness, from its live copy.
    pub fn of(live: Option<&Value>) -> Readiness {
        let Some(live) = live else {
            return Readiness::Missing;
        };
        let ready = live
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Ready");
        let text = |c: &Value, k: &str| c[k].as_str().unwrap_or_default().to_string();
        match ready {
            None => Readiness::Unseen,
            Some(c) if c["status"] == "True" => Readiness::Ready,
            Some(c) => Readiness::NotReady {
                status: text(c, "status"),
                reason: text(c, "reason"),
                message: text(c, "message"),
            },
        }
    }

    fn said(&self) -> String {
        match self {
            Readiness::Ready => "Ready".into(),
            Readiness::Missing => "not there".into(),
            Readiness::Unseen => "not looked at yet (no Ready condition)".into(),
            Readiness::NotReady {
                status,
                reason,
                message,
            } => format!("Ready {status}, {reason}: {message}"),
        }
    }
}

impl ReadyWait {
    fn rule(&self, reason: &str) -> Option<&NotReadyReason> {
        self.reasons.iter().find(|r| r.reason == reason)
    }

    /// The error for `object` found `state`, with the reason's hint.
    fn failure(&self, object: &KubeObject, state: &Readiness, waited: bool) -> ActivityError {
        let rule = match state {
            Readiness::NotReady { reason, .. } => self.rule(reason),
            _ => None,
        };
        let when = match (waited, rule.is_some_and(|r| r.permanent)) {
            (_, true) => "is not Ready, for a reason waiting does not change".to_string(),
            (true, false) => format!("is not Ready after {}s", self.poll.deadline().as_secs()),
            (false, false) => "is not Ready".to_string(),
        };
        let hint = rule.map_or_else(
            || {
                format!(
                    "see `kubectl describe {} {}`",
                    object.kind.to_lowercase(),
                    object.name
                )
            },
            |r| r.hint.clone(),
        );
        ActivityError::permanent(format!(
            "{} {when}: {}\nhint: {hint}; then `foundry workflow resume RUN`",
            object.said(),
            state.said()
        ))
    }
}

/// Applies a chart's objects (as the config says them at this attempt), then waits until
/// each that reports a `Ready` condition is Ready.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApplyChartObjects {
    pub apply: ApplyObjects,
    #[serde(default)]
    pub ready: Option<ReadyWait>,
    pub component: String,
    #[serde(default)]
    pub config: Option<PathBuf>,
}

impl ApplyChartObjects {
    /// The objects and the wait as the config says them now, when it is known.
    fn current(&self) -> Result<(ApplyObjects, Option<ReadyWait>), ActivityError> {
        match super::fresh_input(&self.component, self.config.as_deref())? {
            Some(input) => Ok((
                ApplyObjects {
                    access: self.apply.access.clone(),
                    objects: input.then_apply,
                },
                input.ready,
            )),
            None => Ok((self.apply.clone(), self.ready.clone())),
        }
    }

    /// The first waited-for object that is not Ready, with its state; none when all are.
    async fn first_not_ready(
        cx: &ActivityCx,
        access: &KubeAccess,
        objects: &[KubeObject],
        wait: &ReadyWait,
    ) -> Result<Option<(KubeObject, Readiness)>, ActivityError> {
        for object in objects.iter().filter(|o| wait.kinds.contains(&o.kind)) {
            let state = Readiness::of(object_live(cx, access, object).await?.as_ref());
            if state != Readiness::Ready {
                return Ok(Some((object.clone(), state)));
            }
        }
        Ok(None)
    }

    async fn wait(
        cx: &ActivityCx,
        apply: &ApplyObjects,
        wait: &ReadyWait,
    ) -> Result<(), ActivityError> {
        let mut poll = wait.poll.start();
        let mut last = None;
        let mut trouble = None;
        loop {
            match poll.tick_unless(cx.cancel_token()).await {
                Ok(true) => {}
                Ok(false) => break,
                Err(_) => {
                    return Err(ActivityError::permanent(
                        "cancelled while waiting for the chart's objects to be Ready",
                    ));
                }
            }
            match Self::first_not_ready(cx, &apply.access, &apply.objects, wait).await {
                Ok(None) => return Ok(()),
                Ok(Some((object, state))) => {
                    if let Readiness::NotReady { reason, .. } = &state
                        && wait.rule(reason).is_some_and(|r| r.permanent)
                    {
                        return Err(wait.failure(&object, &state, false));
                    }
                    last = Some((object, state));
                }
                Err(e) if !e.transient => return Err(e),
                Err(e) => trouble = Some(e.message),
            }
        }
        match (last, trouble) {
            (Some((object, state)), _) => Err(wait.failure(&object, &state, true)),
            (None, trouble) => Err(ActivityError::permanent(format!(
                "the chart's objects could not be read within {}s: {}",
                wait.poll.deadline().as_secs(),
                trouble.unwrap_or_default()
            ))),
        }
    }
}

impl Activity for ApplyChartObjects {
    type Output = ApplyObjectsOutput;

    fn kind(&self) -> &'static str {
        "chart-objects"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    /// Done when every object is as applied and every waited-for one is Ready now.
    async fn probe(&self, cx: &ActivityCx) -> Result<Option<ApplyObjectsOutput>, ActivityError> {
        let (apply, ready) = self.current()?;
        let Some(done) = apply.probe(cx).await? else {
            return Ok(None);
        };
        if let Some(wait) = &ready
            && Self::first_not_ready(cx, &apply.access, &apply.objects, wait)
                .await?
                .is_some()
        {
            return Ok(None);
        }
        Ok(Some(done))
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<ApplyObjectsOutput, ActivityError> {
        let (apply, ready) = self.current()?;
        let done = apply.apply(cx).await?;
        if let Some(wait) = &ready {
            Self::wait(cx, &apply, wait).await?;
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn readiness_is_read_from_the_ready_condition() {
        assert_eq!(Readiness::of(None), Readiness::Missing);
        assert_eq!(Readiness::of(Some(&json!({"spec": {}}))), Readiness::Unseen);
        let ready = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        assert_eq!(Readiness::of(Some(&ready)), Readiness::Ready);
        let not = json!({"status": {"conditions": [
            {"type": "Other", "status": "True"},
            {"type": "Ready", "status": "False", "reason": "ErrGetKeyPair", "message": "m"}
        ]}});
        assert_eq!(
            Readiness::of(Some(&not)),
            Readiness::NotReady {
                status: "False".into(),
                reason: "ErrGetKeyPair".into(),
                message: "m".into()
            }
        );
    }
}
