//! `mapscope agent`: every enabled family in one long-running process, with pinned counters,
//! Prometheus metrics and an HTTP API (see `deploy/agent.toml` for the config).

use std::path::PathBuf;

use clap::Args;
use mapscope::agent::{self, Config, config::DEFAULT_PATH};

use super::shutdown::Shutdown;

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Config file (TOML) [default: /etc/mapscope/agent.toml, built-in defaults if absent].
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Validate the config (interfaces included), print the effective config and exit.
    #[arg(long, conflicts_with = "reset")]
    check_config: bool,
    /// Remove the agent's pinned counters (refused while an agent runs) and exit.
    #[arg(long)]
    reset: bool,
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let explicit = args.config.is_some();
    let path = args.config.unwrap_or_else(|| PathBuf::from(DEFAULT_PATH));
    let cfg = Config::load(&path, explicit)?;
    if args.check_config {
        agent::check(&cfg)?;
        match &cfg.source {
            Some(p) => println!("# effective config from {}", p.display()),
            None => println!("# effective config: built-in defaults ({DEFAULT_PATH} absent)"),
        }
        print!("{}", cfg.to_toml());
        return Ok(());
    }
    if args.reset {
        let removed = agent::reset(&cfg.pin_dir)?;
        eprintln!(
            "mapscope agent: removed {} pinned object(s) and directories under {}",
            removed.len(),
            cfg.pin_dir.display()
        );
        return Ok(());
    }
    let mut shutdown = Shutdown::install()?;
    agent::run(&cfg, async move { shutdown.wait().await }, |ready| {
        for line in &ready.pin_reports {
            eprintln!("mapscope agent: {line}");
        }
        let xdp = if ready.interfaces.is_empty() {
            String::new()
        } else {
            format!(" (xdp on {})", ready.interfaces.join(", "))
        };
        eprintln!(
            "mapscope agent: running {}{xdp}; counters pinned in {}",
            ready.families.join(", "),
            ready.pin_dir.display()
        );
        eprintln!(
            "mapscope agent: metrics at http://{0}/metrics, API at http://{0}/api/v1/ \
                 (xdp, exec, syscalls, malloc), health at http://{0}/healthz; Ctrl-C to stop",
            ready.listen
        );
        eprintln!("mapscope agent: dashboard at http://{}/", ready.listen);
    })
    .await?;
    Ok(())
}
