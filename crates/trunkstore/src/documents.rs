//! `trunkstore import` and `trunkstore export`: connectivity documents between files
//! (the `connectivity_dir` layout) and Redis (`cluster.store: "redis"`, behaviour.md §9).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use trunkstore_api::shared::{catalog_from, stored_document};
use trunkstore_cluster::documents::Stored;
use trunkstore_cluster::{Documents, Redis, RedisError};
use trunkstore_config::{
    load_connectivity_dir, write_document_atomically, Catalog, Cluster, FileErrors, Settings,
};

use crate::report::print_failures;

/// One import or export is one big script: it may take far longer than a round trip of
/// the packet path (`cluster.timeout_ms`).
const BULK_TIMEOUT: Duration = Duration::from_secs(60);

/// Validates every document under `from` as one catalog (like `check`) and, only if all
/// are valid, replaces every document in Redis by them in one atomic step.
pub(crate) fn import(config: &Path, from: &Path) -> ExitCode {
    let Some((settings, cluster)) = settings_with_cluster(config, "import") else {
        return ExitCode::FAILURE;
    };
    let catalog = match catalog_of_dir(settings, from) {
        Ok(catalog) => catalog,
        Err(failures) => {
            print_failures(&failures);
            eprintln!("trunkstore: nothing imported");
            return ExitCode::FAILURE;
        }
    };
    let docs: Vec<_> = catalog
        .documents()
        .iter()
        .map(|d| stored_document(d))
        .collect();
    let written = with_documents(&cluster, |d| {
        let docs = docs.clone();
        async move { d.replace_all(&docs).await }
    });
    match written {
        Ok(revision) => {
            println!(
                "imported {} documents from {} (global revision {revision})",
                docs.len(),
                from.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("trunkstore: cannot import: {e}; nothing imported");
            ExitCode::FAILURE
        }
    }
}

/// Writes every document in Redis as `<to>/<account>/<id>.json`. `to` must be empty or
/// new (an export never mixes with other files). The documents are validated against
/// the settings as they are written; errors are listed (exit 1) but every document is
/// written, so the files can be fixed and imported again.
pub(crate) fn export(config: &Path, to: &Path) -> ExitCode {
    let Some((settings, cluster)) = settings_with_cluster(config, "export") else {
        return ExitCode::FAILURE;
    };
    if has_entries(to) {
        eprintln!(
            "trunkstore: {} is not empty: export writes into an empty or new directory",
            to.display()
        );
        return ExitCode::FAILURE;
    }
    let stored: Stored = match with_documents(&cluster, |d| async move { d.load().await }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("trunkstore: cannot export: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut written = 0;
    for doc in &stored.documents {
        let value: serde_json::Value = match serde_json::from_str(&doc.json) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("redis:{}/{}: not JSON: {e}", doc.account, doc.id);
                continue;
            }
        };
        if let Err(e) = write_document_atomically(to, &doc.account, &doc.id, &value) {
            eprintln!("trunkstore: cannot write {}/{}: {e}", doc.account, doc.id);
            return ExitCode::FAILURE;
        }
        written += 1;
    }
    println!(
        "exported {written} documents to {} (global revision {})",
        to.display(),
        stored.revision
    );
    match catalog_from(settings, &stored) {
        Ok(_) if written == stored.documents.len() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(failures) => {
            print_failures(&failures);
            ExitCode::FAILURE
        }
    }
}

/// `check` with `cluster.store: "redis"`: the settings and every document in Redis,
/// validated as one catalog as a node would load them, with where they came from; an
/// outer error when Redis cannot be read.
pub(crate) fn load_from_redis(
    settings: Settings,
) -> Result<Result<(Catalog, String), Vec<FileErrors>>, RedisError> {
    let Some(cluster) = bulk_cluster(&settings) else {
        return Err(RedisError::Failed("no `cluster` section".into()));
    };
    let stored: Stored = with_documents(&cluster, |d| async move { d.load().await })?;
    // Not the URLs: one may carry a password.
    let source = format!(
        "Redis (global revision {}, {} documents)",
        stored.revision,
        stored.documents.len()
    );
    Ok(catalog_from(settings, &stored).map(|catalog| (catalog, source)))
}

/// The settings and their `cluster` section (required by import and export).
fn settings_with_cluster(config: &Path, verb: &str) -> Option<(Settings, Cluster)> {
    let settings = match Settings::load(config) {
        Ok(s) => s,
        Err(e) => {
            print_failures(&[e]);
            return None;
        }
    };
    let Some(cluster) = bulk_cluster(&settings) else {
        eprintln!(
            "trunkstore: {verb} needs a `cluster` section (the Redis to use) in {}",
            config.display()
        );
        return None;
    };
    Some((settings, cluster))
}

/// The settings' `cluster` section with a bulk operation's timeout.
fn bulk_cluster(settings: &Settings) -> Option<Cluster> {
    let mut cluster = settings.cluster.clone()?;
    cluster.timeout_ms = u32::try_from(BULK_TIMEOUT.as_millis()).unwrap_or(u32::MAX);
    Some(cluster)
}

/// Every document under `dir` and the whole catalog, like `check` (every error).
fn catalog_of_dir(settings: Settings, dir: &Path) -> Result<Catalog, Vec<FileErrors>> {
    let (docs, failures) = load_connectivity_dir(dir);
    match (Catalog::build(settings, docs), failures.is_empty()) {
        (Ok(catalog), true) => Ok(catalog),
        (Ok(_), false) => Err(failures),
        (Err(more), _) => Err(failures.into_iter().chain(more).collect()),
    }
}

fn has_entries(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some())
}

/// Connects to the cluster's Redis and runs `f` on its documents.
fn with_documents<T, F, Fut>(cluster: &Cluster, f: F) -> Result<T, RedisError>
where
    F: FnOnce(Documents) -> Fut,
    Fut: std::future::Future<Output = Result<T, RedisError>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RedisError::Failed(format!("no runtime: {e}")))?;
    runtime.block_on(async {
        let redis = Redis::connect(cluster).await?;
        f(Documents::new(redis)).await
    })
}
