//! The node's connection to Redis, bounded round trips and their accounting.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, FromRedisValue, Pipeline, Script, ScriptInvocation};
use trunkstore_config::Cluster;

/// Why a round trip gave no answer.
#[derive(Debug)]
pub enum RedisError {
    /// No answer within `cluster.timeout_ms`.
    Timeout,
    /// Redis (or the connection to it) failed; the text is redis-rs's, without secrets
    /// (URLs are never part of it).
    Failed(String),
}

impl fmt::Display for RedisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisError::Timeout => f.write_str("Redis did not answer in time"),
            RedisError::Failed(e) => write!(f, "Redis failed: {e}"),
        }
    }
}

impl std::error::Error for RedisError {}

impl From<redis::RedisError> for RedisError {
    fn from(e: redis::RedisError) -> Self {
        RedisError::Failed(e.to_string())
    }
}

/// Upper bounds (µs) of the round-trip histogram buckets; the last bucket is +Inf.
pub const ROUND_TRIP_BUCKETS_US: [u64; 10] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 1_000_000,
];

/// Round trips to Redis: a histogram of their times and a count of failures, read by
/// `/metrics`. Lock-free: every task of the node records into the same counters.
#[derive(Debug, Default)]
pub struct RoundTrips {
    buckets: [AtomicU64; ROUND_TRIP_BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
    timeouts: AtomicU64,
    errors: AtomicU64,
}

impl RoundTrips {
    fn record(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let i = ROUND_TRIP_BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(ROUND_TRIP_BUCKETS_US.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Round trips per bucket (not cumulative), the last one above every bound.
    pub fn buckets(&self) -> Vec<u64> {
        self.buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect()
    }

    /// Total time of the answered round trips, µs.
    pub fn sum_us(&self) -> u64 {
        self.sum_us.load(Ordering::Relaxed)
    }

    /// Round trips that got no answer in time.
    pub fn timeouts(&self) -> u64 {
        self.timeouts.load(Ordering::Relaxed)
    }

    /// Round trips that failed (connection down, Redis error).
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}

/// This node's connection to Redis (cheap to clone: one multiplexed connection).
///
/// redis-rs's `ConnectionManager` reconnects after a blip, but once Redis has been away
/// for a few seconds it stays on its dead connection for good (seen with 0.32: every
/// command times out after Redis is back). So a failed round trip also starts a fresh
/// connection in the background (at most one at a time, at most one a second) and swaps
/// it in: every task of the node finds Redis again once it is back.
#[derive(Clone)]
pub struct Redis {
    conn: Arc<ArcSwap<ConnectionManager>>,
    healing: Arc<Healing>,
    client: redis::Client,
    prefix: Arc<str>,
    timeout: Duration,
    stats: Arc<RoundTrips>,
}

impl fmt::Debug for Redis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the URL: it may carry a password.
        f.debug_struct("Redis")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Redis {
    /// Connects to the first of `cluster.redis` that answers. The connection then
    /// reconnects by itself (with backoff) whenever Redis goes away; commands meanwhile
    /// fail fast and count as errors.
    pub async fn connect(cluster: &Cluster) -> Result<Redis, RedisError> {
        let timeout = Duration::from_millis(u64::from(cluster.timeout_ms));
        let mut last = RedisError::Failed("no Redis URL configured".into());
        for url in &cluster.redis {
            match Self::connect_one(cluster, url, timeout).await {
                Ok((conn, client)) => {
                    return Ok(Redis {
                        conn: Arc::new(ArcSwap::from_pointee(conn)),
                        healing: Arc::default(),
                        client,
                        prefix: Arc::from(cluster.key_prefix.as_str()),
                        timeout,
                        stats: Arc::default(),
                    })
                }
                Err(e) => {
                    tracing::warn!(error = %e, "a Redis of cluster.redis did not answer");
                    last = e;
                }
            }
        }
        Err(last)
    }

    async fn connect_one(
        cluster: &Cluster,
        url: &str,
        timeout: Duration,
    ) -> Result<(ConnectionManager, redis::Client), RedisError> {
        let mut info: redis::ConnectionInfo = url.parse()?;
        if let Some(password) = &cluster.password {
            info.redis.password = Some(password.expose().to_owned());
        }
        if let Some(user) = &cluster.username {
            info.redis.username = Some(user.clone());
        }
        let client = match &cluster.tls_ca_file {
            Some(ca) => {
                let root_cert = std::fs::read(ca)
                    .map_err(|e| RedisError::Failed(format!("{}: {e}", ca.display())))?;
                let certs = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                };
                redis::Client::build_with_tls(info, certs)?
            }
            None => redis::Client::open(info)?,
        };
        Ok((manager(&client, timeout).await?, client))
    }

    /// A failed round trip: a fresh connection replaces the current one in the
    /// background, unless one is being made or one was made less than a second ago.
    fn heal(&self) {
        let now_ms = self.healing.epoch.elapsed().as_millis() as u64;
        let last = self.healing.last_ms.load(Ordering::Relaxed);
        if (last != 0 && now_ms.saturating_sub(last) < 1000)
            || self.healing.busy.swap(true, Ordering::AcqRel)
        {
            return;
        }
        self.healing.last_ms.store(now_ms.max(1), Ordering::Relaxed);
        let (client, timeout) = (self.client.clone(), self.timeout);
        let (conn, healing) = (self.conn.clone(), self.healing.clone());
        tokio::spawn(async move {
            match manager(&client, timeout).await {
                Ok(fresh) => {
                    conn.store(Arc::new(fresh));
                    tracing::info!("cluster: reconnected to Redis");
                }
                Err(e) => tracing::debug!(error = %e, "cluster: Redis still unreachable"),
            }
            healing.busy.store(false, Ordering::Release);
        });
    }

    /// `key_prefix` + `name`: every key this cluster uses.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The cluster's key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Round-trip statistics of this node, for `/metrics`.
    pub fn stats(&self) -> &Arc<RoundTrips> {
        &self.stats
    }

    /// A connection of its own, with no response timeout, for commands that wait on
    /// purpose (a blocking `XREAD` of a change stream): on the shared connection they
    /// would hold up every other command behind them.
    pub async fn dedicated(&self) -> Result<redis::aio::MultiplexedConnection, RedisError> {
        let config = redis::AsyncConnectionConfig::new().set_connection_timeout(self.timeout);
        let connect = self
            .client
            .get_multiplexed_async_connection_with_config(&config);
        match tokio::time::timeout(self.timeout * 4, connect).await {
            Ok(conn) => Ok(conn?),
            Err(_) => Err(RedisError::Timeout),
        }
    }

    /// One command, bounded and timed.
    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, RedisError> {
        let mut conn = (**self.conn.load()).clone();
        self.timed(async move { cmd.query_async::<T>(&mut conn).await })
            .await
    }

    /// A pipeline (one round trip), bounded and timed.
    pub async fn pipeline<T: FromRedisValue>(&self, pipe: &Pipeline) -> Result<T, RedisError> {
        let mut conn = (**self.conn.load()).clone();
        self.timed(async move { pipe.query_async::<T>(&mut conn).await })
            .await
    }

    /// A Lua script (by SHA, loaded on first use), bounded and timed: the way to check and
    /// change shared state atomically in one round trip.
    pub async fn script<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, RedisError> {
        let mut conn = (**self.conn.load()).clone();
        self.timed(async move { invocation.invoke_async::<T>(&mut conn).await })
            .await
    }

    /// Builds a script once (keep it in a `static`/`OnceLock` or a struct field).
    pub fn new_script(code: &str) -> Script {
        Script::new(code)
    }

    async fn timed<T>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, RedisError> {
        let start = Instant::now();
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => {
                self.stats.record(start.elapsed());
                Ok(v)
            }
            // The connection's own response timeout is the same bound, seen first.
            Ok(Err(e)) if e.is_timeout() => {
                self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                self.heal();
                Err(RedisError::Timeout)
            }
            Ok(Err(e)) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                // A script or command Redis refused is no reason to reconnect.
                if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
                    self.heal();
                }
                Err(e.into())
            }
            Err(_) => {
                self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                self.heal();
                Err(RedisError::Timeout)
            }
        }
    }
}

/// Reconnection state shared by the clones of one [`Redis`].
#[derive(Debug)]
struct Healing {
    busy: AtomicBool,
    /// When the last reconnection started, ms after `epoch` (0: never).
    last_ms: AtomicU64,
    epoch: Instant,
}

impl Default for Healing {
    fn default() -> Self {
        Healing {
            busy: AtomicBool::new(false),
            last_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

/// A connection manager whose connects and answers are bounded by `timeout`.
/// The longest wait between two connection attempts of one connect.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(1);

async fn manager(
    client: &redis::Client,
    timeout: Duration,
) -> Result<ConnectionManager, RedisError> {
    // The retry delay is bounded: redis-rs's default backoff grows without limit (a
    // refused connection took the CLI, whose timeout is a bulk script's 60 s, two minutes
    // to report); two retries at most a second apart are enough to ride out a blip.
    let max_delay = u64::try_from(timeout.min(MAX_RETRY_DELAY).as_millis()).unwrap_or(1_000);
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(timeout)
        .set_response_timeout(timeout)
        .set_number_of_retries(2)
        .set_max_delay(max_delay);
    let connect = ConnectionManager::new_with_config(client.clone(), config);
    match tokio::time::timeout(timeout * 4, connect).await {
        Ok(conn) => Ok(conn?),
        Err(_) => Err(RedisError::Timeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_by_upper_bound() {
        let s = RoundTrips::default();
        s.record(Duration::from_micros(80));
        s.record(Duration::from_micros(100));
        s.record(Duration::from_micros(101));
        s.record(Duration::from_secs(5));
        let b = s.buckets();
        assert_eq!((b[0], b[1], b[b.len() - 1]), (2, 1, 1));
        assert_eq!(s.sum_us(), 80 + 100 + 101 + 5_000_000);
    }
}
