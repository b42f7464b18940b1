//! Routing index benchmarks on 1,000,000 DIDs (1000 documents × 10 servers × 100 DIDs).
//!
//! `cargo bench -p trunkstore-benches --bench index`
//!
//! Before the criterion runs, prints one-shot figures criterion does not give: time of
//! validation and of the catalog's cross-document checks, time of one index build, and
//! resident memory (from /proc/self/statm) added by the catalog and by the index.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use trunkstore_benches::{
    anon_huge_pages_kib, catalog_of, did_number, generate, miss_numbers, release_free_memory,
    rss_bytes, settings_of, shuffled, validate_all, DatasetSpec, NumberList,
};
use trunkstore_config::Catalog;
use trunkstore_routing::Snapshot;

const MIB: f64 = 1024.0 * 1024.0;

fn rss() -> u64 {
    rss_bytes().unwrap_or(0)
}

/// Builds the data set, printing times and memory; returns the catalog and the snapshot.
///
/// Memory: RSS deltas would undercount whatever reuses memory freed earlier (validation
/// temporaries, the catalog's claim maps), so freed memory is returned to the kernel
/// (`malloc_trim`) before each measurement. The index is also measured as the RSS growth
/// of two more snapshots held at once (as during a reload).
fn setup(spec: DatasetSpec) -> (Catalog, Snapshot) {
    let n = spec.did_count() as f64;
    let per_did = |bytes: i64| bytes as f64 / n;
    let rss0 = rss() as i64;
    let ds = generate(spec);
    let rss_json = rss() as i64;
    let (docs, validate) = validate_all(&ds);
    let (catalog, check) = catalog_of(settings_of(&ds), docs);
    release_free_memory();
    let rss_catalog = rss() as i64;
    let start = Instant::now();
    let snap = Snapshot::build(&catalog);
    let build = start.elapsed();
    release_free_memory();
    let rss_first = rss() as i64;
    let extra: Vec<Snapshot> = (0..2).map(|_| Snapshot::build(&catalog)).collect();
    release_free_memory();
    let rss_extra = rss() as i64;
    let index = (rss_extra - rss_first) / extra.len() as i64;
    let huge = anon_huge_pages_kib();
    drop(extra);
    println!(
        "== routing index: {} DIDs, {} servers ==",
        snap.did_count(),
        snap.server_count()
    );
    println!(
        "validation (validate_document x{}): {:.3} s; Catalog::build: {:.3} s; total {:.3} s",
        spec.documents,
        validate.as_secs_f64(),
        check.as_secs_f64(),
        (validate + check).as_secs_f64()
    );
    println!("Snapshot::build (one shot): {:.3} s", build.as_secs_f64());
    println!(
        "RSS of generated JSON: {:.1} MiB; catalog (documents incl. the raw JSON each keeps): \
         +{:.1} MiB = {:.1} B/DID",
        (rss_json - rss0) as f64 / MIB,
        (rss_catalog - rss_json) as f64 / MIB,
        per_did(rss_catalog - rss_json)
    );
    println!(
        "RSS of one index (mean of 2 extra builds): {:.1} MiB = {:.1} B/DID (first build: +{:.1} MiB); DID table {:.1} MiB \
         = {:.1} B/DID; {} route entries; catalog+index {:.1} B/DID",
        index as f64 / MIB,
        per_did(index),
        (rss_first - rss_catalog) as f64 / MIB,
        snap.did_table_bytes() as f64 / MIB,
        snap.did_table_bytes() as f64 / n,
        snap.route_count(),
        per_did(rss_catalog - rss_json + index),
    );
    println!("AnonHugePages with 3 indexes: {huge:?} KiB");
    drop(ds);
    (catalog, snap)
}

fn index(c: &mut Criterion) {
    let spec = DatasetSpec::MILLION;
    let (catalog, snap) = setup(spec);
    let n = spec.did_count();

    // Every DID once, in random order: each lookup touches a cold part of the table.
    let hits = NumberList::new(shuffled(n, 7).into_iter().map(did_number));
    let misses = NumberList::new(miss_numbers(n, 7));
    // National spellings, normalised on lookup.
    let dialled = NumberList::new(
        shuffled(n, 8)
            .into_iter()
            .map(did_number)
            .map(|e| e.strip_prefix("+1").map_or(e.clone(), str::to_string)),
    );
    assert!((0..1000).all(|i| snap.did(hits.get(i)).is_some()));
    assert!((0..1000).all(|i| snap.did(misses.get(i)).is_none()));

    let mut g = c.benchmark_group("index");
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    lookup_bench(&mut g, "did_hit", &hits, |s| snap.did(s).is_some());
    lookup_bench(&mut g, "did_miss", &misses, |s| snap.did(s).is_some());
    lookup_bench(&mut g, "did_dialled_hit", &dialled, |s| {
        snap.did_dialled(s).is_some()
    });
    let warm = NumberList::new((0..1024).map(|i| did_number(i * 977)));
    lookup_bench(&mut g, "did_hit_warm_1k", &warm, |s| snap.did(s).is_some());

    let ip_server: SocketAddr = "10.0.3.232:5060".parse().unwrap();
    g.bench_function("source_ip_server_or_none", |b| {
        b.iter(|| black_box(snap.source(black_box(ip_server))).is_some())
    });
    let carrier: SocketAddr = "192.0.2.77:5060".parse().unwrap();
    g.bench_function("source_carrier", |b| {
        b.iter(|| black_box(snap.source(black_box(carrier))).is_some())
    });
    g.bench_function("password_user", |b| {
        b.iter(|| {
            snap.password_servers(black_box("acct00001.example.net"), black_box("USER3"))
                .len()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("index_build");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("snapshot_build_1M", |b| {
        b.iter_with_large_drop(|| Snapshot::build(black_box(&catalog)))
    });
    g.finish();
}

/// Looks up the list's numbers in order, one per iteration, wrapping around.
fn lookup_bench(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    list: &NumberList,
    f: impl Fn(&str) -> bool,
) {
    let len = list.len();
    g.bench_function(name, |b| {
        let mut i = 0usize;
        b.iter(|| {
            let found = f(black_box(list.get(i)));
            i += 1;
            if i == len {
                i = 0;
            }
            found
        })
    });
}

criterion_group!(benches, index);
criterion_main!(benches);
