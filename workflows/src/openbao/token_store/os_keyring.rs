//! Foundry's OpenBAO token in the OS keyring: on Linux the freedesktop Secret Service
//! (GNOME Keyring, KWallet, KeePassXC), reached through zbus, a D-Bus client written in
//! Rust, so no libdbus is needed. The entry is service `foundry`, user
//! `openbao-token:<home>`: two homes never share a token.
//!
//! The `keyring` crate blocks on a single-threaded tokio runtime of its own, which panics
//! when started inside another runtime; so each call runs on a thread of its own and the
//! caller waits for it within a deadline: a Secret Service that never answers must not
//! hang Foundry. An async caller ([`TokenStore::fetch`], [`TokenStore::keep`]) awaits the
//! answer, so its runtime, of either flavour, goes on meanwhile; a detached thread, not
//! `spawn_blocking`, since a runtime waits for its blocking tasks when it shuts down.

use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use foundry_activities::openbao::{TokenStore, TokenStoreError};
use foundry_core::SecretValue;
use foundry_core::activity::BoxFuture;

/// The keyring entry's service.
pub const SERVICE: &str = "foundry";
/// How long one keyring call may take: long enough for a person to answer an unlock
/// prompt, short enough that a Secret Service that never answers is noticed.
const TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Clone, Debug)]
pub struct KeyringTokenStore {
    user: String,
    timeout: Duration,
    /// Set once a call ran out of time: this store does not ask again.
    silent: Arc<AtomicBool>,
}

impl KeyringTokenStore {
    /// The entry of a Foundry home, named by its canonical path so that two spellings of
    /// one home share it.
    pub fn in_home(home: &Path) -> Self {
        let home = std::fs::canonicalize(home)
            .or_else(|_| std::path::absolute(home))
            .unwrap_or_else(|_| home.to_path_buf());
        KeyringTokenStore {
            user: format!("openbao-token:{}", home.display()),
            timeout: TIMEOUT,
            silent: Arc::default(),
        }
    }

    /// The entry's user (its service is [`SERVICE`]).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The store of `home` when a keyring answers now; else why not.
    pub fn probe(home: &Path) -> Result<KeyringTokenStore, String> {
        use keyring::credential::CredentialPersistence;
        // Without a native store for the system, the crate falls back to one in memory.
        if !matches!(
            keyring::default::default_credential_builder().persistence(),
            CredentialPersistence::UntilDelete
        ) {
            return Err("this build of Foundry knows no OS keyring on this system".into());
        }
        if let Some(why) = no_session_bus(|name| std::env::var_os(name)) {
            return Err(why);
        }
        let store = KeyringTokenStore::in_home(home);
        store.read()?;
        Ok(store)
    }

    fn read(&self) -> Result<Option<SecretValue>, String> {
        self.call(|entry| match entry.get_password() {
            Ok(token) => Ok(Some(SecretValue::new(token))),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(e),
        })
    }

    /// Starts `op` on the entry on a thread of its own; `answer` gets its result.
    fn spawn<T: Send + 'static>(
        &self,
        op: impl FnOnce(&keyring::Entry) -> keyring::Result<T> + Send + 'static,
        answer: impl FnOnce(Result<T, String>) + Send + 'static,
    ) -> Result<(), String> {
        if self.silent.load(Ordering::Relaxed) {
            return Err("the Secret Service stopped answering earlier".into());
        }
        let user = self.user.clone();
        std::thread::Builder::new()
            .name("foundry-keyring".into())
            .spawn(move || {
                let result = keyring::Entry::new(SERVICE, &user).and_then(|entry| op(&entry));
                answer(result.map_err(describe));
            })
            .map(drop)
            .map_err(|e| format!("starting a thread for the keyring: {e}"))
    }

    /// The error of a call that ran out of time; this store does not ask again.
    fn timed_out(&self) -> String {
        self.silent.store(true, Ordering::Relaxed);
        format!(
            "the Secret Service did not answer within {:?}",
            self.timeout
        )
    }

    /// Runs `op` on the entry, blocking this thread for at most the timeout: for the
    /// synchronous [`TokenStore`] calls.
    fn call<T: Send + 'static>(
        &self,
        op: impl FnOnce(&keyring::Entry) -> keyring::Result<T> + Send + 'static,
    ) -> Result<T, String> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.spawn(op, move |result| {
            let _ = tx.send(result);
        })?;
        match rx.recv_timeout(self.timeout) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(self.timed_out()),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Err("the keyring call ended without an answer".into())
            }
        }
    }

    /// Runs `op` on the entry and awaits its answer for at most the timeout, without
    /// blocking the caller's runtime.
    async fn call_async<T: Send + 'static>(
        &self,
        op: impl FnOnce(&keyring::Entry) -> keyring::Result<T> + Send + 'static,
    ) -> Result<T, String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.spawn(op, move |result| {
            let _ = tx.send(result);
        })?;
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err("the keyring call ended without an answer".into()),
            Err(_) => Err(self.timed_out()),
        }
    }

    fn error(&self, detail: String) -> TokenStoreError {
        TokenStoreError {
            place: self.place(),
            detail,
        }
    }
}

impl TokenStore for KeyringTokenStore {
    fn get(&self) -> Result<Option<SecretValue>, TokenStoreError> {
        self.read().map_err(|e| self.error(e))
    }

    fn put(&self, token: &SecretValue) -> Result<(), TokenStoreError> {
        let token = token.clone();
        self.call(move |entry| entry.set_password(token.expose()))
            .map_err(|e| self.error(e))
    }

    fn place(&self) -> String {
        format!("the OS keyring (service `{SERVICE}`, user `{}`)", self.user)
    }

    fn fetch(&self) -> BoxFuture<'_, Result<Option<SecretValue>, TokenStoreError>> {
        Box::pin(async move {
            self.call_async(|entry| match entry.get_password() {
                Ok(token) => Ok(Some(SecretValue::new(token))),
                Err(keyring::Error::NoEntry) => Ok(None),
                Err(e) => Err(e),
            })
            .await
            .map_err(|e| self.error(e))
        })
    }

    fn keep<'a>(&'a self, token: &'a SecretValue) -> BoxFuture<'a, Result<(), TokenStoreError>> {
        let token = token.clone();
        Box::pin(async move {
            self.call_async(move |entry| entry.set_password(token.expose()))
                .await
                .map_err(|e| self.error(e))
        })
    }
}

/// A keyring error in a person's words where the usual one is obscure.
fn describe(e: keyring::Error) -> String {
    let text = e.to_string();
    if text.contains("org.freedesktop.DBus.Error.ServiceUnknown") {
        return "no Secret Service (org.freedesktop.secrets) on the D-Bus session bus".into();
    }
    text
}

/// Why there is no D-Bus session bus to ask, if there is none: zbus takes
/// `DBUS_SESSION_BUS_ADDRESS`, else the session's `$XDG_RUNTIME_DIR/bus`.
fn no_session_bus(env: impl Fn(&str) -> Option<OsString>) -> Option<String> {
    let set = |name: &str| env(name).filter(|v| !v.is_empty());
    if set("DBUS_SESSION_BUS_ADDRESS").is_some() {
        return None;
    }
    if set("XDG_RUNTIME_DIR").is_some_and(|dir| Path::new(&dir).join("bus").exists()) {
        return None;
    }
    Some("no D-Bus session bus: DBUS_SESSION_BUS_ADDRESS is not set".into())
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn each_home_has_its_own_entry_whatever_its_spelling() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(&a).expect("a");
        std::fs::create_dir_all(&b).expect("b");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&a, &link).expect("symlink");
        let user = |p: &Path| KeyringTokenStore::in_home(p).user().to_string();
        assert_ne!(user(&a), user(&b));
        assert_eq!(user(&a), user(&link));
        assert_eq!(user(&a), user(&a.join("..").join("a")));
        assert!(user(&a).starts_with("openbao-token:/"), "{}", user(&a));
        // A home not made yet is named by its absolute path.
        assert!(user(&dir.path().join("new")).ends_with("/new"));
    }

    #[test]
    fn no_bus_is_said_without_asking_one() {
        let none = |_: &str| None;
        let why = no_session_bus(none).expect("no bus");
        assert!(why.contains("DBUS_SESSION_BUS_ADDRESS"), "{why}");
        let empty = |_: &str| Some(OsString::new());
        assert!(no_session_bus(empty).is_some());
        let address = |name: &str| {
            (name == "DBUS_SESSION_BUS_ADDRESS").then(|| OsString::from("unix:path=/x"))
        };
        assert!(no_session_bus(address).is_none());
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = |name: &str| (name == "XDG_RUNTIME_DIR").then(|| dir.path().into());
        assert!(
            no_session_bus(runtime).is_some(),
            "a runtime dir with no bus"
        );
        std::fs::write(dir.path().join("bus"), "").expect("bus");
        assert!(no_session_bus(runtime).is_none());
    }

    fn slow_store(timeout: Duration) -> KeyringTokenStore {
        KeyringTokenStore {
            timeout,
            ..KeyringTokenStore::in_home(Path::new("/nowhere"))
        }
    }

    fn too_slow(store: &KeyringTokenStore) -> Result<(), String> {
        store.call(|_| {
            std::thread::sleep(Duration::from_millis(500));
            Ok(())
        })
    }

    #[test]
    fn a_keyring_that_does_not_answer_is_given_up_and_not_asked_again() {
        let store = slow_store(Duration::from_millis(50));
        let started = Instant::now();
        let why = too_slow(&store).expect_err("timed out");
        assert!(
            started.elapsed() < Duration::from_millis(400),
            "waited it out"
        );
        assert!(why.contains("did not answer within 50ms"), "{why}");
        let again = store.call(|_| Ok(())).expect_err("asked again");
        assert!(again.contains("stopped answering"), "{again}");
    }

    /// While a keyring call waits, the caller's runtime runs its other tasks, even when it
    /// has only one thread.
    #[test]
    fn an_async_keyring_call_leaves_a_current_thread_runtime_free_meanwhile() {
        let single = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        single.block_on(async {
            let ticks = Arc::new(std::sync::atomic::AtomicU32::new(0));
            let ticker = {
                let ticks = ticks.clone();
                tokio::spawn(async move {
                    loop {
                        ticks.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                })
            };
            let store = slow_store(Duration::from_secs(30));
            // The keyring answers once the runtime has ticked (which it can only do while
            // the call waits), or after 5 s.
            let seen = ticks.clone();
            let answered = store
                .call_async(move |_| {
                    let end = std::time::Instant::now() + Duration::from_secs(5);
                    while seen.load(Ordering::SeqCst) < 3 && std::time::Instant::now() < end {
                        std::thread::yield_now();
                    }
                    Ok(seen.load(Ordering::SeqCst))
                })
                .await;
            ticker.abort();
            assert!(answered.expect("answered") >= 3, "the runtime stood still");

            let store = slow_store(Duration::from_millis(50));
            let why = store
                .call_async(|_| {
                    std::thread::sleep(Duration::from_millis(500));
                    Ok(())
                })
                .await
                .expect_err("timed out");
            assert!(why.contains("did not answer within 50ms"), "{why}");
        });
    }

    #[test]
    fn keyring_calls_wait_inside_either_kind_of_runtime() {
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .expect("runtime");
        let single = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        for rt in [multi, single] {
            rt.block_on(async {
                let store = slow_store(Duration::from_secs(5));
                assert_eq!(store.call(|_| Ok(7)), Ok(7));
                let store = slow_store(Duration::from_millis(50));
                assert!(too_slow(&store).is_err());
            });
        }
    }
}
