//! Security state across nodes (issue 18): auth failures and bans of one node reach every
//! other through one Redis stream, `{prefix}security`.
//!
//! Each entry is one event of one node (`node`, `kind` = `failure` | `ban`, `source`, and
//! for a ban `remaining_ms`). Every node follows the stream and applies the others'
//! entries as if they were its own, so failures spread over the nodes add up and a ban
//! holds everywhere. Nothing waits on Redis: a node publishes in the background and keeps
//! banning on its own counts when Redis is away (its events of that time are dropped,
//! bounded by the core's queue). A node that starts reads back the entries of the last
//! `history` (the ban time), so it knows the bans in force; entries are trimmed to about
//! [`STREAM_MAX_LEN`].

use std::net::IpAddr;
use std::time::Duration;

use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::Value;

use crate::{Redis, RedisError};

/// About this many entries are kept in the stream (`XADD MAXLEN ~`): at a sustained
/// thousand failures a second, the last couple of minutes.
pub const STREAM_MAX_LEN: usize = 100_000;

/// One node's word about one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shared {
    /// A digest auth failure of `0`.
    Failure(IpAddr),
    /// `source` is banned for `remaining` from when it was written.
    Ban {
        /// The banned source key.
        source: IpAddr,
        /// What is left of the ban.
        remaining: Duration,
    },
}

/// Publishes this node's events and reads the others'.
#[derive(Debug, Clone)]
pub struct SecurityStream {
    redis: Redis,
    node: String,
    key: String,
}

impl SecurityStream {
    /// The stream of the cluster `redis` belongs to, as node `node_id`.
    pub fn new(redis: Redis, node_id: &str) -> SecurityStream {
        let key = redis.key("security");
        SecurityStream {
            redis,
            node: node_id.to_owned(),
            key,
        }
    }

    /// Appends `events` (one round trip for all).
    pub async fn publish(&self, events: &[Shared]) -> Result<(), RedisError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for e in events {
            let (kind, source, remaining) = match *e {
                Shared::Failure(ip) => ("failure", ip, 0),
                Shared::Ban { source, remaining } => ("ban", source, remaining.as_millis()),
            };
            pipe.cmd("XADD")
                .arg(&self.key)
                .arg("MAXLEN")
                .arg("~")
                .arg(STREAM_MAX_LEN)
                .arg("*")
                .arg("node")
                .arg(&self.node)
                .arg("kind")
                .arg(kind)
                .arg("source")
                .arg(source.to_string())
                .arg("remaining_ms")
                .arg(remaining.to_string())
                .ignore();
        }
        self.redis.pipeline::<()>(&pipe).await
    }

    /// Follows the stream for ever, calling `apply` with every other node's event: first
    /// those of the last `history` (a ban's remaining time reduced by its age), then each
    /// new one as it comes. Redis going away only pauses it (it reconnects and goes on
    /// from the last entry it saw).
    pub async fn follow(&self, history: Duration, mut apply: impl FnMut(Shared)) {
        // Redis's clock when the history was asked for: the age of a ban read back is
        // measured against it (node clocks never enter).
        let (mut last, started_ms) = match self.start_id(history).await {
            Ok((id, now_ms)) => (id, now_ms),
            Err(_) => ("$".to_owned(), 0),
        };
        loop {
            let mut conn = match self.redis.dedicated().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(error = %e, "security stream: Redis away, retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if last == "$" {
                // Where the stream ends now, so nothing is read twice after a reconnect.
                last = self.last_id().await.unwrap_or_else(|_| "0-0".to_owned());
            }
            loop {
                let opts = StreamReadOptions::default().block(1000).count(1000);
                let read: redis::RedisResult<Option<StreamReadReply>> = redis::cmd("XREAD")
                    .arg(&opts)
                    .arg("STREAMS")
                    .arg(&self.key)
                    .arg(&last)
                    .query_async(&mut conn)
                    .await;
                let reply = match read {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::debug!(error = %e, "security stream: read failed, reconnecting");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        break;
                    }
                };
                for key in reply.map(|r| r.keys).unwrap_or_default() {
                    for entry in key.ids {
                        let written_ms = entry_ms(&entry.id);
                        let now_ms = written_ms.max(started_ms);
                        if let Some(event) = self.decode(&entry.map, written_ms, now_ms) {
                            apply(event);
                        }
                        last = entry.id;
                    }
                }
            }
        }
    }

    /// The entries of the last `history`, applied by the first read: an id made of
    /// Redis's clock minus `history`.
    async fn start_id(&self, history: Duration) -> Result<(String, u64), RedisError> {
        let (secs, micros): (u64, u64) = self.redis.query(&redis::cmd("TIME")).await?;
        let now_ms = secs * 1000 + micros / 1000;
        let from = now_ms.saturating_sub(history.as_millis() as u64);
        Ok((format!("{from}-0"), now_ms))
    }

    /// The id of the stream's newest entry (`0-0` when empty).
    async fn last_id(&self) -> Result<String, RedisError> {
        let reply: Value = self
            .redis
            .query(
                redis::cmd("XREVRANGE")
                    .arg(&self.key)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1),
            )
            .await?;
        let id = match reply {
            Value::Array(entries) => entries.into_iter().next().and_then(|e| match e {
                Value::Array(mut parts) if !parts.is_empty() => {
                    redis::from_redis_value::<String>(&parts.swap_remove(0)).ok()
                }
                _ => None,
            }),
            _ => None,
        };
        Ok(id.unwrap_or_else(|| "0-0".to_owned()))
    }

    /// Another node's event, its ban shortened by how long ago it was written; `None` for
    /// this node's own entries and anything malformed (a stream anyone with Redis access
    /// can write to is read defensively: an unparseable entry is skipped).
    fn decode(
        &self,
        fields: &std::collections::HashMap<String, Value>,
        written_ms: u64,
        now_ms: u64,
    ) -> Option<Shared> {
        let text = |k: &str| -> Option<String> {
            fields
                .get(k)
                .and_then(|v| redis::from_redis_value::<String>(v).ok())
        };
        if text("node")? == self.node {
            return None;
        }
        let source: IpAddr = text("source")?.parse().ok()?;
        match text("kind")?.as_str() {
            "failure" => Some(Shared::Failure(source)),
            "ban" => {
                let ms: u64 = text("remaining_ms")?.parse().ok()?;
                let left = ms.saturating_sub(now_ms.saturating_sub(written_ms));
                (left > 0).then(|| Shared::Ban {
                    source,
                    remaining: Duration::from_millis(left),
                })
            }
            _ => None,
        }
    }
}

/// The milliseconds part of a stream entry id (`<ms>-<seq>`).
fn entry_ms(id: &str) -> u64 {
    id.split('-')
        .next()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(0)
}
