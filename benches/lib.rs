//! Shared helpers for the benchmarks and load tests: a deterministic generator of large,
//! valid data sets (settings + connectivity documents), catalog building with timings,
//! and resident-memory measurement.

use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use trunkstore_config::{validate_document, Catalog, Document, Settings};

/// Shape of a generated data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatasetSpec {
    pub documents: usize,
    pub servers_per_doc: usize,
    pub dids_per_server: usize,
    pub seed: u64,
}

impl DatasetSpec {
    /// 1000 documents × 10 servers × 100 DIDs = 1,000,000 DIDs on 10,000 servers.
    pub const MILLION: DatasetSpec = DatasetSpec {
        documents: 1000,
        servers_per_doc: 10,
        dids_per_server: 100,
        seed: 42,
    };

    pub fn did_count(&self) -> usize {
        self.documents * self.servers_per_doc * self.dids_per_server
    }
}

/// One generated connectivity document.
#[derive(Debug, Clone)]
pub struct GeneratedDocument {
    pub account: String,
    pub id: String,
    pub value: Value,
}

/// Settings JSON plus documents, in catalog (account, id) order.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub spec: DatasetSpec,
    pub settings: Value,
    pub documents: Vec<GeneratedDocument>,
}

/// splitmix64: tiny, seedable, deterministic across platforms (no `rand` needed).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform-enough in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    /// True with probability `percent`/100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The E.164 number of the `i`-th generated DID. NANP numbers `+1 2XX NXX XXXX` (area
/// codes from 200 up, one per 8M DIDs), every 50th a UK number; all distinct.
pub fn did_number(i: usize) -> String {
    if i % 50 == 49 {
        return format!("+4420{:08}", i);
    }
    let area = 200 + (i / 8_000_000) % 700;
    let exchange = 200 + (i / 10_000) % 800;
    format!("+1{area}{exchange}{:04}", i % 10_000)
}

/// How the `i`-th DID is written as a document key: mostly E.164, some national forms
/// (the catalog normalises them back to [`did_number`]).
fn did_key(number: &str, rng: &mut Rng) -> String {
    match (number.starts_with("+1"), rng.below(10)) {
        (true, 0 | 1) => number[2..].to_string(),
        (true, 2) => number[1..].to_string(),
        _ => number.to_string(),
    }
}

/// `n` numbers that are never generated DIDs (area codes 900–999 are never used below
/// 5.6 billion DIDs; `+4421…` never), deterministic.
pub fn miss_numbers(n: usize, seed: u64) -> Vec<String> {
    let mut rng = Rng::new(seed ^ 0x6d69_7373);
    (0..n)
        .map(|_| match rng.below(4) {
            0 => format!("+4421{:08}", rng.below(100_000_000)),
            _ => format!(
                "+1{}{}{:04}",
                900 + rng.below(100),
                200 + rng.below(800),
                rng.below(10_000)
            ),
        })
        .collect()
}

/// `10.a.b.c` for server `g` (unique for 16M servers), outside every carrier source.
fn server_ip(g: usize) -> String {
    format!("10.{}.{}.{}", (g >> 16) & 255, (g >> 8) & 255, g & 255)
}

fn account_of(doc: usize) -> String {
    format!("acct{:05}", doc / 2)
}

/// Proxy settings for a generated data set: one carrier on documentation nets.
pub fn settings_json() -> Value {
    json!({
        "listen": {"udp": ["127.0.0.1:5060"], "tcp": ["127.0.0.1:5060"]},
        "connectivity_dir": "connectivity",
        "default_realm": "trunkstore.test",
        "carriers": [{
            "name": "carrier-a",
            "gateways": [{"host": "192.0.2.1", "port": 5060}],
            "sources": ["192.0.2.0/24", "198.51.100.7:5060"]
        }],
        "api": {"listen": "127.0.0.1:8000", "tokens": []}
    })
}

/// Generates `spec.documents` documents of `spec.servers_per_doc` servers with
/// `spec.dids_per_server` DIDs each. Deterministic for a given spec. Half the servers
/// authenticate by IP (unique addresses, some with a port), half by password; about 5% of
/// DIDs and a third of servers have options of their own; two documents per account.
pub fn generate(spec: DatasetSpec) -> Dataset {
    let mut rng = Rng::new(spec.seed);
    let documents = (0..spec.documents)
        .map(|d| GeneratedDocument {
            account: account_of(d),
            id: format!("doc{d:05}"),
            value: document_json(spec, d, &mut rng),
        })
        .collect();
    Dataset {
        spec,
        settings: settings_json(),
        documents,
    }
}

fn document_json(spec: DatasetSpec, d: usize, rng: &mut Rng) -> Value {
    let mut account = Map::new();
    if (d / 2) & 1 == 0 {
        account.insert(
            "auth_realm".into(),
            json!(format!("{}.example.net", account_of(d))),
        );
    }
    if rng.percent(70) {
        account.insert("trunks".into(), json!(1 + rng.below(100)));
    }
    account.insert(
        "caller_id".into(),
        json!({"cid_name": format!("Account {d}"), "cid_number": "+14155550100"}),
    );
    let servers: Vec<Value> = (0..spec.servers_per_doc)
        .map(|s| server_json(spec, d * spec.servers_per_doc + s, rng))
        .collect();
    json!({"name": format!("Customer {d}"), "account": account, "servers": servers})
}

fn server_json(spec: DatasetSpec, g: usize, rng: &mut Rng) -> Value {
    let auth = if g & 1 == 0 {
        let mut a = json!({"auth_method": "IP", "ip": server_ip(g)});
        if rng.percent(50) {
            a["port"] = json!(5060 + rng.below(100));
        }
        a
    } else {
        json!({"auth_method": "password", "auth_user": format!("user{g}"),
               "auth_password": format!("pw{:016x}", rng.next_u64())})
    };
    let mut options = Map::new();
    if rng.percent(33) {
        let formats = ["e164", "npan", "1npan", "username"];
        options.insert(
            "inbound_format".into(),
            json!(formats[rng.below(4) as usize]),
        );
        options.insert("timeout".into(), json!(20 + rng.below(60)));
        options.insert("failover".into(), json!({"e164": "+14155550199"}));
        options.insert("sip_headers".into(), json!([{"X-Server": format!("s{g}")}]));
    }
    if g % 2 == 1 && rng.percent(30) {
        options.insert(
            "ip".into(),
            json!(format!("172.16.{}.{}", (g >> 8) & 255, g & 255)),
        );
    }
    let first = g * spec.dids_per_server;
    let mut dids = Map::new();
    for i in first..first + spec.dids_per_server {
        let number = did_number(i);
        dids.insert(did_key(&number, rng), did_options(rng));
    }
    json!({"name": format!("pbx{g}"), "auth": auth, "options": options, "DIDs": dids})
}

/// `{}` for 95% of DIDs; otherwise one override of some kind.
fn did_options(rng: &mut Rng) -> Value {
    if !rng.percent(5) {
        return json!({});
    }
    match rng.below(4) {
        0 => json!({"delay": 1 + rng.below(5)}),
        1 => json!({"caller_id": {"cid_number": "+14155550111"}}),
        2 => json!({"failover": {"sip": "sip:overflow@192.0.2.50"}}),
        _ => json!({"sip_headers": {"X-DID": "yes"}, "progress_timeout": 5}),
    }
}

/// Validates every document (as the loader does) and returns them, with the time taken.
pub fn validate_all(ds: &Dataset) -> (Vec<Document>, Duration) {
    let start = Instant::now();
    let docs = ds
        .documents
        .iter()
        .map(|g| {
            validate_document(&g.account, &g.id, &g.value).unwrap_or_else(|e| {
                panic!("generated document {}/{} invalid: {e:?}", g.account, g.id)
            })
        })
        .collect();
    (docs, start.elapsed())
}

/// Validated settings of a data set.
pub fn settings_of(ds: &Dataset) -> Settings {
    Settings::from_value(&ds.settings, Path::new(".")).expect("generated settings valid")
}

/// Builds the catalog (cross-document checks) from validated documents, with its time.
pub fn catalog_of(settings: Settings, docs: Vec<Document>) -> (Catalog, Duration) {
    let start = Instant::now();
    let catalog = Catalog::build(settings, docs).expect("generated data set consistent");
    (catalog, start.elapsed())
}

/// Writes the data set as `<out>/trunkstore.json` + `<out>/connectivity/<account>/<id>.json`
/// (the layout `trunkstore check` and the proxy load).
pub fn write_dataset(ds: &Dataset, out: &Path) -> io::Result<()> {
    let conn = out.join("connectivity");
    fs::create_dir_all(&conn)?;
    fs::write(
        out.join("trunkstore.json"),
        serde_json::to_vec_pretty(&ds.settings).map_err(io::Error::other)?,
    )?;
    for g in &ds.documents {
        let dir = conn.join(&g.account);
        fs::create_dir_all(&dir)?;
        let text = serde_json::to_vec(&g.value).map_err(io::Error::other)?;
        fs::write(dir.join(format!("{}.json", g.id)), text)?;
    }
    Ok(())
}

/// Resident set size of this process in bytes, from `/proc/self/statm` (Linux).
pub fn rss_bytes() -> Option<u64> {
    let statm = fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

/// Gives memory freed so far back to the kernel (glibc `malloc_trim`), so that RSS
/// deltas measured afterwards count new allocations even when they reuse freed chunks.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// `AnonHugePages` of this process in KiB (from /proc/self/smaps_rollup), if known.
pub fn anon_huge_pages_kib() -> Option<u64> {
    let text = fs::read_to_string("/proc/self/smaps_rollup").ok()?;
    let line = text.lines().find(|l| l.starts_with("AnonHugePages:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The page size; 4 KiB on the platforms we run on (avoids a libc dependency for
/// `sysconf`).
fn page_size() -> u64 {
    4096
}

/// Numbers stored in fixed-width slots of one buffer, so a benchmark walking them reads
/// memory sequentially (the prefetcher hides it) and only the index lookups miss cache,
/// as in the proxy where the number comes from the packet just parsed.
pub struct NumberList {
    buf: Vec<u8>,
    lens: Vec<u8>,
}

const SLOT: usize = 24;

impl NumberList {
    pub fn new<S: AsRef<str>>(numbers: impl IntoIterator<Item = S>) -> Self {
        let mut list = NumberList {
            buf: Vec::new(),
            lens: Vec::new(),
        };
        for n in numbers {
            let n = n.as_ref().as_bytes();
            assert!(n.len() <= SLOT, "number too long for NumberList");
            let mut slot = [0u8; SLOT];
            slot[..n.len()].copy_from_slice(n);
            list.buf.extend_from_slice(&slot);
            list.lens.push(n.len() as u8);
        }
        list
    }

    pub fn len(&self) -> usize {
        self.lens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    #[inline]
    pub fn get(&self, i: usize) -> &str {
        let start = i * SLOT;
        let bytes = &self.buf[start..start + usize::from(self.lens[i])];
        // Not `from_utf8`: it is an out-of-line call returning the slice through the stack
        // in two 8-byte stores, which the caller's `black_box` copy reloads as one 16-byte
        // load. A load cannot be forwarded from two stores, so it waits until they reach
        // the cache, after they retire, after the previous iteration's cache-missing table
        // load: the timed loop then measured one memory latency per lookup (~180 ns)
        // instead of overlapping lookups.
        // SAFETY: `new` copies whole `&str`s (valid UTF-8) into the slots, and `lens[i]`
        // is the length of the one copied into slot `i`.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }
}

/// A deterministic permutation of `0..n` (Fisher–Yates).
pub fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    let mut rng = Rng::new(seed);
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
    v
}
