//! End-to-end tests of the real `foundry` binary. One test binary, so it links once.

mod bad_input;
mod cancel;
mod component;
mod config;
mod containers;
mod crash;
mod detach;
mod dns;
mod dns_cli;
mod drivers;
mod format;
mod host;
mod keyring;
mod lab;
mod openbao;
mod openbao_token;
mod registry;
mod retries;
mod secrets;
mod snapshots;
mod ssh;
mod ssh_keys;
