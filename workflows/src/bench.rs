//! `engine-bench`: no-op steps, to measure the engine itself (`foundry-bench engine`).
//! It touches nothing but its journal.

use foundry_core::{
    Activity, ActivityCx, ActivityError, Ctx, FailurePolicy, InDoubt, RetryPolicy, RunError,
    Workflow,
};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchInput {
    /// No-op steps in all.
    pub steps: u64,
    /// Children run concurrently, each with its share of the steps; 0 or 1 for none.
    #[serde(default)]
    pub fanout: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchOutput {
    pub steps: u64,
}

/// Does nothing, durably.
pub struct Noop;

impl Activity for Noop {
    type Output = ();

    fn kind(&self) -> &'static str {
        "noop"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy::none()
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<()>, ActivityError> {
        Ok(Some(()))
    }

    async fn apply(&self, _cx: &ActivityCx) -> Result<(), ActivityError> {
        Ok(())
    }
}

pub struct EngineBench;

async fn noops(ctx: &Ctx, n: u64) -> Result<(), RunError> {
    for i in 0..n {
        ctx.step(&format!("noop-{i}"), &Noop).await?;
    }
    Ok(())
}

impl Workflow for EngineBench {
    const NAME: &'static str = "engine-bench";
    const VERSION: u32 = 1;
    type Input = BenchInput;
    type Output = BenchOutput;

    async fn run(&self, ctx: Ctx, input: BenchInput) -> Result<BenchOutput, RunError> {
        if input.fanout <= 1 {
            noops(&ctx, input.steps).await?;
        } else {
            let share = input.steps / input.fanout;
            let children = (0..input.fanout)
                .map(|c| (format!("child-{c}"), share))
                .collect();
            let limit = usize::try_from(input.fanout).unwrap_or(usize::MAX);
            ctx.fan_out_ok(
                children,
                limit,
                FailurePolicy::FailFast,
                |child, n| async move { noops(&child, n).await },
            )
            .await?;
        }
        Ok(BenchOutput { steps: input.steps })
    }
}
