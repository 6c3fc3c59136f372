//! `palisade`: policies, confined runs, events, status and the kernel check.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use palisade_enforce::events::DEFAULT_EVENTS_PATH;
use palisade_shim::cli::{check_cmd, events_cmd, policy_cmd, run_cmd};
use palisade_shim::runtime;

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
    /// Run CMD confined exactly as a container would be; exits with CMD's status.
    Run {
        #[arg(long)]
        policy: PathBuf,
        /// Log what would be denied, block nothing.
        #[arg(long)]
        audit: bool,
        /// Workload id in events and status (default: run-<pid>).
        #[arg(long)]
        id: Option<String>,
        /// Run CMD as UID[:GID] (switched before confinement).
        #[arg(long)]
        user: Option<String>,
        #[arg(long, default_value = DEFAULT_EVENTS_PATH)]
        events: PathBuf,
        #[arg(long, default_value = palisade_enforce::workload::DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// The event log, filtered.
    Events {
        #[arg(long)]
        follow: bool,
        #[arg(long)]
        container: Option<String>,
        /// RFC 3339 time, or a duration such as 10m or 2h.
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = DEFAULT_EVENTS_PATH)]
        events: PathBuf,
    },
    /// Workloads confined on this node now.
    Status {
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = palisade_enforce::workload::DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
    /// Which kernel features are present; exit 1 if enforcement is impossible.
    Check {
        #[arg(long)]
        json: bool,
    },
    /// Release workloads whose processes have exited but whose supervisor was killed.
    Gc {
        #[arg(long, default_value = palisade_enforce::workload::DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Exit 0 when every file is valid; print FILE:LINE:COL: error: MESSAGE otherwise.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// What the policy allows and denies, for a reviewer.
    Explain {
        file: PathBuf,
        /// Name the layers that carry each rule on this host (probes the kernel, as `check` does).
        #[arg(long)]
        host: bool,
    },
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
    // The shim's runtime helper (internal): stdout and stderr are the shim's to read.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(runtime::VERB) {
        palisade_enforce::bpf::route_libbpf_logs();
        std::process::exit(runtime::main(&args[2..]));
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("PALISADE_LOG"))
        .with_writer(std::io::stderr)
        .init();
    palisade_enforce::bpf::route_libbpf_logs();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Policy(PolicyCommand::Validate { files }) => policy_cmd::validate(&files),
        Command::Policy(PolicyCommand::Explain { file, host }) => {
            let detected = host.then(palisade_enforce::host::detect);
            policy_cmd::explain(&file, detected.as_ref().map(|h| &h.layers)).map(|_| 0)
        }
        Command::Policy(PolicyCommand::Compile { file, .. }) => {
            policy_cmd::compile(&file).map(|_| 0)
        }
        Command::Policy(PolicyCommand::Convert { file }) => policy_cmd::convert(&file).map(|_| 0),
        Command::Run {
            policy,
            audit,
            id,
            user,
            events,
            state_dir,
            command,
        } => run_cmd::run(run_cmd::RunArgs {
            policy,
            audit,
            id,
            user,
            events,
            state_dir,
            command,
        }),
        Command::Events {
            follow,
            container,
            since,
            json,
            events,
        } => since
            .as_deref()
            .map(events_cmd::parse_since)
            .transpose()
            .and_then(|since| {
                events_cmd::events(
                    &events,
                    &events_cmd::Filter { container, since },
                    json,
                    follow,
                )
            })
            .map(|_| 0),
        Command::Status { json, state_dir } => events_cmd::status(&state_dir, json).map(|_| 0),
        Command::Check { json } => Ok(check_cmd::check(json)),
        Command::Gc { state_dir } => events_cmd::gc(&state_dir),
    };
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("palisade: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
