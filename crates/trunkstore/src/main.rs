//! trunkstore: edge SIP proxy for SIP trunking.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod serve;

use clap::{Parser, Subcommand};
use trunkstore_config::{load_all, FileErrors, DEFAULT_SETTINGS_PATH};

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
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Check { config } => check(&config),
        Command::Serve { config } => match load_all(&config) {
            Ok(catalog) => serve::run(catalog),
            Err(failures) => {
                print_failures(&failures);
                ExitCode::FAILURE
            }
        },
    }
}

/// `trunkstore check`: the same loading path the proxy uses at startup.
fn check(config: &Path) -> ExitCode {
    match load_all(config) {
        Ok(catalog) => {
            let settings = catalog.settings();
            println!("configuration OK: {}", config.display());
            println!("connectivity: {}", settings.connectivity_dir.display());
            println!("{}", catalog.summary());
            ExitCode::SUCCESS
        }
        Err(failures) => {
            print_failures(&failures);
            ExitCode::FAILURE
        }
    }
}

/// One line per error, `file: dotted.path: keyword: message (value …)`. Secrets are never
/// part of an error value (the validator leaves them out).
fn print_failures(failures: &[FileErrors]) {
    let mut count = 0;
    for f in failures {
        for line in f.lines() {
            println!("{line}");
            count += 1;
        }
    }
    let files = failures.len();
    eprintln!("configuration invalid: {count} error(s) in {files} file(s)");
}
