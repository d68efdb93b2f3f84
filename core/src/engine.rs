//! The engine: a home's journals and workflows. It opens runs' journals and answers for
//! runs from any terminal (status, list, gc); taking a run to drive it is `launch.rs`'s.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::control;
use crate::home::{Home, HomeError};
use crate::input::InputProvider;
use crate::journal::{JournalError, JournalSnapshot, JournalStore, RedbStore, RunJournal};
use crate::lease;
use crate::model::{IllegalTransition, Lease, RunId, RunState};
use crate::retry::PollPolicy;
use crate::secret::{FileSecretStore, SecretStore};
use crate::status::RunView;
use crate::time::Millis;
use crate::workflow::{DynWorkflow, Registry};

/// How a status read retries while a run's driver finishes between two looks.
const VIEW_POLL: PollPolicy = PollPolicy::new(20, 100);

/// How many completed runs keep their one-line summary.
pub const KEEP_SUMMARIES: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Home(#[from] HomeError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("run {run} is driven by {}", .lease.as_ref().map_or_else(|| "another process".to_string(), |l| l.to_string()))]
    Driven { run: RunId, lease: Option<Lease> },
    #[error("unknown workflow `{name}` (known: {known})")]
    UnknownWorkflow { name: String, known: String },
    #[error("input of workflow `{name}`: {detail}")]
    BadInput { name: String, detail: String },
    #[error("no run matches `{prefix}` in {home}")]
    NoSuchRun { prefix: String, home: String },
    #[error("run id `{prefix}` is ambiguous: it matches {}", .candidates.join(", "))]
    Ambiguous {
        prefix: String,
        candidates: Vec<String>,
    },
    #[error("run {run} is {state}: there is nothing left to drive")]
    Finished { run: RunId, state: RunState },
    #[error("run {run}: {source}")]
    Transition {
        run: RunId,
        source: IllegalTransition,
    },
    #[error("run {run} is driven by another process, which does not answer: {detail}")]
    Unreachable { run: RunId, detail: String },
    #[error("run {run}: {detail}")]
    Run { run: RunId, detail: String },
    /// Resuming, on a shared journal, a run whose secrets are kept only in the home of the
    /// machine that started it.
    #[error("run {run} holds {} kept only on the machine that drove it{}, not here: {}", if .secrets.len() == 1 { "a secret" } else { "secrets" }, .host.as_ref().map(|h| format!(" ({h})")).unwrap_or_default(), .secrets.join(", "))]
    LocalSecrets {
        run: RunId,
        host: Option<String>,
        /// Each as `reference (step key)`: never a value.
        secrets: Vec<String>,
    },
    #[error("run {run}: step `{step}` is not in doubt{}", if .in_doubt.is_empty() { String::new() } else { format!(" (in doubt: {})", .in_doubt.join(", ")) })]
    NotInDoubt {
        run: RunId,
        step: String,
        in_doubt: Vec<String>,
    },
}

impl EngineError {
    pub fn hint(&self) -> Option<String> {
        match self {
            EngineError::Home(e) => e.hint(),
            EngineError::Journal(e) => e.hint(),
            EngineError::Driven { .. } => Some(
                "wait for it, follow it with `foundry workflow status --follow`, or stop it with `foundry workflow cancel`".into(),
            ),
            EngineError::NoSuchRun { .. } => Some("`foundry workflow list --all` shows every run".into()),
            EngineError::Ambiguous { .. } => Some("give more characters of the run id".into()),
            EngineError::LocalSecrets { host, .. } => Some(format!(
                "nothing ran here; resume it {}, whose home keeps what it needs; for runs a team resumes from any machine, keep their secrets in OpenBAO rather than this machine's environment, ~/.foundryvars or its local store",
                host.as_ref().map_or_else(|| "where it was started".to_string(), |h| format!("on {h}"))
            )),
            EngineError::NotInDoubt { .. } => Some(
                "`--done` and `--redo` name a step `foundry workflow status` shows in doubt".into(),
            ),
            _ => None,
        }
    }
}

/// What `workflow gc` removed, or would remove.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Collected {
    /// Runs forgotten: their journals, logs and kept secrets.
    pub runs: Vec<RunId>,
    /// Kept secrets no run will read again, each a run's directory or a file.
    pub secrets: Vec<std::path::PathBuf>,
}

/// How a drive ended.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RunOutcome {
    pub run: RunId,
    pub state: RunState,
    pub output: Option<Value>,
    pub error: Option<String>,
}

/// The engine of one Foundry home.
#[derive(Clone)]
pub struct Engine {
    pub(crate) home: Home,
    pub(crate) store: Arc<dyn JournalStore>,
    registry: Registry,
    pub(crate) input: Arc<dyn InputProvider>,
}

/// The journal store of a home: PostgreSQL when `FOUNDRY_JOURNAL` holds a `postgres://`
/// (or `postgresql://`) URL, redb files under the home's `runs/` otherwise.
pub fn journal_store(home: &Home) -> Arc<dyn JournalStore> {
    journal_store_named(&std::env::var("FOUNDRY_JOURNAL").unwrap_or_default(), home)
}

/// The journal store `url` names: a `postgres://` URL, or `redb` (or nothing) for the
/// home's own files.
pub fn journal_store_named(url: &str, home: &Home) -> Arc<dyn JournalStore> {
    if url.is_empty() || url == "redb" {
        return Arc::new(RedbStore::new(home.runs_dir()));
    }
    let unusable = |detail: String, hint: &str| -> Arc<dyn JournalStore> {
        Arc::new(crate::journal::Unusable(JournalError::Unavailable {
            path: PathBuf::from("FOUNDRY_JOURNAL"),
            detail,
            hint: hint.into(),
        }))
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return unusable(
            "not a postgres:// URL".into(),
            "name a journal as postgres://USER@HOST/DATABASE, or redb (unset) to keep runs in the home",
        );
    }
    match crate::journal::PostgresStore::new(url) {
        Ok(store) => {
            tracing::debug!(server = %store.server(), "journal on PostgreSQL");
            Arc::new(store)
        }
        Err(e) => unusable(
            e.to_string(),
            "unset FOUNDRY_JOURNAL to keep runs in the home",
        ),
    }
}

impl Engine {
    /// The engine of `home`, on the journal `FOUNDRY_JOURNAL` names (a `postgres://` URL),
    /// else on redb files in the home.
    pub fn new(home: Home, registry: Registry, input: Arc<dyn InputProvider>) -> Engine {
        let store = journal_store(&home);
        Engine::with_store(home, store, registry, input)
    }

    /// The engine of `home` on a given journal store.
    pub fn with_store(
        home: Home,
        store: Arc<dyn JournalStore>,
        registry: Registry,
        input: Arc<dyn InputProvider>,
    ) -> Engine {
        Engine {
            home,
            store,
            registry,
            input,
        }
    }

    pub fn home(&self) -> &Home {
        &self.home
    }

    /// The secret store of `run`: a directory of its own, removed when the run ends.
    pub(crate) fn run_secrets(&self, run: RunId) -> Arc<dyn SecretStore> {
        Arc::new(FileSecretStore::for_run(&self.home, run))
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub(crate) fn workflow(&self, name: &str) -> Result<Arc<dyn DynWorkflow>, EngineError> {
        self.registry
            .get(name)
            .ok_or_else(|| EngineError::UnknownWorkflow {
                name: name.to_string(),
                known: self.registry.names().collect::<Vec<_>>().join(", "),
            })
    }

    /// Opens an unfinished run's journal that no live process drives; the journal stays
    /// this process's until dropped.
    pub(crate) async fn open_undriven(
        &self,
        run: RunId,
    ) -> Result<(Box<dyn RunJournal>, JournalSnapshot), EngineError> {
        let (mut journal, snapshot) = match self.store.open(run) {
            Ok(opened) => opened,
            Err(JournalError::Busy { owner, .. }) => {
                let lease = match owner {
                    Some(owner) => Some(owner),
                    None => self.live_lease(run).await,
                };
                return Err(EngineError::Driven { run, lease });
            }
            Err(e) => return Err(e.into()),
        };
        if snapshot.meta.state.is_finished() {
            // Its driver may have died between the end and the tidying up.
            if let Err(e) = journal.compact() {
                tracing::warn!(%run, error = %e, "tidying the finished journal failed");
            }
            return Err(EngineError::Finished {
                run,
                state: snapshot.meta.state,
            });
        }
        // A shared store decided that itself, by its own clock, as it opened the run.
        if let Some(lease) = &snapshot.lease
            && !self.store.records_drivers()
            && lease.host != lease::hostname()
            && lease::owner_alive(lease)
        {
            return Err(EngineError::Driven {
                run,
                lease: Some(lease.clone()),
            });
        }
        Ok((journal, snapshot))
    }

    /// The lease of the process holding a run, asked over its socket.
    pub(crate) async fn live_lease(&self, run: RunId) -> Option<Lease> {
        let path = self.home.socket_path(run);
        control::status(&path).await.ok().and_then(|v| v.driver)
    }

    /// A run's status, from its journal or from the process driving it.
    pub async fn view(&self, run: RunId) -> Result<RunView, EngineError> {
        // The driver may finish between our two looks; a few tries settle it.
        let mut last = String::new();
        let mut poll = VIEW_POLL.start();
        while poll.tick().await {
            match self.store.read(run) {
                Ok(snapshot) => {
                    let driver = if self.store.records_drivers() {
                        snapshot.lease.clone()
                    } else {
                        None
                    };
                    return Ok(RunView { snapshot, driver });
                }
                Err(JournalError::Busy { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            match control::status(&self.home.socket_path(run)).await {
                Ok(view) => return Ok(view),
                Err(e) if e.timed_out => {
                    return Err(EngineError::Unreachable {
                        run,
                        detail: e.detail,
                    });
                }
                Err(e) => last = e.detail,
            }
        }
        Err(EngineError::Unreachable { run, detail: last })
    }

    /// Every run's status, oldest first; a run that cannot be read is listed as an error
    /// beside the others.
    pub async fn list(&self) -> Result<Vec<(RunId, Result<RunView, EngineError>)>, EngineError> {
        let mut out = Vec::new();
        for id in self.store.list()? {
            let view = self.view(id).await;
            out.push((id, view));
        }
        Ok(out)
    }

    /// The run whose id starts with `prefix` (hyphens optional).
    pub fn resolve(&self, prefix: &str) -> Result<RunId, EngineError> {
        let wanted = prefix.trim().to_ascii_lowercase().replace('-', "");
        let ids = self.store.list()?;
        let matching: Vec<RunId> = if wanted.is_empty() {
            Vec::new()
        } else {
            ids.into_iter()
                .filter(|id| id.hex().starts_with(&wanted))
                .collect()
        };
        match matching.as_slice() {
            [one] => Ok(*one),
            [] => Err(EngineError::NoSuchRun {
                prefix: prefix.to_string(),
                home: self.home.runs_dir().display().to_string(),
            }),
            many => Err(EngineError::Ambiguous {
                prefix: prefix.to_string(),
                candidates: many.iter().map(|id| id.to_string()).collect(),
            }),
        }
    }

    /// The shortest prefix of `run`'s id that names it alone among the home's runs (at
    /// least [`SHORT_ID_MIN`](crate::model::SHORT_ID_MIN) hex digits); what human output shows.
    pub fn short_id(&self, run: RunId) -> String {
        let mut ids = self.store.list().unwrap_or_default();
        if !ids.contains(&run) {
            ids.push(run);
        }
        let at = ids.iter().position(|id| *id == run).unwrap_or(0);
        crate::model::unique_prefixes(&ids).swap_remove(at)
    }

    /// Asks the process driving `run` to cancel it.
    pub async fn request_cancel(&self, run: RunId) -> Result<(), EngineError> {
        control::cancel(&self.home.socket_path(run))
            .await
            .map_err(|e| EngineError::Unreachable {
                run,
                detail: e.detail,
            })
    }

    /// Follows a driven run's events.
    pub async fn follow(&self, run: RunId) -> Result<(RunView, control::Follow), EngineError> {
        control::follow(&self.home.socket_path(run))
            .await
            .map_err(|e| EngineError::Unreachable {
                run,
                detail: e.detail,
            })
    }

    /// Removes the journals of runs nobody drives that ended (completed, cancelled,
    /// failed, paused or waiting) longer than `older_than` ago, with their logs and kept
    /// secrets, and the kept secrets no run will read again (see [`Engine::orphan_secrets`]).
    /// Interrupted runs are kept: they are resumable. With `dry_run`, only says what it
    /// would remove.
    pub fn gc(&self, older_than: Duration, dry_run: bool) -> Result<Collected, EngineError> {
        let cutoff = Millis(
            Millis::now()
                .0
                .saturating_sub(u64::try_from(older_than.as_millis()).unwrap_or(u64::MAX)),
        );
        if !dry_run {
            // A journal being created right now is younger than a minute; older ones were cut off.
            self.store.sweep(Duration::from_secs(60))?;
        }
        let mut collected = Collected::default();
        for id in self.store.list()? {
            let Ok(snapshot) = self.store.read(id) else {
                continue;
            };
            let ended = !matches!(
                snapshot.meta.state,
                RunState::Running | RunState::Cancelling
            );
            if ended && snapshot.meta.updated_at < cutoff {
                if !dry_run {
                    self.remove_run(id)?;
                }
                collected.runs.push(id);
            }
        }
        for orphan in self.orphan_secrets()? {
            if !dry_run {
                let removed = if orphan.is_dir() {
                    std::fs::remove_dir_all(&orphan)
                } else {
                    std::fs::remove_file(&orphan)
                };
                match removed {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(EngineError::Home(HomeError::Unusable {
                            detail: format!("cannot remove it: {e}"),
                            path: orphan,
                        }));
                    }
                }
            }
            collected.secrets.push(orphan);
        }
        Ok(collected)
    }

    /// What the home's secret store holds that no run will read again: the directory of a
    /// run that finished (completed or cancelled) or whose journal is gone, and a secret of
    /// the store's older layout (a file directly in it) once no run can be resumed. A
    /// directory younger than a minute is left alone (its run may be starting), and so is
    /// one whose run's journal cannot be read (it may be resumable once repaired).
    pub fn orphan_secrets(&self) -> Result<Vec<std::path::PathBuf>, EngineError> {
        let dir = self.home.secrets_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(EngineError::Home(HomeError::Unusable {
                    path: dir,
                    detail: format!("cannot read it: {e}"),
                }));
            }
        };
        let runs = self.store.list()?;
        let mut resumable = false;
        let mut finished = std::collections::HashSet::new();
        for id in &runs {
            match self.store.read(*id) {
                Ok(s) if s.meta.state.is_finished() => {
                    finished.insert(*id);
                }
                _ => resumable = true,
            }
        }
        let mut orphans = Vec::new();
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                let Ok(run) = name.parse::<RunId>() else {
                    continue;
                };
                let young = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_none_or(|age| age < Duration::from_secs(60));
                if finished.contains(&run) || (!runs.contains(&run) && !young) {
                    orphans.push(path);
                }
            } else if meta.is_file() && uuid::Uuid::parse_str(&name).is_ok() && !resumable {
                orphans.push(path);
            }
        }
        orphans.sort();
        Ok(orphans)
    }

    fn remove_run(&self, id: RunId) -> Result<(), EngineError> {
        self.store.remove(id)?;
        let _ = std::fs::remove_file(self.home.log_path(id));
        if let Err(e) = crate::secret::forget_run(&self.home, id) {
            tracing::warn!(run = %id, error = %e, "could not remove a forgotten run's secrets");
        }
        Ok(())
    }

    /// Keeps the newest [`KEEP_SUMMARIES`] completed runs' summaries.
    pub(crate) fn prune_summaries(&self) -> Result<(), EngineError> {
        let completed = self.store.completed()?;
        let excess = completed.len().saturating_sub(KEEP_SUMMARIES);
        for id in completed.into_iter().take(excess) {
            self.remove_run(id)?;
        }
        Ok(())
    }
}
