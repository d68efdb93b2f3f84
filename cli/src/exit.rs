//! Exit codes (documented in the README) and the error a command ends with.

use std::process::ExitCode;

use foundry_core::{EngineError, RunState};

pub const OK: u8 = 0;
pub const ERROR: u8 = 1;
pub const USAGE: u8 = 2;
pub const RUN_FAILED: u8 = 3;
pub const RUN_PAUSED: u8 = 4;
pub const RUN_WAITING: u8 = 5;
pub const RUN_DRIVEN_ELSEWHERE: u8 = 6;
pub const RUN_CANCELLED: u8 = 7;
pub const INTERRUPTED: u8 = 130;

/// The exit code that says how a run ended.
pub fn for_state(state: RunState) -> u8 {
    match state {
        RunState::Completed => OK,
        RunState::Failed => RUN_FAILED,
        RunState::Paused => RUN_PAUSED,
        RunState::WaitingForInput => RUN_WAITING,
        RunState::Cancelled | RunState::Cancelling => RUN_CANCELLED,
        RunState::Running => OK,
    }
}

/// A command's failure: what to print, and the exit code.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
    pub hint: Option<String>,
}

impl CliError {
    pub fn new(message: impl Into<String>) -> Self {
        CliError {
            code: ERROR,
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Ends the command with `code` and nothing more to say.
    pub fn quiet(code: u8) -> Self {
        CliError {
            code,
            message: String::new(),
            hint: None,
        }
    }
}

impl From<EngineError> for CliError {
    fn from(e: EngineError) -> Self {
        let code = match e {
            EngineError::Driven { .. } => RUN_DRIVEN_ELSEWHERE,
            _ => ERROR,
        };
        CliError {
            code,
            hint: e.hint(),
            message: e.to_string(),
        }
    }
}

impl From<foundry_core::home::HomeError> for CliError {
    fn from(e: foundry_core::home::HomeError) -> Self {
        EngineError::from(e).into()
    }
}

pub fn code(c: u8) -> ExitCode {
    ExitCode::from(c)
}
