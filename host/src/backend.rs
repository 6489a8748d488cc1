//! The backend seam: what the session driver calls for storage jobs and for the directory,
//! the same in both modes. [`Backend::Local`] is the single node on fjall (the committer
//! thread, the node-local directory: exactly the behaviour before clusters);
//! [`Backend::Cluster`] is a node of a cluster over NATS JetStream ([`crate::cluster`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hotline_core::{Close, Job, JobOutcome, StorageFailure};

use crate::cluster::{Answer, Cluster, ClusterError, Lane};
use crate::sessions::Sessions;
use crate::store::{Committer, Pending};

/// Longest a leaving cluster session waits for its queued jobs.
const FLUSH_LIMIT: std::time::Duration = std::time::Duration::from_secs(20);

/// Where jobs and directory changes go.
pub enum Backend {
    /// One node: fjall through the committer thread.
    Local(Committer),
    /// A node of a cluster.
    Cluster(Arc<Cluster>),
}

/// One session's connection to the backend: in a cluster, its job lane (made at the first
/// job), which keeps its jobs in submission order.
#[derive(Default)]
pub struct SessionJobs {
    lane: Option<Lane>,
}

/// A submitted job's result, once carried out (durable, or failed).
pub enum JobPending {
    Local(Pending<JobOutcome>),
    Cluster(Answer),
}

impl Future for JobPending {
    type Output = Result<JobOutcome, StorageFailure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            JobPending::Local(pending) => Pin::new(pending).poll(cx).map(|r| r.map_err(StorageFailure::new)),
            JobPending::Cluster(answer) => Pin::new(answer).poll(cx).map(|r| match r {
                Ok(result) => result.map_err(StorageFailure::new),
                Err(_) => Err(StorageFailure::new(ClusterError::Stopped)),
            }),
        }
    }
}

impl Backend {
    /// Queues one of the core's jobs; a session's jobs are carried out in submission order.
    pub async fn submit_job(&self, job: Job, session: &mut SessionJobs) -> Result<JobPending, StorageFailure> {
        match self {
            Backend::Local(committer) => committer.submit_job(job).await.map(JobPending::Local).map_err(StorageFailure::new),
            Backend::Cluster(cluster) => {
                let lane = session.lane.get_or_insert_with(|| Lane::start(cluster.clone()));
                Ok(JobPending::Cluster(lane.submit(job)))
            }
        }
    }

    /// The core's `Register`: the session `id` of `phone` is in the local directory; a
    /// cluster claims the number and loads its backlog before the core may go on.
    pub async fn registered(&self, phone: &str, id: u64, replaces: &Close) -> Result<(), StorageFailure> {
        match self {
            Backend::Local(_) => Ok(()),
            Backend::Cluster(cluster) => cluster.logged_in(phone, id, replaces).await.map_err(StorageFailure::new),
        }
    }

    /// The core's `Unregister` of session `id`, before it leaves the local directory. In a
    /// cluster the session's queued jobs (its last acks) are done first (at most
    /// [`FLUSH_LIMIT`]), with its cache still there, so a login anywhere next does not get
    /// them again. Whether they were all done: if not (an ack failed for good, or the limit
    /// passed), the session must not close cleanly, since a clean close tells the client
    /// its acks were applied.
    pub async fn unregistering(&self, phone: &str, id: u64, session: &SessionJobs) -> bool {
        match self {
            Backend::Local(_) => true,
            Backend::Cluster(cluster) => {
                let done = match &session.lane {
                    Some(lane) => lane.flush(FLUSH_LIMIT).await,
                    None => true,
                };
                cluster.logged_out(phone, id);
                done
            }
        }
    }

    /// Whether a failed send must close its session: in a cluster, yes (its lane refuses
    /// every later send, see `cluster::jobs`; the client sends them again after logging in
    /// anew). On one node a failed fsync already refuses every later write.
    pub fn closes_after_failed_send(&self) -> bool {
        matches!(self, Backend::Cluster(_))
    }

    /// The core's `Kick`: closes `phone`'s session, wherever it is.
    pub async fn kick(&self, sessions: &Sessions, phone: &str, close: Close) {
        match self {
            Backend::Local(_) => sessions.kick(phone, close),
            Backend::Cluster(cluster) => cluster.kick(phone, close).await,
        }
    }
}
