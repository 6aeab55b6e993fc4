//! Where records wait for their batch to be sent: open batches per
//! partition, filled by `Producer::send` on the caller's task under a short
//! lock (no message to the sending task per record), and handed to the
//! sending task once full, lingered or flushed.
//!
//! Every record of a batch shares one [`Outcome`]: the batch's result is set
//! once and each record's future reads its own offset from it.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{ProduceError, ProducerConfig, ProducerRecord};
use crate::protocol::records::{Record, RecordBatchBuilder};

/// What a batch came to: its partition and base offset (-1 with acks=0),
/// or the error that failed it.
pub(super) type BatchResult = Result<(i32, i64), ProduceError>;

/// The shared result of one batch.
#[derive(Default)]
pub struct Outcome {
    result: OnceLock<BatchResult>,
    done: Notify,
}

impl Outcome {
    pub(super) fn failed(error: ProduceError) -> Arc<Outcome> {
        let outcome = Arc::new(Outcome::default());
        let _ = outcome.result.set(Err(error));
        outcome
    }

    pub(super) fn finish(&self, result: BatchResult) {
        let _ = self.result.set(result);
        self.done.notify_waiters();
    }

    pub(super) fn get(&self) -> Option<&BatchResult> {
        self.result.get()
    }

    /// Resolves once the result is set.
    pub(super) async fn wait(&self) {
        loop {
            let done = self.done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            if self.result.get().is_some() {
                return;
            }
            done.await;
        }
    }
}

pub(super) struct OpenBatch {
    pub builder: RecordBatchBuilder,
    pub outcome: Arc<Outcome>,
    pub created: Instant,
    /// Bytes of the producer's buffer memory its records hold.
    pub held: usize,
}

/// A batch that takes no more records, not yet turned into bytes.
pub(super) struct FullBatch {
    pub topic: String,
    pub partition: i32,
    pub batch: OpenBatch,
}

struct TopicState {
    partitions: u32,
    /// Keyless records go here until its batch closes.
    sticky: i32,
    open: HashMap<i32, OpenBatch>,
}

#[derive(Default)]
pub(super) struct Accumulator {
    topics: HashMap<String, TopicState>,
    full: Vec<FullBatch>,
    /// Buffers of acknowledged batches, for the next ones to reuse: a
    /// batch.size allocation is otherwise fresh memory the kernel faults
    /// in and zeroes, every batch. At most buffer.memory's worth.
    spare: Vec<bytes::BytesMut>,
    /// Records accepted and not yet resolved (what `flush` waits for).
    pub outstanding: usize,
    pub flushes: usize,
    pub closing: bool,
}

/// What became of a record given to [`Accumulator::append`].
pub(super) enum Appended {
    /// In a batch: the batch's outcome, the record's index in it, and
    /// whether the sending task should look (a batch opened or filled).
    Placed {
        outcome: Arc<Outcome>,
        index: i64,
        wake: bool,
    },
    Refused(ProduceError),
    /// The topic's partitions are not known yet: the record comes back.
    UnknownTopic(Box<ProducerRecord>),
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Accumulator {
    /// Keeps a batch buffer for a new batch, if it is about batch.size (a
    /// buffer grown for one large record is not kept) and fewer than
    /// buffer.memory's worth are kept already.
    pub fn recycle(&mut self, buf: bytes::BytesMut, config: &ProducerConfig) {
        let most = (config.buffer_memory / config.batch_size.max(1)).max(1);
        let fits = (config.batch_size..=2 * config.batch_size).contains(&buf.capacity());
        if fits && self.spare.len() < most {
            self.spare.push(buf);
        }
    }

    pub fn knows(&self, topic: &str) -> bool {
        self.topics.contains_key(topic)
    }

    /// Records a topic's partition count (from metadata).
    pub fn set_partitions(&mut self, topic: &str, partitions: u32) {
        if partitions == 0 {
            return;
        }
        match self.topics.get_mut(topic) {
            Some(state) => state.partitions = partitions,
            None => {
                self.topics.insert(
                    topic.to_string(),
                    TopicState {
                        partitions,
                        sticky: 0,
                        open: HashMap::new(),
                    },
                );
            }
        }
    }

    /// Appends a record to its partition's open batch. Returns the batch's
    /// outcome, the record's index in it, and whether the sending task
    /// should look (a batch was opened or filled).
    pub fn append(&mut self, config: &ProducerConfig, record: ProducerRecord, size: usize, held: usize) -> Appended {
        let Some(state) = self.topics.get_mut(&record.topic) else {
            return Appended::UnknownTopic(Box::new(record));
        };
        let count = state.partitions;
        let partition = match (record.partition, &record.key) {
            (Some(p), _) if p >= 0 && (p as u32) < count => p,
            (Some(p), _) => {
                let topic = record.topic.clone();
                return Appended::Refused(ProduceError::Topic {
                    topic,
                    reason: format!("no partition {p}"),
                });
            }
            (None, Some(key)) => config.partitioner.partition(key, count) as i32,
            (None, None) => {
                state.sticky %= count as i32;
                state.sticky
            }
        };
        let mut wake = false;
        if state
            .open
            .get(&partition)
            .is_some_and(|b| b.builder.size_bytes() + size > config.batch_size)
        {
            let batch = state.open.remove(&partition).expect("checked");
            if state.sticky == partition {
                state.sticky = (partition + 1) % count as i32;
            }
            self.full.push(FullBatch {
                topic: record.topic.clone(),
                partition,
                batch,
            });
            wake = true;
        }
        let spare = &mut self.spare;
        let batch = state.open.entry(partition).or_insert_with(|| {
            wake = true;
            let buf = spare.pop().unwrap_or_default();
            OpenBatch {
                builder: RecordBatchBuilder::reusing(now_ms(), buf, config.batch_size),
                outcome: Arc::new(Outcome::default()),
                created: Instant::now(),
                held: 0,
            }
        });
        batch.held += held;
        let index = batch.builder.len() as i64;
        batch.builder.push(Record {
            timestamp: record.timestamp.unwrap_or_else(now_ms),
            key: record.key,
            value: record.value,
            headers: record.headers,
            ..Record::default()
        });
        let outcome = batch.outcome.clone();
        if batch.builder.size_bytes() >= config.batch_size {
            let batch = state.open.remove(&partition).expect("present");
            if state.sticky == partition {
                state.sticky = (partition + 1) % count as i32;
            }
            self.full.push(FullBatch {
                topic: record.topic,
                partition,
                batch,
            });
            wake = true;
        }
        self.outstanding += 1;
        Appended::Placed { outcome, index, wake }
    }

    /// Takes the batches ready to go: full ones, and open ones whose linger
    /// has passed (all of them while a flush waits or the producer closes).
    pub fn take_ready(&mut self, now: Instant, config: &ProducerConfig) -> Vec<FullBatch> {
        let everything = self.flushes > 0 || self.closing;
        let mut ready = std::mem::take(&mut self.full);
        for (topic, state) in &mut self.topics {
            let due: Vec<i32> = state
                .open
                .iter()
                .filter(|(_, b)| everything || now >= b.created + config.linger)
                .map(|(p, _)| *p)
                .collect();
            for partition in due {
                let batch = state.open.remove(&partition).expect("listed");
                if state.sticky == partition {
                    state.sticky = (partition + 1) % state.partitions as i32;
                }
                ready.push(FullBatch {
                    topic: topic.clone(),
                    partition,
                    batch,
                });
            }
        }
        ready
    }

    /// When the oldest open batch's linger ends.
    pub fn next_linger(&self, config: &ProducerConfig) -> Option<Instant> {
        self.topics
            .values()
            .flat_map(|s| s.open.values())
            .map(|b| b.created + config.linger)
            .min()
    }

    /// Topics with records waiting or known partition counts.
    pub fn topics(&self) -> Vec<String> {
        self.topics.keys().cloned().collect()
    }
}

/// A record's view of its batch's outcome.
pub(super) fn record_result(result: &BatchResult, index: i64) -> Result<super::RecordMetadata, ProduceError> {
    match result {
        Ok((partition, base_offset)) => Ok(super::RecordMetadata {
            partition: *partition,
            offset: if *base_offset >= 0 { base_offset + index } else { -1 },
        }),
        Err(e) => Err(e.clone()),
    }
}

/// Keeps the key and value sizes of a record, for the batch size check.
pub(super) fn record_size(record: &ProducerRecord) -> usize {
    let headers: usize = record
        .headers
        .iter()
        .map(|(k, v)| k.len() + v.as_ref().map_or(0, Bytes::len) + 4)
        .sum();
    record.key.as_ref().map_or(0, Bytes::len) + record.value.as_ref().map_or(0, Bytes::len) + headers + 16
}
