//! Answers to a run's questions: from the environment (`FOUNDRY_INPUT_<KEY>`), else from a
//! person at the terminal, else nobody (the run then waits for input).

use std::io::IsTerminal;

use foundry_core::{InputProvider, Question};
use indicatif::ProgressBar;

pub struct TerminalInput {
    interactive: bool,
    progress: Option<ProgressBar>,
}

impl TerminalInput {
    pub fn new(progress: Option<ProgressBar>) -> Self {
        TerminalInput {
            interactive: std::io::stdin().is_terminal() && std::io::stderr().is_terminal(),
            progress,
        }
    }
}

/// `FOUNDRY_INPUT_DB_PASSWORD` for the key `db-password`.
pub fn env_name(key: &str) -> String {
    let name: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("FOUNDRY_INPUT_{name}")
}

impl InputProvider for TerminalInput {
    fn ask(&self, key: &str, question: &Question) -> Option<String> {
        if let Ok(value) = std::env::var(env_name(key)) {
            return Some(value);
        }
        if !self.interactive {
            return None;
        }
        let prompt = || -> Option<String> {
            if question.secret {
                dialoguer::Password::new()
                    .with_prompt(&question.prompt)
                    .interact()
                    .ok()
            } else {
                let mut input = dialoguer::Input::<String>::new().with_prompt(&question.prompt);
                if let Some(default) = &question.default {
                    input = input.default(default.clone());
                }
                input.interact_text().ok()
            }
        };
        match &self.progress {
            Some(bar) => bar.suspend(prompt),
            None => prompt(),
        }
    }
}
