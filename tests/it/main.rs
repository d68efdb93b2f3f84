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
mod journal_damage;
mod keyring;
mod lab;
mod long_cells;
mod openbao;
mod registry;
mod retries;
mod secrets;
mod short_ids;
mod snapshots;
mod ssh;
mod ssh_keys;
mod stopped_driver;
mod wire;
