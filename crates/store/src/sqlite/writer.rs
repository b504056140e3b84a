//! The single writing connection and its group commit.

use std::sync::Arc;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot, watch};

use crate::audit::AuditKey;
use crate::error::StoreError;

/// The writing connection as a write job sees it, with what only writes need: the audit
/// key, which links each new audit entry to the chain.
pub(crate) struct Writing<'a> {
    connection: &'a Connection,
    pub(crate) audit_key: &'a AuditKey,
}

impl std::ops::Deref for Writing<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.connection
    }
}

/// Runs inside the open transaction; returns what to tell the caller once the commit's
/// fate is known.
type Job = Box<dyn FnOnce(&Writing<'_>) -> Completion + Send>;
type Completion = Box<dyn FnOnce(Result<(), String>) + Send>;

#[derive(Debug, Clone)]
pub(crate) struct WriterHandle {
    jobs: mpsc::Sender<Job>,
    /// Counts commits, so that readers of the event log wake when there is more to read.
    commits: watch::Sender<u64>,
}

pub(crate) fn spawn(
    connection: Connection,
    max_jobs_per_commit: usize,
    audit_key: Arc<AuditKey>,
) -> Result<WriterHandle, StoreError> {
    let (sender, receiver) = mpsc::channel::<Job>(max_jobs_per_commit.max(1) * 4);
    let (commits, _) = watch::channel(0u64);
    let announce = commits.clone();
    std::thread::Builder::new()
        .name("wardline-sqlite-writer".into())
        .spawn(move || {
            run(
                connection,
                &audit_key,
                receiver,
                max_jobs_per_commit.max(1),
                announce,
            )
        })?;
    Ok(WriterHandle {
        jobs: sender,
        commits,
    })
}

impl WriterHandle {
    pub(crate) fn commits(&self) -> watch::Receiver<u64> {
        self.commits.subscribe()
    }

    pub(crate) async fn run<T, F>(&self, operation: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Writing<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel::<Result<T, StoreError>>();
        let job: Job = Box::new(move |connection| {
            if let Err(error) = connection.execute_batch("SAVEPOINT job") {
                return Box::new(move |_| {
                    let _ = answer.send(Err(error.into()));
                });
            }
            match operation(connection) {
                Ok(value) => match connection.execute_batch("RELEASE job") {
                    Ok(()) => Box::new(move |commit: Result<(), String>| {
                        let _ =
                            answer.send(commit.map(|()| value).map_err(StoreError::CommitFailed));
                    }),
                    Err(error) => Box::new(move |_| {
                        let _ = answer.send(Err(error.into()));
                    }),
                },
                Err(error) => {
                    // Undo only this job; the others in the group still commit.
                    let _ = connection.execute_batch("ROLLBACK TO job; RELEASE job");
                    Box::new(move |_| {
                        let _ = answer.send(Err(error));
                    })
                }
            }
        });
        self.jobs.send(job).await.map_err(|_| StoreError::Closed)?;
        answered.await.map_err(|_| StoreError::Closed)?
    }
}

fn run(
    connection: Connection,
    audit_key: &AuditKey,
    mut receiver: mpsc::Receiver<Job>,
    max_jobs_per_commit: usize,
    commits: watch::Sender<u64>,
) {
    let mut group: Vec<Job> = Vec::with_capacity(max_jobs_per_commit);
    let mut completions: Vec<Completion> = Vec::with_capacity(max_jobs_per_commit);
    while let Some(first) = receiver.blocking_recv() {
        group.push(first);
        // Everything that queued up while the last commit was syncing joins this one.
        while group.len() < max_jobs_per_commit {
            match receiver.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let begun = connection.execute_batch("BEGIN IMMEDIATE");
        if let Err(error) = begun {
            let message = error.to_string();
            tracing::error!(error = %message, "could not begin a write transaction");
            // Dropping the jobs unrun drops their answer channels: each caller sees the
            // write fail, and nothing was acknowledged.
            group.clear();
            continue;
        }
        let writing = Writing {
            connection: &connection,
            audit_key,
        };
        for job in group.drain(..) {
            completions.push(job(&writing));
        }
        let committed = connection.execute_batch("COMMIT").map_err(|error| {
            let message = error.to_string();
            tracing::error!(error = %message, "commit failed");
            let _ = connection.execute_batch("ROLLBACK");
            message
        });
        metrics::counter!("wardline_store_commits_total").increment(1);
        let ok = committed.is_ok();
        for completion in completions.drain(..) {
            completion(committed.clone());
        }
        if ok {
            commits.send_modify(|count| *count = count.wrapping_add(1));
        }
    }
    tracing::debug!("storage writer stopped");
}
