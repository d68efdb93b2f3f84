//! Foundry's durable workflow engine.
//!
//! A workflow is async Rust that calls activities through a [`Ctx`]; each call is a step
//! with a stable key whose progress is journaled (redb, one file per run) so that a run
//! interrupted anywhere resumes exactly. This crate names no infrastructure: activities
//! live above it.

pub mod activity;
pub mod context;
pub mod control;
mod driver;
pub mod engine;
pub mod error;
pub mod events;
pub mod failpoint;
pub mod fanout;
pub mod files;
pub mod home;
pub mod input;
pub mod journal;
mod launch;
pub mod lease;
pub mod migrate;
pub mod model;
pub mod retry;
pub mod secret;
pub mod status;
mod sync;
pub mod time;
pub mod verify;
pub mod workflow;
mod writer;

#[cfg(test)]
mod tests;

pub use activity::{Activity, ActivityCx, ActivityError, BoxFuture, Decision, InDoubt};
pub use context::Ctx;
pub use driver::Driver;
pub use engine::{Collected, Engine, EngineError, RunOutcome};
pub use error::RunError;
pub use events::{Event, EventKind, Stream};
pub use fanout::FailurePolicy;
pub use home::Home;
pub use input::{Answer, InputProvider, NoInput, Question};
pub use launch::Cancel;
pub use model::{RunId, RunState};
pub use retry::{PollPolicy, RetryPolicy};
pub use secret::{SecretRef, SecretValue};
pub use status::RunView;
pub use time::Millis;
pub use verify::{Finding, Verification, VerifiedStep};
pub use workflow::{Part, Registry, Workflow};
