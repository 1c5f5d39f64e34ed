//! The `mapscope` command. Each subcommand lives in its own file under `cli/`.

mod cli;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MAPSCOPE_LOG")
                // async-nats logs every reconnect attempt; the NATS sink reports trouble itself.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,async_nats=off")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` joins the context chain into the one line the user sees.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
