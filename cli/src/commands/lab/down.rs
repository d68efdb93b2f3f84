use crate::exit::CliError;
use crate::printer::Printer;

/// Remove a lab: its hosts, its network, its key and its config.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  foundry lab down
  foundry lab down --name big")]
pub struct Args {
    /// The lab's name.
    #[arg(long, default_value = "default")]
    name: String,
}

pub async fn run(args: Args, printer: &Printer) -> Result<u8, CliError> {
    super::require_engine()?;
    let (engine, bar) = crate::commands::engine(printer)?;
    let (dir, config) = super::lab_paths(&args.name)?;
    // The data volumes of the components the lab's config placed (a config that no
    // longer reads places none).
    let volumes: Vec<String> = foundry_workflows::config::load(&config)
        .map(|stack| {
            foundry_workflows::stack::all()
                .iter()
                .flat_map(|c| c.volumes(&stack))
                .collect()
        })
        .unwrap_or_default();
    let input = serde_json::json!({
        "name": args.name, "dir": dir, "config": config, "volumes": volumes,
    });
    let driver = engine.start("lab-down", input)?;
    crate::commands::drive::drive(driver, printer, bar)
        .await
        .map(|(code, _)| code)
}
