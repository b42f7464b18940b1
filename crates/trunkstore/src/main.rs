//! trunkstore: edge SIP proxy for SIP trunking.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod cluster;
mod cluster_metrics;
mod documents;
mod registrations;
mod report;
mod serve;

use clap::{Parser, Subcommand};
use report::print_failures;
use trunkstore_config::{load_all, DocumentStore, Settings, DEFAULT_SETTINGS_PATH};

#[derive(Parser)]
#[command(
    name = "trunkstore",
    version,
    about = "Edge SIP proxy for SIP trunking"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the settings file and every connectivity document, then print a summary.
    /// Exits 1 and lists every error when anything is wrong.
    Check {
        /// Proxy settings file.
        #[arg(long, short, default_value = DEFAULT_SETTINGS_PATH)]
        config: PathBuf,
    },
    /// Run the proxy in the foreground: load and validate like `check` (exit 1 listing
    /// every error), build the routing index, listen, proxy. SIGTERM or SIGINT stops
    /// accepting new requests, serves transactions in progress for `shutdown_grace`
    /// seconds, then exits 0.
    Serve {
        /// Proxy settings file.
        #[arg(long, short, default_value = DEFAULT_SETTINGS_PATH)]
        config: PathBuf,
    },
    /// Copy the connectivity documents under a directory (the `connectivity_dir` layout)
    /// into the cluster's Redis (`cluster` section of the settings), replacing every
    /// document there in one atomic step. Every document is validated first, together
    /// (like `check`): any error lists every error, exits 1 and imports nothing.
    Import {
        /// Directory of documents: `<account>/<document>.json`.
        #[arg(long)]
        from: PathBuf,
        /// Proxy settings file (its `cluster` section names the Redis).
        #[arg(long, short, default_value = DEFAULT_SETTINGS_PATH)]
        config: PathBuf,
    },
    /// Write every connectivity document in the cluster's Redis as files
    /// `<to>/<account>/<document>.json` (`to` must be empty or new). Documents that do not
    /// validate against the settings are still written, listed, and make the exit code 1.
    Export {
        /// Directory to write (created if needed).
        #[arg(long)]
        to: PathBuf,
        /// Proxy settings file (its `cluster` section names the Redis).
        #[arg(long, short, default_value = DEFAULT_SETTINGS_PATH)]
        config: PathBuf,
    },
}

/// mimalloc, not the system allocator: a call allocates a few dozen blocks of many sizes
/// (datagrams, transactions, forwarded copies) that live 64·T1 and die in arrival order.
/// glibc serves that through its slow paths (bins sorted and consolidated, an arena
/// grown by page faults as the heap climbs) for about a tenth of the proxy's CPU under
/// load; mimalloc's per-page free lists take a fraction of it (README, Performance: user
/// CPU per call 55 → 43 µs in the SIPp rig, page faults per call 0.63 → 0.07).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Check { config } => check(&config),
        Command::Serve { config } => serve(&config),
        Command::Import { from, config } => documents::import(&config, &from),
        Command::Export { to, config } => documents::export(&config, &to),
    }
}

/// `trunkstore serve`: the documents come from the connectivity directory, or from Redis
/// with `cluster.store: "redis"`.
fn serve(config: &Path) -> ExitCode {
    let settings = match Settings::load(config) {
        Ok(s) => s,
        Err(e) => {
            print_failures(&[e]);
            return ExitCode::FAILURE;
        }
    };
    let shared = settings
        .cluster
        .as_ref()
        .is_some_and(|c| c.store == DocumentStore::Redis);
    if shared {
        return serve::run_shared(settings);
    }
    match load_all(config) {
        Ok(catalog) => {
            serve::init_logging(catalog.settings());
            serve::run(catalog, None)
        }
        Err(failures) => {
            print_failures(&failures);
            ExitCode::FAILURE
        }
    }
}

/// Targets named by DNS that do not resolve now with the settings' resolver (issue 17
/// item 5): warnings, not errors (DNS may be fixed before the proxy needs them).
fn unresolvable(catalog: &trunkstore_config::Catalog) -> Vec<String> {
    use trunkstore_edge::dns::{Dns, Families, Transport};
    use trunkstore_proxy::dns::Target;
    let named = catalog.named_targets();
    if named.is_empty() {
        return Vec::new();
    }
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return vec!["cannot start a DNS resolver: names not checked".into()];
    };
    let settings = &catalog.settings().dns;
    let dns = runtime
        .block_on(async { Dns::new(settings, &[Transport::Udp, Transport::Tcp], Families::BOTH) });
    let dns = match dns {
        Ok(d) => d,
        Err(e) => return vec![format!("no DNS resolver ({e}): names not checked")],
    };
    named
        .iter()
        .filter_map(|n| {
            let target = Target::parse(&n.uri)?;
            let outcome = runtime.block_on(dns.resolve(&target));
            outcome.err().map(|e| {
                format!(
                    "{}: \"{}\" does not resolve ({e}): calls to it fail as unreachable until it does",
                    n.place, n.host
                )
            })
        })
        .collect()
}

/// `trunkstore check`: the same loading path the proxy uses at startup: the files of
/// `connectivity_dir`, or with `cluster.store: "redis"` the documents in Redis.
fn check(config: &Path) -> ExitCode {
    let redis_settings = Settings::load(config).ok().filter(|s| {
        s.cluster
            .as_ref()
            .is_some_and(|c| c.store == DocumentStore::Redis)
    });
    let loaded = match redis_settings {
        Some(settings) => match documents::load_from_redis(settings) {
            Ok(loaded) => loaded,
            Err(e) => {
                eprintln!("trunkstore: cannot read the documents from Redis: {e}");
                return ExitCode::FAILURE;
            }
        },
        // Files, or settings that do not load: `load_all` reports those.
        None => load_all(config).map(|catalog| {
            let source = catalog.settings().connectivity_dir.display().to_string();
            (catalog, source)
        }),
    };
    match loaded {
        Ok((catalog, source)) => {
            println!("configuration OK: {}", config.display());
            println!("connectivity: {source}");
            println!("{}", catalog.summary());
            for w in catalog.warnings() {
                println!("warning: {w}");
            }
            for w in unresolvable(&catalog) {
                println!("warning: {w}");
            }
            ExitCode::SUCCESS
        }
        Err(failures) => {
            print_failures(&failures);
            ExitCode::FAILURE
        }
    }
}
