/// What can go wrong in the gateway.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("queue database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("the queue is full: {used} of {limit} bytes used")]
    QueueFull { used: u64, limit: u64 },
    #[error("the queue has stopped")]
    QueueClosed,
    #[error("configuration: {0}")]
    Config(String),
    #[error("tls: {0}")]
    Tls(String),
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
}
