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

mod accumulator;
mod sender;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};

use accumulator::{Accumulator, Appended, Outcome};

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
    /// `buffer.memory`: bytes of records that may wait unacknowledged
    /// before `send` waits for room. It also bounds the buffers kept for
    /// reuse, which it makes worth keeping: in flight stays this size.
    pub buffer_memory: usize,
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
            buffer_memory: 32 * 1024 * 1024,
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
    outcome: Arc<Outcome>,
    index: i64,
    /// Created only if the future is polled before its batch is done.
    waiting: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
}

impl DeliveryFuture {
    fn failed(error: ProduceError) -> DeliveryFuture {
        DeliveryFuture {
            outcome: Outcome::failed(error),
            index: 0,
            waiting: None,
        }
    }
}

impl std::future::Future for DeliveryFuture {
    type Output = Result<RecordMetadata, ProduceError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        loop {
            if let Some(result) = self.outcome.get() {
                return std::task::Poll::Ready(accumulator::record_result(result, self.index));
            }
            if self.waiting.is_none() {
                let outcome = self.outcome.clone();
                self.waiting = Some(Box::pin(async move { outcome.wait().await }));
            }
            let waiting = self.waiting.as_mut().expect("set above");
            match waiting.as_mut().poll(cx) {
                std::task::Poll::Ready(()) => self.waiting = None,
                std::task::Poll::Pending => return std::task::Poll::Pending,
            }
        }
    }
}

/// What `send` and the sending task share.
pub(crate) struct Shared {
    config: ProducerConfig,
    accumulator: Mutex<Accumulator>,
    /// Wakes the sending task: a batch opened or filled, a flush, closing.
    wake: Notify,
    /// Woken when nothing is outstanding (for `flush`).
    idle: Notify,
    /// Room for records in the producer (`max_queued_records`).
    room: Semaphore,
    /// Room for their bytes (`buffer_memory`).
    memory: Semaphore,
    /// Topics `send` needs partition counts for, answered by the sending task.
    metadata: mpsc::UnboundedSender<(String, oneshot::Sender<Result<(), ProduceError>>)>,
}

impl Shared {
    fn accumulator(&self) -> std::sync::MutexGuard<'_, Accumulator> {
        self.accumulator
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Settles a batch of `records` holding `bytes` of room: their futures
    /// resolve, their room frees.
    pub(crate) fn settle(&self, outcome: &Outcome, records: usize, bytes: usize, result: accumulator::BatchResult) {
        outcome.finish(result);
        let idle = {
            let mut accumulator = self.accumulator();
            accumulator.outstanding -= records;
            accumulator.outstanding == 0
        };
        self.room.add_permits(records);
        self.memory.add_permits(bytes);
        if idle {
            self.idle.notify_waiters();
        }
    }
}

/// An asynchronous producer; share it behind an `Arc` to send from several tasks.
pub struct Producer {
    shared: Arc<Shared>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Producer {
    /// Connects to a bootstrap server and starts the sending task.
    pub async fn new(config: ProducerConfig) -> Result<Producer, ClientError> {
        let cluster =
            crate::client::Cluster::connect(&config.bootstrap_servers, &config.client_id, config.request_timeout)
                .await?;
        let (metadata, metadata_requests) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            room: Semaphore::new(config.max_queued_records),
            memory: Semaphore::new(config.buffer_memory.max(1)),
            config,
            accumulator: Mutex::new(Accumulator::default()),
            wake: Notify::new(),
            idle: Notify::new(),
            metadata,
        });
        let task = tokio::spawn(sender::Sender::new(shared.clone(), cluster).run(metadata_requests));
        Ok(Producer {
            shared,
            task: Some(task),
        })
    }

    /// Adds a record to its partition's batch (waiting only while
    /// `max_queued_records` are unacknowledged, or for the topic's metadata
    /// the first time) and returns the future of its delivery.
    pub async fn send(&self, record: ProducerRecord) -> DeliveryFuture {
        let size = accumulator::record_size(&record);
        if size > self.shared.config.max_request_size {
            let max = self.shared.config.max_request_size;
            return DeliveryFuture::failed(ProduceError::RecordTooLarge { size, max });
        }
        // The permit is given up to the batch only once the record is in
        // one; a send dropped before that (waiting for metadata, say)
        // returns it.
        let permit = match self.shared.room.acquire().await {
            Ok(permit) => permit,
            Err(_) => return DeliveryFuture::failed(ProduceError::Closed),
        };
        // A record larger than all the room takes all of it, not forever.
        let held = size.min(self.shared.config.buffer_memory.max(1)).min(u32::MAX as usize);
        let memory = match self.shared.memory.acquire_many(held as u32).await {
            Ok(memory) => memory,
            Err(_) => return DeliveryFuture::failed(ProduceError::Closed),
        };
        let mut record = record;
        loop {
            let appended = self
                .shared
                .accumulator()
                .append(&self.shared.config, record, size, held);
            match appended {
                Appended::Placed { outcome, index, wake } => {
                    permit.forget();
                    memory.forget();
                    if wake {
                        self.shared.wake.notify_one();
                    }
                    return DeliveryFuture {
                        outcome,
                        index,
                        waiting: None,
                    };
                }
                Appended::Refused(error) => return DeliveryFuture::failed(error),
                Appended::UnknownTopic(back) => {
                    record = *back;
                    let (reply, answer) = oneshot::channel();
                    let known = match self.shared.metadata.send((record.topic.clone(), reply)) {
                        Ok(()) => answer.await.unwrap_or(Err(ProduceError::Closed)),
                        Err(_) => Err(ProduceError::Closed),
                    };
                    if let Err(error) = known {
                        return DeliveryFuture::failed(error);
                    }
                }
            }
        }
    }

    /// Sends everything added so far without waiting for linger, and waits
    /// until all of it is acknowledged or has failed.
    pub async fn flush(&self) {
        /// Ends this flush's claim even if the flush is dropped midway.
        struct Flushing<'a>(&'a Shared);
        impl Drop for Flushing<'_> {
            fn drop(&mut self) {
                self.0.accumulator().flushes -= 1;
            }
        }
        self.shared.accumulator().flushes += 1;
        let _flushing = Flushing(&self.shared);
        self.shared.wake.notify_one();
        loop {
            let idle = self.shared.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.shared.accumulator().outstanding == 0 || self.task.as_ref().is_none_or(|t| t.is_finished()) {
                break;
            }
            idle.await;
        }
    }

    /// Flushes, then stops the sending task.
    pub async fn close(mut self) {
        self.flush().await;
        self.shared.accumulator().closing = true;
        self.shared.wake.notify_one();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Producer {
    /// Dropped without `close`: the sending task sends what it has, then stops.
    fn drop(&mut self) {
        self.shared.accumulator().closing = true;
        self.shared.wake.notify_one();
    }
}
