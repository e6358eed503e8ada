//! Command-line arguments (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "weft",
    version,
    about = "weft moves data from where it is made into the data products of a data mesh",
    propagate_version = true
)]
pub struct Cli {
    /// The project folder (default: the nearest folder upward holding weft.yaml).
    #[arg(long, global = true, env = "WEFT_PROJECT")]
    pub project: Option<PathBuf>,

    /// Log line format on stderr (default: text; json for `weft daemon`).
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,

    /// More log output (-v: debug, -vv: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Less log output: only warnings and errors, and no live progress display (for cron and
    /// scripts; what a command prints on stdout is unchanged).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a project in DIR: the runnable quickstart, or with --source/--destination a
    /// commented skeleton for those connectors.
    Init {
        /// The folder to create the project in (created if missing; must be empty).
        dir: PathBuf,
        /// Write into a folder that is not empty (files weft writes are replaced).
        #[arg(long)]
        force: bool,
        /// The source connector of the skeleton product (`weft connector list`).
        #[arg(long)]
        source: Option<String>,
        /// The product store of the skeleton (default: the Parquet lake).
        #[arg(long)]
        destination: Option<String>,
    },
    /// Run syncs and look at their state and history.
    #[command(subcommand)]
    Sync(SyncCommand),
    /// Where each stream is (cursor, log position, progress), and setting a stream's position
    /// by hand: a backfill from a date, an Airbyte connector's state.
    #[command(subcommand)]
    State(StateCommand),
    /// Work with connectors: list them, print their config spec, check configs, discover streams,
    /// install Airbyte connectors.
    #[command(subcommand)]
    Connector(ConnectorCommand),
    /// Project configuration helpers.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The governance policy: check every product against it, decrypt values it encrypted.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// The catalog of data products, and their contracts.
    #[command(subcommand)]
    Product(ProductCommand),
    /// The project's domains.
    #[command(subcommand)]
    Domain(DomainCommand),
    /// Run every product on its schedule (`schedule:` cron or `every:` interval), retrying
    /// failures, until SIGTERM or Ctrl-C; reloads the project on SIGHUP and when its files
    /// change. Logs JSON lines.
    Daemon {
        /// Serve the HTTP API, the catalog page and `/metrics` on this address
        /// (`127.0.0.1:8080`; port 0 picks a free one, logged at start).
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
    },
    /// API tokens of `weft daemon`: create (printed once), list, revoke.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Print a shell completion script, e.g. `weft completions bash > ~/.local/share/bash-completion/completions/weft`.
    Completions {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// Sync the selected products (default: all).
    Run {
        /// `domain`, `domain/product` or `domain/product/stream`; several allowed.
        selectors: Vec<String>,
        /// Never draw a live progress display, even on a terminal.
        #[arg(long)]
        no_progress: bool,
        /// Print the final report as JSON on stdout instead of a table.
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
        /// CDC streams keep streaming changes until interrupted (Ctrl-C), instead of catching up
        /// to the source's log position at start and stopping.
        #[arg(long)]
        follow: bool,
        /// Print what the run would do (streams, modes, cursor positions, destinations) and
        /// stop: nothing is read, written or recorded.
        #[arg(long)]
        dry_run: bool,
        /// Re-read incremental `append_dedup` streams from the start, ignoring their cursors,
        /// without a reset: readers keep the table, rows settle by key. `append`, incremental
        /// `overwrite` and CDC streams are refused (reset those).
        #[arg(long)]
        full_refresh: bool,
    },
    /// Forget streams: drop their product tables, their checkpoints and what the source holds
    /// for them (a CDC stream's replication slot and publication). The next run reads them from
    /// scratch (a new snapshot).
    Reset {
        /// `domain`, `domain/product` or `domain/product/stream`; at least one.
        #[arg(required = true)]
        selectors: Vec<String>,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
        /// Do not ask for confirmation (needed when stdin is not a terminal: cron, scripts).
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// The state of every stream: last checkpoint and last run, and how far CDC streams'
    /// replication slots are behind their source.
    Status {
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
    /// Past runs, newest first.
    History {
        /// How many runs to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Each selected stream's recorded position in human terms: an incremental stream's cursor
    /// and key tie-breaker, a CDC stream's LSN, a full refresh's progress, an Airbyte state.
    Show {
        /// `domain`, `domain/product` or `domain/product/stream`.
        selector: String,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
    /// Set where an incremental stream's next run starts: `--cursor VALUE` reads every row whose
    /// cursor is >= VALUE (a backfill from a date), `--state-json FILE` resumes an Airbyte
    /// stream from that state. Recorded in `sync history`; refused while a run holds the
    /// product. Forget a stream altogether with `weft sync reset`.
    Set {
        /// `domain/product/stream`.
        stream: String,
        /// The cursor value to read from (inclusive), in the cursor column's type:
        /// `2024-01-31`, `2024-01-31 12:00:00+00`, `1000`.
        #[arg(
            long,
            required_unless_present = "state_json",
            conflicts_with = "state_json"
        )]
        cursor: Option<String>,
        /// A JSON file holding the stream's state as the source keeps it (Airbyte sources).
        #[arg(long, value_name = "FILE")]
        state_json: Option<PathBuf>,
        /// Do not ask for confirmation (needed when stdin is not a terminal: cron, scripts).
        #[arg(long, short = 'y')]
        yes: bool,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConnectorCommand {
    /// The connectors this binary offers.
    List {
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
    /// The JSON Schema of a connector's config; for a product `domain/product` with an `airbyte`
    /// source, the Airbyte connector's own spec.
    Spec {
        /// Connector name, as in `weft connector list` (`source-postgres`,
        /// `destination-postgres` where a name is both), or a product `domain/product`.
        name: String,
        /// Whether NAME is a source or a destination, where it is both.
        #[arg(long, value_enum)]
        kind: Option<KindArg>,
    },
    /// Check that a connector can reach and use what its config names.
    Check(ConnectorTarget),
    /// List the streams a source offers, with their columns and types.
    Discover(DiscoverTarget),
    /// Install an Airbyte connector from PyPI into its cached virtualenv ahead of a sync (or find
    /// it installed), and say where it is and which Python it runs on.
    Install {
        /// A PyPI requirement, as in a product's `package:`, e.g. `airbyte-source-faker==7.2.1`.
        package: String,
        /// The Python version to install it with (`3.10`); default: the newest installed one
        /// the package supports.
        #[arg(long)]
        python: Option<String>,
        /// Try again the interpreters an earlier attempt failed with (failures are remembered
        /// for a day, so other commands do not redo a long install that fails the same way).
        #[arg(long)]
        force: bool,
    },
    /// Run a declarative manifest's stream and show the requests it sends (secrets redacted),
    /// the records of its first pages, the state after each slice and schema mismatches.
    Test(ManifestTest),
    /// Write a new connector: a Rust crate under `connectors/`, registered and with its
    /// conformance tests wired up (`--kind`, see docs/connectors.md), or with `--manifest` a
    /// declarative manifest (YAML, no Rust) in the project's `connectors/` folder.
    New(NewConnector),
}

#[derive(Debug, Args)]
pub struct ManifestTest {
    /// The manifest file (YAML).
    pub manifest: PathBuf,
    /// A JSON or YAML file holding the connector's config (the manifest spec's fields).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The stream to read (default: the manifest's first).
    #[arg(long)]
    pub stream: Option<String>,
    /// Pages read per slice.
    #[arg(long, default_value_t = 5)]
    pub pages: usize,
    /// Slices read.
    #[arg(long, default_value_t = 5)]
    pub slices: usize,
}

#[derive(Debug, Args)]
pub struct NewConnector {
    /// The connector's name in product files (`crm`, `web-events`).
    pub name: String,
    /// Whether the crate reads (`source`) or writes (`destination`).
    #[arg(long, value_enum, required_unless_present = "manifest")]
    pub kind: Option<KindArg>,
    /// Write a declarative manifest `connectors/NAME.yaml` in the project instead of a crate.
    #[arg(long, conflicts_with_all = ["kind", "workspace"])]
    pub manifest: bool,
    /// The root of the weft checkout to add it to (default: the workspace holding the current
    /// folder).
    #[arg(long)]
    pub workspace: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ConnectorTarget {
    /// A connector name (with --config), or a product `domain/product` of the project.
    pub target: String,
    /// A JSON or YAML file holding the connector's config (with a connector name).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// With a product: check its destination instead of its source.
    #[arg(long)]
    pub destination: bool,
    /// Whether a connector name is a source or a destination, where it is both.
    #[arg(long, value_enum, conflicts_with = "destination")]
    pub kind: Option<KindArg>,
}

#[derive(Debug, Args)]
pub struct DiscoverTarget {
    /// A source connector name (with --config), or a product `domain/product` of the project.
    pub target: String,
    /// A JSON or YAML file holding the source's config (with a connector name).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

/// A connector's kind on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    Source,
    Destination,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Evaluate every product against governance.yaml and the domains' rules (for CI): each
    /// violation with file:line, rule and fix; exit 1 on any `error` rule broken, 0 with only
    /// warnings.
    Check {
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
        /// Check only the columns the files name; do not ask the sources for theirs.
        #[arg(long)]
        offline: bool,
    },
    /// Decrypt values encrypted by an `encrypt` rule or mapper, with governance.yaml's
    /// `keys.encrypt` (arguments, or one value per line on stdin).
    Decrypt { values: Vec<String> },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the JSON Schema of product files (or of weft.yaml), for editor autocompletion.
    Schema {
        #[arg(long, value_enum, default_value_t = SchemaKind::Product)]
        kind: SchemaKind,
    },
    /// Validate the project without connecting (files, connector configs, schedules) and say
    /// what it holds.
    Validate {
        /// Also run every connector's check (connects to sources and product stores).
        #[arg(long)]
        connect: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaKind {
    Product,
    Project,
    Domain,
}

#[derive(Debug, Subcommand)]
pub enum ProductCommand {
    /// The products of the project (or of one domain): owner, contract version, description.
    List {
        /// Only this domain's products.
        #[arg(long)]
        domain: Option<String>,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
    /// One product: owner, description, contract, freshness, lineage, grants, and each
    /// stream's columns with their tags and transformations.
    Show {
        /// `domain/product`.
        product: String,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
    /// Lock the product's contract from its source as it is now, into
    /// `domains/<domain>/<product>.contract.yaml`: version 1.0 first, the next minor after
    /// additive changes; a breaking change needs --major.
    #[command(alias = "lock")]
    Contract {
        /// `domain/product`.
        product: String,
        /// Accept breaking changes: lock the next major version (consumers must accept it).
        #[arg(long)]
        major: bool,
    },
    /// The locked contract against the source as it is now. Exit 1 on a breaking change (for
    /// CI), 0 when they match or differ only additively.
    Diff {
        /// `domain/product`.
        product: String,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
}

#[derive(Debug, Subcommand)]
pub enum DomainCommand {
    /// The domains, their products and owners.
    List {
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (once: only its hash is stored).
    Create {
        /// The domain whose products the token sees and triggers.
        #[arg(long, required_unless_present = "admin", conflicts_with = "admin")]
        domain: Option<String>,
        /// A token that sees and does everything (and reads /metrics).
        #[arg(long)]
        admin: bool,
        /// A name to list and revoke it by (default: the scope and a number).
        #[arg(long)]
        name: Option<String>,
    },
    /// List the tokens: name, scope, created, last used (never the token).
    List {
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
    /// Revoke a token by name or id; it stops working at once.
    Revoke {
        /// The token's name or id (`weft token list`).
        name: String,
    },
}
