//! The gateway's durable queue: SQLite in WAL mode with `synchronous=FULL`.
//!
//! One thread owns the connection. Messages arriving together are inserted in one
//! transaction (group commit), and each caller hears back only after that commit is on
//! disk, so a device is acknowledged only for what survives a crash or power cut. The
//! forwarder reads from the head of the queue (ids only grow, `AUTOINCREMENT`) and
//! deletes a message only once the server has given it a final verdict.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use crate::error::GatewayError;

/// Bytes counted per queued message on top of its payload (row and index overhead).
pub const ROW_OVERHEAD_BYTES: u64 = 64;
/// From this share of the disk limit on, the queue is "near full" and says so.
pub const NEAR_FULL_FRACTION: f64 = 0.9;

/// A message to queue.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub device_id: String,
    pub payload: Vec<u8>,
    pub received: DateTime<Utc>,
    /// How far the device's timestamps were moved back, if the gateway corrected them.
    pub corrected_ms: Option<i64>,
}

/// A queued message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    pub id: i64,
    pub device_id: String,
    pub payload: Vec<u8>,
    pub received: DateTime<Utc>,
}

/// The queue's size now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    pub messages: u64,
    /// Payload bytes plus [`ROW_OVERHEAD_BYTES`] per message: what the disk limit counts.
    pub bytes: u64,
    pub limit_bytes: u64,
}

impl QueueStats {
    pub fn near_full(&self) -> bool {
        self.bytes as f64 >= self.limit_bytes as f64 * NEAR_FULL_FRACTION
    }
}

enum Command {
    Enqueue(NewMessage, oneshot::Sender<Result<i64, GatewayError>>),
    EnqueueBulk(
        Vec<NewMessage>,
        oneshot::Sender<Result<usize, GatewayError>>,
    ),
    Peek {
        max_messages: usize,
        max_bytes: usize,
        reply: oneshot::Sender<Result<Vec<QueuedMessage>, GatewayError>>,
    },
    Delete(Vec<i64>, oneshot::Sender<Result<(), GatewayError>>),
    Oldest(oneshot::Sender<Result<Option<DateTime<Utc>>, GatewayError>>),
}

#[derive(Debug, Default)]
struct Counters {
    messages: AtomicU64,
    bytes: AtomicU64,
}

/// Handle to the queue; cheap to clone.
#[derive(Clone)]
pub struct Queue {
    commands: mpsc::Sender<Command>,
    counters: Arc<Counters>,
    limit_bytes: u64,
    path: PathBuf,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("path", &self.path)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Queue {
    /// Opens (creating if needed) the queue database.
    pub fn open(path: &Path, limit_bytes: u64) -> Result<Self, GatewayError> {
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent)?;
        }
        let connection = Connection::open(path)?;
        connection.busy_timeout(std::time::Duration::from_secs(10))?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a commit is on disk before the device hears of it.
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.execute_batch(
            "CREATE TABLE IF NOT EXISTS message (
                 id           INTEGER PRIMARY KEY AUTOINCREMENT,
                 device_id    TEXT    NOT NULL,
                 payload      BLOB    NOT NULL,
                 received_ms  INTEGER NOT NULL,
                 corrected_ms INTEGER
             );",
        )?;
        let (messages, payload_bytes): (i64, i64) = connection.query_row(
            "SELECT count(*), coalesce(sum(length(payload)), 0) FROM message",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        let messages = u64::try_from(messages).unwrap_or(0);
        let counters = Arc::new(Counters {
            messages: AtomicU64::new(messages),
            bytes: AtomicU64::new(
                u64::try_from(payload_bytes).unwrap_or(0) + messages * ROW_OVERHEAD_BYTES,
            ),
        });
        let (sender, receiver) = mpsc::channel(4096);
        let thread_counters = Arc::clone(&counters);
        std::thread::Builder::new()
            .name("gateway-queue".into())
            .spawn(move || run(connection, receiver, thread_counters, limit_bytes))?;
        Ok(Self {
            commands: sender,
            counters,
            limit_bytes,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn stats(&self) -> QueueStats {
        QueueStats {
            messages: self.counters.messages.load(Ordering::Relaxed),
            bytes: self.counters.bytes.load(Ordering::Relaxed),
            limit_bytes: self.limit_bytes,
        }
    }

    /// Queues one message; returns its id once the commit holding it is durable.
    pub async fn enqueue(&self, message: NewMessage) -> Result<i64, GatewayError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Enqueue(message, reply)).await?;
        answer.await.map_err(|_| GatewayError::QueueClosed)?
    }

    /// Queues many messages in one transaction (tools and benchmarks).
    pub async fn enqueue_bulk(&self, messages: Vec<NewMessage>) -> Result<usize, GatewayError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::EnqueueBulk(messages, reply)).await?;
        answer.await.map_err(|_| GatewayError::QueueClosed)?
    }

    /// The oldest messages, in queue order: at most `max_messages`, and at most
    /// `max_bytes` of payload (but always at least one message if any is queued).
    pub async fn peek(
        &self,
        max_messages: usize,
        max_bytes: usize,
    ) -> Result<Vec<QueuedMessage>, GatewayError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Peek {
            max_messages,
            max_bytes,
            reply,
        })
        .await?;
        answer.await.map_err(|_| GatewayError::QueueClosed)?
    }

    /// Removes messages the server has given a final verdict.
    pub async fn delete(&self, ids: Vec<i64>) -> Result<(), GatewayError> {
        if ids.is_empty() {
            return Ok(());
        }
        let (reply, answer) = oneshot::channel();
        self.send(Command::Delete(ids, reply)).await?;
        answer.await.map_err(|_| GatewayError::QueueClosed)?
    }

    /// When the oldest queued message arrived.
    pub async fn oldest(&self) -> Result<Option<DateTime<Utc>>, GatewayError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Oldest(reply)).await?;
        answer.await.map_err(|_| GatewayError::QueueClosed)?
    }

    async fn send(&self, command: Command) -> Result<(), GatewayError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| GatewayError::QueueClosed)
    }
}

fn message_cost(message: &NewMessage) -> u64 {
    message.payload.len() as u64 + ROW_OVERHEAD_BYTES
}

fn run(
    mut connection: Connection,
    mut receiver: mpsc::Receiver<Command>,
    counters: Arc<Counters>,
    limit_bytes: u64,
) {
    let mut pending: Option<Command> = None;
    loop {
        let command = match pending.take() {
            Some(command) => command,
            None => match receiver.blocking_recv() {
                Some(command) => command,
                None => return,
            },
        };
        match command {
            Command::Enqueue(message, reply) => {
                // Group commit: everything queued meanwhile joins this transaction.
                let mut batch = vec![(message, reply)];
                while batch.len() < 4096 {
                    match receiver.try_recv() {
                        Ok(Command::Enqueue(message, reply)) => batch.push((message, reply)),
                        Ok(other) => {
                            pending = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                insert_group(&mut connection, batch, &counters, limit_bytes);
            }
            Command::EnqueueBulk(messages, reply) => {
                let count = messages.len();
                let (replies, answers): (Vec<_>, Vec<_>) = messages
                    .into_iter()
                    .map(|message| {
                        let (reply, answer) = oneshot::channel();
                        ((message, reply), answer)
                    })
                    .unzip();
                insert_group(&mut connection, replies, &counters, limit_bytes);
                let mut result = Ok(count);
                for mut answer in answers {
                    if let Ok(Err(error)) = answer.try_recv() {
                        result = Err(error);
                        break;
                    }
                }
                let _ = reply.send(result);
            }
            Command::Peek {
                max_messages,
                max_bytes,
                reply,
            } => {
                let _ = reply.send(peek(&connection, max_messages, max_bytes));
            }
            Command::Delete(ids, reply) => {
                let _ = reply.send(delete(&mut connection, &ids, &counters));
            }
            Command::Oldest(reply) => {
                let oldest = connection
                    .query_row(
                        "SELECT received_ms FROM message ORDER BY id LIMIT 1",
                        [],
                        |row| row.get::<_, i64>(0),
                    )
                    .optional()
                    .map(|ms| ms.and_then(|ms| Utc.timestamp_millis_opt(ms).single()))
                    .map_err(GatewayError::from);
                let _ = reply.send(oldest);
            }
        }
    }
}

type Reply = oneshot::Sender<Result<i64, GatewayError>>;
type Pending = (NewMessage, Reply);

fn insert_group(
    connection: &mut Connection,
    batch: Vec<Pending>,
    counters: &Counters,
    limit_bytes: u64,
) {
    let mut used = counters.bytes.load(Ordering::Relaxed);
    let mut accepted: Vec<(i64, u64, Reply)> = Vec::new();
    let mut refused = Vec::new();
    let outcome = (|| -> Result<(), rusqlite::Error> {
        let transaction = connection.transaction()?;
        {
            let mut insert = transaction.prepare_cached(
                "INSERT INTO message (device_id, payload, received_ms, corrected_ms)
                 VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (message, reply) in batch {
                let cost = message_cost(&message);
                if used + cost > limit_bytes {
                    refused.push(reply);
                    continue;
                }
                insert.execute(params![
                    message.device_id,
                    message.payload,
                    message.received.timestamp_millis(),
                    message.corrected_ms
                ])?;
                used += cost;
                accepted.push((transaction.last_insert_rowid(), cost, reply));
            }
        }
        transaction.commit()
    })();
    let current = counters.bytes.load(Ordering::Relaxed);
    for reply in refused {
        let _ = reply.send(Err(GatewayError::QueueFull {
            used: current,
            limit: limit_bytes,
        }));
    }
    match outcome {
        Ok(()) => {
            let added: u64 = accepted.iter().map(|(_, cost, _)| cost).sum();
            counters
                .messages
                .fetch_add(accepted.len() as u64, Ordering::Relaxed);
            counters.bytes.fetch_add(added, Ordering::Relaxed);
            for (id, _, reply) in accepted {
                let _ = reply.send(Ok(id));
            }
        }
        Err(error) => {
            // Nothing of this transaction is on disk: acknowledge none of it.
            tracing::error!(%error, "queue commit failed");
            let text = error.to_string();
            for (_, _, reply) in accepted {
                let _ = reply.send(Err(GatewayError::Io(std::io::Error::other(text.clone()))));
            }
        }
    }
}

fn peek(
    connection: &Connection,
    max_messages: usize,
    max_bytes: usize,
) -> Result<Vec<QueuedMessage>, GatewayError> {
    let mut statement = connection.prepare_cached(
        "SELECT id, device_id, payload, received_ms FROM message ORDER BY id LIMIT ?1",
    )?;
    let limit = i64::try_from(max_messages.max(1)).unwrap_or(i64::MAX);
    let mut rows = statement.query([limit])?;
    let mut out = Vec::new();
    let mut bytes = 0usize;
    while let Some(row) = rows.next()? {
        let payload: Vec<u8> = row.get(2)?;
        if !out.is_empty() && bytes + payload.len() > max_bytes {
            break;
        }
        bytes += payload.len();
        let received_ms: i64 = row.get(3)?;
        out.push(QueuedMessage {
            id: row.get(0)?,
            device_id: row.get(1)?,
            payload,
            received: Utc
                .timestamp_millis_opt(received_ms)
                .single()
                .unwrap_or_default(),
        });
    }
    Ok(out)
}

fn delete(
    connection: &mut Connection,
    ids: &[i64],
    counters: &Counters,
) -> Result<(), GatewayError> {
    let transaction = connection.transaction()?;
    let mut removed = 0u64;
    let mut freed = 0u64;
    {
        let mut statement = transaction
            .prepare_cached("DELETE FROM message WHERE id = ?1 RETURNING length(payload)")?;
        for id in ids {
            let length: Option<i64> = statement.query_row([id], |row| row.get(0)).optional()?;
            if let Some(length) = length {
                removed += 1;
                freed += u64::try_from(length).unwrap_or(0) + ROW_OVERHEAD_BYTES;
            }
        }
    }
    transaction.commit()?;
    let _ = counters
        .messages
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |value| {
            Some(value.saturating_sub(removed))
        });
    let _ = counters
        .bytes
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |value| {
            Some(value.saturating_sub(freed))
        });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(device: &str, seq: u32) -> NewMessage {
        NewMessage {
            device_id: device.into(),
            payload: format!("{{\"seq\":{seq}}}").into_bytes(),
            received: Utc::now(),
            corrected_ms: None,
        }
    }

    #[tokio::test]
    async fn survives_reopen_and_deletes_only_what_is_asked() -> Result<(), GatewayError> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("queue.db");
        {
            let queue = Queue::open(&path, 1 << 20)?;
            for seq in 0..10 {
                queue.enqueue(message("dev-a", seq)).await?;
            }
            let head = queue.peek(4, 1 << 20).await?;
            assert_eq!(head.len(), 4);
            queue.delete(head.iter().map(|m| m.id).collect()).await?;
            assert_eq!(queue.stats().messages, 6);
        }
        let queue = Queue::open(&path, 1 << 20)?;
        assert_eq!(queue.stats().messages, 6);
        let rest = queue.peek(100, 1 << 20).await?;
        assert_eq!(
            rest.first().map(|m| m.payload.clone()),
            Some(b"{\"seq\":4}".to_vec())
        );
        assert!(rest.windows(2).all(|pair| pair[0].id < pair[1].id));
        Ok(())
    }

    #[tokio::test]
    async fn refuses_beyond_the_disk_limit() -> Result<(), GatewayError> {
        let dir = tempfile::tempdir()?;
        let queue = Queue::open(&dir.path().join("q.db"), 3 * (ROW_OVERHEAD_BYTES + 9))?;
        for seq in 0..3 {
            queue.enqueue(message("dev-a", seq)).await?;
        }
        assert!(queue.stats().near_full());
        assert!(matches!(
            queue.enqueue(message("dev-a", 3)).await,
            Err(GatewayError::QueueFull { .. })
        ));
        Ok(())
    }
}
