//! A cancel asked from another machine, heard the moment it is recorded.
//!
//! [`super::PostgresStore::request_cancel`] records the request on the run's row and, in the
//! same transaction, sends a `NOTIFY` on [`CHANNEL`] naming the run, the epoch it was asked
//! at and who asked; PostgreSQL delivers it when that transaction commits, and never if it
//! rolls back. A process that drives runs of a store keeps one more connection that
//! `LISTEN`s there, on a thread of its own, and wakes the run's journal as it hears.
//!
//! This only makes the cancel prompt. What guarantees it is the row: the driver reads the
//! request back at every write and at its heartbeat, so a notification lost to a dropped
//! connection, or sent before the listener's `LISTEN` took effect, is still acted on.
//! After each (re)connection the listener also reads the rows of the runs it waits for,
//! for a request it could not have heard.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use postgres::Client;
use postgres::fallible_iterator::FallibleIterator;
use serde::{Deserialize, Serialize};

use super::CancelWake;
use crate::model::{Lease, RunId};

/// The channel every cancel request is announced on.
pub(super) const CHANNEL: &str = "foundry_cancel";

/// How long the listener blocks for a notification before it checks whether it is still
/// wanted.
const POLL: Duration = Duration::from_millis(200);

/// How long the listener waits before it connects again after it could not.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// How many requests heard for no journal of this process are kept, for a journal about
/// to register.
const UNCLAIMED: usize = 64;

/// A notification's payload.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub(super) struct Asked {
    pub run: String,
    pub epoch: i64,
    pub by: Lease,
}

/// A run as one driver holds it: the run and the epoch it was taken at.
type Held = (RunId, i64);

/// Opens the listener's connection.
pub(super) type Connect = Box<dyn Fn() -> Result<Client, String> + Send + Sync>;

#[derive(Default)]
struct Registry {
    wakers: HashMap<Held, CancelWake>,
    /// Requests heard for a run no journal here waits on yet, oldest first.
    unclaimed: VecDeque<(Held, Lease)>,
    running: bool,
}

/// The store's listener: started by the first journal that waits for a cancel, and ended
/// within [`POLL`] after the store and its journals are dropped.
pub(super) struct Listener {
    registry: Mutex<Registry>,
    connect: Connect,
    shown: String,
}

impl Listener {
    pub(super) fn new(shown: String, connect: Connect) -> Arc<Listener> {
        Arc::new(Listener {
            registry: Mutex::new(Registry::default()),
            connect,
            shown,
        })
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Calls `wake` once, with who asked, when a cancel of `run` at `epoch` is heard.
    pub(super) fn register(self: &Arc<Self>, run: RunId, epoch: i64, wake: CancelWake) {
        let mut registry = self.registry();
        let held = (run, epoch);
        if let Some(at) = registry.unclaimed.iter().position(|(h, _)| *h == held) {
            let heard = registry.unclaimed.remove(at);
            drop(registry);
            if let Some((_, by)) = heard {
                wake(by);
            }
            return;
        }
        registry.wakers.insert(held, wake);
        if registry.running {
            return;
        }
        let weak = Arc::downgrade(self);
        let started = std::thread::Builder::new()
            .name("foundry-journal-listen".into())
            .spawn(move || listen(&weak));
        match started {
            Ok(_) => registry.running = true,
            Err(e) => {
                tracing::debug!(error = %e, "no listener thread: a cancel from another machine arrives with the heartbeat");
            }
        }
    }

    /// The journal of `run` at `epoch` is gone: nothing to wake.
    pub(super) fn unregister(&self, run: RunId, epoch: i64) {
        self.registry().wakers.remove(&(run, epoch));
    }

    fn heard(&self, held: Held, by: Lease) {
        let mut registry = self.registry();
        match registry.wakers.remove(&held) {
            Some(wake) => {
                drop(registry);
                tracing::debug!(run = %held.0, asked_by = %by, "cancel heard from the shared journal");
                wake(by);
            }
            None => {
                if registry.unclaimed.len() == UNCLAIMED {
                    registry.unclaimed.pop_front();
                }
                registry.unclaimed.push_back((held, by));
            }
        }
    }

    fn waiting(&self) -> Vec<String> {
        self.registry()
            .wakers
            .keys()
            .map(|(run, _)| run.to_string())
            .collect()
    }
}

/// The notification's payload for a request of `run` at `epoch` by `by`.
pub(super) fn payload(run: RunId, epoch: i64, by: &Lease) -> String {
    let asked = Asked {
        run: run.to_string(),
        epoch,
        by: by.clone(),
    };
    serde_json::to_string(&asked).unwrap_or_default()
}

fn parse(payload: &str) -> Option<(Held, Lease)> {
    let asked: Asked = serde_json::from_str(payload).ok()?;
    let run = asked.run.parse::<RunId>().ok()?;
    Some(((run, asked.epoch), asked.by))
}

/// The listener's thread: connects, listens, and hears until its store is gone.
fn listen(weak: &Weak<Listener>) {
    while let Some(listener) = weak.upgrade() {
        let connected = (listener.connect)().and_then(|mut client| {
            client
                .batch_execute(&format!("LISTEN {CHANNEL}"))
                .map_err(|e| e.to_string())?;
            pending(&listener, &mut client).map_err(|e| e.to_string())?;
            Ok(client)
        });
        let shown = listener.shown.clone();
        drop(listener);
        match connected {
            Ok(mut client) => {
                let lost = hear(weak, &mut client);
                tracing::debug!(server = %shown, error = %lost, "the cancel listener lost its connection; connecting again");
            }
            Err(e) => {
                tracing::debug!(server = %shown, error = %e, "the cancel listener cannot connect; a cancel from another machine arrives with the heartbeat");
                std::thread::sleep(RECONNECT_AFTER);
            }
        }
    }
}

/// Requests recorded before the listener's `LISTEN` took effect, for the runs it waits on.
fn pending(listener: &Listener, client: &mut Client) -> Result<(), postgres::Error> {
    let runs = listener.waiting();
    if runs.is_empty() {
        return Ok(());
    }
    let rows = client.query(
        "SELECT id, epoch, cancel_requested FROM foundry_runs
         WHERE id = ANY($1) AND cancel_requested IS NOT NULL",
        &[&runs],
    )?;
    for row in rows {
        let (id, epoch, by): (String, i64, String) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        let (Ok(run), Ok(by)) = (id.parse::<RunId>(), serde_json::from_str::<Lease>(&by)) else {
            continue;
        };
        listener.heard((run, epoch), by);
    }
    Ok(())
}

/// Hears notifications until the store is gone (an empty error) or the connection fails.
fn hear(weak: &Weak<Listener>, client: &mut Client) -> String {
    loop {
        if weak.strong_count() == 0 {
            return String::new();
        }
        let next = client.notifications().timeout_iter(POLL).next();
        match next {
            Ok(None) => {}
            Ok(Some(note)) => {
                let (Some(heard), Some(listener)) = (parse(note.payload()), weak.upgrade()) else {
                    continue;
                };
                listener.heard(heard.0, heard.1);
            }
            Err(e) => return e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asker() -> Lease {
        Lease {
            pid: 7,
            host: "laptop".into(),
            started_at: crate::time::Millis(1),
            heartbeat_at: crate::time::Millis(2),
        }
    }

    #[test]
    fn a_payload_names_the_run_its_epoch_and_who_asked() {
        let run = RunId::new();
        let text = payload(run, 3, &asker());
        assert_eq!(parse(&text), Some(((run, 3), asker())));
        assert!(text.len() < 8000, "over NOTIFY's limit: {text}");
        assert_eq!(parse("not json"), None);
        assert_eq!(parse(r#"{"run":"x","epoch":1,"by":null}"#), None);
    }

    #[test]
    fn a_request_heard_before_its_journal_waits_is_kept_for_it() {
        let listener = Listener::new("test".into(), Box::new(|| Err("no server".into())));
        let run = RunId::new();
        listener.heard((run, 2), asker());
        let (tx, rx) = std::sync::mpsc::channel();
        // Another epoch's request is not this driver's.
        let other = tx.clone();
        listener.register(
            run,
            1,
            Box::new(move |by| other.send((1, by)).unwrap_or(())),
        );
        listener.register(run, 2, Box::new(move |by| tx.send((2, by)).unwrap_or(())));
        assert_eq!(rx.try_recv().ok(), Some((2, asker())));
        assert!(rx.try_recv().is_err());
        listener.unregister(run, 1);
        assert!(listener.waiting().is_empty());
    }
}
