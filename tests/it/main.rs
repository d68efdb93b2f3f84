//! End-to-end tests of the real `foundry` binary. One test binary, so it links once.

mod bad_input;
mod cancel;
mod containers;
mod crash;
mod drivers;
mod format;
mod lab;
mod retries;
mod secrets;
mod snapshots;
mod ssh;
