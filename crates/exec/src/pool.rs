//! The warm pool: sandboxes created and started ahead of the jobs that will
//! use them, so a job only hands over its files. Each sandbox still serves one
//! job and is then destroyed; the pool never reuses a container.
//!
//! Filled lazily (the first job of a language misses and starts the fill),
//! refilled in the background after every hand-over, capped in total, and
//! idle sandboxes are destroyed after a while (the language refills on its
//! next use). Every sandbox carries the instance label, so a restart's crash
//! cleanup removes what a killed server left; an unused sandbox also kills
//! itself shortly after the pool would have retired it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use slipway_runtime::Runtime;

use crate::metrics::{lang, Metrics};
use crate::sandbox::{self, Shape, Warm};

/// Sizes and lifetimes of the warm pool.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Warm sandboxes kept per language once it has been used (0 disables the pool).
    pub size: usize,
    /// Per-language overrides of `size` (canonical names: `python`, `c`, …).
    pub sizes: BTreeMap<String, usize>,
    /// Warm sandboxes (idle or starting) across all languages.
    pub max_total: usize,
    /// An idle sandbox older than this is destroyed instead of used.
    pub idle: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            size: 2,
            sizes: BTreeMap::new(),
            max_total: 8,
            idle: Duration::from_secs(300),
        }
    }
}

impl PoolConfig {
    /// How long an unused sandbox waits for a job before killing itself.
    pub fn self_destruct(&self) -> Duration {
        self.idle + Duration::from_secs(60)
    }

    fn target(&self, language: &str) -> usize {
        self.sizes.get(language).copied().unwrap_or(self.size)
    }
}

#[derive(Default)]
struct State {
    idle: HashMap<Shape, VecDeque<Warm>>,
    starting: HashMap<Shape, usize>,
    /// Set by [`Pool::drain`]: nothing is started or kept any more.
    closed: bool,
}

impl State {
    fn total(&self) -> usize {
        self.idle.values().map(VecDeque::len).sum::<usize>() + self.starting.values().sum::<usize>()
    }
}

/// Warm sandboxes by shape.
pub(crate) struct Pool {
    rt: Runtime,
    instance: String,
    config: PoolConfig,
    metrics: Arc<Metrics>,
    state: Mutex<State>,
}

/// Longest [`Pool::drain`] waits for sandboxes that were still starting.
const DRAIN_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl Pool {
    pub(crate) fn new(
        rt: Runtime,
        instance: String,
        config: PoolConfig,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let pool = Arc::new(Pool {
            rt,
            instance,
            config,
            metrics,
            state: Mutex::new(State::default()),
        });
        let weak = Arc::downgrade(&pool);
        tokio::spawn(async move {
            for round in 0u64.. {
                if let Some(pool) = weak.upgrade() {
                    if round % 6 == 0 {
                        remove_never_started(&pool.rt).await;
                    }
                } else {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(10)).await;
                let Some(pool) = weak.upgrade() else { return };
                pool.retire_old();
            }
        });
        pool
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A warm sandbox of `shape`, if one is ready; either way the pool of
    /// `shape` is topped up in the background.
    pub(crate) fn take(self: &Arc<Self>, shape: Shape) -> Option<Warm> {
        let label = lang(&shape.def.language);
        let warm = {
            let mut st = self.lock();
            let queue = st.idle.entry(shape).or_default();
            let mut found = None;
            // Oldest first, skipping any that are too old to hand over.
            while let Some(w) = queue.pop_front() {
                if w.born.elapsed() < self.config.idle {
                    found = Some(w);
                    break;
                }
                self.discard(w);
            }
            self.metrics
                .pool_idle
                .get_or_create(&label)
                .set(queue.len() as i64);
            found
        };
        match &warm {
            Some(_) => self.metrics.pool_hits.get_or_create(&label).inc(),
            None => self.metrics.pool_misses.get_or_create(&label).inc(),
        };
        self.refill(shape);
        warm
    }

    /// Start sandboxes of `shape` until its target (or the global cap) is reached.
    fn refill(self: &Arc<Self>, shape: Shape) {
        let target = self.config.target(&shape.def.language);
        loop {
            {
                let mut st = self.lock();
                let have = st.idle.get(&shape).map_or(0, VecDeque::len)
                    + st.starting.get(&shape).copied().unwrap_or(0);
                if st.closed || have >= target || st.total() >= self.config.max_total {
                    return;
                }
                *st.starting.entry(shape).or_default() += 1;
            }
            let pool = self.clone();
            tokio::spawn(async move { pool.start_one(shape).await });
        }
    }

    async fn start_one(self: Arc<Self>, shape: Shape) {
        let name = format!(
            "slipway-exec-warm-{}-{}",
            self.instance,
            crate::service::random_hex(6)
        );
        let labels = sandbox::sandbox_labels(&self.instance, &shape);
        let made =
            sandbox::prepare(&self.rt, &name, shape, labels, self.config.self_destruct()).await;
        let unwanted = {
            let mut st = self.lock();
            match made {
                // Still counted as starting until it is gone, so a drain waits for it.
                Ok(warm) if st.closed => Some(warm),
                Ok(warm) => {
                    let queue = st.idle.entry(shape).or_default();
                    queue.push_back(warm);
                    let n = queue.len() as i64;
                    self.metrics
                        .pool_idle
                        .get_or_create(&lang(&shape.def.language))
                        .set(n);
                    None
                }
                // No retry loop: the next job of this shape tries again.
                Err(e) => {
                    tracing::warn!(container = %name, error = %e, "warm sandbox failed");
                    None
                }
            }
        };
        // Started while the pool was draining: it goes at once.
        if let Some(warm) = unwanted {
            sandbox::destroy(&self.rt, &warm.id).await;
        }
        if let Some(n) = self.lock().starting.get_mut(&shape) {
            *n = n.saturating_sub(1);
        }
    }

    /// Destroys every idle sandbox and stops refilling: a server that shuts
    /// down cleanly leaves no warm containers behind. Returns how many went.
    pub(crate) async fn drain(&self) -> usize {
        let idle: Vec<Warm> = {
            let mut st = self.lock();
            st.closed = true;
            st.idle.drain().flat_map(|(_, q)| q).collect()
        };
        let n = idle.len();
        futures::future::join_all(idle.iter().map(|w| sandbox::destroy(&self.rt, &w.id))).await;
        // Sandboxes still starting destroy themselves once up (the pool is
        // closed): wait for them, bounded, so none outlives the server.
        let deadline = tokio::time::Instant::now() + DRAIN_WAIT;
        while self.lock().starting.values().any(|n| *n > 0)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        n
    }

    /// Destroy idle sandboxes older than the idle limit.
    fn retire_old(&self) {
        let mut st = self.lock();
        for (shape, queue) in st.idle.iter_mut() {
            let before = queue.len();
            let (old, young): (VecDeque<Warm>, VecDeque<Warm>) = queue
                .drain(..)
                .partition(|w| w.born.elapsed() >= self.config.idle);
            *queue = young;
            for w in old {
                self.discard(w);
            }
            if queue.len() != before {
                self.metrics
                    .pool_idle
                    .get_or_create(&lang(&shape.def.language))
                    .set(queue.len() as i64);
            }
        }
    }

    fn discard(&self, warm: Warm) {
        let rt = self.rt.clone();
        tokio::spawn(async move { sandbox::destroy(&rt, &warm.id).await });
    }
}

/// Remove sandboxes of any instance that were created but never started
/// minutes ago: a server killed between create and start leaves them, and
/// unlike started ones they cannot remove themselves.
async fn remove_never_started(rt: &Runtime) {
    use bollard::container::ListContainersOptions;
    let labels = slipway_runtime::LabelFilter::managed()
        .with(slipway_runtime::labels::OWNER, "exec")
        .has(sandbox::POOL_LABEL)
        .to_docker();
    let filters = HashMap::from([
        ("label".to_string(), labels),
        ("status".to_string(), vec!["created".to_string()]),
    ]);
    let list = rt
        .docker()
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters,
            ..Default::default()
        }))
        .await;
    let Ok(list) = list else { return };
    let now = chrono::Utc::now().timestamp();
    for c in list {
        let (Some(id), Some(created)) = (c.id, c.created) else {
            continue;
        };
        if now - created > 600 {
            tracing::info!(container = %id, "removing a sandbox that was never started");
            sandbox::destroy(rt, &id).await;
        }
    }
}
