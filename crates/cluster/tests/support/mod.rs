//! What the cluster tests share: a real `redis-server` (trunkstore-testkit) and settings.
#![allow(dead_code)]

use trunkstore_config::{Cluster, DocumentStore, Secret};
#[allow(unused_imports)]
pub use trunkstore_testkit::{free_port, Redis as Server};

pub fn cluster(urls: Vec<String>, password: Option<&str>) -> Cluster {
    Cluster {
        node_id: "a".into(),
        redis: urls,
        password: password.map(Secret::new),
        username: None,
        tls_ca_file: None,
        key_prefix: "test:".into(),
        lease_secs: 15,
        timeout_ms: 200,
        store: DocumentStore::Files,
        secret: Secret::new("0123456789abcdef"),
    }
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
