//! A lease kept alive in the background: the heartbeat of a node or a server.

use super::{ClusterError, ClusterStore, Result};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// A granted lease renewed every TTL/3. When renewals stop succeeding for a
/// whole TTL (or etcd says the lease is gone) the session is lost: every key
/// put with it is deleted by etcd, and [`Session::lost`] completes.
pub struct Session {
    id: i64,
    ttl: Duration,
    alive: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
    store: ClusterStore,
}

impl Session {
    /// Grants a lease of the store's TTL and starts renewing it.
    pub async fn start(store: &ClusterStore) -> Result<Self> {
        let ttl_secs = store.options().lease_ttl.as_millis().div_ceil(1000).max(1) as i64;
        let grant = store
            .call(|mut c| async move { c.lease_grant(ttl_secs, None).await })
            .await?;
        let id = grant.id();
        // etcd may raise a TTL below its minimum; renew on what it granted.
        let ttl = Duration::from_secs(grant.ttl().max(1) as u64);
        let (tx, alive) = watch::channel(true);
        let task = tokio::spawn(keep_alive(store.clone(), id, ttl, tx));
        Ok(Self {
            id,
            ttl,
            alive,
            task,
            store: store.clone(),
        })
    }

    /// The lease id (to put keys with it).
    pub fn id(&self) -> i64 {
        self.id
    }

    /// The lease's TTL as granted.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Whether renewals still succeed.
    pub fn is_alive(&self) -> bool {
        *self.alive.borrow()
    }

    /// Completes when the lease is lost.
    pub async fn lost(&self) {
        let mut rx = self.alive.clone();
        let _ = rx.wait_for(|alive| !alive).await;
    }

    /// Stops renewing without revoking: the lease expires after its TTL, as
    /// if the process had died (tests use this to simulate a crash).
    pub fn abandon(self) {
        self.task.abort();
    }

    /// Stops renewing and revokes the lease: its keys go at once.
    pub async fn close(self) -> Result<()> {
        self.task.abort();
        let id = self.id;
        match self
            .store
            .call(|mut c| async move { c.lease_revoke(id).await })
            .await
        {
            Ok(_) => Ok(()),
            // Already gone is fine.
            Err(ClusterError::Etcd(e)) if e.to_string().contains("not found") => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Renews `id` every `ttl/3`; reopens the stream (possibly on another etcd
/// member) after errors until the lease's known deadline passes.
async fn keep_alive(store: ClusterStore, id: i64, ttl: Duration, alive: watch::Sender<bool>) {
    let interval = ttl / 3;
    // The lease is certainly valid until this instant.
    let mut deadline = Instant::now() + ttl;
    'reopen: loop {
        if Instant::now() >= deadline {
            break;
        }
        let mut c = store.client();
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Ok((mut keeper, mut stream))) =
            tokio::time::timeout(left, c.lease_keep_alive(id)).await
        else {
            tokio::time::sleep(Duration::from_millis(100).min(interval)).await;
            continue;
        };
        loop {
            let sent = Instant::now();
            let left = deadline
                .saturating_duration_since(sent)
                .max(Duration::from_millis(1));
            if !matches!(
                tokio::time::timeout(left, keeper.keep_alive()).await,
                Ok(Ok(()))
            ) {
                continue 'reopen;
            }
            match tokio::time::timeout(left, stream.message()).await {
                Ok(Ok(Some(res))) if res.ttl() > 0 => {
                    deadline = sent + Duration::from_secs(res.ttl() as u64);
                }
                // TTL 0: etcd no longer knows the lease.
                Ok(Ok(Some(_))) => break 'reopen,
                _ => continue 'reopen,
            }
            tokio::time::sleep(interval).await;
        }
    }
    tracing::warn!(lease = id, "etcd lease lost");
    let _ = alive.send(false);
}
