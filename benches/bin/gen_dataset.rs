//! Writes a generated data set for the CLI, load and reload tests:
//!
//! `gen-dataset --out /tmp/ds --documents 1000 --servers-per-doc 10 --dids-per-server 100 [--seed 42]`
//!
//! Produces `<out>/trunkstore.json` and `<out>/connectivity/<account>/<id>.json`.

use std::path::PathBuf;
use std::process::ExitCode;

use trunkstore_benches::{generate, write_dataset, DatasetSpec};

fn usage() -> ExitCode {
    eprintln!(
        "usage: gen-dataset --out DIR [--documents N] [--servers-per-doc M] \
         [--dids-per-server K] [--seed S]"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut spec = DatasetSpec::MILLION;
    let mut out: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let Some(value) = args.next() else {
            return usage();
        };
        let number = || value.parse::<u64>().ok();
        match (flag.as_str(), number()) {
            ("--out", _) => out = Some(PathBuf::from(&value)),
            ("--documents", Some(n)) => spec.documents = n as usize,
            ("--servers-per-doc", Some(n)) => spec.servers_per_doc = n as usize,
            ("--dids-per-server", Some(n)) => spec.dids_per_server = n as usize,
            ("--seed", Some(n)) => spec.seed = n,
            _ => return usage(),
        }
    }
    let Some(out) = out else {
        return usage();
    };
    let ds = generate(spec);
    if let Err(e) = write_dataset(&ds, &out) {
        eprintln!("gen-dataset: cannot write {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    println!(
        "wrote {} documents, {} servers, {} DIDs to {}",
        spec.documents,
        spec.documents * spec.servers_per_doc,
        spec.did_count(),
        out.display()
    );
    ExitCode::SUCCESS
}
