//! Activities with effects on this machine only: they need no network, so the engine's own
//! tests and users' local plans can make real effects with them.

mod command;
mod file;
mod read_file;

pub use command::{CommandOutput, PRIVATE_ENV_PREFIXES, RunCommand, without_private_env};
pub use file::{EnsureFile, FileOutput, RemoveFile};
pub use read_file::ReadFileWhenReady;
