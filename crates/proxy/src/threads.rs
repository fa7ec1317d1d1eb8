//! Thread-per-core serving: N OS threads, each with its own single-threaded
//! Tokio runtime, so a connection, its upstream connections and their tasks
//! never leave one core. One acceptor hands each new connection to the
//! thread with the fewest open ones, which keeps the threads evenly loaded
//! (a shared listener or `SO_REUSEPORT` hashing can leave one thread with
//! most of the clients, and that thread then gets only one core's share).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::error::ProxyError;
use crate::proxy::{accept, Proxy};
use crate::sockio::SockIo;

/// The threads started by [`Proxy::serve_on`].
#[derive(Debug)]
pub struct ServeThreads {
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl ServeThreads {
    /// Number of serving threads.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Whether no thread runs (never true for a started server).
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Blocks until every serving thread ended (they run until the process
    /// exits unless one panics).
    pub fn join(self) {
        for h in self.handles {
            let _ = h.join();
        }
    }
}

/// A serving thread's inbox and its count of open client connections.
struct Worker {
    inbox: mpsc::UnboundedSender<(std::net::TcpStream, SocketAddr)>,
    open: Arc<AtomicUsize>,
}

/// Decrements a thread's open-connection count when its connection ends.
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Proxy {
    /// Serves plain HTTP on `listener` with `threads` threads (at least one),
    /// each running a current-thread Tokio runtime: the shape with the
    /// least cross-core traffic per request. Returns once the threads run;
    /// they serve until the process exits. Need not be called from a runtime.
    pub fn serve_on(
        &self,
        listener: std::net::TcpListener,
        threads: usize,
    ) -> Result<ServeThreads, ProxyError> {
        listener.set_nonblocking(true)?;
        let threads = threads.max(1);
        let mut workers = Vec::with_capacity(threads);
        let mut inboxes = Vec::with_capacity(threads);
        for _ in 0..threads {
            let (tx, rx) = mpsc::unbounded_channel();
            let open = Arc::new(AtomicUsize::new(0));
            workers.push(Worker {
                inbox: tx,
                open: open.clone(),
            });
            inboxes.push((rx, open));
        }
        let mut listener = Some(listener);
        let mut workers = Some(workers);
        let mut handles = Vec::with_capacity(threads);
        for (i, (rx, open)) in inboxes.into_iter().enumerate() {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let proxy = self.clone();
            // Thread 0 also runs the acceptor.
            let acceptor = (i == 0).then(|| (listener.take(), workers.take()));
            let handle = std::thread::Builder::new()
                .name(format!("slipway-proxy-{i}"))
                .spawn(move || {
                    rt.block_on(async move {
                        if let Some((Some(listener), Some(workers))) = acceptor {
                            match TcpListener::from_std(listener) {
                                Ok(l) => {
                                    tokio::spawn(distribute(l, workers));
                                }
                                Err(e) => tracing::error!(error = %e, "proxy listener failed"),
                            }
                        }
                        run_worker(proxy, rx, open).await
                    })
                })?;
            handles.push(handle);
        }
        Ok(ServeThreads { handles })
    }
}

/// Accepts connections and hands each to the least busy thread.
async fn distribute(listener: TcpListener, workers: Vec<Worker>) {
    let mut next = 0usize;
    loop {
        let Some((stream, remote)) = accept(&listener).await else {
            continue;
        };
        // Fewest open connections; ties go round robin.
        let n = workers.len();
        let pick = (0..n)
            .map(|k| (next + k) % n)
            .min_by_key(|&w| workers[w].open.load(Ordering::Relaxed))
            .unwrap_or(0);
        next = (pick + 1) % n;
        let worker = &workers[pick];
        let Ok(std) = stream.into_std() else {
            continue;
        };
        worker.open.fetch_add(1, Ordering::Relaxed);
        if worker.inbox.send((std, remote)).is_err() {
            worker.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Serves the connections handed to this thread.
async fn run_worker(
    proxy: Proxy,
    mut inbox: mpsc::UnboundedReceiver<(std::net::TcpStream, SocketAddr)>,
    open: Arc<AtomicUsize>,
) {
    tokio::spawn(keep_timers_armed());
    while let Some((std, remote)) = inbox.recv().await {
        let guard = Open(open.clone());
        let Ok(stream) = TcpStream::from_std(std) else {
            continue;
        };
        let inner = proxy.inner.clone();
        tokio::spawn(async move {
            inner
                .serve_connection(SockIo::new(stream), remote, "http")
                .await;
            drop(guard);
        });
    }
}

/// Keeps a timer due within half a second on this thread's runtime.
///
/// Every request arms timers (hyper's header-read timeout, the response
/// deadline), and Tokio wakes its IO driver through an eventfd whenever a
/// new timer is due before the earliest one the driver knew of when it last
/// woke, or when it knew of none. Under load that was one `write` syscall
/// per proxied request (`strace -c`). With this tick always due sooner than
/// any request timer, registering one never needs the wake-up; the tick
/// itself costs two wake-ups a second per serving thread.
async fn keep_timers_armed() {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
    }
}
