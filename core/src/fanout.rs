//! Fan-out: a child scope per item (its steps keyed under the item's name), a concurrency
//! cap, and the caller's failure policy.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::context::Ctx;
use crate::error::RunError;

/// What a fan-out does when a child fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Cancel the other children and return the first error.
    FailFast,
    /// Let every child finish and report every error together.
    CollectAll,
}

impl Ctx {
    /// A scope of this run named `name`: the steps taken through it are keyed under
    /// `name/`, and cancelling this run cancels it. How a run runs another workflow's body
    /// as one of its phases (see [`crate::Part`]).
    pub fn scope(&self, name: &str) -> Ctx {
        Ctx {
            shared: self.shared.clone(),
            scope: format!("{}{name}/", self.scope),
            cancel: self.cancel.child_token(),
        }
    }

    /// Runs `f` once per item, each in a child scope named by the item's name (its steps
    /// are keyed under it), at most `limit` at a time. Results come back in item order.
    pub async fn fan_out<I, T, F, Fut>(
        &self,
        items: Vec<(String, I)>,
        limit: usize,
        policy: FailurePolicy,
        f: F,
    ) -> Vec<(String, Result<T, RunError>)>
    where
        I: Send + 'static,
        T: Send + 'static,
        F: Fn(Ctx, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, RunError>> + Send + 'static,
    {
        let f = Arc::new(f);
        let gate = Arc::new(Semaphore::new(limit.max(1)));
        let siblings = self.cancel.child_token();
        let mut set = JoinSet::new();
        let names: Vec<String> = items.iter().map(|(n, _)| n.clone()).collect();
        for (index, (name, item)) in items.into_iter().enumerate() {
            let mut child = self.scope(&name);
            child.cancel = siblings.child_token();
            let (f, gate) = (f.clone(), gate.clone());
            set.spawn(async move {
                let result = match gate.acquire_owned().await {
                    Ok(_permit) => f(child, item).await,
                    Err(_) => Err(RunError::Cancelled),
                };
                (index, result)
            });
        }
        let mut results: Vec<Option<Result<T, RunError>>> = names.iter().map(|_| None).collect();
        while let Some(joined) = set.join_next().await {
            let (index, result) = match joined {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::error!(error = %e, "a fan-out child panicked");
                    continue;
                }
            };
            // A child of a verified run that reached its unfinished step has not failed:
            // its siblings go on to theirs.
            let failed = matches!(&result, Err(e) if !matches!(e, RunError::Unfinished { .. }));
            if policy == FailurePolicy::FailFast && failed {
                siblings.cancel();
            }
            results[index] = Some(result);
        }
        names
            .into_iter()
            .zip(results)
            .map(|(name, r)| {
                let r = r.unwrap_or_else(|| Err(RunError::workflow("the child task panicked")));
                (name, r)
            })
            .collect()
    }

    /// [`Ctx::fan_out`] with the failure policy applied: the outputs when every child
    /// succeeded; otherwise the first error (fail fast) or every error (collect all).
    pub async fn fan_out_ok<I, T, F, Fut>(
        &self,
        items: Vec<(String, I)>,
        limit: usize,
        policy: FailurePolicy,
        f: F,
    ) -> Result<Vec<T>, RunError>
    where
        I: Send + 'static,
        T: Send + 'static,
        F: Fn(Ctx, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, RunError>> + Send + 'static,
    {
        let results = self.fan_out(items, limit, policy, f).await;
        if self.cancel.is_cancelled() {
            return Err(RunError::Cancelled);
        }
        let mut ok = Vec::with_capacity(results.len());
        let mut failed = Vec::new();
        for (name, r) in results {
            match r {
                Ok(v) => ok.push(v),
                Err(e) => failed.push((name, e)),
            }
        }
        match (policy, failed.len()) {
            (_, 0) => Ok(ok),
            (FailurePolicy::FailFast, _) => {
                // The first real error, not a sibling's cancellation it caused.
                let first = failed
                    .iter()
                    .position(|(_, e)| !matches!(e, RunError::Cancelled))
                    .unwrap_or(0);
                Err(failed.swap_remove(first).1)
            }
            (FailurePolicy::CollectAll, _) => Err(RunError::Children(failed)),
        }
    }
}
