//! The `cairn` binary: `cairn serve` runs the server (see
//! `docs/configuration.md` for every flag). A configuration error exits
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
    /// Evaluate a PromQL expression on a running Cairn (over gRPC).
    Query(client::QueryArgs),
    /// List the series matching selectors on a running Cairn.
    Series(client::SeriesArgs),
    /// List label names, or the values of one label, on a running Cairn.
    Labels(client::LabelsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
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
    match runtime.block_on(cairn_server::serve::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "cairn stopped");
            eprintln!("cairn: {e}");
            ExitCode::FAILURE
        }
    }
}
