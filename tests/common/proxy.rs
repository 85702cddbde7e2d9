//! A fault-injecting TCP proxy on 127.0.0.1, between the library and a database server.
//!
//! Every fault counts how often it fired, so a test can prove that its fault really happened.
//! - [`FaultProxy::cut_all`] closes every open connection now (both directions).
//! - [`FaultProxy::swallow_reply_to`]: the next statement whose bytes contain the pattern (for
//!   example `COMMIT`) is forwarded to the server; the server's answer is read, thrown away,
//!   and the connection is closed. The server did the work; the client never learns it.
//! - [`FaultProxy::delay`]: statements containing the pattern are held for a while before they
//!   are forwarded.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Default)]
struct Rules {
    /// (pattern, how many more times).
    swallow: Option<(Vec<u8>, u32)>,
    delay: Option<(Vec<u8>, Duration)>,
}

#[derive(Default)]
pub struct Counters {
    pub connections: AtomicU64,
    pub cuts: AtomicU64,
    pub swallowed: AtomicU64,
    pub delayed: AtomicU64,
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    pub counters: Arc<Counters>,
    rules: Arc<Mutex<Rules>>,
    /// Bumped by `cut_all`; every connection task watches it.
    generation: watch::Sender<u64>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.generation.send_modify(|g| *g += 1);
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

impl FaultProxy {
    /// Starts a proxy in front of `upstream` (host:port on 127.0.0.1).
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        assert!(
            upstream.ip().is_loopback(),
            "the proxy only ever talks to 127.0.0.1"
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let counters = Arc::new(Counters::default());
        let rules = Arc::new(Mutex::new(Rules::default()));
        let (generation, _) = watch::channel(0u64);
        let accept = {
            let counters = counters.clone();
            let rules = rules.clone();
            let generation = generation.clone();
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        continue;
                    };
                    counters.connections.fetch_add(1, Ordering::Relaxed);
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    tokio::spawn(relay(
                        client,
                        server,
                        rules.clone(),
                        counters.clone(),
                        generation.subscribe(),
                    ));
                }
            })
        };
        FaultProxy {
            addr,
            counters,
            rules,
            generation,
            accept,
        }
    }

    /// The database URL `url` rewritten to go through this proxy.
    pub fn url(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("URL with a scheme");
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let userinfo = authority
            .rsplit_once('@')
            .map(|(u, _)| format!("{u}@"))
            .unwrap_or_default();
        format!("{scheme}://{userinfo}{}/{path}", self.addr)
    }

    /// Closes every open connection.
    pub fn cut_all(&self) {
        self.counters.cuts.fetch_add(1, Ordering::Relaxed);
        self.generation.send_modify(|g| *g += 1);
    }

    /// The next `times` statements containing `pattern` reach the server, and their answers
    /// are lost together with the connection.
    pub fn swallow_reply_to(&self, pattern: &str, times: u32) {
        self.rules.lock().unwrap().swallow = Some((pattern.as_bytes().to_vec(), times));
    }

    /// Statements containing `pattern` wait `by` before they are forwarded (`None` clears).
    pub fn delay(&self, pattern: Option<(&str, Duration)>) {
        self.rules.lock().unwrap().delay = pattern.map(|(p, d)| (p.as_bytes().to_vec(), d));
    }

    pub fn swallowed(&self) -> u64 {
        self.counters.swallowed.load(Ordering::Relaxed)
    }

    pub fn delayed(&self) -> u64 {
        self.counters.delayed.load(Ordering::Relaxed)
    }
}

/// The proxy's address for a server URL's host and port.
pub fn upstream_of(url: &str) -> SocketAddr {
    let rest = url.split_once("://").expect("URL with a scheme").1;
    let authority = rest.split('/').next().unwrap();
    let host_port = authority
        .rsplit_once('@')
        .map(|(_, h)| h)
        .unwrap_or(authority);
    let host_port = host_port.replace("localhost", "127.0.0.1");
    let default_port = if url.starts_with("postgres") {
        5432
    } else {
        3306
    };
    let host_port = if host_port.contains(':') {
        host_port
    } else {
        format!("{host_port}:{default_port}")
    };
    host_port.parse().expect("127.0.0.1:port")
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    rules: Arc<Mutex<Rules>>,
    counters: Arc<Counters>,
    mut generation: watch::Receiver<u64>,
) {
    let (mut c_read, mut c_write) = client.into_split();
    let (mut s_read, mut s_write) = server.into_split();
    // Set when a swallowed statement went to the server: its answer must not reach the client.
    let (swallow_tx, swallow_rx) = watch::channel(false);
    let upstream = {
        let rules = rules.clone();
        let counters = counters.clone();
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match c_read.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let chunk = &buf[..n];
                let (delay, swallow) = {
                    let mut rules = rules.lock().unwrap();
                    let delay = rules
                        .delay
                        .as_ref()
                        .filter(|(p, _)| contains(chunk, p))
                        .map(|(_, d)| *d);
                    let swallow = match &mut rules.swallow {
                        Some((p, left)) if *left > 0 && contains(chunk, p) => {
                            *left -= 1;
                            true
                        }
                        _ => false,
                    };
                    (delay, swallow)
                };
                if let Some(d) = delay {
                    counters.delayed.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(d).await;
                }
                if swallow {
                    let _ = swallow_tx.send(true);
                }
                if s_write.write_all(chunk).await.is_err() {
                    return;
                }
            }
        }
    };
    let downstream = {
        let counters = counters.clone();
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match s_read.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if *swallow_rx.borrow() {
                    // The server answered the swallowed statement: drop the answer and the
                    // connection.
                    counters.swallowed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                if c_write.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    };
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
        _ = generation.changed() => {}
    }
}
