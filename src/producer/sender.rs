//! The producer's one background task: it owns the batches, the metadata
//! and the connections, so none of them needs a lock.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{Command, ProduceError, ProducerConfig, ProducerRecord, RecordMetadata};
use crate::client::{BrokerConnection, ClientError, Cluster, PipelinedConnection};
use crate::protocol::ErrorCode;
use crate::protocol::messages::produce::{PartitionProduceData, ProduceRequest, TopicProduceData};
use crate::protocol::messages::{Request, Response};
use crate::protocol::records::{Record, RecordBatchBuilder};

type TopicPartition = (String, i32);

/// Commands taken from the queue between two rounds of housekeeping.
const COMMANDS_PER_ROUND: usize = 4096;
type Reply = oneshot::Sender<Result<RecordMetadata, ProduceError>>;

/// A record waiting for its acknowledgement. The permit is its place in the
/// producer's queue: dropping it (on delivery or failure) makes room.
struct Pending {
    reply: Reply,
    _permit: OwnedSemaphorePermit,
}

struct OpenBatch {
    builder: RecordBatchBuilder,
    pending: Vec<Pending>,
    created: Instant,
}

struct ClosedBatch {
    topic: String,
    partition: i32,
    bytes: Bytes,
    pending: Vec<Pending>,
    created: Instant,
    attempts: u32,
    retry_at: Option<Instant>,
    last_error: String,
}

struct Completion {
    node: i32,
    batches: Vec<ClosedBatch>,
    answer: Result<Option<Response>, ClientError>,
}

pub(super) struct Sender {
    config: ProducerConfig,
    cluster: Cluster,
    connections: HashMap<i32, PipelinedConnection>,
    /// Keyless records go to this partition until its batch closes.
    sticky: HashMap<String, i32>,
    /// Batches being filled, by topic then partition (looked up per record
    /// by `&str`, so a record costs no topic clone).
    open: HashMap<String, HashMap<i32, OpenBatch>>,
    queues: BTreeMap<TopicPartition, VecDeque<ClosedBatch>>,
    /// Partitions with a batch in flight: one at a time keeps their order.
    muted: HashSet<TopicPartition>,
    in_flight: JoinSet<Completion>,
    outstanding: usize,
    flushes: Vec<oneshot::Sender<()>>,
    metadata_due: Instant,
    metadata_stale: bool,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Sender {
    pub(super) fn new(config: ProducerConfig, cluster: Cluster) -> Sender {
        let metadata_due = Instant::now() + config.metadata_max_age;
        Sender {
            config,
            cluster,
            connections: HashMap::new(),
            sticky: HashMap::new(),
            open: HashMap::new(),
            queues: BTreeMap::new(),
            muted: HashSet::new(),
            in_flight: JoinSet::new(),
            outstanding: 0,
            flushes: Vec::new(),
            metadata_due,
            metadata_stale: false,
        }
    }

    pub(super) async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut accepting = true;
        loop {
            let now = Instant::now();
            if self.metadata_stale || now >= self.metadata_due {
                self.refresh_metadata().await;
            }
            self.close_batches(now);
            self.fail_expired(now);
            self.dispatch(now).await;
            if self.outstanding == 0 {
                for flush in self.flushes.drain(..) {
                    let _ = flush.send(());
                }
                if !accepting {
                    return;
                }
            }
            let wake = self.next_wake();
            tokio::select! {
                command = commands.recv(), if accepting => {
                    // Take what else is already queued too, so the
                    // housekeeping above runs once per burst, not per record.
                    let mut next = command;
                    let mut taken = 0;
                    loop {
                        match next {
                            Some(Command::Send(record, reply, permit)) => {
                                self.accept(record, Pending { reply, _permit: permit }).await;
                            }
                            Some(Command::Flush(done)) => self.flushes.push(done),
                            None => {
                                accepting = false;
                                break;
                            }
                        }
                        taken += 1;
                        if taken == COMMANDS_PER_ROUND {
                            break;
                        }
                        next = match commands.try_recv() {
                            Ok(command) => Some(command),
                            Err(mpsc::error::TryRecvError::Empty) => break,
                            Err(mpsc::error::TryRecvError::Disconnected) => None,
                        };
                    }
                }
                Some(done) = self.in_flight.join_next(), if !self.in_flight.is_empty() => {
                    if let Ok(completion) = done {
                        self.complete(completion);
                    }
                }
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// The earliest moment something is due: a linger, a retry, a refresh.
    fn next_wake(&self) -> Instant {
        let lingers = self
            .open
            .values()
            .flat_map(HashMap::values)
            .map(|b| b.created + self.config.linger);
        let retries = self
            .queues
            .values()
            .filter_map(|q| q.front())
            .filter_map(|b| b.retry_at);
        let expiries = self
            .queues
            .values()
            .filter_map(|q| q.front())
            .map(|b| b.created + self.config.delivery_timeout);
        let metadata = if self.metadata_stale {
            Instant::now() + self.config.retry_backoff
        } else {
            self.metadata_due
        };
        lingers.chain(retries).chain(expiries).fold(metadata, Instant::min)
    }

    async fn refresh_metadata(&mut self) {
        let mut topics: Vec<String> = self.sticky.keys().cloned().collect();
        topics.extend(self.open.keys().cloned());
        topics.extend(self.queues.keys().map(|(t, _)| t.clone()));
        topics.sort();
        topics.dedup();
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        match self.cluster.refresh(&names, true).await {
            Ok(()) => {
                self.metadata_stale = false;
                self.metadata_due = Instant::now() + self.config.metadata_max_age;
            }
            Err(e) => {
                tracing::debug!(error = %e, "metadata refresh failed");
                self.metadata_stale = true;
            }
        }
    }

    fn resolve(&mut self, pending: Pending, result: Result<RecordMetadata, ProduceError>) {
        let _ = pending.reply.send(result);
        self.outstanding -= 1;
    }

    async fn accept(&mut self, record: ProducerRecord, pending: Pending) {
        self.outstanding += 1;
        let size = record.key.as_ref().map_or(0, Bytes::len) + record.value.as_ref().map_or(0, Bytes::len) + 64;
        if size > self.config.max_request_size {
            let max = self.config.max_request_size;
            return self.resolve(pending, Err(ProduceError::RecordTooLarge { size, max }));
        }
        if self.cluster.topic(&record.topic).is_none() {
            // Ask for it (creating it where the broker allows, as Kafka
            // producers do); a failure leaves the record to the retries below.
            self.refresh_metadata_for(&record.topic).await;
        }
        let Some(count) = self.cluster.topic(&record.topic).map(|t| t.leaders.len() as u32) else {
            let topic = record.topic.clone();
            return self.resolve(
                pending,
                Err(ProduceError::Topic {
                    topic,
                    reason: "no metadata for the topic".into(),
                }),
            );
        };
        let partition = match (record.partition, &record.key) {
            (Some(p), _) if p >= 0 && (p as u32) < count => p,
            (Some(p), _) => {
                let topic = record.topic.clone();
                return self.resolve(
                    pending,
                    Err(ProduceError::Topic {
                        topic,
                        reason: format!("no partition {p}"),
                    }),
                );
            }
            (None, Some(key)) => self.config.partitioner.partition(key, count) as i32,
            (None, None) => {
                let sticky = self.sticky.entry(record.topic.clone()).or_insert(0);
                *sticky %= count as i32; // the topic may have fewer partitions than before
                *sticky
            }
        };
        let full = |b: &OpenBatch| b.builder.size_bytes() + size > self.config.batch_size;
        if self
            .open
            .get(&record.topic)
            .and_then(|p| p.get(&partition))
            .is_some_and(full)
        {
            self.close(&record.topic, partition);
        }
        if !self.open.contains_key(&record.topic) {
            self.open.insert(record.topic.clone(), HashMap::new());
        }
        let batches = self.open.get_mut(&record.topic).expect("inserted above");
        let batch = batches.entry(partition).or_insert_with(|| OpenBatch {
            builder: RecordBatchBuilder::new(now_ms()),
            pending: Vec::new(),
            created: Instant::now(),
        });
        batch.builder.push(Record {
            timestamp: record.timestamp.unwrap_or_else(now_ms),
            key: record.key,
            value: record.value,
            headers: record.headers,
            ..Record::default()
        });
        batch.pending.push(pending);
        if batch.builder.size_bytes() >= self.config.batch_size {
            self.close(&record.topic, partition);
        }
    }

    async fn refresh_metadata_for(&mut self, topic: &str) {
        if let Err(e) = self.cluster.refresh(&[topic], true).await {
            tracing::debug!(topic, error = %e, "metadata for a new topic failed");
        }
    }

    /// Turns the open batch of a partition into bytes and queues it.
    fn close(&mut self, topic: &str, partition: i32) {
        let Some(batch) = self.open.get_mut(topic).and_then(|p| p.remove(&partition)) else {
            return;
        };
        let tp: TopicPartition = (topic.to_string(), partition);
        // Keyless records move on to the next partition.
        let count = self.cluster.topic(&tp.0).map_or(1, |t| t.leaders.len().max(1)) as i32;
        if let Some(sticky) = self.sticky.get_mut(&tp.0).filter(|s| **s == tp.1) {
            *sticky = (tp.1 + 1) % count;
        }
        match batch.builder.build(self.config.compression) {
            Ok(bytes) => self.queues.entry(tp.clone()).or_default().push_back(ClosedBatch {
                topic: tp.0.clone(),
                partition: tp.1,
                bytes,
                pending: batch.pending,
                created: batch.created,
                attempts: 0,
                retry_at: None,
                last_error: String::new(),
            }),
            Err(e) => {
                for pending in batch.pending {
                    let error = ProduceError::Topic {
                        topic: tp.0.clone(),
                        reason: format!("compression failed: {e}"),
                    };
                    self.resolve(pending, Err(error));
                }
            }
        }
    }

    fn close_batches(&mut self, now: Instant) {
        let flushing = !self.flushes.is_empty();
        let due: Vec<TopicPartition> = self
            .open
            .iter()
            .flat_map(|(topic, batches)| batches.iter().map(move |(p, b)| (topic, *p, b)))
            .filter(|(_, _, b)| flushing || now >= b.created + self.config.linger)
            .map(|(topic, partition, _)| (topic.clone(), partition))
            .collect();
        for (topic, partition) in due {
            self.close(&topic, partition);
        }
    }

    fn fail_expired(&mut self, now: Instant) {
        let timeout = self.config.delivery_timeout;
        let mut expired = Vec::new();
        for queue in self.queues.values_mut() {
            while queue.front().is_some_and(|b| now >= b.created + timeout) {
                expired.extend(queue.pop_front());
            }
        }
        for batch in expired {
            self.fail(batch, |last| ProduceError::Timeout(timeout, last));
        }
    }

    fn fail(&mut self, batch: ClosedBatch, error: impl Fn(String) -> ProduceError) {
        for pending in batch.pending {
            self.resolve(pending, Err(error(batch.last_error.clone())));
        }
    }

    async fn connection(&mut self, node: i32) -> Result<PipelinedConnection, ClientError> {
        if let Some(connection) = self.connections.get(&node).filter(|c| !c.is_closed()) {
            return Ok(connection.clone());
        }
        let addr = self
            .cluster
            .broker_addr(node)
            .ok_or_else(|| ClientError::NoBroker(format!("node {node}")))?;
        let connection = BrokerConnection::connect(addr, &self.config.client_id, self.config.request_timeout).await?;
        let connection = PipelinedConnection::new(connection);
        self.connections.insert(node, connection.clone());
        Ok(connection)
    }

    /// Sends every queued batch whose partition is free, grouped per leader.
    async fn dispatch(&mut self, now: Instant) {
        let mut per_node: BTreeMap<i32, (Vec<ClosedBatch>, usize)> = BTreeMap::new();
        let ready: Vec<TopicPartition> = self
            .queues
            .iter()
            .filter(|(tp, q)| {
                !self.muted.contains(*tp) && q.front().is_some_and(|b| b.retry_at.is_none_or(|at| now >= at))
            })
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in ready {
            let Some(leader) = self
                .cluster
                .topic(&tp.0)
                .and_then(|t| t.leaders.get(tp.1 as usize).copied())
            else {
                self.metadata_stale = true;
                continue;
            };
            let (batches, bytes) = per_node.entry(leader).or_default();
            let size = self.queues[&tp].front().map_or(0, |b| b.bytes.len());
            if !batches.is_empty() && *bytes + size > self.config.max_request_size {
                continue; // next request
            }
            let Some(batch) = self.queues.get_mut(&tp).and_then(VecDeque::pop_front) else {
                continue;
            };
            *bytes += size;
            batches.push(batch);
            self.muted.insert(tp);
        }
        for (node, (batches, _)) in per_node {
            match self.connection(node).await {
                Ok(connection) => self.send(node, connection, batches).await,
                Err(e) => {
                    self.metadata_stale = true;
                    self.complete(Completion {
                        node,
                        batches,
                        answer: Err(e),
                    });
                }
            }
        }
    }

    async fn send(&mut self, node: i32, connection: PipelinedConnection, batches: Vec<ClosedBatch>) {
        let mut topics: BTreeMap<&str, Vec<PartitionProduceData>> = BTreeMap::new();
        for batch in &batches {
            topics.entry(&batch.topic).or_default().push(PartitionProduceData {
                index: batch.partition,
                records: Some(batch.bytes.clone()),
            });
        }
        let request = Request::Produce(ProduceRequest {
            transactional_id: None,
            acks: self.config.acks.wire(),
            timeout_ms: self.config.request_timeout.as_millis().min(i32::MAX as u128) as i32,
            topic_data: topics
                .into_iter()
                .map(|(name, partition_data)| TopicProduceData {
                    name: name.to_string(),
                    partition_data,
                })
                .collect(),
        });
        let answer = connection.send(&request, self.config.acks.wire() != 0).await;
        let timeout = self.config.request_timeout;
        self.in_flight.spawn(async move {
            let answer = match tokio::time::timeout(timeout, answer).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) => Err(ClientError::NoBroker("the connection task ended".into())),
                Err(_) => Err(ClientError::Timeout(timeout)),
            };
            Completion { node, batches, answer }
        });
    }

    fn complete(&mut self, completion: Completion) {
        for batch in &completion.batches {
            self.muted.remove(&(batch.topic.clone(), batch.partition));
        }
        let response = match completion.answer {
            Ok(Some(Response::Produce(response))) => response,
            Ok(None) => {
                // acks=0: written is all we will ever know.
                for batch in completion.batches {
                    let partition = batch.partition;
                    for pending in batch.pending {
                        self.resolve(pending, Ok(RecordMetadata { partition, offset: -1 }));
                    }
                }
                return;
            }
            Ok(Some(_)) => unreachable!("a produce request is answered by a produce response"),
            Err(e) => {
                // The connection is suspect: drop it and retry everything.
                self.connections.remove(&completion.node);
                let reason = e.to_string();
                for batch in completion.batches {
                    self.retry_or_fail(batch, reason.clone(), None);
                }
                return;
            }
        };
        let mut answers: HashMap<(&str, i32), _> = HashMap::new();
        for topic in &response.responses {
            for p in &topic.partition_responses {
                answers.insert((topic.name.as_str(), p.index), p.clone());
            }
        }
        let mut outcomes = Vec::new();
        for batch in completion.batches {
            let answer = answers.get(&(batch.topic.as_str(), batch.partition)).cloned();
            outcomes.push((batch, answer));
        }
        for (batch, answer) in outcomes {
            let Some(answer) = answer else {
                self.retry_or_fail(batch, "the response did not mention the partition".into(), None);
                continue;
            };
            let code = ErrorCode::from_code(answer.error_code);
            match code {
                ErrorCode::None => {
                    let partition = batch.partition;
                    for (i, pending) in batch.pending.into_iter().enumerate() {
                        let offset = if answer.base_offset >= 0 {
                            answer.base_offset + i as i64
                        } else {
                            -1
                        };
                        self.resolve(pending, Ok(RecordMetadata { partition, offset }));
                    }
                }
                code if code.is_retriable() => {
                    if matches!(
                        code,
                        ErrorCode::NotLeaderOrFollower
                            | ErrorCode::UnknownTopicOrPartition
                            | ErrorCode::LeaderNotAvailable
                    ) {
                        self.metadata_stale = true;
                    }
                    self.retry_or_fail(batch, code.to_string(), Some((code, answer.error_message)));
                }
                code => {
                    let message = answer.error_message;
                    self.fail(batch, |_| ProduceError::Broker {
                        code,
                        message: message.clone(),
                    });
                }
            }
        }
    }

    /// Puts a batch back at the front of its partition's queue, after the
    /// backoff, unless it is out of retries or past its delivery timeout.
    fn retry_or_fail(
        &mut self,
        mut batch: ClosedBatch,
        reason: String,
        broker_error: Option<(ErrorCode, Option<String>)>,
    ) {
        batch.attempts += 1;
        batch.last_error = reason;
        let now = Instant::now();
        if now >= batch.created + self.config.delivery_timeout {
            let timeout = self.config.delivery_timeout;
            return self.fail(batch, |last| ProduceError::Timeout(timeout, last));
        }
        if batch.attempts > self.config.retries {
            return match broker_error {
                Some((code, message)) => self.fail(batch, |_| ProduceError::Broker {
                    code,
                    message: message.clone(),
                }),
                None => {
                    let timeout = self.config.delivery_timeout;
                    self.fail(batch, |last| ProduceError::Timeout(timeout, last))
                }
            };
        }
        tracing::debug!(topic = %batch.topic, partition = batch.partition, attempt = batch.attempts, reason = %batch.last_error, "retrying a batch");
        batch.retry_at = Some(now + backoff(self.config.retry_backoff, batch.attempts));
        let tp = (batch.topic.clone(), batch.partition);
        self.queues.entry(tp).or_default().push_front(batch);
    }
}

/// Exponential backoff from `base`, capped at 1 s (Kafka's retry.backoff.max.ms).
fn backoff(base: Duration, attempts: u32) -> Duration {
    base.saturating_mul(1 << attempts.min(10).saturating_sub(1))
        .min(Duration::from_secs(1))
        .max(base)
}
