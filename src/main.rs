//! The `cairn` binary: `cairn serve` runs the server (see
//! `docs/configuration.md` for every flag); `cairn rules check` validates
//! rule files as `promtool check rules` does (see `docs/rules.md`). A configuration error exits
//! with status 2 and a message naming the key; a start-up or run-time
//! failure exits with status 1. `cairn query`, `cairn series` and
//! `cairn labels` are clients of a running server's gRPC query service
//! (`client.rs`, `docs/grpc.md`); they exit with status 1 on any error.

mod client;

use std::io::Write as _;
use std::process::ExitCode;

use cairn_server::{Config, ServeArgs};
use clap::{Parser, Subcommand};

/// Cairn: a time-series database and PromQL engine for ML-serving fleets.
#[derive(Parser)]
#[command(name = "cairn", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: remote-write receiver and Prometheus HTTP API.
    Serve(ServeArgs),
    /// Work with Prometheus rule files.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Evaluate a PromQL expression on a running Cairn (over gRPC).
    Query(client::QueryArgs),
    /// List the series matching selectors on a running Cairn.
    Series(client::SeriesArgs),
    /// List label names, or the values of one label, on a running Cairn.
    Labels(client::LabelsArgs),
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Validate rule files; exit 0 if all are valid, 1 if not (as promtool).
    Check {
        /// Label and metric name rules: `utf8` (Prometheus 3) or `legacy`
        /// (`[a-zA-Z_][a-zA-Z0-9_]*`, Prometheus 2).
        #[arg(long, default_value = "utf8", value_parser = ["utf8", "legacy"])]
        name_validation: String,
        /// Rule files to check.
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
    /// Run rule unit tests (promtool's `test rules` format); exit 0 if all
    /// pass, 1 if not.
    Test {
        /// Test files to run.
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Rules(RulesCommand::Check {
            name_validation,
            files,
        }) => rules_check(&name_validation, &files),
        Command::Rules(RulesCommand::Test { files }) => {
            let mut out = std::io::stdout();
            match cairn_server::rules::unittest::run_test_files(
                &files,
                &mut out,
                &mut std::io::stderr(),
            ) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("cairn: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Query(args) => run_client(client::query(args)),
        Command::Series(args) => run_client(client::series(args)),
        Command::Labels(args) => run_client(client::labels(args)),
    }
}

/// Runs a client command: its output on stdout, or `cairn: <message>` on
/// stderr and exit status 1.
fn run_client(f: impl std::future::Future<Output = Result<String, client::Failure>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cairn: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(f) {
        Ok(out) => {
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`| head`) is not worth a message.
            let _ = stdout
                .write_all(out.as_bytes())
                .and_then(|_| stdout.flush());
            ExitCode::SUCCESS
        }
        Err(client::Failure(msg)) => {
            eprintln!("cairn: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn rules_check(name_validation: &str, files: &[std::path::PathBuf]) -> ExitCode {
    use cairn_server::rules::file::{NameValidation, check_files};
    let names = if name_validation == "legacy" {
        NameValidation::Legacy
    } else {
        NameValidation::Utf8
    };
    match check_files(files, names, &mut std::io::stdout(), &mut std::io::stderr()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("cairn: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let config = match Config::load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cairn: {e}");
            return ExitCode::from(2);
        }
    };
    cairn_server::serve::init_logging(&config.log);
    // PromQL parsing and evaluation recurse over the syntax tree; the
    // parser caps the depth, and 8 MiB stacks leave room for that cap in
    // unoptimised builds too (tokio's default is 2 MiB).
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(8 << 20)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cairn: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cairn_server::serve::run_reloadable(config, Some(args))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "cairn stopped");
            eprintln!("cairn: {e}");
            ExitCode::FAILURE
        }
    }
}
