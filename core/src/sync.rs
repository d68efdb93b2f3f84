//! The one way this crate takes its mutexes.

use std::sync::{Mutex, MutexGuard};

/// `m`'s guard, poisoned or not: every lock in this crate guards data that each update
/// leaves whole (a push, a take, a swap, one insert), so a panic elsewhere while holding it
/// leaves nothing half done.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
