//! The `cairn` binary: `cairn serve` runs the server (see
//! `docs/configuration.md` for every flag). A configuration error exits
//! with status 2 and a message naming the key; a start-up or run-time
//! failure exits with status 1.

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
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
