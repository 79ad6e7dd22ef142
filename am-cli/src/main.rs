//! `am`, the Audience Manager command line.
//!
//! `main` parses the arguments, runs one command and turns its outcome into an exit code:
//! 0 success, 1 error, 2 usage (clap), 3 the rule is invalid. Errors print as one line on
//! stderr, in the way of ripgrep: `am: <what failed>: <why>`.

mod cli;
mod commands;
mod exit;
mod output;
mod progress;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // A closed pipe (`am segments export x | head`) is not an error worth a message.
            if exit::is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            let _ = writeln!(std::io::stderr(), "am: {}", exit::one_line(&err));
            ExitCode::from(exit::code(&err))
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let ctx = commands::Context {
        db: cli.db,
        json: cli.json,
        engine: cli.engine.map(|url| commands::Engine {
            url,
            source: cli.spark_source,
            database: cli.spark_database,
        }),
    };
    match cli.command {
        Command::Init => commands::init::run(&ctx),
        Command::Generate(args) => commands::data::generate(&ctx, &args),
        Command::Rules(cmd) => commands::rules::run(&ctx, cmd),
        Command::Import(args) => commands::data::import(&ctx, &args),
        Command::Demo(args) => commands::demo::run(&ctx, &args),
        Command::Run(args) => commands::run::run(&ctx, &args),
        Command::Segments(cmd) => commands::segments::run(&ctx, cmd),
        Command::Runs(cmd) => commands::runs::run(&ctx, cmd),
        Command::Serve(args) => commands::serve::run(&ctx, &args),
    }
}
