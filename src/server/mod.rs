//! Listeners, connections and the broker's lifetime: the only code that owns
//! sockets.
//!
//! Shutdown is one path: the handle (or a signal, in the binary) flips a
//! watch channel; listeners stop accepting; every connection answers the
//! requests it has already read and closes; then the logs are synced.

mod connection;
mod limits;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::broker::{AdvertisedListener, Broker};
use crate::config::BrokerConfig;
use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("no listener given")]
    NoListener,
    #[error("cannot resolve listener {listener}: {source}")]
    Resolve { listener: String, source: std::io::Error },
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("invalid advertised listener {0:?}: expected host:port")]
    AdvertisedListener(String),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
}

/// A running broker: its addresses, its state, and the way to stop it.
pub struct BrokerHandle {
    local_addrs: Vec<SocketAddr>,
    broker: Arc<Broker>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl BrokerHandle {
    /// The first bound address (for an ephemeral port, the port chosen).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addrs[0]
    }

    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// `host:port` to give clients as bootstrap servers.
    pub fn bootstrap(&self) -> String {
        self.local_addr().to_string()
    }

    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Stops the broker gracefully and waits until it has: no new
    /// connections, requests already read are answered, logs synced.
    pub async fn shutdown(mut self) {
        self.broker.begin_shutdown();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// Dropping the handle stops the broker too (without waiting for it).
impl Drop for BrokerHandle {
    fn drop(&mut self) {
        self.broker.begin_shutdown();
    }
}

/// Binds the listeners, opens the storage and starts serving.
pub async fn start(config: BrokerConfig) -> Result<BrokerHandle, StartError> {
    let (listeners, local_addrs) = bind_all(&config.listeners).await?;
    let advertised = advertised_listener(&config, &local_addrs)?;
    let broker = Arc::new(Broker::open(config, advertised.clone())?);
    for addr in &local_addrs {
        tracing::info!(%addr, advertised = %format!("{}:{}", advertised.host, advertised.port), "minikafka listening");
    }
    let task = tokio::spawn(serve(listeners, broker.clone()));
    Ok(BrokerHandle {
        local_addrs,
        broker,
        task: Some(task),
    })
}

async fn bind_all(listeners: &[String]) -> Result<(Vec<TcpListener>, Vec<SocketAddr>), StartError> {
    if listeners.is_empty() {
        return Err(StartError::NoListener);
    }
    let mut bound = Vec::new();
    let mut last_error = None;
    for listener in listeners {
        let addrs = tokio::net::lookup_host(listener.as_str())
            .await
            .map_err(|source| StartError::Resolve {
                listener: listener.clone(),
                source,
            })?;
        for addr in addrs {
            match listen(addr) {
                Ok(socket) => bound.push(socket),
                // A loopback without IPv6 (containers) should not stop the
                // broker when another address bound fine.
                Err(source) if addr.is_ipv6() && source.kind() == std::io::ErrorKind::AddrNotAvailable => {
                    tracing::warn!(%addr, error = %source, "IPv6 address unavailable; not listening on it");
                    last_error = Some(StartError::Bind { addr, source });
                }
                Err(source) => return Err(StartError::Bind { addr, source }),
            }
        }
    }
    if bound.is_empty() {
        return Err(last_error.unwrap_or(StartError::NoListener));
    }
    let addrs = bound
        .iter()
        .map(|l| l.local_addr())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| StartError::Bind {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            source,
        })?;
    Ok((bound, addrs))
}

/// How long a shutdown waits for connections to answer what they have
/// read before it closes them.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Connections the kernel may hold completed but not yet accepted. A burst
/// of connections past it would have some of theirs dropped and retried
/// seconds later (the kernel caps it at `net.core.somaxconn`).
const LISTEN_BACKLOG: u32 = 4096;

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As std's and tokio's own bind do, so a restarted broker can bind its
    // port while old connections linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

fn advertised_listener(config: &BrokerConfig, bound: &[SocketAddr]) -> Result<AdvertisedListener, StartError> {
    match &config.advertised_listener {
        Some(listener) => {
            let (host, port) =
                split_host_port(listener).ok_or_else(|| StartError::AdvertisedListener(listener.clone()))?;
            Ok(AdvertisedListener { host, port })
        }
        None => {
            // The host the first listener was given as, with the port it got.
            let host = config
                .listeners
                .first()
                .and_then(|l| split_host_port(l))
                .map(|(host, _)| host)
                .unwrap_or_else(|| bound[0].ip().to_string());
            Ok(AdvertisedListener {
                host,
                port: bound[0].port(),
            })
        }
    }
}

/// Splits `host:port`, `[v6]:port` into host (without brackets) and port.
fn split_host_port(listener: &str) -> Option<(String, u16)> {
    let (host, port) = listener.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| (host.to_string(), port))
}

async fn serve(listeners: Vec<TcpListener>, broker: Arc<Broker>) {
    // The broker's own tasks; each returns at shutdown.
    type Task = fn(Arc<Broker>) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
    let tasks: [Task; 5] = [
        |b| Box::pin(async move { b.run_group_timers().await }),
        |b| Box::pin(async move { b.run_retention().await }),
        |b| Box::pin(async move { b.run_flusher().await }),
        |b| Box::pin(async move { b.run_producer_expiry().await }),
        |b| Box::pin(async move { b.run_offset_expiry().await }),
    ];
    let mut background = JoinSet::new();
    for task in tasks {
        background.spawn(task(broker.clone()));
    }
    let limits = limits::Limits::new(broker.config());
    let mut accept_loops = JoinSet::new();
    for listener in listeners {
        accept_loops.spawn(accept_loop(listener, broker.clone(), limits.clone()));
    }
    while accept_loops.join_next().await.is_some() {}
    while background.join_next().await.is_some() {}
    broker.sync_all();
    tracing::info!("broker stopped; logs synced");
}

/// Socket options of an accepted connection. Failing to set one is not a
/// reason to refuse the client: it is served with the OS's default.
fn tune_accepted(socket: &tokio::net::TcpStream, config: &BrokerConfig) {
    // Answers are written whole, so Nagle would only delay their last segment.
    if let Err(e) = socket.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    if let Some(bytes) = config.socket_send_buffer_bytes
        && let Err(e) = rustix::net::sockopt::set_socket_send_buffer_size(socket, bytes)
    {
        tracing::debug!(error = %e, bytes, "cannot set SO_SNDBUF");
    }
}

/// Accepts connections until shutdown, then waits for them to finish.
/// Past `max.connections` it stops accepting until one closes; past
/// `max.connections.per.ip` it closes the new connection with a log line.
async fn accept_loop(listener: TcpListener, broker: Arc<Broker>, limits: Arc<limits::Limits>) {
    let mut shutdown = broker.shutdown_signal();
    let mut connections = JoinSet::new();
    loop {
        let permit = tokio::select! {
            permit = limits.connection_permit() => permit,
            _ = Broker::stopped(&mut shutdown) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let slot = match limits.admit(permit, peer.ip()) {
                        Ok(slot) => slot,
                        Err(count) => {
                            tracing::warn!(%peer, connections = count, "closing connection: max.connections.per.ip reached");
                            continue;
                        }
                    };
                    let span = tracing::info_span!("connection", %peer);
                    span.in_scope(|| tune_accepted(&socket, broker.config()));
                    let conn = connection::Connection::new(socket, peer, broker.clone(), limits.clone(), slot);
                    connections.spawn(conn.run().instrument(span));
                }
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            _ = Broker::stopped(&mut shutdown) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        // A client that reads nothing must not keep the logs from being
        // synced: its connection is cut, whatever it still had to get.
        tracing::warn!(
            connections = connections.len(),
            grace = ?SHUTDOWN_GRACE,
            "closing connections that did not finish answering in time"
        );
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_splitting() {
        assert_eq!(split_host_port("localhost:9092"), Some(("localhost".into(), 9092)));
        assert_eq!(split_host_port("[::1]:19092"), Some(("::1".into(), 19092)));
        assert_eq!(split_host_port("nohost"), None);
        assert_eq!(split_host_port(":9092"), None);
    }

    /// Both ends of a fresh loopback connection.
    async fn connected_pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        (client, accepted)
    }

    #[tokio::test]
    async fn accepted_connections_get_the_configured_send_buffer() {
        use rustix::net::sockopt::socket_send_buffer_size;
        let (_client, accepted) = connected_pair().await;
        let untouched = socket_send_buffer_size(&accepted).unwrap();

        let config = BrokerConfig {
            socket_send_buffer_bytes: Some(300_000),
            ..BrokerConfig::default()
        };
        tune_accepted(&accepted, &config);
        // Linux reports twice what was asked: the other half is its bookkeeping.
        let tuned = socket_send_buffer_size(&accepted).unwrap();
        assert!((300_000..=600_000).contains(&tuned), "SO_SNDBUF {tuned}");
        assert_ne!(tuned, untouched);
        assert!(accepted.nodelay().unwrap());

        let (_client, accepted) = connected_pair().await;
        let os_default = BrokerConfig {
            socket_send_buffer_bytes: None,
            ..BrokerConfig::default()
        };
        tune_accepted(&accepted, &os_default);
        assert_eq!(socket_send_buffer_size(&accepted).unwrap(), untouched);
    }
}
