//! `FaultProxy`: a TCP proxy that passes, stalls, refuses, delays or cuts connections on demand.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::url;

/// Bytes read from one side before they are forwarded to the other.
const CHUNK_SIZE: usize = 16 * 1024;

/// What a [`FaultProxy`] does with connections; switch with [`FaultProxy::set_mode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forward bytes both ways unchanged.
    Pass,
    /// Forward nothing: new connections are accepted but never answered, and open ones go
    /// silent in both directions while staying open. Switching back resumes them.
    Stall,
    /// Close new connections as soon as they are accepted; open ones are closed when this
    /// mode is set.
    Refuse,
    /// Forward, waiting this long before each chunk of bytes, in each direction (so a
    /// request/response round trip takes at least twice as long).
    Latency(Duration),
}

/// State the connection tasks follow.
#[derive(Clone, Copy, Debug)]
struct Control {
    mode: ProxyMode,
    /// Bumped by `cut_all`: connections accepted under an older value close.
    cuts: u64,
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    open: AtomicUsize,
}

/// A fault-injecting TCP proxy on 127.0.0.1 in front of one upstream server.
///
/// Its tasks run on the tokio runtime that called [`FaultProxy::start`], which must outlive it.
/// Dropping the proxy closes its listener and every connection it holds (done by its tasks, so
/// it takes effect as soon as the runtime runs them).
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    control: watch::Sender<Control>,
    counters: Arc<Counters>,
    accept_loop: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free port of 127.0.0.1 and forwards each connection to `upstream`
    /// (`host:port`, e.g. [`PgServer::host_port`](crate::PgServer::host_port)), in
    /// [`ProxyMode::Pass`].
    ///
    /// Must be called within a tokio runtime. Fails if `upstream` does not resolve or the
    /// listener cannot be bound; upstream is only connected to when a client connects.
    pub async fn start(upstream: &str) -> io::Result<FaultProxy> {
        let upstream_addr = tokio::net::lookup_host(upstream).await?.next().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{upstream} resolves to no address"),
            )
        })?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (control, control_rx) = watch::channel(Control {
            mode: ProxyMode::Pass,
            cuts: 0,
        });
        let counters = Arc::new(Counters::default());
        let accept_loop = tokio::spawn(accept_loop(listener, upstream_addr, control_rx, counters.clone()));
        Ok(FaultProxy {
            addr,
            control,
            counters,
            accept_loop,
        })
    }

    /// The address the proxy listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `base_url` with its `host:port` replaced by the proxy's address.
    ///
    /// # Panics
    ///
    /// If `base_url` has no host (it must look like `postgres://user@host:port/db?params`).
    pub fn url_for(&self, base_url: &str) -> String {
        url::with_host_port(base_url, &self.addr.to_string())
            .unwrap_or_else(|| panic!("no host:port to replace in {base_url:?}"))
    }

    /// Switches the mode for new and open connections, effective immediately.
    pub fn set_mode(&self, mode: ProxyMode) {
        self.control.send_modify(|control| control.mode = mode);
    }

    /// The current mode.
    pub fn mode(&self) -> ProxyMode {
        self.control.borrow().mode
    }

    /// Closes every open connection now; the mode is unchanged.
    pub fn cut_all(&self) {
        self.control.send_modify(|control| control.cuts += 1);
    }

    /// Connections accepted since start, including refused ones.
    pub fn connections_accepted(&self) -> u64 {
        self.counters.accepted.load(Ordering::SeqCst)
    }

    /// Client connections accepted and not yet closed.
    pub fn open_connections(&self) -> usize {
        self.counters.open.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // Closes the listener; dropping `control` right after ends every connection task.
        self.accept_loop.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    control: watch::Receiver<Control>,
    counters: Arc<Counters>,
) {
    loop {
        match listener.accept().await {
            Ok((client, _)) => {
                counters.accepted.fetch_add(1, Ordering::SeqCst);
                let open = OpenConnection::new(counters.clone());
                tokio::spawn(serve(client, upstream, control.clone(), open));
            }
            // E.g. out of file descriptors: back off rather than spin.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Counts a connection as open for as long as its task holds this.
struct OpenConnection(Arc<Counters>);

impl OpenConnection {
    fn new(counters: Arc<Counters>) -> Self {
        counters.open.fetch_add(1, Ordering::SeqCst);
        Self(counters)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Forwards one connection until either side closes it or the proxy cuts it; returning drops,
/// and so closes, both sockets.
async fn serve(
    client: TcpStream,
    upstream: SocketAddr,
    control: watch::Receiver<Control>,
    _open: OpenConnection,
) {
    let cuts_at_accept = control.borrow().cuts;
    tokio::select! {
        // Checked first, so nothing is forwarded once a cut is due.
        biased;
        () = cut(control.clone(), cuts_at_accept) => {}
        _ = forward(client, upstream, control) => {}
    }
}

/// Resolves when the connection must close: `Refuse` mode, `cut_all`, or the proxy dropped.
async fn cut(mut control: watch::Receiver<Control>, cuts_at_accept: u64) {
    loop {
        let now = *control.borrow_and_update();
        if now.mode == ProxyMode::Refuse || now.cuts != cuts_at_accept {
            return;
        }
        if control.changed().await.is_err() {
            return;
        }
    }
}

async fn forward(
    client: TcpStream,
    upstream: SocketAddr,
    mut control: watch::Receiver<Control>,
) -> io::Result<()> {
    // A connection accepted while stalled gets no upstream until the stall ends.
    wait_for_traffic(&mut control).await?;
    let server = TcpStream::connect(upstream).await?;
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::try_join!(
        pump(client_read, server_write, control.clone()),
        pump(server_read, client_write, control),
    )?;
    Ok(())
}

/// Copies one direction chunk by chunk, obeying the mode before each chunk; passes EOF on.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut control: watch::Receiver<Control>,
) -> io::Result<()> {
    let mut buf = vec![0; CHUNK_SIZE];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        if let ProxyMode::Latency(delay) = wait_for_traffic(&mut control).await? {
            tokio::time::sleep(delay).await;
        }
        to.write_all(&buf[..n]).await?;
    }
}

/// Waits while the proxy stalls; returns the mode that lets traffic through.
async fn wait_for_traffic(control: &mut watch::Receiver<Control>) -> io::Result<ProxyMode> {
    loop {
        let mode = control.borrow_and_update().mode;
        if mode != ProxyMode::Stall {
            return Ok(mode);
        }
        control
            .changed()
            .await
            .map_err(|_| io::Error::other("proxy dropped"))?;
    }
}
