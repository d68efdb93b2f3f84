//! A run taken from its journal: created, resumed, taken over after its driver died, or
//! taken to be cancelled, each handed to a [`Driver`]; or replayed read-only to verify it.
//! The [`Engine`] itself only opens journals and answers for runs; what drives them lives
//! here and in the driver.

use std::sync::Arc;

use serde_json::Value;

use crate::context::{Ctx, RunShared};
use crate::driver::Driver;
use crate::engine::{Engine, EngineError};
use crate::error::RunError;
use crate::events::EventBus;
use crate::input::NoInput;
use crate::journal::{JournalSnapshot, RunJournal, WriteOp};
use crate::lease;
use crate::model::{Lease, RunId, RunInfo, RunMeta, RunState};
use crate::secret::{FileSecretStore, SecretError, SecretRef, SecretStore};
use crate::time::Millis;
use crate::verify::{Verification, Verifier};
use crate::workflow::DynWorkflow;
use crate::writer::{MirrorState, Writer};

/// How [`Engine::cancel`] went about it.
pub enum Cancel {
    /// Nobody drove the run: it is taken here, to run its undo steps and end cancelled.
    Here(Box<Driver>),
    /// A process elsewhere drives it, on a shared journal: the cancel is recorded with
    /// the run for it to find.
    Asked { driver: Lease },
}

impl Engine {
    /// Creates a run of `workflow` and takes it to drive.
    pub fn start(&self, workflow: &str, input: Value) -> Result<Driver, EngineError> {
        let wf = self.workflow(workflow)?;
        wf.check_input(&input)
            .map_err(|detail| EngineError::BadInput {
                name: workflow.to_string(),
                detail,
            })?;
        self.home.ensure_writable()?;
        let now = Millis::now();
        let info = RunInfo {
            id: RunId::new(),
            workflow: workflow.to_string(),
            workflow_version: wf.version(),
            input,
            foundry_version: env!("CARGO_PKG_VERSION").to_string(),
            created_at: now,
        };
        let meta = RunMeta {
            state: RunState::Running,
            updated_at: now,
            error: None,
        };
        let lease = lease::own_lease();
        let (journal, snapshot) = self.store.create(&info, &meta, &lease)?;
        Ok(self.driver(wf, journal, snapshot, false, false))
    }

    /// Takes an existing run to drive it on: refused while a live process drives it.
    pub async fn resume(&self, run: RunId) -> Result<Driver, EngineError> {
        self.take(run, false).await
    }

    /// Takes a run nobody drives, to cancel it: undo steps run, then it is cancelled.
    pub async fn cancel_undriven(&self, run: RunId) -> Result<Driver, EngineError> {
        self.take(run, true).await
    }

    /// Cancels a run whose driver, if any, is not one this home can reach by its control
    /// socket: taken here when nobody drives it (its undo steps run here), or, on a shared
    /// journal, asked of its driver on another machine through the journal; that driver
    /// stops at its next write (its heartbeat at the latest) as on a cancel of its own.
    pub async fn cancel(&self, run: RunId) -> Result<Cancel, EngineError> {
        if let Some(driver) = self.store.request_cancel(run, &lease::own_lease())? {
            return Ok(Cancel::Asked { driver });
        }
        self.take(run, true)
            .await
            .map(|d| Cancel::Here(Box::new(d)))
    }

    async fn take(&self, run: RunId, cancel: bool) -> Result<Driver, EngineError> {
        self.home.ensure_writable()?;
        let (mut journal, mut snapshot) = self.open_undriven(run).await?;
        if let Err(e) = self.check_local_secrets(&snapshot) {
            // The run is given back on the store's own thread without waiting; a read queued
            // after it returns once that is done, so a process that stops now leaves it free.
            drop(journal);
            let _ = self.store.read(run);
            return Err(e);
        }
        if let Some(old) = &snapshot.lease {
            tracing::info!(%run, previous = %old, "taking over the run's lease");
        }
        let lease = lease::own_lease();
        journal.write(&[WriteOp::Lease(lease.clone())])?;
        snapshot.lease = Some(lease);
        let wf = self.workflow(&snapshot.info.workflow)?;
        if wf.version() != snapshot.info.workflow_version {
            tracing::info!(
                %run,
                recorded = snapshot.info.workflow_version,
                current = wf.version(),
                "the workflow changed since the run started; new steps run, removed ones are ignored"
            );
        }
        Ok(self.driver(wf, journal, snapshot, true, cancel))
    }

    /// On a journal other machines share, a run whose recorded steps name secrets of the
    /// local store that this home does not have came from another machine's home: refused
    /// before anything runs, naming the references (never a value) and that machine.
    fn check_local_secrets(&self, snapshot: &JournalSnapshot) -> Result<(), EngineError> {
        if !self.store.records_drivers() {
            return Ok(());
        }
        let store = FileSecretStore::for_run(&self.home, snapshot.info.id);
        let mut missing = Vec::new();
        for record in &snapshot.steps {
            let mut refs = Vec::new();
            if let Some(output) = &record.output {
                local_refs(output, &mut refs);
            }
            for reference in refs {
                if matches!(store.get(&reference), Err(SecretError::NotFound { .. })) {
                    missing.push(format!("{reference} (step {})", record.key));
                }
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        missing.sort();
        missing.dedup();
        Err(EngineError::LocalSecrets {
            run: snapshot.info.id,
            host: snapshot.lease.as_ref().map(|l| l.host.clone()),
            secrets: missing,
        })
    }

    fn driver(
        &self,
        workflow: Arc<dyn DynWorkflow>,
        journal: Box<dyn RunJournal>,
        snapshot: JournalSnapshot,
        resumed: bool,
        cancel: bool,
    ) -> Driver {
        let events = EventBus::new(snapshot.info.id);
        Driver {
            short_id: self.short_id(snapshot.info.id),
            engine: self.clone(),
            workflow,
            journal,
            snapshot,
            events,
            resumed,
            cancel,
            decisions: std::collections::HashMap::new(),
        }
    }
}

impl Engine {
    /// Verifies an unfinished run that no live process drives: see the module's comment.
    pub async fn verify(&self, run: RunId) -> Result<Verification, EngineError> {
        let (journal, snapshot) = self.open_undriven(run).await?;
        let workflow = self.workflow(&snapshot.info.workflow)?;
        let events = EventBus::new(run);
        let mirror = MirrorState::new(snapshot.clone());
        // The journal is held (no one resumes the run meanwhile) and never written.
        let writer = Writer::new(journal, mirror, events.clone());
        let mut shared = RunShared::new(
            run,
            writer.clone(),
            snapshot.steps.clone(),
            events,
            self.run_secrets(run),
            Arc::new(NoInput),
            Default::default(),
        );
        shared.verifier = Some(Verifier::default());
        let shared = Arc::new(shared);
        let result = workflow
            .run(Ctx::root(shared.clone()), snapshot.info.input.clone())
            .await;
        drop(writer.close().await);
        let Some(verifier) = &shared.verifier else {
            return Err(EngineError::Run {
                run,
                detail: "verifying without a verifier".into(),
            });
        };
        let (steps, stopped_at) = verifier.take();
        let error = match result {
            Ok(_) => None,
            Err(e) => first_refusal(e),
        };
        Ok(Verification {
            run,
            steps,
            stopped_at,
            error,
        })
    }
}

/// Why a replay ended, unless only because it reached steps that have not completed.
fn first_refusal(e: RunError) -> Option<String> {
    match e {
        RunError::Unfinished { .. } | RunError::Cancelled => None,
        RunError::Children(children) => children.into_iter().find_map(|(_, e)| first_refusal(e)),
        other => Some(other.to_string()),
    }
}

/// The references to the local secret store in a journaled value.
fn local_refs(value: &Value, out: &mut Vec<SecretRef>) {
    match value {
        Value::String(text) if FileSecretStore::is_local_ref(text) => {
            out.push(SecretRef(text.clone()));
        }
        Value::Array(items) => items.iter().for_each(|v| local_refs(v, out)),
        Value::Object(fields) => fields.values().for_each(|v| local_refs(v, out)),
        _ => {}
    }
}
