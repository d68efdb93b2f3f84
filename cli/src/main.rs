fn main() -> std::process::ExitCode {
    foundry_cli::run()
}
