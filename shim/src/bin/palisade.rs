//! `palisade`: policies, confined runs, events, status and the kernel check.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use palisade_shim::cli::policy_cmd;

#[derive(Parser)]
#[command(name = "palisade", version, about = "Start workloads already confined")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate, explain, compile or convert policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Exit 0 when every file is valid; print FILE:LINE:COL: error: MESSAGE otherwise.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// What the policy allows and denies, for a reviewer.
    Explain { file: PathBuf },
    /// The enforcement plan.
    Compile {
        file: PathBuf,
        /// Print JSON (the only format).
        #[arg(long)]
        json: bool,
    },
    /// A KubeArmor policy or an OCI seccomp profile, printed as a Palisade policy.
    Convert { file: PathBuf },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("PALISADE_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Policy(PolicyCommand::Validate { files }) => policy_cmd::validate(&files),
        Command::Policy(PolicyCommand::Explain { file }) => {
            policy_cmd::explain(&file, None).map(|_| 0)
        }
        Command::Policy(PolicyCommand::Compile { file, .. }) => {
            policy_cmd::compile(&file).map(|_| 0)
        }
        Command::Policy(PolicyCommand::Convert { file }) => policy_cmd::convert(&file).map(|_| 0),
    };
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("palisade: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
