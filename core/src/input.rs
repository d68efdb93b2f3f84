//! Human input to a run. An answer is journaled as the step's output, so a resumed run
//! never asks twice; a secret answer goes to the secret store and only its reference is
//! journaled.

use serde::{Deserialize, Serialize};

use crate::secret::SecretRef;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Question {
    pub prompt: String,
    #[serde(default)]
    pub secret: bool,
    #[serde(default)]
    pub default: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    Text(String),
    Secret(SecretRef),
}

/// Who answers a run's questions: a person at a terminal, the environment, or nobody.
pub trait InputProvider: Send + Sync {
    /// The answer to `question`, asked under the step key `key`; `None` when nobody can
    /// answer now (the run then waits for input).
    fn ask(&self, key: &str, question: &Question) -> Option<String>;
}

/// Nobody answers: a run that needs input waits for it.
pub struct NoInput;

impl InputProvider for NoInput {
    fn ask(&self, _key: &str, _question: &Question) -> Option<String> {
        None
    }
}
