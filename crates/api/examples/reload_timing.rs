//! Where a reload's time goes on a large data set:
//! `cargo run --release -p trunkstore-api --example reload_timing -- <settings.json>`.

use std::sync::Arc;
use std::time::Instant;

use trunkstore_config::{load_connectivity_dir, Catalog, Document, Settings};
use trunkstore_routing::Snapshot;

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: reload_timing <settings.json>");
    let settings = Arc::new(Settings::load(std::path::Path::new(&path)).expect("valid settings"));
    let t = Instant::now();
    let (docs, failures) = load_connectivity_dir(&settings.connectivity_dir);
    assert!(failures.is_empty(), "invalid files");
    println!("parse+validate (1 thread): {:?}", t.elapsed());
    let shared: Vec<Arc<Document>> = docs.into_iter().map(Arc::new).collect();
    let t = Instant::now();
    let owned: Vec<Document> = shared.iter().map(|d| Document::clone(d)).collect();
    println!("clone documents:           {:?}", t.elapsed());
    let t = Instant::now();
    let catalog = Catalog::build(settings.clone(), owned).expect("consistent");
    println!("Catalog::build:            {:?}", t.elapsed());
    let t = Instant::now();
    let snapshot = Snapshot::build(&catalog);
    println!(
        "Snapshot::build:           {:?} ({} DIDs)",
        t.elapsed(),
        snapshot.did_count()
    );
}
