//! Trunk holds shared by every node (behaviour.md §9.2, issue 18 item 2).
//!
//! One sorted set per account, `{prefix}trunks:{account}`: a member per live call of the
//! whole cluster, `{node_id}:{hold}`, scored by its lease's expiry in ms on Redis's own
//! clock (`TIME`), so node clocks never matter. A take is one script (one round trip):
//! drop the expired members, then add one if fewer than the limit remain. The owning
//! node renews its members every lease/3; a node that dies (SIGKILL) stops renewing and
//! its members lapse with the lease. Each node also keeps the set of accounts it ever
//! held (`{prefix}trunk-accounts:{node_id}`): reconciliation walks only those.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use redis::Script;

use crate::{Redis, RedisError};

/// Holds renewed or reconciled per script call (bounds one round trip's size).
const CHUNK: usize = 1_000;

/// Redis's clock in ms, shared by the scripts.
const NOW_MS: &str = "local t = redis.call('TIME')\n\
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n";

/// KEYS: trunks of the account, the node's accounts. ARGV: member, limit, lease ms,
/// account. 1: taken, 0: the limit is reached.
const TAKE: &str = "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)\n\
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then\n\
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])\n\
  redis.call('SADD', KEYS[2], ARGV[4])\n\
  return 1\n\
end\n\
return 0\n";

/// KEYS: one trunks key per hold. ARGV: lease ms, then one member per key. Only members
/// still there get the new expiry; returns how many were.
const RENEW: &str = "local n = 0\n\
for i = 1, #KEYS do\n\
  if redis.call('ZSCORE', KEYS[i], ARGV[i + 1]) then\n\
    redis.call('ZADD', KEYS[i], 'XX', now + tonumber(ARGV[1]), ARGV[i + 1])\n\
    n = n + 1\n\
  end\n\
end\n\
return n\n";

/// KEYS: the node's accounts. ARGV: trunks key prefix, `{node_id}:`, lease ms, then
/// (account, member) pairs of the node's live holds. Drops every member of this node
/// that is not live, adds every live one (whatever the limit: those calls are up);
/// returns how many were dropped.
const RECONCILE: &str = "local live = {}\n\
for i = 4, #ARGV, 2 do live[ARGV[i + 1]] = ARGV[i] end\n\
local mine = ARGV[2]\n\
local dropped = 0\n\
for _, acc in ipairs(redis.call('SMEMBERS', KEYS[1])) do\n\
  local k = ARGV[1] .. acc\n\
  for _, m in ipairs(redis.call('ZRANGE', k, 0, -1)) do\n\
    if string.sub(m, 1, #mine) == mine and not live[m] then\n\
      redis.call('ZREM', k, m)\n\
      dropped = dropped + 1\n\
    end\n\
  end\n\
end\n\
redis.call('DEL', KEYS[1])\n\
for m, acc in pairs(live) do\n\
  redis.call('ZADD', ARGV[1] .. acc, now + tonumber(ARGV[3]), m)\n\
  redis.call('SADD', KEYS[1], acc)\n\
end\n\
return dropped\n";

/// KEYS: trunks of the account. Live members (expired ones dropped first).
const COUNT: &str = "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)\n\
return redis.call('ZCARD', KEYS[1])\n";

fn script(cell: &'static OnceLock<Script>, body: &str) -> &'static Script {
    cell.get_or_init(|| Script::new(&format!("{NOW_MS}{body}")))
}

/// This node's trunk holds in Redis.
#[derive(Debug, Clone)]
pub struct TrunkStore {
    redis: Redis,
    node: Arc<str>,
    lease_ms: u64,
}

impl TrunkStore {
    /// Holds of node `node_id` with leases of `lease`.
    pub fn new(redis: Redis, node_id: &str, lease: Duration) -> TrunkStore {
        TrunkStore {
            redis,
            node: Arc::from(node_id),
            lease_ms: u64::try_from(lease.as_millis()).unwrap_or(u64::MAX).max(1),
        }
    }

    /// The connection (its round-trip statistics).
    pub fn redis(&self) -> &Redis {
        &self.redis
    }

    fn trunks_key(&self, account: &str) -> String {
        self.redis.key(&format!("trunks:{account}"))
    }

    fn accounts_key(&self) -> String {
        self.redis.key(&format!("trunk-accounts:{}", self.node))
    }

    fn member(&self, hold: u64) -> String {
        format!("{}:{hold}", self.node)
    }

    /// Takes hold `hold` of `account` if fewer than `limit` are held across the cluster
    /// (one round trip). `Ok(false)`: the limit is reached.
    pub async fn take(&self, account: &str, hold: u64, limit: u32) -> Result<bool, RedisError> {
        static S: OnceLock<Script> = OnceLock::new();
        let mut inv = script(&S, TAKE).prepare_invoke();
        inv.key(self.trunks_key(account))
            .key(self.accounts_key())
            .arg(self.member(hold))
            .arg(limit)
            .arg(self.lease_ms)
            .arg(account);
        let taken: i64 = self.redis.script(&inv).await?;
        Ok(taken == 1)
    }

    /// Gives hold `hold` of `account` back (nothing if it is not there).
    pub async fn release(&self, account: &str, hold: u64) -> Result<(), RedisError> {
        let mut cmd = redis::cmd("ZREM");
        cmd.arg(self.trunks_key(account)).arg(self.member(hold));
        let _: i64 = self.redis.query(&cmd).await?;
        Ok(())
    }

    /// New leases for this node's live holds (one round trip per 1,000). Returns how
    /// many were still in Redis: fewer than `holds.len()` means Redis lost some (it
    /// restarted empty, or they lapsed): reconcile.
    pub async fn renew(&self, holds: &[(u64, Arc<str>)]) -> Result<usize, RedisError> {
        static S: OnceLock<Script> = OnceLock::new();
        if holds.is_empty() {
            // Nothing to renew: still one round trip, so a Redis gone away is noticed
            // (and reconciled when it is back) before a call depends on it.
            let _: String = self.redis.query(&redis::cmd("PING")).await?;
            return Ok(0);
        }
        let mut present = 0usize;
        for chunk in holds.chunks(CHUNK) {
            let mut inv = script(&S, RENEW).prepare_invoke();
            inv.arg(self.lease_ms);
            for (hold, account) in chunk {
                inv.key(self.trunks_key(account)).arg(self.member(*hold));
            }
            let n: i64 = self.redis.script(&inv).await?;
            present += usize::try_from(n).unwrap_or(0);
        }
        Ok(present)
    }

    /// Makes Redis hold exactly `holds` for this node: every member of this node that
    /// is not live (left by a previous life, or released while Redis was away) is
    /// dropped, every live one is added with a fresh lease whatever the limit (those
    /// calls are up). Run at start (no holds) and when Redis is back. Returns how many
    /// members were dropped.
    pub async fn reconcile(&self, holds: &[(u64, Arc<str>)]) -> Result<usize, RedisError> {
        static S: OnceLock<Script> = OnceLock::new();
        let mut inv = script(&S, RECONCILE).prepare_invoke();
        inv.key(self.accounts_key())
            .arg(self.redis.key("trunks:"))
            .arg(format!("{}:", self.node))
            .arg(self.lease_ms);
        // One script: a live hold must not be dropped by one call and added by another.
        for (hold, account) in holds {
            inv.arg(&**account).arg(self.member(*hold));
        }
        let n: i64 = self.redis.script(&inv).await?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Holds of `account` across the cluster whose lease has not lapsed.
    pub async fn in_use(&self, account: &str) -> Result<u64, RedisError> {
        static S: OnceLock<Script> = OnceLock::new();
        let mut inv = script(&S, COUNT).prepare_invoke();
        inv.key(self.trunks_key(account));
        let n: i64 = self.redis.script(&inv).await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
