use std::path::Path;

use foundry_workflows::config;
use foundry_workflows::secret_ref::{self, Foundryvars, Resolver, Source};
use serde::Serialize;

use crate::exit::{self, CliError};
use crate::printer::Printer;

/// Check the stack config: its syntax, every field, every secret reference.
///
/// Each secret reference must resolve (from the environment, then ~/.foundryvars, then
/// OpenBAO once it is installed); the values are never shown. An error names the file, the line and the column, and what was expected.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  foundry config validate
  foundry --config ~/.foundry/prod.yaml config validate --output json")]
pub struct Args {}

#[derive(Serialize)]
struct Report {
    config: String,
    valid: bool,
    hosts: usize,
    zones: usize,
    references: Vec<Resolved>,
}

#[derive(Serialize)]
struct Resolved {
    reference: String,
    line: usize,
    column: usize,
    from: &'static str,
}

/// What OpenBAO holds for the config's references, when the config says where OpenBAO
/// runs and Foundry has its token; an OpenBAO that does not answer is said, not fatal
/// (the references it would have answered then fail by name).
async fn openbao_values(
    stack: &config::StackConfig,
    text: &str,
    home: &Path,
    printer: &Printer,
) -> Option<foundry_workflows::secrets::Prefetched> {
    let references: Vec<_> = config::references_in(text)
        .ok()?
        .into_iter()
        .map(|p| p.reference)
        .collect();
    if references.is_empty() {
        return None;
    }
    let vault = foundry_workflows::secrets::Vault::of_stack(stack, home).ok()?;
    match vault.fetch(&references).await {
        Ok(found) => Some(found),
        Err(e) => {
            printer.note(&format!("warning: OpenBAO not asked: {e}"));
            None
        }
    }
}

pub async fn run(_: Args, printer: &Printer, flag: Option<&Path>) -> Result<u8, CliError> {
    let (home, selected) = crate::commands::existing(flag)?;
    let text = config::read_text(&selected.path)?;
    let stack = config::parse(&selected.path, &text)?;
    let vars = Foundryvars::load(&secret_ref::vars_path()).map_err(|e| {
        let (message, hint) = secret_ref::message_and_hint(&e);
        let mut err = CliError::new(message);
        err.hint = hint;
        err
    })?;
    let env = |name: &str| std::env::var(name).ok();
    let openbao = openbao_values(&stack, &text, home.root(), printer).await;
    let resolver = Resolver {
        namespace: secret_ref::STACK_NAMESPACE.into(),
        env: &env,
        vars: &vars,
        store: openbao
            .as_ref()
            .map(|p| p as &dyn foundry_workflows::secret_ref::SecretStore),
    };
    let references = config::resolve_references(&selected.path, &text, &resolver)?;
    let zones = stack.dns.as_ref().map_or(0, |d| {
        d.infrastructure_zones.len() + d.kubernetes_zones.len()
    });
    let report = Report {
        config: selected.path.display().to_string(),
        valid: true,
        hosts: stack.hosts.len(),
        zones,
        references: references
            .iter()
            .map(|(placed, source)| Resolved {
                reference: placed.reference.to_string(),
                line: placed.line,
                column: placed.column,
                from: match source {
                    Source::Environment => "environment",
                    Source::Foundryvars => "foundryvars",
                    Source::Store => "openbao",
                },
            })
            .collect(),
    };
    if printer.json() {
        let _ = printer.data(&report);
        return Ok(exit::OK);
    }
    let _ = printer.line(&format!(
        "{}: valid ({} hosts, {} zones, {} secret references)",
        report.config,
        report.hosts,
        report.zones,
        report.references.len()
    ));
    for r in &report.references {
        let _ = printer.line(&format!(
            "  line {} column {}: {} resolves from {}",
            r.line, r.column, r.reference, r.from
        ));
    }
    Ok(exit::OK)
}
