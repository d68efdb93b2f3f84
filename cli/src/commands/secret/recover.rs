use std::io::Read;
use std::path::Path;

use foundry_core::SecretValue;
use foundry_workflows::openbao::recover::{self, Progress, Recovered, RootGeneration, TokenStore};
use foundry_workflows::openbao::token_store;

use crate::exit::{self, CliError};
use crate::printer::Printer;

/// Make Foundry a new OpenBAO token when its own no longer works.
///
/// From the root token (the default), or from a quorum of unseal keys (--unseal-keys),
/// which generate a root token used once and revoked at once. Asked without echo on a
/// terminal, else read from stdin one per line; never given on the command line.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Foundry's token lives 32 days unused and is renewed each time it is used past half of
that. If it expired or was revoked, this makes a new one with Foundry's policy and keeps
it where Foundry keeps its token (the OS keyring, else a 0600 file in the home).

Examples:
  foundry secret recover-token
  foundry secret recover-token --unseal-keys
  cat keys.txt | foundry secret recover-token --unseal-keys")]
pub struct Args {
    /// Generate a root token from a quorum of unseal keys instead of typing one.
    #[arg(long)]
    unseal_keys: bool,
}

pub async fn run(args: Args, printer: &Printer, config: Option<&Path>) -> Result<u8, CliError> {
    let (home, selected) = crate::commands::existing(config)?;
    let stack = selected.load()?;
    let addr = stack.openbao_url().ok_or_else(|| {
        CliError::new("the stack config says nowhere where OpenBAO runs")
            .with_hint("set components.openbao.address, or network.openbao_hosts")
    })?;
    let store = token_store::for_home(home.root())
        .map_err(|e| CliError::new(e.to_string()).with_hint(e.hint()))?;
    if recover::kept_works(&addr, store.as_ref())
        .await
        .map_err(failed)?
    {
        let recovered = Recovered {
            minted: false,
            kept_in: store.place(),
        };
        return done(&addr, &recovered, printer);
    }
    let mut answers = Answers::new()?;
    let recovered = if args.unseal_keys {
        from_keys(&addr, store, &mut answers, printer).await?
    } else {
        let root = answers.next("OpenBAO root token")?;
        recover::mint(&addr, &root, store).await.map_err(failed)?
    };
    done(&addr, &recovered, printer)
}

fn done(addr: &str, recovered: &Recovered, printer: &Printer) -> Result<u8, CliError> {
    if printer.json() {
        let _ = printer.data(recovered);
    } else if recovered.minted {
        let _ = printer.line(&format!(
            "Foundry has a new OpenBAO token for {addr}, kept in {}",
            recovered.kept_in
        ));
    } else {
        let _ = printer.line(&format!(
            "Foundry's OpenBAO token for {addr} still works: nothing was made"
        ));
    }
    Ok(exit::OK)
}

/// A root token generated from unseal keys asked one by one, used once and revoked.
async fn from_keys(
    addr: &str,
    store: std::sync::Arc<dyn TokenStore>,
    answers: &mut Answers,
    printer: &Printer,
) -> Result<Recovered, CliError> {
    let generation = RootGeneration::start(addr).await.map_err(failed)?;
    let mut given = 0;
    let root = loop {
        let asked = format!("Unseal key {} of {}", given + 1, generation.required);
        let key = match answers.next(&asked) {
            Ok(key) => key,
            Err(e) => {
                let _ = generation.cancel().await;
                return Err(e);
            }
        };
        match generation.give(&key).await {
            Ok(Progress::Done(root)) => break root,
            Ok(Progress::More { progress, required }) => {
                given = progress;
                printer.note(&format!("{progress} of {required} unseal keys given"));
            }
            Err(e) => {
                let _ = generation.cancel().await;
                return Err(failed(e));
            }
        }
    };
    generation
        .mint_and_revoke(&root, store)
        .await
        .map_err(failed)
}

fn failed(e: foundry_core::ActivityError) -> CliError {
    let (message, hint) = match e.message.split_once("\nhint: ") {
        Some((m, h)) => (m.to_string(), Some(h.to_string())),
        None => (e.message, None),
    };
    let mut err = CliError::new(message);
    err.hint = hint;
    err
}

/// Secrets asked on the terminal without echo, or read from stdin one per line.
enum Answers {
    Terminal,
    Lines(std::vec::IntoIter<String>),
}

impl Answers {
    fn new() -> Result<Answers, CliError> {
        if crate::commands::interactive() {
            return Ok(Answers::Terminal);
        }
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CliError::new(format!("reading stdin: {e}")))?;
        let lines: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        Ok(Answers::Lines(lines.into_iter()))
    }

    fn next(&mut self, what: &str) -> Result<SecretValue, CliError> {
        match self {
            Answers::Terminal => dialoguer::Password::new()
                .with_prompt(what)
                .interact()
                .map(|v| SecretValue::new(v.trim()))
                .map_err(|e| CliError::new(format!("reading the {what}: {e}"))),
            Answers::Lines(lines) => lines.next().map(SecretValue::new).ok_or_else(|| {
                CliError::new(format!("stdin ended before the {what}"))
                    .with_hint("give one per line on stdin, or run it on a terminal")
            }),
        }
    }
}
