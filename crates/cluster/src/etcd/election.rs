//! Leader election through etcd's election API: one server runs the scheduler.

use super::{ClusterStore, Result, Session};
use etcd_client::{Compare, CompareOp, LeaderKey, ResignOptions};
use futures::{Stream, StreamExt};

/// Name of the election whose leader runs the scheduler (under the prefix).
pub const SCHEDULER_ELECTION: &str = "election/scheduler";

/// Proof of leadership: the election key the campaign created. Writes
/// guarded by it fail once another candidate leads.
#[derive(Debug, Clone)]
pub struct Leadership {
    key: LeaderKey,
    /// The value it campaigned with (the server id).
    pub value: String,
}

impl Leadership {
    /// The etcd key that stands for this leadership.
    pub fn key(&self) -> String {
        String::from_utf8_lossy(self.key.key()).into_owned()
    }

    /// A transaction condition that holds only while this leadership lasts.
    pub fn guard(&self) -> Compare {
        Compare::create_revision(self.key.key(), CompareOp::Equal, self.key.rev())
    }
}

impl ClusterStore {
    fn election_name(&self) -> String {
        self.key(SCHEDULER_ELECTION)
    }

    /// Campaigns for the scheduler's leadership with `value` (the server
    /// id) under `session`'s lease; completes when elected. Cancel it by
    /// dropping the future (the lease's expiry withdraws the candidacy).
    pub async fn campaign(&self, session: &Session, value: &str) -> Result<Leadership> {
        // No timeout (it waits for the current leader), but a member that
        // cannot be reached is retried on another while the session lives.
        let mut delay = std::time::Duration::from_millis(10);
        let mut res = loop {
            let mut c = self.client();
            match c.campaign(self.election_name(), value, session.id()).await {
                Ok(res) => break res,
                Err(e) if super::transient(&e) && session.is_alive() => {
                    tracing::debug!(error = %e, "campaign failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_millis(250));
                }
                Err(e) => return Err(e.into()),
            }
        };
        let key = res.take_leader().ok_or_else(|| {
            super::ClusterError::Invalid("etcd elected without a leader key".into())
        })?;
        Ok(Leadership {
            key,
            value: value.into(),
        })
    }

    /// Gives up leadership at once (another candidate takes over without
    /// waiting for the lease to expire).
    pub async fn resign(&self, leadership: &Leadership) -> Result<()> {
        self.call(|mut c| {
            let key = leadership.key.clone();
            async move { c.resign(Some(ResignOptions::new().with_leader(key))).await }
        })
        .await?;
        Ok(())
    }

    /// The current leader's value (server id), if any.
    pub async fn leader(&self) -> Result<Option<String>> {
        let name = self.election_name();
        let res = self
            .call(|mut c| {
                let name = name.clone();
                async move { c.leader(name).await }
            })
            .await;
        match res {
            Ok(res) => Ok(res
                .kv()
                .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())),
            // etcd answers "election: no leader" as an error.
            Err(super::ClusterError::Etcd(e)) if e.to_string().contains("no leader") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every change of leader, as the leader's value (server id).
    pub async fn observe_leader(&self) -> Result<impl Stream<Item = Result<String>>> {
        let mut c = self.client();
        let stream = c.observe(self.election_name()).await?;
        Ok(stream.map(|r| {
            r.map(|res| {
                res.kv()
                    .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
                    .unwrap_or_default()
            })
            .map_err(Into::into)
        }))
    }
}
