//! Documents in Redis against a real `redis-server` started by the test: conditional
//! writes (document and global revision), the change stream, replace-all (import).

mod support;

use std::time::{Duration, Instant};

use support::{rt, Server};
use trunkstore_cluster::documents::{Expected, Outcome, StoredDocument};
use trunkstore_cluster::{Documents, Redis};
use trunkstore_config::{Cluster, DocumentStore};

/// The documents' cluster settings for `server` (documents in Redis).
fn cluster_of(server: &Server) -> Cluster {
    Cluster {
        timeout_ms: 500,
        store: DocumentStore::Redis,
        ..support::cluster(vec![server.url()], None)
    }
}

fn doc(account: &str, id: &str, name: &str, revision: &str) -> StoredDocument {
    StoredDocument {
        account: account.into(),
        id: id.into(),
        json: format!("{{\"name\":\"{name}\"}}"),
        revision: revision.into(),
    }
}

async fn documents(server: &Server) -> Documents {
    Documents::new(Redis::connect(&cluster_of(server)).await.unwrap())
}

#[test]
fn write_read_replace_delete() {
    let server = Server::start(&[]);
    rt().block_on(async {
        let d = documents(&server).await;
        let empty = d.load().await.unwrap();
        assert_eq!((empty.revision, empty.stream_id.as_str()), (0, "0-0"));
        assert!(empty.documents.is_empty());

        let v1 = doc("acme", "pbx", "one", "r1");
        let w = d.put(&v1, Expected::Absent, 0).await.unwrap();
        assert_eq!(w, Outcome::Written { revision: 1 });
        let loaded = d.load().await.unwrap();
        assert_eq!(loaded.revision, 1);
        assert_eq!(loaded.documents, vec![v1.clone()]);
        assert_ne!(loaded.stream_id, "0-0");

        let v2 = doc("acme", "pbx", "two", "r2");
        let w = d.put(&v2, Expected::Present(Some("r1")), 1).await;
        assert_eq!(w.unwrap(), Outcome::Written { revision: 2 });
        assert_eq!(d.load().await.unwrap().documents, vec![v2]);

        let w = d.delete("acme", "pbx", Some("r2"), 2).await.unwrap();
        assert_eq!(w, Outcome::Written { revision: 3 });
        let loaded = d.load().await.unwrap();
        assert_eq!(loaded.revision, 3);
        assert!(loaded.documents.is_empty());
        assert_eq!(d.revision().await.unwrap(), 3);
    });
}

#[test]
fn a_stale_document_revision_is_refused_and_changes_nothing() {
    let server = Server::start(&[]);
    rt().block_on(async {
        let d = documents(&server).await;
        let v1 = doc("acme", "pbx", "one", "r1");
        d.put(&v1, Expected::Absent, 0).await.unwrap();
        let other = doc("acme", "pbx", "other", "rx");
        // Replace with a revision that is not the current one: 409 with the current one.
        let w = d
            .put(&other, Expected::Present(Some("r0")), 1)
            .await
            .unwrap();
        let conflict = Outcome::Conflict {
            current: Some("r1".into()),
        };
        assert_eq!(w, conflict);
        // Create over an existing document: 409 too.
        assert_eq!(d.put(&other, Expected::Absent, 1).await.unwrap(), conflict);
        // Delete with a stale revision, and of a missing document.
        let w = d.delete("acme", "pbx", Some("r0"), 1).await.unwrap();
        assert_eq!(w, conflict);
        let w = d.delete("acme", "nope", None, 1).await.unwrap();
        assert_eq!(w, Outcome::NotFound);
        let missing = doc("acme", "nope", "x", "ry");
        let w = d.put(&missing, Expected::Present(None), 1).await.unwrap();
        assert_eq!(w, Outcome::NotFound);
        let loaded = d.load().await.unwrap();
        assert_eq!((loaded.revision, loaded.documents), (1, vec![v1]));
    });
}

#[test]
fn a_write_validated_against_an_older_global_revision_is_refused() {
    let server = Server::start(&[]);
    rt().block_on(async {
        // Two nodes saw the same (empty) catalog and each claims one DID in a new
        // document: only the first commits; the second was validated without it.
        let a = documents(&server).await;
        let b = documents(&server).await;
        let from_a = doc("acme", "a", "claims +1415", "ra");
        let from_b = doc("other", "b", "claims +1415 too", "rb");
        assert_eq!(
            a.put(&from_a, Expected::Absent, 0).await.unwrap(),
            Outcome::Written { revision: 1 }
        );
        assert_eq!(
            b.put(&from_b, Expected::Absent, 0).await.unwrap(),
            Outcome::Moved { revision: 1 }
        );
        // A delete based on the old view is refused the same way.
        let w = b.delete("acme", "a", None, 0).await.unwrap();
        assert_eq!(w, Outcome::Moved { revision: 1 });
        let loaded = a.load().await.unwrap();
        assert_eq!((loaded.revision, loaded.documents), (1, vec![from_a]));
        // Based on the current view, b's write goes through.
        let w = b.put(&from_b, Expected::Absent, 1).await.unwrap();
        assert_eq!(w, Outcome::Written { revision: 2 });
    });
}

#[test]
fn every_change_is_on_the_stream_and_followed() {
    let server = Server::start(&[]);
    rt().block_on(async {
        let d = documents(&server).await;
        let start = d.load().await.unwrap().stream_id;
        d.put(&doc("acme", "x", "one", "r1"), Expected::Absent, 0)
            .await
            .unwrap();
        d.delete("acme", "x", Some("r1"), 1).await.unwrap();
        let mut conn = d.redis().dedicated().await.unwrap();
        let changes = d.changes(&mut conn, &start).await.unwrap();
        let seen: Vec<_> = changes
            .iter()
            .map(|c| (c.op.as_str(), c.account.as_str(), c.id.as_str(), c.revision))
            .collect();
        assert_eq!(seen, [("put", "acme", "x", 1), ("delete", "acme", "x", 2)]);
        // Nothing after the last one: the read blocks about a second, then is empty.
        let t = Instant::now();
        let after = changes.last().unwrap().stream_id.clone();
        assert!(d.changes(&mut conn, &after).await.unwrap().is_empty());
        assert!(t.elapsed() >= Duration::from_millis(900));

        // A follower from the current end sees a later change from another connection.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let follower = d.clone();
        let task = tokio::spawn(async move {
            follower
                .follow(after, move |rev| {
                    let _ = tx.send(rev);
                    async {}
                })
                .await
        });
        let other = documents(&server).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        other
            .put(&doc("acme", "y", "two", "r3"), Expected::Absent, 2)
            .await
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(2), rx.recv()).await;
        assert_eq!(got.unwrap(), Some(Some(3)));
        task.abort();
    });
}

#[test]
fn replace_all_swaps_the_whole_set_at_once() {
    let server = Server::start(&[]);
    rt().block_on(async {
        let d = documents(&server).await;
        d.put(&doc("old", "gone", "old", "r0"), Expected::Absent, 0)
            .await
            .unwrap();
        let set = vec![doc("b", "two", "2", "r2"), doc("a", "one", "1", "r1")];
        let revision = d.replace_all(&set).await.unwrap();
        assert_eq!(revision, 2);
        let loaded = d.load().await.unwrap();
        // Sorted by account then id, the document not in the set is gone.
        assert_eq!(loaded.documents, vec![set[1].clone(), set[0].clone()]);
        let mut conn = d.redis().dedicated().await.unwrap();
        let changes = d.changes(&mut conn, "0-0").await.unwrap();
        assert_eq!(changes.last().map(|c| c.op.as_str()), Some("import"));
        // An empty import empties the store (what an empty directory says).
        assert_eq!(d.replace_all(&[]).await.unwrap(), 3);
        assert!(d.load().await.unwrap().documents.is_empty());
    });
}
