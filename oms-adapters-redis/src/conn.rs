//! One connection type for a single Redis and for a Redis Cluster.

use std::time::Duration;

use oms_core::domain::{OmsError, OmsResult};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::unavailable;

/// How long connecting, and then each answer, may take.
const TIMEOUT: Duration = Duration::from_secs(2);

/// A connection to Redis, shared by every adapter of a
/// [`RedisTraceStore`](crate::RedisTraceStore): either one node, through a
/// [`ConnectionManager`] (reconnects by itself), or a Redis Cluster,
/// through a [`ClusterConnection`] (follows the slot map, `MOVED` and `ASK`
/// redirections and failovers; commands naming keys of several slots, such
/// as `MGET` and `DEL`, are split by slot).
///
/// Cloning is cheap: clones multiplex the same connections.
///
/// Every script and `MULTI` of the adapters names keys of one hash slot, so
/// they run on a cluster unchanged; the README's "Redis Cluster" section
/// says which keys share a slot, and so a node.
///
/// ```no_run
/// # async fn run() -> Result<(), oms_core::domain::OmsError> {
/// use oms_adapters_redis::{RedisConnection, RedisTraceStore};
///
/// let single = RedisConnection::connect("redis://127.0.0.1:16379/").await?;
/// let cluster = RedisConnection::connect_cluster([
///     "redis://127.0.0.1:17001",
///     "redis://127.0.0.1:17002",
///     "redis://127.0.0.1:17003",
/// ])
/// .await?;
/// assert!(cluster.is_cluster());
/// let traces = RedisTraceStore::new(cluster);
/// # let _ = (single, traces);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisConnection(Inner);

#[derive(Clone)]
enum Inner {
    Node(ConnectionManager),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.0 {
            Inner::Node(_) => "node",
            Inner::Cluster(_) => "cluster",
        };
        f.debug_tuple("RedisConnection").field(&kind).finish()
    }
}

impl RedisConnection {
    /// Connects to the Redis at `url` (`redis://[user:password@]host:port/[db]`)
    /// with bounded connect and response timeouts (2 s) and two retries.
    pub async fn connect(url: &str) -> OmsResult<Self> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(TIMEOUT)
            .set_response_timeout(TIMEOUT)
            .set_number_of_retries(2)
            .set_max_delay(500);
        let conn = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(unavailable)?;
        Ok(Self(Inner::Node(conn)))
    }

    /// Connects to the Redis Cluster that `nodes` belong to (URLs as for
    /// [`connect`](Self::connect), one or more of its nodes: the others are
    /// found from them), with bounded connect and response timeouts (2 s)
    /// and two retries. Fails when no node answers.
    pub async fn connect_cluster<I>(nodes: I) -> OmsResult<Self>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let nodes: Vec<String> = nodes
            .into_iter()
            .map(|n| n.as_ref().trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect();
        if nodes.is_empty() {
            return Err(OmsError::Invalid(
                "a Redis Cluster needs at least one node".into(),
            ));
        }
        let conn = ClusterClientBuilder::new(nodes)
            .connection_timeout(TIMEOUT)
            .response_timeout(TIMEOUT)
            .retries(2)
            .build()
            .map_err(unavailable)?
            .get_async_connection()
            .await
            .map_err(unavailable)?;
        Ok(Self(Inner::Cluster(conn)))
    }

    /// Whether this is a connection to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.0, Inner::Cluster(_))
    }
}

impl From<ConnectionManager> for RedisConnection {
    fn from(conn: ConnectionManager) -> Self {
        Self(Inner::Node(conn))
    }
}

impl From<ClusterConnection> for RedisConnection {
    fn from(conn: ClusterConnection) -> Self {
        Self(Inner::Cluster(conn))
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.0 {
            Inner::Node(conn) => conn.req_packed_command(cmd),
            Inner::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.0 {
            Inner::Node(conn) => conn.req_packed_commands(cmd, offset, count),
            Inner::Cluster(conn) => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Inner::Node(conn) => conn.get_db(),
            Inner::Cluster(conn) => conn.get_db(),
        }
    }
}
