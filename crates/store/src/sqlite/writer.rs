//! The single writing connection and its group commit.

use std::collections::VecDeque;
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

/// A job, and whether someone is waiting on it to hear of a patient's alarm.
struct Queued {
    urgent: bool,
    job: Job,
}

#[derive(Debug, Clone)]
pub(crate) struct WriterHandle {
    jobs: mpsc::Sender<Queued>,
    /// Counts commits, so that readers of the event log wake when there is more to read.
    commits: watch::Sender<u64>,
}

pub(crate) fn spawn(
    connection: Connection,
    max_jobs_per_commit: usize,
    audit_key: Arc<AuditKey>,
) -> Result<WriterHandle, StoreError> {
    let (sender, receiver) = mpsc::channel::<Queued>(max_jobs_per_commit.max(1) * 4);
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
        self.submit(false, operation).await
    }

    /// Like [`WriterHandle::run`], for a change that a care team is waiting to hear of
    /// (an alarm raised or resolved): it goes ahead of the jobs already waiting, in a
    /// commit of urgent jobs only, so that it does not wait behind a large group of
    /// readings. Urgent jobs keep their order among themselves.
    pub(crate) async fn run_urgent<T, F>(&self, operation: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Writing<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit(true, operation).await
    }

    async fn submit<T, F>(&self, urgent: bool, operation: F) -> Result<T, StoreError>
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
        self.jobs
            .send(Queued { urgent, job })
            .await
            .map_err(|_| StoreError::Closed)?;
        answered.await.map_err(|_| StoreError::Closed)?
    }
}

fn run(
    connection: Connection,
    audit_key: &AuditKey,
    mut receiver: mpsc::Receiver<Queued>,
    max_jobs_per_commit: usize,
    commits: watch::Sender<u64>,
) {
    let mut group: Vec<Job> = Vec::with_capacity(max_jobs_per_commit);
    let mut completions: Vec<Completion> = Vec::with_capacity(max_jobs_per_commit);
    let mut urgent: VecDeque<Job> = VecDeque::new();
    let mut waiting: VecDeque<Job> = VecDeque::with_capacity(max_jobs_per_commit);
    let take = |queued: Queued, urgent: &mut VecDeque<Job>, waiting: &mut VecDeque<Job>| {
        if queued.urgent {
            urgent.push_back(queued.job);
        } else {
            waiting.push_back(queued.job);
        }
    };
    loop {
        if urgent.is_empty() && waiting.is_empty() {
            match receiver.blocking_recv() {
                Some(queued) => take(queued, &mut urgent, &mut waiting),
                None => break,
            }
        }
        // Everything that queued up while the last commit was syncing joins this one (up
        // to a group's worth held here; the rest stays in the channel, which pushes back
        // on whoever sends more).
        while waiting.len() < max_jobs_per_commit {
            match receiver.try_recv() {
                Ok(queued) => take(queued, &mut urgent, &mut waiting),
                Err(_) => break,
            }
        }
        let from = if urgent.is_empty() {
            &mut waiting
        } else {
            &mut urgent
        };
        group.extend(from.drain(..from.len().min(max_jobs_per_commit)));
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    /// An urgent job queued behind ordinary ones runs before them, in a commit of its
    /// own; the ordinary ones then share the next.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_urgent_job_goes_ahead_of_the_queue_in_a_commit_of_its_own() {
        let connection = Connection::open_in_memory().expect("connection");
        let key =
            Arc::new(AuditKey::from_secret(b"the storage writer test's audit key").expect("key"));
        let writer = spawn(connection, 64, key).expect("writer");
        // (job, commits finished when it ran): jobs of one commit see the same count.
        let order: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
        let record = |name: &str, urgent: bool, pause: Duration| {
            let order = Arc::clone(&order);
            let name = name.to_owned();
            let writer = writer.clone();
            let commits = writer.commits();
            tokio::spawn(async move {
                let job = move |_: &Writing<'_>| {
                    std::thread::sleep(pause);
                    let finished = *commits.borrow();
                    order.lock().expect("order").push((name, finished));
                    Ok(())
                };
                if urgent {
                    writer.run_urgent(job).await
                } else {
                    writer.run(job).await
                }
            })
        };
        // Keeps the writer busy while the rest queue up.
        let busy = record("busy", false, Duration::from_millis(300));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut tasks = vec![busy];
        for index in 0..5 {
            tasks.push(record(&format!("reading {index}"), false, Duration::ZERO));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tasks.push(record("alarm", true, Duration::ZERO));
        for task in tasks {
            task.await.expect("task").expect("job");
        }
        let order = order.lock().expect("order").clone();
        let mut expected = vec![("busy".to_owned(), 0), ("alarm".to_owned(), 1)];
        expected.extend((0..5).map(|index| (format!("reading {index}"), 2)));
        assert_eq!(order, expected);
    }
}
