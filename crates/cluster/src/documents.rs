//! Connectivity documents in Redis (`cluster.store: "redis"`, issue 18 item 3).
//!
//! Keys, all under `cluster.key_prefix`:
//! * `docs:content`: hash `account/id` → the document's JSON text;
//! * `docs:revisions`: hash `account/id` → the document's revision (the API's content
//!   digest, computed by the writer, so a revision means the same on every node);
//! * `docs:revision`: the global revision, incremented by every change;
//! * `docs:changes`: a stream with one entry per change (`account`, `id`, `revision` the
//!   global revision after it, `document_revision`, `op` put/delete/import), trimmed to
//!   about [`STREAM_MAXLEN`] entries: a node that was away longer loads everything anyway.
//!
//! Every change is one Lua script, so it is atomic, and conditional twice: on the
//! document's revision (the API's 409) and on the global revision the writer validated
//! the whole catalog against. A write validated on a node whose view is behind is refused
//! ([`Outcome::Moved`]): two nodes can never commit documents that conflict with each
//! other (one DID claimed twice), because the second one was not validated against the
//! first.

use std::future::Future;
use std::time::Duration;

use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::Script;

use crate::{Redis, RedisError};

/// Change-stream entries kept (approximately: `MAXLEN ~`).
pub const STREAM_MAXLEN: u32 = 10_000;

/// How long one blocking read of the change stream waits for an entry.
const BLOCK_MS: usize = 1_000;
/// Entries taken per read (any number of them triggers one reload).
const READ_COUNT: usize = 100;
/// Backoff of the follower after Redis failed, doubling up to the maximum.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Checks the document's and the global revision, then applies one put or delete and
/// appends its stream entry. Lua's `false` is a missing hash field.
const WRITE: &str = r"
local current = redis.call('HGET', KEYS[2], ARGV[1])
local expect = ARGV[5]
if expect == 'absent' and current then return {'conflict', current} end
if expect == 'present' and not current then return {'notfound'} end
if expect == 'present' and ARGV[6] ~= '' and current ~= ARGV[6] then
  return {'conflict', current}
end
local global = tonumber(redis.call('GET', KEYS[3]) or '0')
if global ~= tonumber(ARGV[7]) then return {'moved', tostring(global)} end
if ARGV[2] == 'put' then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
end
local n = redis.call('INCR', KEYS[3])
local sid = redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[8], '*',
  'account', ARGV[9], 'id', ARGV[10], 'revision', n, 'document_revision', ARGV[4],
  'op', ARGV[2])
return {'ok', tostring(n), sid}
";

/// Everything at one instant: the global revision, the stream's last entry id (so a
/// follower starts exactly after this state), the documents and their revisions.
const LOAD: &str = r"
local g = redis.call('GET', KEYS[3]) or '0'
local docs = redis.call('HGETALL', KEYS[1])
local revs = redis.call('HGETALL', KEYS[2])
local last = redis.call('XREVRANGE', KEYS[4], '+', '-', 'COUNT', 1)
local sid = '0-0'
if #last > 0 then sid = last[1][1] end
return {g, sid, docs, revs}
";

/// Replaces every document by the given set (import): all or nothing.
const REPLACE_ALL: &str = r"
redis.call('DEL', KEYS[1], KEYS[2])
local n = tonumber(ARGV[2])
for i = 0, n - 1 do
  local b = 3 + i * 3
  redis.call('HSET', KEYS[1], ARGV[b], ARGV[b + 1])
  redis.call('HSET', KEYS[2], ARGV[b], ARGV[b + 2])
end
local g = redis.call('INCR', KEYS[3])
local sid = redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[1], '*',
  'account', '', 'id', '', 'revision', g, 'document_revision', '', 'op', 'import')
return {tostring(g), sid}
";

/// One document as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDocument {
    /// Account id.
    pub account: String,
    /// Document id.
    pub id: String,
    /// The document's JSON text.
    pub json: String,
    /// Its revision (the API's content digest).
    pub revision: String,
}

/// Every document at one global revision.
#[derive(Debug, Clone, Default)]
pub struct Stored {
    /// The global revision of this state (0: nothing was ever written).
    pub revision: u64,
    /// The change stream's last entry id at this state (`0-0`: none), where a follower
    /// of this state starts reading.
    pub stream_id: String,
    /// The documents, sorted by account then id (the files' loading order).
    pub documents: Vec<StoredDocument>,
}

/// What a write expects of the document's current revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected<'a> {
    /// The document must not exist (a create).
    Absent,
    /// The document must exist, with this revision when one is given.
    Present(Option<&'a str>),
}

/// How a conditional write ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Applied: the global revision is now this.
    Written {
        /// Global revision after the change.
        revision: u64,
    },
    /// The document's revision is not the expected one (or it exists, for a create).
    Conflict {
        /// Its current revision.
        current: Option<String>,
    },
    /// The document does not exist.
    NotFound,
    /// Another change was committed since the writer's view (this global revision now):
    /// the write was validated against an old catalog, nothing was applied.
    Moved {
        /// The global revision now.
        revision: u64,
    },
}

/// One entry of the change stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Stream entry id.
    pub stream_id: String,
    /// Account id (empty for an import).
    pub account: String,
    /// Document id (empty for an import).
    pub id: String,
    /// Global revision after the change.
    pub revision: u64,
    /// `put`, `delete` or `import`.
    pub op: String,
}

/// The documents' keys and scripts over this node's Redis connection.
#[derive(Clone)]
pub struct Documents {
    redis: Redis,
    content: String,
    revisions: String,
    global: String,
    stream: String,
    write: Script,
    load: Script,
    replace_all: Script,
}

impl std::fmt::Debug for Documents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Documents")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl Documents {
    /// The documents of the cluster `redis` belongs to.
    pub fn new(redis: Redis) -> Documents {
        Documents {
            content: redis.key("docs:content"),
            revisions: redis.key("docs:revisions"),
            global: redis.key("docs:revision"),
            stream: redis.key("docs:changes"),
            redis,
            write: Script::new(WRITE),
            load: Script::new(LOAD),
            replace_all: Script::new(REPLACE_ALL),
        }
    }

    /// The connection underneath.
    pub fn redis(&self) -> &Redis {
        &self.redis
    }

    /// The change stream's key.
    pub fn stream_key(&self) -> &str {
        &self.stream
    }

    fn keyed<'a>(&self, script: &'a Script) -> redis::ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        inv.key(&self.content)
            .key(&self.revisions)
            .key(&self.global)
            .key(&self.stream);
        inv
    }

    /// Every document and the global revision, atomically (one script).
    pub async fn load(&self) -> Result<Stored, RedisError> {
        let inv = self.keyed(&self.load);
        let (global, stream_id, docs, revs): (String, String, Vec<String>, Vec<String>) =
            self.redis.script(&inv).await?;
        Ok(stored(&global, stream_id, docs, revs))
    }

    /// The global revision only (one `GET`).
    pub async fn revision(&self) -> Result<u64, RedisError> {
        let v: Option<String> = self
            .redis
            .query(redis::cmd("GET").arg(&self.global))
            .await?;
        Ok(v.and_then(|s| s.parse().ok()).unwrap_or(0))
    }

    /// Creates or replaces `account/id` with `json` (revision `revision`), if the document
    /// is as `expected` and the global revision is still `based_on`.
    pub async fn put(
        &self,
        doc: &StoredDocument,
        expected: Expected<'_>,
        based_on: u64,
    ) -> Result<Outcome, RedisError> {
        self.change(
            "put",
            &doc.account,
            &doc.id,
            &doc.json,
            &doc.revision,
            expected,
            based_on,
        )
        .await
    }

    /// Deletes `account/id` (which must exist, with `expected` revision when given) if the
    /// global revision is still `based_on`.
    pub async fn delete(
        &self,
        account: &str,
        id: &str,
        expected: Option<&str>,
        based_on: u64,
    ) -> Result<Outcome, RedisError> {
        let expected = Expected::Present(expected);
        self.change("delete", account, id, "", "", expected, based_on)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn change(
        &self,
        op: &str,
        account: &str,
        id: &str,
        json: &str,
        revision: &str,
        expected: Expected<'_>,
        based_on: u64,
    ) -> Result<Outcome, RedisError> {
        let (expect, wanted) = match expected {
            Expected::Absent => ("absent", ""),
            Expected::Present(rev) => ("present", rev.unwrap_or("")),
        };
        let mut inv = self.keyed(&self.write);
        inv.arg(field(account, id))
            .arg(op)
            .arg(json)
            .arg(revision)
            .arg(expect)
            .arg(wanted)
            .arg(based_on)
            .arg(STREAM_MAXLEN)
            .arg(account)
            .arg(id);
        let answer: Vec<String> = self.redis.script(&inv).await?;
        Ok(outcome(&answer))
    }

    /// Replaces every document by `docs` in one step (import); returns the new global
    /// revision. The caller validated `docs` as a whole catalog.
    pub async fn replace_all(&self, docs: &[StoredDocument]) -> Result<u64, RedisError> {
        let mut inv = self.keyed(&self.replace_all);
        inv.arg(STREAM_MAXLEN).arg(docs.len());
        for d in docs {
            inv.arg(field(&d.account, &d.id))
                .arg(&d.json)
                .arg(&d.revision);
        }
        let (revision, _sid): (String, String) = self.redis.script(&inv).await?;
        Ok(revision.parse().unwrap_or(0))
    }

    /// Up to [`READ_COUNT`] changes after stream entry `after`, waiting up to a second
    /// for the first one (on a connection of its own: [`Redis::dedicated`]).
    pub async fn changes(
        &self,
        conn: &mut redis::aio::MultiplexedConnection,
        after: &str,
    ) -> Result<Vec<Change>, RedisError> {
        let options = StreamReadOptions::default()
            .block(BLOCK_MS)
            .count(READ_COUNT);
        let mut cmd = redis::cmd("XREAD");
        cmd.arg(&options)
            .arg("STREAMS")
            .arg(&self.stream)
            .arg(after);
        // The block is Redis's; a hung Redis must still not hang the follower.
        let limit = Duration::from_millis(BLOCK_MS as u64) + Duration::from_secs(2);
        let reply: Option<StreamReadReply> =
            match tokio::time::timeout(limit, cmd.query_async(conn)).await {
                Ok(r) => r?,
                Err(_) => return Err(RedisError::Timeout),
            };
        Ok(reply.map(changes_of).unwrap_or_default())
    }

    /// Follows the change stream from entry `after` until its task is dropped (the
    /// runtime shuts down; every read is bounded by its block time): after every batch of
    /// changes, `changed(Some(highest global revision))`; after Redis was lost and is
    /// back, `changed(None)` (changes may have been missed: reload everything). Redis
    /// failures are logged and retried with a backoff (100 ms doubling to 5 s).
    pub async fn follow<F, Fut>(&self, mut after: String, mut changed: F)
    where
        F: FnMut(Option<u64>) -> Fut,
        Fut: Future<Output = ()>,
    {
        let mut backoff = BACKOFF_FIRST;
        let mut lost = false;
        loop {
            let mut conn = match self.redis.dedicated().await {
                Ok(c) => c,
                Err(e) => {
                    if !lost {
                        tracing::warn!(error = %e, "document change stream: Redis unreachable, retrying");
                    }
                    lost = true;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            };
            if lost {
                tracing::info!("document change stream: Redis is back, catching up");
                changed(None).await;
            }
            backoff = BACKOFF_FIRST;
            // One connection serves reads until it fails (which sets `lost`); the outer
            // loop reconnects.
            loop {
                match self.changes(&mut conn, &after).await {
                    Ok(batch) => {
                        let Some(last) = batch.last() else { continue };
                        after = last.stream_id.clone();
                        let highest = batch.iter().map(|c| c.revision).max();
                        changed(highest).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "document change stream: read failed, reconnecting");
                        lost = true;
                        break;
                    }
                }
            }
            tokio::time::sleep(backoff).await;
        }
    }
}

/// The hash field of a document.
fn field(account: &str, id: &str) -> String {
    format!("{account}/{id}")
}

fn outcome(answer: &[String]) -> Outcome {
    let number = |i: usize| answer.get(i).and_then(|s| s.parse().ok()).unwrap_or(0);
    match answer.first().map(String::as_str) {
        Some("ok") => Outcome::Written {
            revision: number(1),
        },
        Some("conflict") => Outcome::Conflict {
            current: answer.get(1).cloned(),
        },
        Some("notfound") => Outcome::NotFound,
        _ => Outcome::Moved {
            revision: number(1),
        },
    }
}

/// Pairs the two flat `HGETALL` answers by field and sorts them (account, then id).
fn stored(global: &str, stream_id: String, docs: Vec<String>, revs: Vec<String>) -> Stored {
    let revisions: std::collections::HashMap<String, String> = revs
        .chunks_exact(2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect();
    let mut documents: Vec<StoredDocument> = docs
        .chunks_exact(2)
        .filter_map(|p| {
            let (account, id) = p[0].split_once('/')?;
            Some(StoredDocument {
                account: account.to_owned(),
                id: id.to_owned(),
                json: p[1].clone(),
                revision: revisions.get(&p[0]).cloned().unwrap_or_default(),
            })
        })
        .collect();
    documents.sort_by(|a, b| (&a.account, &a.id).cmp(&(&b.account, &b.id)));
    Stored {
        revision: global.parse().unwrap_or(0),
        stream_id,
        documents,
    }
}

fn changes_of(reply: StreamReadReply) -> Vec<Change> {
    let text = |m: &std::collections::HashMap<String, redis::Value>, k: &str| -> String {
        m.get(k)
            .and_then(|v| redis::from_redis_value::<String>(v).ok())
            .unwrap_or_default()
    };
    reply
        .keys
        .into_iter()
        .flat_map(|k| k.ids)
        .map(|e| Change {
            revision: text(&e.map, "revision").parse().unwrap_or(0),
            account: text(&e.map, "account"),
            id: text(&e.map, "id"),
            op: text(&e.map, "op"),
            stream_id: e.id,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_answers_map_to_outcomes() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            outcome(&s(&["ok", "7", "1-0"])),
            Outcome::Written { revision: 7 }
        );
        assert_eq!(
            outcome(&s(&["conflict", "abc"])),
            Outcome::Conflict {
                current: Some("abc".into())
            }
        );
        assert_eq!(outcome(&s(&["notfound"])), Outcome::NotFound);
        assert_eq!(outcome(&s(&["moved", "9"])), Outcome::Moved { revision: 9 });
    }

    #[test]
    fn stored_pairs_fields_and_sorts() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let st = stored(
            "3",
            "5-0".into(),
            s(&["b/x", "{}", "a/y", "{\"n\":1}"]),
            s(&["a/y", "r1", "b/x", "r2"]),
        );
        assert_eq!(st.revision, 3);
        let ids: Vec<_> = st
            .documents
            .iter()
            .map(|d| (d.account.as_str(), d.id.as_str(), d.revision.as_str()))
            .collect();
        assert_eq!(ids, [("a", "y", "r1"), ("b", "x", "r2")]);
    }
}
