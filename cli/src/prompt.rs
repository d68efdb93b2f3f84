//! Answers to a run's questions: from the environment (`FOUNDRY_INPUT_<KEY>`), else (with
//! `--yes`) a question's default, else from a person at the terminal, else nobody (the
//! run then waits for input, and the question is kept so the command can say what to set).

use std::io::IsTerminal;
use std::sync::Mutex;

use foundry_core::{InputProvider, Question};
use indicatif::ProgressBar;

pub struct TerminalInput {
    interactive: bool,
    /// `--yes`: a question with a default takes it without asking.
    yes: bool,
    progress: Option<ProgressBar>,
    unanswered: Mutex<Vec<Unanswered>>,
}

/// A question nobody could answer: its key and prompt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unanswered {
    pub key: String,
    pub prompt: String,
}

impl Unanswered {
    /// The variable that answers it.
    pub fn env(&self) -> String {
        env_name(&self.key)
    }
}

impl TerminalInput {
    pub fn new(progress: Option<ProgressBar>) -> Self {
        TerminalInput {
            interactive: std::io::stdin().is_terminal() && std::io::stderr().is_terminal(),
            yes: false,
            progress,
            unanswered: Mutex::new(Vec::new()),
        }
    }

    /// Questions with a default take it, unasked (`--yes`).
    pub fn with_defaults(mut self, yes: bool) -> Self {
        self.yes = yes;
        self
    }

    /// The questions nobody could answer, in the order they were asked.
    pub fn unanswered(&self) -> Vec<Unanswered> {
        self.unanswered
            .lock()
            .map(|u| u.clone())
            .unwrap_or_default()
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
        if let (true, Some(default)) = (self.yes, &question.default) {
            return Some(default.clone());
        }
        if !self.interactive {
            if let Ok(mut unanswered) = self.unanswered.lock() {
                unanswered.push(Unanswered {
                    key: key.to_string(),
                    prompt: question.prompt.clone(),
                });
            }
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
                match question.default.as_deref() {
                    // An empty default: an empty answer is one.
                    Some("") => input = input.allow_empty(true),
                    Some(default) => input = input.default(default.to_string()),
                    None => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    fn question(default: Option<&str>) -> Question {
        Question {
            prompt: "address of host web-1".into(),
            secret: false,
            default: default.map(str::to_string),
        }
    }

    #[test]
    fn yes_takes_a_default_and_nobody_answers_the_rest() {
        let input = TerminalInput {
            interactive: false,
            yes: true,
            progress: None,
            unanswered: Mutex::new(Vec::new()),
        };
        let key = "wizard-test-host/address";
        assert_eq!(
            input.ask(key, &question(Some("10.0.0.5"))),
            Some("10.0.0.5".into())
        );
        assert_eq!(input.ask(key, &question(None)), None);
        let unanswered = input.unanswered();
        assert_eq!(unanswered.len(), 1);
        assert_eq!(
            unanswered[0].env(),
            "FOUNDRY_INPUT_WIZARD_TEST_HOST_ADDRESS"
        );
        let without = TerminalInput {
            yes: false,
            ..input
        };
        assert_eq!(without.ask(key, &question(Some("10.0.0.5"))), None);
    }
}
