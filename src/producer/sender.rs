//! The producer's sending task: it turns ready batches into bytes, sends
//! them to partition leaders, retries, and settles each batch's outcome. It
//! owns the metadata, the connections and the retry queues, so none of them
//! needs a lock; only the accumulator is shared with `send`.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::accumulator::Outcome;
use super::{ProduceError, Shared};
use crate::client::{BrokerConnection, ClientError, Cluster, PipelinedConnection};
use crate::protocol::ErrorCode;
use crate::protocol::messages::produce::{PartitionProduceData, ProduceRequest, TopicProduceData};
use crate::protocol::messages::{Request, Response};

type TopicPartition = (String, i32);

struct ClosedBatch {
    topic: String,
    partition: i32,
    bytes: Bytes,
    outcome: Arc<Outcome>,
    records: usize,
    /// Bytes of buffer memory its records hold until it is settled.
    held: usize,
    created: Instant,
    attempts: u32,
    retry_at: Option<Instant>,
    last_error: String,
}

struct Completion {
    node: i32,
    /// The connection the request went out on (`None` if none could be had).
    connection: Option<PipelinedConnection>,
    batches: Vec<ClosedBatch>,
    answer: Result<Option<Response>, ClientError>,
}

pub(super) struct Sender {
    shared: Arc<Shared>,
    cluster: Cluster,
    connections: HashMap<i32, PipelinedConnection>,
    queues: BTreeMap<TopicPartition, VecDeque<ClosedBatch>>,
    /// Partitions with a batch in flight: one at a time keeps their order.
    muted: HashSet<TopicPartition>,
    in_flight: JoinSet<Completion>,
    metadata_due: Instant,
    metadata_stale: bool,
}

type MetadataRequest = (String, oneshot::Sender<Result<(), ProduceError>>);

impl Sender {
    pub(super) fn new(shared: Arc<Shared>, cluster: Cluster) -> Sender {
        let metadata_due = Instant::now() + shared.config.metadata_max_age;
        Sender {
            shared,
            cluster,
            connections: HashMap::new(),
            queues: BTreeMap::new(),
            muted: HashSet::new(),
            in_flight: JoinSet::new(),
            metadata_due,
            metadata_stale: false,
        }
    }

    pub(super) async fn run(mut self, mut metadata_requests: mpsc::UnboundedReceiver<MetadataRequest>) {
        loop {
            let now = Instant::now();
            if self.metadata_stale || now >= self.metadata_due {
                self.refresh_metadata().await;
            }
            self.take_ready(now);
            self.fail_expired(now);
            self.dispatch(now).await;
            let (closing, idle, linger) = {
                let accumulator = self.shared.accumulator();
                (
                    accumulator.closing,
                    accumulator.outstanding == 0,
                    accumulator.next_linger(&self.shared.config),
                )
            };
            if idle {
                self.shared.idle.notify_waiters();
                if closing {
                    return;
                }
            }
            let wake = self.next_wake().min(linger.unwrap_or_else(|| self.next_wake()));
            tokio::select! {
                Some((topic, reply)) = metadata_requests.recv() => {
                    let _ = reply.send(self.learn_topic(&topic).await);
                }
                Some(done) = self.in_flight.join_next(), if !self.in_flight.is_empty() => {
                    if let Ok(completion) = done {
                        self.complete(completion);
                    }
                }
                _ = self.shared.wake.notified() => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// The earliest moment something is due: a retry, an expiry, a refresh.
    fn next_wake(&self) -> Instant {
        let config = &self.shared.config;
        let retries = self
            .queues
            .values()
            .filter_map(|q| q.front())
            .filter_map(|b| b.retry_at);
        let expiries = self
            .queues
            .values()
            .filter_map(|q| q.front())
            .map(|b| b.created + config.delivery_timeout);
        let metadata = if self.metadata_stale {
            Instant::now() + config.retry_backoff
        } else {
            self.metadata_due
        };
        retries.chain(expiries).fold(metadata, Instant::min)
    }

    async fn refresh_metadata(&mut self) {
        let topics = self.shared.accumulator().topics();
        if topics.is_empty() {
            self.metadata_due = Instant::now() + self.shared.config.metadata_max_age;
            self.metadata_stale = false;
            return;
        }
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        match self.cluster.refresh(&names, true).await {
            Ok(()) => {
                self.metadata_stale = false;
                self.metadata_due = Instant::now() + self.shared.config.metadata_max_age;
                let mut accumulator = self.shared.accumulator();
                for topic in &topics {
                    if let Some(info) = self.cluster.topic(topic) {
                        accumulator.set_partitions(topic, info.leaders.len() as u32);
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "metadata refresh failed");
                self.metadata_stale = true;
            }
        }
    }

    /// Learns a topic's partitions for `send` (creating the topic where the
    /// broker allows, as Kafka producers do).
    async fn learn_topic(&mut self, topic: &str) -> Result<(), ProduceError> {
        if self.shared.accumulator().knows(topic) {
            return Ok(());
        }
        let started = Instant::now();
        loop {
            match self.cluster.refresh(&[topic], true).await {
                Ok(()) => {
                    let count = self.cluster.topic(topic).map_or(0, |t| t.leaders.len() as u32);
                    if count > 0 {
                        self.shared.accumulator().set_partitions(topic, count);
                        return Ok(());
                    }
                    match self.cluster.topic_error(topic) {
                        // A topic being created (Kafka answers
                        // LEADER_NOT_AVAILABLE at first) or not yet
                        // visible: ask again, as the Java client does.
                        None | Some(ErrorCode::LeaderNotAvailable | ErrorCode::UnknownTopicOrPartition) => {}
                        Some(code) => {
                            return Err(ProduceError::Topic {
                                topic: topic.to_string(),
                                reason: code.to_string(),
                            });
                        }
                    }
                }
                Err(e) => tracing::debug!(topic, error = %e, "metadata for a new topic failed"),
            }
            if started.elapsed() >= self.shared.config.delivery_timeout {
                let reason = self
                    .cluster
                    .topic_error(topic)
                    .map_or_else(|| "no metadata for the topic".to_string(), |c| c.to_string());
                return Err(ProduceError::Topic {
                    topic: topic.to_string(),
                    reason,
                });
            }
            tokio::time::sleep(self.shared.config.retry_backoff).await;
        }
    }

    /// Moves the accumulator's ready batches into the send queues, as bytes.
    fn take_ready(&mut self, now: Instant) {
        let ready = self.shared.accumulator().take_ready(now, &self.shared.config);
        for full in ready {
            let records = full.batch.builder.len();
            match full.batch.builder.build_returning_spare(self.shared.config.compression) {
                Ok((bytes, spare)) => {
                    if let Some(spare) = spare {
                        self.shared.accumulator().recycle(spare, &self.shared.config);
                    }
                    self.queues
                        .entry((full.topic.clone(), full.partition))
                        .or_default()
                        .push_back(ClosedBatch {
                            topic: full.topic,
                            partition: full.partition,
                            bytes,
                            outcome: full.batch.outcome,
                            records,
                            held: full.batch.held,
                            created: full.batch.created,
                            attempts: 0,
                            retry_at: None,
                            last_error: String::new(),
                        });
                }
                Err(e) => {
                    let error = ProduceError::Topic {
                        topic: full.topic,
                        reason: format!("compression failed: {e}"),
                    };
                    self.shared
                        .settle(&full.batch.outcome, records, full.batch.held, Err(error));
                }
            }
        }
    }

    fn fail_expired(&mut self, now: Instant) {
        let timeout = self.shared.config.delivery_timeout;
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
        self.shared.settle(
            &batch.outcome,
            batch.records,
            batch.held,
            Err(error(batch.last_error.clone())),
        );
    }

    async fn connection(&mut self, node: i32) -> Result<PipelinedConnection, ClientError> {
        if let Some(connection) = self.connections.get(&node).filter(|c| !c.is_closed()) {
            return Ok(connection.clone());
        }
        let addr = self
            .cluster
            .broker_addr(node)
            .ok_or_else(|| ClientError::NoBroker(format!("node {node}")))?;
        let connection =
            BrokerConnection::connect(addr, &self.shared.config.client_id, self.shared.config.request_timeout).await?;
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
            if !batches.is_empty() && *bytes + size > self.shared.config.max_request_size {
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
                        connection: None,
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
            acks: self.shared.config.acks.wire(),
            timeout_ms: self.shared.config.request_timeout.as_millis().min(i32::MAX as u128) as i32,
            topic_data: topics
                .into_iter()
                .map(|(name, partition_data)| TopicProduceData {
                    name: name.to_string(),
                    partition_data,
                })
                .collect(),
        });
        let answer = connection.send(&request, self.shared.config.acks.wire() != 0).await;
        let used = connection.clone();
        let timeout = self.shared.config.request_timeout;
        self.in_flight.spawn(async move {
            let answer = match tokio::time::timeout(timeout, answer).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) => Err(ClientError::NoBroker("the connection task ended".into())),
                Err(_) => Err(ClientError::Timeout(timeout)),
            };
            Completion {
                node,
                connection: Some(used),
                batches,
                answer,
            }
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
                    self.shared
                        .settle(&batch.outcome, batch.records, batch.held, Ok((batch.partition, -1)));
                }
                return;
            }
            Ok(Some(_)) => unreachable!("a produce request is answered by a produce response"),
            Err(e) => {
                // The connection is suspect: drop it and retry everything.
                // Only if it is still the current one: a newer connection
                // opened meanwhile is not to blame.
                let current = self.connections.get(&completion.node);
                if completion
                    .connection
                    .as_ref()
                    .is_some_and(|c| current.is_some_and(|now| now.same(c)))
                {
                    self.connections.remove(&completion.node);
                }
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
                    self.shared.settle(
                        &batch.outcome,
                        batch.records,
                        batch.held,
                        Ok((batch.partition, answer.base_offset)),
                    );
                    // The request that held the batch is written and gone:
                    // its buffer is ours alone again.
                    if let Ok(buf) = batch.bytes.try_into_mut() {
                        self.shared.accumulator().recycle(buf, &self.shared.config);
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
        if now >= batch.created + self.shared.config.delivery_timeout {
            let timeout = self.shared.config.delivery_timeout;
            return self.fail(batch, |last| ProduceError::Timeout(timeout, last));
        }
        if batch.attempts > self.shared.config.retries {
            return match broker_error {
                Some((code, message)) => self.fail(batch, |_| ProduceError::Broker {
                    code,
                    message: message.clone(),
                }),
                None => {
                    let timeout = self.shared.config.delivery_timeout;
                    self.fail(batch, |last| ProduceError::Timeout(timeout, last))
                }
            };
        }
        tracing::debug!(topic = %batch.topic, partition = batch.partition, attempt = batch.attempts, reason = %batch.last_error, "retrying a batch");
        batch.retry_at = Some(now + backoff(self.shared.config.retry_backoff, batch.attempts));
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
