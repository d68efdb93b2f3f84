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
    /// Why OpenBAO was not asked for the references, when it was not (none when it was, or
    /// when the config has no reference to ask it for).
    openbao_skipped: Option<String>,
}

#[derive(Serialize)]
struct Resolved {
    reference: String,
    line: usize,
    column: usize,
    from: &'static str,
}

/// What OpenBAO holds for the config's references, when the config says where OpenBAO
/// runs and Foundry has its token; else why it was not asked. Neither is fatal (the
/// references it would have answered then fail by name), and a skip is said on stderr.
async fn openbao_values(
    stack: &config::StackConfig,
    text: &str,
    home: &Path,
    printer: &Printer,
) -> Result<Option<foundry_workflows::secrets::Prefetched>, String> {
    let references: Vec<_> = config::references_in(text)
        .unwrap_or_default()
        .into_iter()
        .map(|p| p.reference)
        .collect();
    if references.is_empty() {
        return Ok(None);
    }
    let skipped = |e: foundry_workflows::secrets::SecretsError| {
        printer.note(&format!(
            "warning: OpenBAO not asked for the config's secret references: {e}"
        ));
        if let Some(hint) = &e.hint {
            printer.note(&format!("hint: {hint}"));
        }
        e.message
    };
    if !home
        .join(foundry_workflows::openbao::tls::BINDING_PATH)
        .exists()
    {
        return Err(skipped(foundry_workflows::secrets::SecretsError {
            message: "Foundry holds no OpenBAO token in this home (OpenBAO is not installed from it yet)".into(),
            hint: Some("`foundry component install openbao` installs it; until then references resolve from the environment and ~/.foundryvars".into()),
        }));
    }
    let vault = foundry_workflows::secrets::Vault::of_stack(stack, home).map_err(skipped)?;
    vault.fetch(&references).await.map(Some).map_err(skipped)
}

/// A certificate the config brings for OpenBAO is checked now, as the install will check
/// it: key, CA, validity and OpenBAO's address.
fn check_own_tls(stack: &config::StackConfig, text: &str, path: &Path) -> Result<(), CliError> {
    let Some(tls) = stack
        .components
        .as_ref()
        .and_then(|c| c.openbao.tls.as_ref())
    else {
        return Ok(());
    };
    // Where the config does not place OpenBAO yet, its install refuses it; nothing to check.
    let Some(address) = stack.openbao_address() else {
        return Ok(());
    };
    let names = vec![address];
    tls.check(&names).map_err(|e| {
        let at = config::place::locate(text, &["components", "openbao", "tls"].map(Into::into))
            .map(|(line, column)| format!("line {line} column {column}: "))
            .unwrap_or_default();
        let (message, hint) = match e.0.split_once("\nhint: ") {
            Some((message, hint)) => (message, Some(hint.to_string())),
            None => (e.0.as_str(), None),
        };
        let mut err = CliError::new(format!(
            "config {}: {at}components.openbao.tls: {message}",
            path.display()
        ));
        err.hint = hint;
        err
    })?;
    Ok(())
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
    let (openbao, openbao_skipped) = match openbao_values(&stack, &text, home.root(), printer).await
    {
        Ok(found) => (found, None),
        Err(why) => (None, Some(why)),
    };
    let resolver = Resolver {
        namespace: secret_ref::STACK_NAMESPACE.into(),
        env: &env,
        vars: &vars,
        store: openbao
            .as_ref()
            .map(|p| p as &dyn foundry_workflows::secret_ref::SecretStore),
    };
    let references = config::resolve_references(&selected.path, &text, &resolver)?;
    check_own_tls(&stack, &text, &selected.path)?;
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
        openbao_skipped,
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
