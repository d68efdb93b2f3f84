//! Workflows as the engine knows them, and the registry that finds one by name when a run
//! is resumed.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::activity::BoxFuture;
use crate::context::Ctx;
use crate::error::RunError;

/// Ordinary async Rust that calls activities through its [`Ctx`]. It must reach the same
/// steps again when replayed: anything that varies (time, random ids) comes from the ctx.
pub trait Workflow: Send + Sync + 'static {
    const NAME: &'static str;
    const VERSION: u32;
    type Input: Serialize + DeserializeOwned + Send + 'static;
    type Output: Serialize + Send;

    /// Refuses an input that cannot work, before any run is created.
    fn check(&self, _input: &Self::Input) -> Result<(), String> {
        Ok(())
    }

    fn run(
        &self,
        ctx: Ctx,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, RunError>> + Send;
}

pub(crate) trait DynWorkflow: Send + Sync {
    fn version(&self) -> u32;
    fn check_input(&self, input: &Value) -> Result<(), String>;
    fn run(self: Arc<Self>, ctx: Ctx, input: Value) -> BoxFuture<'static, Result<Value, RunError>>;
}

struct Erased<W>(W);

impl<W: Workflow> DynWorkflow for Erased<W> {
    fn version(&self) -> u32 {
        W::VERSION
    }

    fn check_input(&self, input: &Value) -> Result<(), String> {
        let input: W::Input = serde_path_to_error::deserialize(input).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                e.into_inner().to_string()
            } else {
                format!("{path}: {}", e.into_inner())
            }
        })?;
        self.0.check(&input)
    }

    fn run(self: Arc<Self>, ctx: Ctx, input: Value) -> BoxFuture<'static, Result<Value, RunError>> {
        Box::pin(async move {
            let input = W::Input::deserialize(&input)
                .map_err(|e| RunError::workflow(format!("input of {}: {e}", W::NAME)))?;
            let output = self.0.run(ctx, input).await?;
            serde_json::to_value(&output)
                .map_err(|e| RunError::workflow(format!("output of {}: {e}", W::NAME)))
        })
    }
}

use serde::Deserialize as _;

/// Every workflow a binary can start or resume.
#[derive(Default, Clone)]
pub struct Registry {
    workflows: BTreeMap<&'static str, Arc<dyn DynWorkflow>>,
}

impl Registry {
    pub fn new() -> Self {
        Registry::default()
    }

    pub fn register<W: Workflow>(mut self, workflow: W) -> Self {
        self.workflows.insert(W::NAME, Arc::new(Erased(workflow)));
        self
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.workflows.keys().copied()
    }

    pub(crate) fn get(&self, name: &str) -> Option<Arc<dyn DynWorkflow>> {
        self.workflows.get(name).cloned()
    }
}
