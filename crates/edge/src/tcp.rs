//! TCP and TLS: listeners, connections and framing (the task that drives the TCP shard is
//! `tcp_driver`).
//!
//! TLS is TCP with a rustls session inside (one [`TcpShared`] per transport, the same
//! code): a TLS connection is admitted at accept exactly as a TCP one (caps, bans and the
//! per-source limit, counted together with TCP's), then the handshake runs, bounded by the
//! connect timeout; framing, queues and reuse per peer address are TCP's. An outbound
//! handshake that fails (bad certificate, unknown CA, no common version) is a transport
//! error for the peer (`tls_handshake`), so its transactions fail over at once.
//!
//! TCP connections are few and long-lived, so they run as tokio tasks on a one-thread
//! runtime. Each connection task reads into its own [`StreamFramer`] and writes what is
//! queued for it. Framed messages go to one driver task that owns the TCP side's shard
//! (its timers too) and calls the core. Any thread sends to a TCP peer through
//! [`TcpShared::send`]: the message is queued on the open connection to that address
//! (replies thus leave on the connection the request came in on) or a connection is opened
//! on demand. A framing error, an idle period or a stuck write closes only that connection.
//!
//! Protection (behaviour.md §8): at accept, a connection from a banned source or from a
//! source that already holds `max_per_source` inbound connections is closed at once
//! (carriers and IP-auth servers are never refused this way; the core decides, see
//! [`Gate`]); every read is checked against the bans before framing, so a connection whose
//! source got banned is closed at its next message without it being parsed.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::time::{sleep, sleep_until, timeout, Instant};
use trunkstore_proxy::auth::source_key;
use trunkstore_proxy::{Peer, TlsName, Transmit, Transport};
use trunkstore_sip::framing::StreamFramer;
use trunkstore_sip::limits::Limits;
use trunkstore_sip::message::Message;

use crate::core::Gate;
use crate::errors::ErrorKind;
use crate::tls::{server_name, ListenerTls};

/// Messages queued for one connection; beyond that the peer is not reading and further
/// sends fail (bounded memory per connection).
const CONN_QUEUE: usize = 256;
/// Framed messages waiting for the driver; readers wait when it is full.
pub(crate) const EVENT_QUEUE: usize = 1024;
/// Why a connection closed when a message could not be written (reported to the core).
const WRITE_FAILED: &str = "write failed";
/// Why a connection closed when the peer closed it (reported to the core if we opened it).
const CLOSED_BY_PEER: &str = "closed by peer";
/// Why a connection closed when a read failed, e.g. reset by the peer (as above).
const READ_FAILED: &str = "read error";
/// Read buffer headroom reserved before each read.
const READ_CHUNK: usize = 8 * 1024;

/// TCP tuning, from the settings.
#[derive(Debug, Clone)]
pub(crate) struct TcpConfig {
    pub(crate) idle: Duration,
    pub(crate) outbound_idle: Duration,
    pub(crate) connect_timeout: Duration,
    /// Cap on inbound connections, and separately on outbound ones.
    pub(crate) max_connections: usize,
    /// Cap on inbound connections from one source (carriers and IP-auth servers exempt).
    pub(crate) max_per_source: usize,
    /// A write that makes no progress this long closes the connection.
    pub(crate) write_timeout: Duration,
    pub(crate) limits: Limits,
}

/// What a connection reports to the driver.
pub(crate) enum TcpEvent {
    Message {
        from: Peer,
        local: SocketAddr,
        // Boxed: a parsed message carries its header index inline (~650 bytes).
        msg: Box<Message>,
    },
    /// A transport error for the peer, and what it was (for the counters).
    Error(Peer, ErrorKind),
    /// A DNS resolution a shard asked for finished (any shard may resume its request).
    Resolved(
        trunkstore_proxy::ResolveKey,
        Result<Vec<trunkstore_proxy::Peer>, String>,
    ),
    /// The cluster's verdict on a trunk take (any shard may resume the call).
    TrunkVerdict(
        trunkstore_proxy::TrunkKey,
        trunkstore_proxy::HoldId,
        trunkstore_proxy::Verdict,
    ),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Inbound,
    Outbound,
}

struct ConnEntry {
    id: u64,
    tx: mpsc::Sender<Bytes>,
    /// TLS, outbound: the configured name the server proved (`None`: its IP, or an
    /// inbound connection, where the peer proved nothing of the kind).
    name: Option<TlsName>,
}

impl ConnEntry {
    /// Can a message whose server must prove `name` go on this connection? One without a
    /// name goes on any; one with a name only on a connection verified for that name, so
    /// a connection verified for one carrier, or accepted from a peer, never carries what
    /// another name was required for.
    fn serves(&self, name: Option<&TlsName>) -> bool {
        name.is_none() || self.name.as_ref() == name
    }
}

/// Inbound connections open per source key, shared by TCP and TLS: one limit for both.
pub(crate) type PerSource = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// State shared by connection tasks and every thread that sends over TCP (or TLS: one
/// of these per transport).
pub(crate) struct TcpShared {
    cfg: TcpConfig,
    /// `Tcp`, or `Tls` with its client configuration.
    transport: Transport,
    /// TLS only: how outbound connections are secured.
    client: Option<Arc<rustls::ClientConfig>>,
    /// Bound listener addresses (ephemeral ports resolved).
    listeners: Vec<SocketAddr>,
    conns: Mutex<HashMap<SocketAddr, ConnEntry>>,
    /// TLS: the configured name each address last proved (see [`TcpShared::name_for`]).
    proved: Mutex<HashMap<SocketAddr, TlsName>>,
    next_id: AtomicU64,
    inbound: AtomicUsize,
    outbound: AtomicUsize,
    /// Inbound connections open per source key; no entry at zero, so it holds at most
    /// `max_connections` entries per transport.
    per_source: PerSource,
    events: mpsc::Sender<TcpEvent>,
    rt: tokio::runtime::Handle,
    /// The core's answers on bans and per-source limits.
    gate: Arc<dyn Gate>,
}

impl TcpShared {
    /// The TCP driver's event channel (DNS outcomes go there too).
    pub(crate) fn events(&self) -> mpsc::Sender<TcpEvent> {
        self.events.clone()
    }

    pub(crate) fn new(
        cfg: TcpConfig,
        listeners: Vec<SocketAddr>,
        events: mpsc::Sender<TcpEvent>,
        rt: tokio::runtime::Handle,
        gate: Arc<dyn Gate>,
    ) -> TcpShared {
        TcpShared {
            cfg,
            transport: Transport::Tcp,
            client: None,
            listeners,
            conns: Mutex::new(HashMap::new()),
            proved: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            inbound: AtomicUsize::new(0),
            outbound: AtomicUsize::new(0),
            per_source: PerSource::default(),
            events,
            rt,
            gate,
        }
    }

    /// The TLS transport beside `tcp`: same tuning, events and gate, the same per-source
    /// counts (a source's TCP and TLS connections count against one limit), its own
    /// listeners, connections and caps.
    pub(crate) fn tls(
        tcp: &TcpShared,
        listeners: Vec<SocketAddr>,
        client: Arc<rustls::ClientConfig>,
    ) -> TcpShared {
        TcpShared {
            cfg: tcp.cfg.clone(),
            transport: Transport::Tls,
            client: Some(client),
            listeners,
            conns: Mutex::new(HashMap::new()),
            proved: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            inbound: AtomicUsize::new(0),
            outbound: AtomicUsize::new(0),
            per_source: tcp.per_source.clone(),
            events: tcp.events.clone(),
            rt: tcp.rt.clone(),
            gate: tcp.gate.clone(),
        }
    }

    fn peer(&self, addr: SocketAddr) -> Peer {
        Peer {
            transport: self.transport,
            addr,
        }
    }

    /// Open connections (inbound, outbound).
    pub(crate) fn connection_counts(&self) -> (usize, usize) {
        (
            self.inbound.load(Ordering::Relaxed),
            self.outbound.load(Ordering::Relaxed),
        )
    }

    fn conns(&self) -> MutexGuard<'_, HashMap<SocketAddr, ConnEntry>> {
        // A panic elsewhere while holding the lock leaves a consistent map.
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a message for `t.to` on its open connection, or opens one. Never blocks.
    /// `Err` names the peer when the message cannot be sent (too many connections, or the
    /// peer stopped reading).
    pub(crate) fn send(self: &Arc<Self>, t: Transmit) -> Result<(), Peer> {
        let remote = t.to.addr;
        let name = t.tls_name;
        let mut conns = self.conns();
        let mut data = t.data;
        if let Some(c) = conns.get(&remote).filter(|c| c.serves(name.as_ref())) {
            match c.tx.try_send(data) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(_)) => {
                    tracing::debug!(%remote, "TCP send queue full");
                    return Err(t.to);
                }
                Err(TrySendError::Closed(d)) => {
                    conns.remove(&remote);
                    data = d;
                }
            }
        }
        if self.outbound.load(Ordering::Relaxed) >= self.cfg.max_connections {
            tracing::debug!(%remote, "outbound TCP connection cap reached");
            return Err(t.to);
        }
        let name = name.or_else(|| self.name_for(remote));
        let (tx, rx) = mpsc::channel(CONN_QUEUE);
        // A new channel has room for the first message.
        let _ = tx.try_send(data);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // A connection to the same address that does not serve `name` stays open for its
        // own traffic; new messages to the address go on this one.
        conns.insert(
            remote,
            ConnEntry {
                id,
                tx,
                name: name.clone(),
            },
        );
        self.outbound.fetch_add(1, Ordering::Relaxed);
        drop(conns);
        let dial = Dial {
            remote,
            from: t.from,
            name,
        };
        self.rt
            .spawn(outbound_connection(self.clone(), dial, rx, id));
        Ok(())
    }

    fn proved(&self) -> MutexGuard<'_, HashMap<SocketAddr, TlsName>> {
        self.proved.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The name a message sent without one (an in-dialog request, a response) must see
    /// proved when a new connection to `remote` is opened: the configured name this
    /// address proved for an earlier request of the proxy's own routing, if any. Without
    /// it, a carrier whose certificate names only its domain could not be reached again
    /// once the call's connection closed (a BYE after `tcp_outbound_idle_timeout`). It
    /// widens nothing: the name is still one the configuration gave, proved by this very
    /// address; else the address proves its IP.
    fn name_for(&self, remote: SocketAddr) -> Option<TlsName> {
        if self.transport != Transport::Tls {
            return None;
        }
        self.proved().get(&remote).cloned()
    }

    /// `remote` proved `name` in a handshake. Bounded like the connections: past
    /// `max_connections` addresses an arbitrary one is forgotten.
    fn remember_proved(&self, remote: SocketAddr, name: &TlsName) {
        let mut proved = self.proved();
        if proved.len() >= self.cfg.max_connections && !proved.contains_key(&remote) {
            if let Some(any) = proved.keys().next().copied() {
                proved.remove(&any);
            }
        }
        proved.insert(remote, name.clone());
    }

    fn per_source(&self) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.per_source.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Accepting a connection from `remote`: counts it against its source unless the
    /// core refuses it (banned, or the source is at its limit). Only the accept path
    /// takes this lock.
    fn admit_inbound(&self, remote: SocketAddr) -> bool {
        let key = source_key(remote.ip());
        let mut open = self.per_source();
        let n = open.get(&key).copied().unwrap_or(0);
        let now = std::time::Instant::now();
        if !self
            .gate
            .admits_connection(remote, n, self.cfg.max_per_source, now)
        {
            return false;
        }
        *open.entry(key).or_insert(0) += 1;
        true
    }

    /// An inbound connection from `remote` closed.
    fn release_inbound(&self, remote: SocketAddr) {
        let key = source_key(remote.ip());
        let mut open = self.per_source();
        if let Some(n) = open.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&key);
            }
        }
    }

    /// Registers a connection to `remote`; returns its id and its send queue.
    fn register(&self, remote: SocketAddr) -> (u64, mpsc::Receiver<Bytes>) {
        let (tx, rx) = mpsc::channel(CONN_QUEUE);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.conns()
            .insert(remote, ConnEntry { id, tx, name: None });
        (id, rx)
    }

    /// Forgets a closed connection (unless another one to that address replaced it).
    fn forget(&self, remote: SocketAddr, id: u64, dir: Direction) {
        let mut conns = self.conns();
        if conns.get(&remote).is_some_and(|c| c.id == id) {
            conns.remove(&remote);
        }
        drop(conns);
        let count = match dir {
            Direction::Inbound => {
                self.release_inbound(remote);
                &self.inbound
            }
            Direction::Outbound => &self.outbound,
        };
        count.fetch_sub(1, Ordering::Relaxed);
    }

    /// The listener address an outbound connection speaks for: the one asked for, else the
    /// first TCP listener of the family, else the socket's own address.
    fn local_for(
        &self,
        from: Option<SocketAddr>,
        remote: SocketAddr,
        stream: &TcpStream,
    ) -> SocketAddr {
        let same_family = |a: &SocketAddr| a.is_ipv4() == remote.is_ipv4();
        from.filter(same_family)
            .or_else(|| self.listeners.iter().copied().find(same_family))
            .or_else(|| stream.local_addr().ok())
            .unwrap_or(remote)
    }

    async fn connect(&self, remote: SocketAddr, from: Option<SocketAddr>) -> io::Result<TcpStream> {
        let socket = if remote.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        // Leave from the listener's address (its port is in use, so any port).
        if let Some(f) =
            from.filter(|f| f.is_ipv4() == remote.is_ipv4() && !f.ip().is_unspecified())
        {
            socket.bind(SocketAddr::new(f.ip(), 0))?;
        }
        match timeout(self.cfg.connect_timeout, socket.connect(remote)).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
        }
    }

    async fn report_error(&self, peer: Peer, kind: ErrorKind) {
        let _ = self.events.send(TcpEvent::Error(peer, kind)).await;
    }
}

/// Binds a TCP listener (non-blocking, for the runtime to adopt).
pub(crate) fn bind_listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    // Restart at once although old connections linger in TIME_WAIT.
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// Accepts connections on one listener until the runtime stops; `tls`: the listener's
/// TLS configuration (a TLS listener), read at each accept so a reload applies to the
/// next connection.
pub(crate) async fn accept_loop(
    shared: Arc<TcpShared>,
    listener: std::net::TcpListener,
    local: SocketAddr,
    tls: Option<Arc<ListenerTls>>,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(%local, error = %e, "cannot use TCP listener");
            return;
        }
    };
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors or a connection reset before accept: wait a little.
                tracing::warn!(%local, error = %e, "TCP accept failed");
                sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        if shared.inbound.load(Ordering::Relaxed) >= shared.cfg.max_connections {
            tracing::debug!(%remote, "TCP connection cap reached, closing new connection");
            drop(stream);
            continue;
        }
        if !shared.admit_inbound(remote) {
            // Nothing is read or sent: the peer sees the connection closed.
            tracing::debug!(%remote, "TCP connection refused (banned or per-source limit)");
            drop(stream);
            continue;
        }
        shared.inbound.fetch_add(1, Ordering::Relaxed);
        let (id, rx) = shared.register(remote);
        let conn = Connection {
            shared: shared.clone(),
            remote,
            local,
            id,
            dir: Direction::Inbound,
        };
        match &tls {
            None => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(conn.run(stream, rx));
            }
            Some(l) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(l.config());
                tokio::spawn(accept_tls(conn, acceptor, stream, rx));
            }
        }
    }
}

/// The server side of a TLS handshake, then the connection. A peer that fails it (no
/// client certificate when one is required, garbage, too slow) is only logged: nothing
/// was pending toward it.
async fn accept_tls(
    conn: Connection,
    acceptor: tokio_rustls::TlsAcceptor,
    stream: TcpStream,
    rx: mpsc::Receiver<Bytes>,
) {
    let _ = stream.set_nodelay(true);
    let handshake = timeout(conn.shared.cfg.connect_timeout, acceptor.accept(stream)).await;
    match handshake {
        Ok(Ok(tls)) => conn.run(tls, rx).await,
        Ok(Err(e)) => {
            tracing::debug!(remote = %conn.remote, error = %e, "TLS handshake failed (inbound)");
            conn.shared.forget(conn.remote, conn.id, conn.dir);
        }
        Err(_) => {
            tracing::debug!(remote = %conn.remote, "TLS handshake timed out (inbound)");
            conn.shared.forget(conn.remote, conn.id, conn.dir);
        }
    }
}

/// Where an outbound connection goes: the address, the listener it speaks for, and for
/// TLS the configured name the server must prove (`None`: its IP).
struct Dial {
    remote: SocketAddr,
    from: Option<SocketAddr>,
    name: Option<TlsName>,
}

async fn outbound_connection(
    shared: Arc<TcpShared>,
    dial: Dial,
    rx: mpsc::Receiver<Bytes>,
    id: u64,
) {
    let Dial { remote, from, name } = dial;
    let peer = shared.peer(remote);
    match shared.connect(remote, from).await {
        Ok(stream) => {
            let local = shared.local_for(from, remote, &stream);
            let _ = stream.set_nodelay(true);
            let conn = Connection {
                shared: shared.clone(),
                remote,
                local,
                id,
                dir: Direction::Outbound,
            };
            let Some(client) = shared.client.clone() else {
                conn.run(stream, rx).await;
                return;
            };
            let server = match server_name(remote, name.as_ref()) {
                Ok(server) => server,
                Err(why) => return handshake_failed(&shared, remote, id, &why).await,
            };
            let connector = tokio_rustls::TlsConnector::from(client);
            let handshake = timeout(
                shared.cfg.connect_timeout,
                connector.connect(server, stream),
            )
            .await;
            if let (Ok(Ok(_)), Some(name)) = (&handshake, &name) {
                shared.remember_proved(remote, name);
            }
            let name = name.as_ref().map_or("(its IP address)", TlsName::as_str);
            match handshake {
                Ok(Ok(tls)) => conn.run(tls, rx).await,
                Ok(Err(e)) => {
                    let why = format!("verifying {name}: {e}");
                    handshake_failed(&shared, remote, id, &why).await;
                }
                Err(_) => handshake_failed(&shared, remote, id, "timed out").await,
            }
        }
        Err(e) => {
            tracing::debug!(%remote, error = %e, "TCP connect failed");
            shared.forget(remote, id, Direction::Outbound);
            shared.report_error(peer, ErrorKind::TcpConnect).await;
        }
    }
}

/// An outbound TLS handshake failed (the server's certificate refused, no common
/// protocol, a reset): what was queued is lost and the peer's transactions fail now.
async fn handshake_failed(shared: &TcpShared, remote: SocketAddr, id: u64, why: &str) {
    tracing::warn!(%remote, error = why, "TLS handshake failed");
    shared.forget(remote, id, Direction::Outbound);
    shared
        .report_error(shared.peer(remote), ErrorKind::TlsHandshake)
        .await;
}

/// One open connection.
struct Connection {
    shared: Arc<TcpShared>,
    remote: SocketAddr,
    /// The listener address handed to the core as where the message arrived.
    local: SocketAddr,
    id: u64,
    dir: Direction,
}

impl Connection {
    async fn run<S>(self, mut stream: S, mut rx: mpsc::Receiver<Bytes>)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let idle = match self.dir {
            Direction::Inbound => self.shared.cfg.idle,
            Direction::Outbound => self.shared.cfg.outbound_idle,
        };
        let mut framer = StreamFramer::new(self.shared.cfg.limits);
        let mut deadline = Instant::now() + idle;
        let why = loop {
            reserve(framer.buffer_mut());
            tokio::select! {
                r = stream.read_buf(framer.buffer_mut()) => match r {
                    Ok(0) => break CLOSED_BY_PEER,
                    Ok(_) => {
                        // Banned since it connected: closed before anything is framed.
                        if !self.shared.gate.admits(self.remote, std::time::Instant::now()) {
                            break "source banned";
                        }
                        deadline = Instant::now() + idle;
                        if let Err(why) = self.take_messages(&mut framer, &mut stream).await {
                            break why;
                        }
                    }
                    Err(_) => break READ_FAILED,
                },
                m = rx.recv() => match m {
                    Some(data) => {
                        deadline = Instant::now() + idle;
                        if let Err(why) = self.write(&mut stream, &data).await {
                            break why;
                        }
                    }
                    // Our queue was replaced by another connection to the same address.
                    None => break "superseded",
                },
                _ = sleep_until(deadline) => break "idle",
            }
        };
        tracing::debug!(remote = %self.remote, transport = ?self.shared.transport, why, "connection closed");
        // Forget first, so a retry after the error opens a new connection.
        self.shared.forget(self.remote, self.id, self.dir);
        if let Some(kind) = self.failure(why) {
            let peer = self.shared.peer(self.remote);
            self.shared.report_error(peer, kind).await;
        }
    }

    /// Is closing for `why` a transport error the core must hear about? A failed write
    /// always (a message was lost); a reset or close by the peer of a connection we
    /// opened too: requests we sent on it wait for responses that can no longer come
    /// (RFC 3261 §18.1.2 sends them back on the same connection), so their transactions
    /// fail over now instead of at timer B. The core ignores it when nothing is pending.
    /// An inbound connection's close is not: the next send to it opens a new connection,
    /// whose failure is reported.
    fn failure(&self, why: &str) -> Option<ErrorKind> {
        match why {
            WRITE_FAILED => Some(ErrorKind::TcpWrite),
            CLOSED_BY_PEER | READ_FAILED if self.dir == Direction::Outbound => {
                Some(ErrorKind::TcpClosed)
            }
            _ => None,
        }
    }

    /// Hands every complete message to the driver and answers keep-alive pings.
    async fn take_messages<S: AsyncWrite + Unpin>(
        &self,
        framer: &mut StreamFramer,
        stream: &mut S,
    ) -> Result<(), &'static str> {
        let from = self.shared.peer(self.remote);
        loop {
            match framer.next_message() {
                Ok(Some(msg)) => {
                    let ev = TcpEvent::Message {
                        from,
                        local: self.local,
                        msg: Box::new(msg),
                    };
                    self.shared
                        .events
                        .send(ev)
                        .await
                        .map_err(|_| "shutting down")?;
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(remote = %self.remote, error = %e, "TCP framing error");
                    return Err("framing error");
                }
            }
        }
        // RFC 5626 §4.4.1: each double-CRLF ping is answered with one CRLF.
        for _ in 0..framer.take_pings() {
            self.write(stream, b"\r\n").await?;
        }
        Ok(())
    }

    async fn write<S: AsyncWrite + Unpin>(
        &self,
        stream: &mut S,
        data: &[u8],
    ) -> Result<(), &'static str> {
        // The flush pushes a TLS record out of rustls's buffer (a no-op for TCP).
        let write = async {
            stream.write_all(data).await?;
            stream.flush().await
        };
        let ok = matches!(
            timeout(self.shared.cfg.write_timeout, write).await,
            Ok(Ok(()))
        );
        if ok {
            Ok(())
        } else {
            Err(WRITE_FAILED)
        }
    }
}

/// Makes room for the next read without growing the buffer byte by byte. The framer
/// bounds the total (an unterminated head over the message size limit is an error).
fn reserve(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_CHUNK / 2 {
        buf.reserve(READ_CHUNK);
    }
}
