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

struct Erased<W>(Arc<W>);

impl<W: Workflow> DynWorkflow for Erased<W> {
    fn version(&self) -> u32 {
        W::VERSION
    }

    fn check_input(&self, input: &Value) -> Result<(), String> {
        check_json(self.0.as_ref(), input)
    }

    fn run(self: Arc<Self>, ctx: Ctx, input: Value) -> BoxFuture<'static, Result<Value, RunError>> {
        run_json(self.0.clone(), ctx, input)
    }
}

/// Reads `input` as `W`'s input (an error names the field) and asks `W` whether it can work.
fn check_json<W: Workflow>(workflow: &W, input: &Value) -> Result<(), String> {
    let input: W::Input = serde_path_to_error::deserialize(input).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.into_inner().to_string()
        } else {
            format!("{path}: {}", e.into_inner())
        }
    })?;
    workflow.check(&input)
}

fn run_json<W: Workflow>(
    workflow: Arc<W>,
    ctx: Ctx,
    input: Value,
) -> BoxFuture<'static, Result<Value, RunError>> {
    Box::pin(async move {
        let input = W::Input::deserialize(&input)
            .map_err(|e| RunError::workflow(format!("input of {}: {e}", W::NAME)))?;
        let output = workflow.run(ctx, input).await?;
        serde_json::to_value(&output)
            .map_err(|e| RunError::workflow(format!("output of {}: {e}", W::NAME)))
    })
}

/// A workflow run as a part of another's run: its steps are the other run's, keyed under
/// the scope of the [`Ctx`] it is given (see [`Ctx::fan_out`]), and its input and output
/// are JSON, as the other run journals them.
#[derive(Clone, Copy)]
pub struct Part {
    pub name: &'static str,
    pub version: u32,
    check: fn(&Value) -> Result<(), String>,
    run: fn(Ctx, Value) -> BoxFuture<'static, Result<Value, RunError>>,
}

impl Part {
    pub fn of<W: Workflow + Default>() -> Part {
        Part {
            name: W::NAME,
            version: W::VERSION,
            check: |input| check_json(&W::default(), input),
            run: |ctx, input| run_json(Arc::new(W::default()), ctx, input),
        }
    }

    /// Refuses an input that cannot work, naming the field.
    pub fn check(&self, input: &Value) -> Result<(), String> {
        (self.check)(input)
    }

    pub fn run(&self, ctx: Ctx, input: Value) -> BoxFuture<'static, Result<Value, RunError>> {
        (self.run)(ctx, input)
    }
}

impl std::fmt::Debug for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} v{}", self.name, self.version)
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
        self.workflows
            .insert(W::NAME, Arc::new(Erased(Arc::new(workflow))));
        self
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.workflows.keys().copied()
    }

    pub(crate) fn get(&self, name: &str) -> Option<Arc<dyn DynWorkflow>> {
        self.workflows.get(name).cloned()
    }
}
