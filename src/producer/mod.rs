//! The bundled producer: records are batched per partition (record batch
//! v2, optionally compressed) until a batch is full or its linger time has
//! passed, sent in Produce requests to each partition's leader with several
//! requests in flight per connection, and retried with backoff until the
//! delivery timeout. It speaks the standard protocol only, so it works
//! against Apache Kafka as well.
//!
//! Order per partition holds across retries: a partition has at most one
//! batch in flight, and a batch to retry goes back to the front of its
//! partition's queue.

mod sender;

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::client::ClientError;
pub use crate::client::partitioner::Partitioner;
use crate::protocol::ErrorCode;
pub use crate::protocol::record_batch::Compression;

/// Which acknowledgement a send waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// acks=0: no response; the offset is unknown (-1).
    None,
    /// acks=1: the leader has the batch.
    Leader,
    /// acks=all (-1): every in-sync replica has it.
    All,
}

impl Acks {
    pub fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

impl std::str::FromStr for Acks {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            "all" | "-1" => Ok(Acks::All),
            other => Err(format!("acks must be 0, 1 or all, not {other:?}")),
        }
    }
}

/// Producer settings, named as Kafka's producer configs are.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// `bootstrap.servers`, comma-separated.
    pub bootstrap_servers: String,
    /// `client.id`.
    pub client_id: String,
    /// `acks`.
    pub acks: Acks,
    /// `linger.ms`: how long a batch waits for more records.
    pub linger: Duration,
    /// `batch.size`: bytes at which a batch is sent without waiting.
    pub batch_size: usize,
    /// `max.request.size`: largest Produce request (and record).
    pub max_request_size: usize,
    /// `request.timeout.ms`: a request with no answer by then fails (and is retried).
    pub request_timeout: Duration,
    /// `delivery.timeout.ms`: a record not acknowledged by then fails.
    pub delivery_timeout: Duration,
    /// `retries`: attempts after the first, within the delivery timeout.
    pub retries: u32,
    /// `retry.backoff.ms`.
    pub retry_backoff: Duration,
    /// `compression.type`.
    pub compression: Compression,
    /// `partitioner` for keyed records; keyless ones stick to a partition per batch.
    pub partitioner: Partitioner,
    /// Records that may wait unacknowledged before `send` waits for room.
    pub max_queued_records: usize,
    /// `metadata.max.age.ms`: how often metadata is refreshed anyway.
    pub metadata_max_age: Duration,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            bootstrap_servers: "localhost:9092".into(),
            client_id: "minikafka-producer".into(),
            acks: Acks::All,
            linger: Duration::from_millis(5),
            batch_size: 16 * 1024,
            max_request_size: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            delivery_timeout: Duration::from_secs(120),
            retries: u32::MAX,
            retry_backoff: Duration::from_millis(100),
            compression: Compression::None,
            partitioner: Partitioner::Fnv1a,
            max_queued_records: 100_000,
            metadata_max_age: Duration::from_secs(300),
        }
    }
}

/// One record to send.
#[derive(Debug, Clone, Default)]
pub struct ProducerRecord {
    pub topic: String,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    /// A fixed partition; `None` lets the partitioner choose.
    pub partition: Option<i32>,
    /// Milliseconds since the epoch; `None` means now.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    pub fn new(topic: impl Into<String>, key: Option<impl Into<Bytes>>, value: impl Into<Bytes>) -> Self {
        ProducerRecord {
            topic: topic.into(),
            key: key.map(Into::into),
            value: Some(value.into()),
            ..ProducerRecord::default()
        }
    }
}

/// Where a record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMetadata {
    pub partition: i32,
    /// -1 with acks=0.
    pub offset: i64,
}

/// Why a record was not delivered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProduceError {
    #[error("the broker refused the batch: {code}{}", .message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Broker { code: ErrorCode, message: Option<String> },
    #[error("not delivered within delivery.timeout.ms ({0:?}); last error: {1}")]
    Timeout(Duration, String),
    #[error("record of {size} bytes exceeds max.request.size ({max})")]
    RecordTooLarge { size: usize, max: usize },
    #[error("topic {topic}: {reason}")]
    Topic { topic: String, reason: String },
    #[error("the producer is closed")]
    Closed,
}

/// Resolves when the record is acknowledged (or has failed).
pub struct DeliveryFuture {
    receiver: oneshot::Receiver<Result<RecordMetadata, ProduceError>>,
}

impl std::future::Future for DeliveryFuture {
    type Output = Result<RecordMetadata, ProduceError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.receiver)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(ProduceError::Closed)))
    }
}

enum Command {
    Send(
        ProducerRecord,
        oneshot::Sender<Result<RecordMetadata, ProduceError>>,
        tokio::sync::OwnedSemaphorePermit,
    ),
    Flush(oneshot::Sender<()>),
}

/// An asynchronous producer; clone-free, share it behind an `Arc`.
pub struct Producer {
    commands: mpsc::UnboundedSender<Command>,
    room: std::sync::Arc<tokio::sync::Semaphore>,
    task: tokio::task::JoinHandle<()>,
}

impl Producer {
    /// Connects to a bootstrap server and starts the sending task.
    pub async fn new(config: ProducerConfig) -> Result<Producer, ClientError> {
        let cluster =
            crate::client::Cluster::connect(&config.bootstrap_servers, &config.client_id, config.request_timeout)
                .await?;
        let room = std::sync::Arc::new(tokio::sync::Semaphore::new(config.max_queued_records));
        let (commands, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(sender::Sender::new(config, cluster).run(receiver));
        Ok(Producer { commands, room, task })
    }

    /// Queues a record (waiting only while `max_queued_records` are
    /// unacknowledged) and returns the future of its delivery.
    pub async fn send(&self, record: ProducerRecord) -> DeliveryFuture {
        let (reply, receiver) = oneshot::channel();
        match self.room.clone().acquire_owned().await {
            Ok(permit) => {
                if let Err(mpsc::error::SendError(Command::Send(_, reply, _))) =
                    self.commands.send(Command::Send(record, reply, permit))
                {
                    let _ = reply.send(Err(ProduceError::Closed));
                }
            }
            Err(_) => {
                let _ = reply.send(Err(ProduceError::Closed));
            }
        }
        DeliveryFuture { receiver }
    }

    /// Sends everything queued so far without waiting for linger, and
    /// waits until all of it is acknowledged or has failed.
    pub async fn flush(&self) {
        let (reply, done) = oneshot::channel();
        if self.commands.send(Command::Flush(reply)).is_ok() {
            let _ = done.await;
        }
    }

    /// Flushes, then stops the sending task.
    pub async fn close(self) {
        self.flush().await;
        drop(self.commands);
        let _ = self.task.await;
    }
}
