//! `foundry journal migrate`: unfinished runs moved from the engine's journal store to
//! another (redb files and PostgreSQL, either way), with their steps and retry schedules.
//!
//! Each run is held in the source while it moves, so no process drives it meanwhile; a run
//! a live process drives is left where it is. The source's copy is removed only once the
//! target has committed the whole run: a migration stopped half-way leaves every run
//! resumable from the source, and the next one copies it again (the source's copy wins
//! over a partial one in the target until it is removed).

use std::sync::Arc;

use crate::engine::{Engine, EngineError};
use crate::journal::{JournalError, JournalStore, RunJournal, WriteOp};
use crate::lease;
use crate::model::{Lease, RunId};

/// What a migration did.
#[derive(Debug, Default)]
pub struct Migration {
    /// Runs now in the target, removed from the source.
    pub moved: Vec<RunId>,
    /// Runs left in the source because a live process drives them, and who.
    pub driven: Vec<(RunId, Option<Lease>)>,
    /// Finished runs left in the source (their summaries stay with their store).
    pub finished: usize,
}

impl Engine {
    /// Moves every unfinished run of this engine's store to `target`.
    pub async fn migrate(&self, target: Arc<dyn JournalStore>) -> Result<Migration, EngineError> {
        let probe = RunId::new();
        if target.location(probe) == self.store.location(probe) {
            return Err(JournalError::Unavailable {
                path: self.store.location(probe),
                detail: "the target is the journal in use: there is nothing to move".into(),
                hint: "name the other journal: --to redb moves runs into the home, --to postgres://… into a database".into(),
            }
            .into());
        }
        let mut done = Migration::default();
        for run in self.store.list()? {
            let (journal, snapshot) = match self.store.open(run) {
                Ok(opened) => opened,
                Err(JournalError::Busy { owner, .. }) => {
                    let owner = match owner {
                        Some(owner) => Some(owner),
                        None => self.live_lease(run).await,
                    };
                    done.driven.push((run, owner));
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if snapshot.meta.state.is_finished() {
                done.finished += 1;
                continue;
            }
            if let Some(owner) = &snapshot.lease
                && !self.store.records_drivers()
                && owner.host != lease::hostname()
                && lease::owner_alive(owner)
            {
                done.driven.push((run, Some(owner.clone())));
                continue;
            }
            copy(target.as_ref(), run, &snapshot)?;
            // Given back before its removal: a file store removes what it no longer holds.
            drop(journal);
            self.store.remove(run)?;
            tracing::info!(%run, to = %target.location(run).display(), "run moved");
            done.moved.push(run);
        }
        Ok(done)
    }
}

/// Writes `snapshot` as run `run` in `target`, replacing a copy an interrupted migration
/// left there, unless a process drives that copy.
fn copy(
    target: &dyn JournalStore,
    run: RunId,
    snapshot: &crate::journal::JournalSnapshot,
) -> Result<(), EngineError> {
    match target.open(run) {
        Ok((old, _)) => {
            drop(old);
            target.remove(run)?;
        }
        Err(JournalError::NotFound { .. }) => {}
        Err(JournalError::Busy { owner, .. }) => {
            return Err(EngineError::Driven { run, lease: owner });
        }
        Err(e) => return Err(e.into()),
    }
    // The lease is this process's, which ends with the migration: the run is held by none.
    let (mut journal, _): (Box<dyn RunJournal>, _) =
        target.create(&snapshot.info, &snapshot.meta, &lease::own_lease())?;
    let steps: Vec<WriteOp> = snapshot.steps.iter().cloned().map(WriteOp::Step).collect();
    if !steps.is_empty() {
        journal.write(&steps)?;
    }
    Ok(())
}
