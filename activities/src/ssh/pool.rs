//! One SSH connection per host, shared by every step that reaches it: commands run on
//! channels of that connection, so a step costs a channel open, not a key exchange.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use foundry_core::{ActivityCx, ActivityError};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::{SshSession, SshTarget};

/// Channels open at once on one connection: below OpenSSH's `MaxSessions` (10).
const CHANNELS_PER_CONNECTION: usize = 8;

/// A live connection and its share of channels.
pub struct PooledSession {
    session: SshSession,
    channels: Semaphore,
}

impl PooledSession {
    /// A command channel on this connection, waited for while all are taken; run the
    /// command through it (it derefs to the session) and drop it after.
    pub async fn channel(&self) -> Result<ChannelSlot<'_>, ActivityError> {
        let permit = self
            .channels
            .acquire()
            .await
            .map_err(|_| ActivityError::transient("the connection is closing"))?;
        Ok(ChannelSlot {
            session: &self.session,
            _permit: permit,
        })
    }

    /// Runs `command` on a channel of this connection, `input` on its stdin; see
    /// [`SshSession::run_capture_with_input`].
    pub async fn run_capture(
        &self,
        command: &str,
        input: Option<&[u8]>,
        cx: &ActivityCx,
    ) -> Result<(u32, Option<String>, Option<String>), ActivityError> {
        self.channel()
            .await?
            .run_capture_with_input(command, input, cx)
            .await
    }

    /// The session itself, for channels that are not commands (forwarded streams do not
    /// count against `MaxSessions`).
    pub fn session(&self) -> &SshSession {
        &self.session
    }

    fn is_closed(&self) -> bool {
        self.session.handle.is_closed()
    }
}

/// One of a connection's command channels, held until dropped.
pub struct ChannelSlot<'a> {
    session: &'a SshSession,
    _permit: SemaphorePermit<'a>,
}

impl std::ops::Deref for ChannelSlot<'_> {
    type Target = SshSession;

    fn deref(&self) -> &SshSession {
        self.session
    }
}

/// A host's slot: its connection, made by one caller while the others wait for it.
type Slot = Arc<tokio::sync::Mutex<Option<Arc<PooledSession>>>>;

/// The connections of this process, by target.
#[derive(Default)]
pub struct SshPool {
    hosts: Mutex<HashMap<SshTarget, Slot>>,
}

impl SshPool {
    /// The process's pool.
    pub fn global() -> &'static SshPool {
        static POOL: OnceLock<SshPool> = OnceLock::new();
        POOL.get_or_init(SshPool::default)
    }

    /// The live connection to `target`, made now if there is none or the last one closed.
    pub async fn session(&self, target: &SshTarget) -> Result<Arc<PooledSession>, ActivityError> {
        let slot = {
            let mut hosts = self
                .hosts
                .lock()
                .map_err(|_| ActivityError::permanent("the SSH pool is poisoned"))?;
            hosts.entry(target.clone()).or_default().clone()
        };
        let mut current = slot.lock().await;
        if let Some(live) = current.as_ref().filter(|s| !s.is_closed()) {
            return Ok(live.clone());
        }
        let fresh = Arc::new(PooledSession {
            session: SshSession::connect(target).await?,
            channels: Semaphore::new(CHANNELS_PER_CONNECTION),
        });
        *current = Some(fresh.clone());
        Ok(fresh)
    }

    /// Drops `session` from the pool if it is still `target`'s current connection: the next
    /// caller connects afresh (after the connection was found dead).
    pub async fn forget(&self, target: &SshTarget, session: &Arc<PooledSession>) {
        let slot = self
            .hosts
            .lock()
            .ok()
            .and_then(|hosts| hosts.get(target).cloned());
        if let Some(slot) = slot {
            let mut current = slot.lock().await;
            if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, session)) {
                *current = None;
            }
        }
    }
}
