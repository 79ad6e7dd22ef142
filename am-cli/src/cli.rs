//! The command line surface: every command, argument and flag, as clap derive types.
//!
//! Contract section 4 fixes the global part (`am --db PATH`, `init`, `serve --addr`, `demo`);
//! the rest follows the habits of good Rust CLIs: `--help` everywhere, `--json` for scripts.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Audience Manager: turn rules into audience segments, from a terminal.
#[derive(Debug, Parser)]
#[command(name = "am", version, about, long_about = None)]
#[command(after_help = "Start with `am demo`, then `am serve` and open http://127.0.0.1:8080.")]
pub struct Cli {
    /// The database: a SQLite file, or a PostgreSQL URI (`postgres://USER@HOST:PORT/DB`).
    #[arg(
        long,
        global = true,
        env = "AM_DB",
        default_value = "audience.db",
        value_name = "PATH"
    )]
    pub db: PathBuf,

    /// Compute segments on Apache Spark through Spark Connect (`sc://HOST:PORT`) for `run`,
    /// `rules explain`, `rules preview` and `serve`; the database keeps rules, catalog, runs
    /// and members. Needs an `am` built with the `spark` feature.
    #[arg(long, global = true, env = "AM_ENGINE", value_name = "URL")]
    pub engine: Option<String>,

    /// Where Spark reads users and transactions: `catalog` (tables of Spark's catalog),
    /// `catalog:DATABASE`, or `jdbc` (the database's own tables, through JDBC).
    #[arg(
        long,
        global = true,
        env = "AM_SPARK_SOURCE",
        default_value = "catalog",
        value_name = "SOURCE"
    )]
    pub spark_source: String,

    /// The Spark database segment tables are written to (default: the catalog source's
    /// database, else `default`).
    #[arg(
        long,
        global = true,
        env = "AM_SPARK_DATABASE",
        value_name = "DATABASE"
    )]
    pub spark_database: Option<String>,

    /// Print JSON for scripts instead of tables.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the database or migrate its schema; safe to run again.
    Init,
    /// Generate a realistic dataset, create example rules, refresh them and show the result.
    Demo(DemoArgs),
    /// Generate synthetic users and transactions into the data tables.
    Generate(GenerateArgs),
    /// Import a CSV file into a data table (all rows or none).
    Import(ImportArgs),
    /// Create, inspect, change and check rules.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Refresh segments: the named rules, every rule, or the stale ones.
    Run(RunArgs),
    /// Look at segments: sizes, members, changes, exports.
    #[command(subcommand)]
    Segments(SegmentsCommand),
    /// Look at run history: every refresh of every rule, how it ended and why.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Serve the HTTP API and the web UI on this database and run the scheduler.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How many users to generate.
    #[arg(long, default_value_t = 50_000)]
    pub users: u64,
    /// How many transactions to generate (credit card and UPI together).
    #[arg(long, default_value_t = 1_000_000)]
    pub transactions: u64,
    /// Seed of the generator: the same seed gives the same data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// How many users to generate.
    #[arg(long)]
    pub users: u64,
    /// How many transactions to generate (credit card and UPI together).
    #[arg(long)]
    pub transactions: u64,
    /// Seed of the generator: the same seed gives the same data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// The last day of the generated history (YYYY-MM-DD); default today (UTC).
    #[arg(long, value_name = "DATE")]
    pub end: Option<chrono::NaiveDate>,
    /// How many days of history to generate, ending at --end.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// Replace rows already in the data tables instead of refusing.
    #[arg(long)]
    pub replace: bool,
}

/// The data table a CSV file goes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TableArg {
    /// `users`: user_id,name,email,city_tier,created_at
    Users,
    /// `user_locations`: user_id,latitude,longitude,updated_at
    Locations,
    /// `credit_card_transactions`: transaction_id,user_id,amount,merchant,category,transaction_date
    CreditCard,
    /// `upi_transactions`: transaction_id,user_id,amount,description,category,transaction_date
    Upi,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Which table the rows go into.
    #[arg(value_enum)]
    pub table: TableArg,
    /// The CSV file, with a header row; `-` reads standard input.
    pub file: PathBuf,
    /// Import the good rows and report the bad ones, instead of importing nothing.
    #[arg(long)]
    pub skip_bad_rows: bool,
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Create a rule from a JSON file (`-` reads standard input).
    Add {
        /// The rule as JSON (contract section 2).
        file: PathBuf,
    },
    /// List every rule.
    List,
    /// Show one rule as stored, with its schedule and segment.
    Show {
        /// The rule's id or name.
        rule: String,
    },
    /// Replace a rule with the JSON in FILE; without FILE, open $EDITOR on a terminal.
    Edit {
        /// The rule's id or name.
        rule: String,
        /// The new rule as JSON (`-` reads standard input).
        file: Option<PathBuf>,
    },
    /// Delete a rule and its segment (refused while other rules depend on it).
    Delete {
        /// The rule's id or name.
        rule: String,
    },
    /// Show how a rule is computed: the plan, reuse reasons and each node's SQL.
    Explain {
        /// The rule's id or name.
        rule: String,
        /// Print the plan as a Graphviz digraph instead (`| dot -Tsvg`).
        #[arg(long)]
        dot: bool,
    },
    /// Plan a rule file against the stored rules and count its members now, saving nothing:
    /// the size, the reuse the planner would find, and the SQL.
    Preview {
        /// The rule as JSON (`-` reads standard input).
        file: PathBuf,
        /// Evaluate relative windows as of this time instead of now (as `am run --as-of`).
        #[arg(long, value_name = "TIME")]
        as_of: Option<String>,
    },
    /// Check a rule file without saving it; lists every problem with its JSON path.
    Validate {
        /// The rule as JSON (`-` reads standard input).
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Rule ids or names to refresh (with whatever they are built from that is stale);
    /// `+RULE` also refreshes every rule it is built from, `RULE+` every rule built from it.
    #[arg(value_name = "RULE")]
    pub rules: Vec<String>,
    /// Refresh every rule.
    #[arg(long, conflicts_with_all = ["stale", "rules"])]
    pub all: bool,
    /// Refresh only the rules whose segments are stale.
    #[arg(long, conflicts_with = "rules")]
    pub stale: bool,
    /// Evaluate relative windows (last N days) as of this time instead of now:
    /// `YYYY-MM-DD`, `YYYY-MM-DD HH:MM:SS` or RFC 3339, UTC.
    #[arg(long, value_name = "TIME")]
    pub as_of: Option<String>,
    /// Rebuild every segment from all the data, instead of updating those the change log
    /// allows from the users whose data or windows changed.
    #[arg(long)]
    pub full: bool,
}

/// The format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// `user_id,name,email` with a header row.
    Csv,
    /// One JSON array of `{"user_id", "name", "email"}` objects.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum SegmentsCommand {
    /// List every segment with its size and last refresh.
    List,
    /// Show one segment: size, change at the last refresh, reuse and its SQL.
    Show {
        /// The segment's rule, by id or name.
        rule: String,
    },
    /// Print a few members of a segment (user_id, name, email).
    Sample {
        /// The segment's rule, by id or name.
        rule: String,
        /// How many members to show.
        #[arg(long, short = 'n', default_value_t = 10)]
        limit: u32,
    },
    /// Write every member of a segment as CSV or JSON.
    Export {
        /// The segment's rule, by id or name.
        rule: String,
        /// The output format; by default the output file's extension (`.csv`, `.json`), else
        /// CSV.
        #[arg(long, value_enum)]
        format: Option<ExportFormat>,
        /// Write to this file instead of standard output.
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Who entered or left a segment at its last refresh.
    Diff {
        /// The segment's rule, by id or name.
        rule: String,
        /// How many user ids to list on each side.
        #[arg(long, short = 'n', default_value_t = 20)]
        limit: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List runs, newest first.
    List {
        /// Only the runs of this rule (id or name).
        #[arg(long)]
        rule: Option<String>,
        /// Only runs with this status.
        #[arg(long, value_enum)]
        status: Option<RunStatusArg>,
        /// At most this many runs (1 to 100).
        #[arg(long, short = 'n', default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100))]
        limit: u32,
    },
    /// Show one run: its rule, trigger, times, members and error.
    Show {
        /// The run's id.
        id: i64,
    },
}

/// A run's status, as `am runs list --status` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RunStatusArg {
    Queued,
    Running,
    Succeeded,
    Failed,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on: an IP address or a host name, and a port.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "HOST:PORT", value_parser = host_port)]
    pub addr: String,
    /// Require `Authorization: Bearer TOKEN` on every API call. A token on the command line
    /// is visible to every user of this machine (`ps`): prefer the AM_API_TOKEN environment
    /// variable.
    #[arg(long, env = "AM_API_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Also answer requests for this host name, with or without a port (`am.example`,
    /// `am.example:8443`; `*` for any): the server refuses other `Host` headers against DNS
    /// rebinding. Repeatable; AM_ALLOWED_HOSTS takes a comma-separated list.
    #[arg(
        long = "allowed-host",
        env = "AM_ALLOWED_HOSTS",
        value_name = "HOST",
        value_delimiter = ',',
        value_parser = allowed_host
    )]
    pub allowed_hosts: Vec<String>,
}

/// `HOST`, `HOST:PORT` or `*`, for `--allowed-host`.
fn allowed_host(text: &str) -> Result<String, String> {
    if am_http::guard::is_allowed_host_entry(text) {
        Ok(text.trim().to_string())
    } else {
        Err(
            "expected a host name with or without a port, e.g. am.example or am.example:8080"
                .into(),
        )
    }
}

/// `HOST:PORT` (`127.0.0.1:8080`, `[::1]:8080`, `localhost:8080`): checked here for its
/// shape, resolved when the server starts.
fn host_port(text: &str) -> Result<String, String> {
    if text.parse::<SocketAddr>().is_ok() {
        return Ok(text.to_string());
    }
    let shape = "expected HOST:PORT, e.g. 127.0.0.1:8080 or localhost:8080";
    let (host, port) = text.rsplit_once(':').ok_or_else(|| shape.to_string())?;
    if host.is_empty() || host.contains(':') || host.chars().any(char::is_whitespace) {
        return Err(shape.to_string());
    }
    port.parse::<u16>()
        .map_err(|_| format!("port {port:?} is not a number from 0 to 65535"))?;
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn addresses_are_ip_or_host_names_with_a_port() {
        for ok in [
            "127.0.0.1:8080",
            "[::1]:0",
            "localhost:8080",
            "my-host.example:80",
        ] {
            assert_eq!(host_port(ok), Ok(ok.to_string()));
        }
        let err = |text: &str| Err::<String, String>(text.to_string());
        let shape = "expected HOST:PORT, e.g. 127.0.0.1:8080 or localhost:8080";
        assert_eq!(host_port("not-an-address"), err(shape));
        assert_eq!(host_port(":8080"), err(shape));
        assert_eq!(host_port("::1:8080"), err(shape));
        assert_eq!(
            host_port("localhost:http"),
            err("port \"http\" is not a number from 0 to 65535")
        );
        assert_eq!(
            host_port("localhost:70000"),
            err("port \"70000\" is not a number from 0 to 65535")
        );
    }
}
