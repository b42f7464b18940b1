//! Registrar bindings across nodes (issue 18): each node writes its own bindings (the
//! same JSON text as its `registrations.json`) into one field of the hash
//! `{prefix}bindings`, named by its node id, and reads the other fields back, so a PBX
//! registered on one node is reached through all. A field is replaced whole, so a node
//! never edits another's bindings; a dead node's bindings lapse with their own expiry.

use crate::{Redis, RedisError};

/// This node's field of the bindings hash, and the others'.
#[derive(Debug, Clone)]
pub struct BindingsTable {
    redis: Redis,
    node: String,
    key: String,
}

impl BindingsTable {
    /// The table of the cluster `redis` belongs to, as node `node_id`.
    pub fn new(redis: Redis, node_id: &str) -> BindingsTable {
        let key = redis.key("bindings");
        BindingsTable {
            redis,
            node: node_id.to_owned(),
            key,
        }
    }

    /// Replaces this node's bindings with `text`.
    pub async fn publish(&self, text: &str) -> Result<(), RedisError> {
        let cmd = redis::cmd("HSET")
            .arg(&self.key)
            .arg(&self.node)
            .arg(text)
            .clone();
        self.redis.query::<()>(&cmd).await
    }

    /// Every other node's bindings text.
    pub async fn others(&self) -> Result<Vec<String>, RedisError> {
        let cmd = redis::cmd("HGETALL").arg(&self.key).clone();
        let all: Vec<(String, String)> = self.redis.query(&cmd).await?;
        Ok(all
            .into_iter()
            .filter(|(node, _)| *node != self.node)
            .map(|(_, text)| text)
            .collect())
    }
}
