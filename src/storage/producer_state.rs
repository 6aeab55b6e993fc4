//! Idempotent producers' state in one partition: per producer id, the
//! current epoch and the last five batches' sequence ranges and offsets, as
//! Kafka keeps them (`ProducerStateManager`). Built from batch headers only.
//! A snapshot of it is written when a segment rolls and at a clean
//! shutdown (`<offset>.snapshot`, the state after every batch before that
//! offset), so recovery replays the headers after the newest snapshot
//! rather than the whole log, and the state outlives the segments that
//! retention deletes. A producer that has written nothing for
//! `producer.id.expiration.ms` is forgotten, as in Kafka: its next batch is
//! then taken as a new producer's, whatever its sequence.

use std::collections::{HashMap, VecDeque};

use bytes::{Buf, BufMut};

use crate::protocol::ErrorCode;
use crate::protocol::record_batch::BatchHeader;

/// How many recent batches per producer are remembered for deduplication:
/// a producer has at most five requests in flight per partition.
pub const BATCHES_REMEMBERED: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSequence {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub last_offset: i64,
}

#[derive(Debug, Clone, Default)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchSequence>,
    /// The largest timestamp of its last batch (Kafka's `lastTimestamp`):
    /// what expiry counts from.
    last_timestamp: i64,
}

/// What to do with a batch from an idempotent producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// New and in sequence (or from a producer this partition has not seen).
    Append,
    /// Already in the log: acknowledge with the original offsets.
    Duplicate(BatchSequence),
}

/// Why a batch from an idempotent producer is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    #[error("producer {producer_id} epoch {epoch} is older than its current epoch {current}")]
    StaleEpoch { producer_id: i64, epoch: i16, current: i16 },
    #[error("producer {producer_id}: sequence {first_seq} does not follow {last_seq}")]
    OutOfOrder {
        producer_id: i64,
        first_seq: i32,
        last_seq: i32,
    },
    #[error("producer {producer_id}: a new epoch {epoch} must start at sequence 0, not {first_seq}")]
    NewEpochNotAtZero {
        producer_id: i64,
        epoch: i16,
        first_seq: i32,
    },
}

impl SequenceError {
    pub fn error_code(&self) -> ErrorCode {
        match self {
            SequenceError::StaleEpoch { .. } => ErrorCode::InvalidProducerEpoch,
            SequenceError::OutOfOrder { .. } | SequenceError::NewEpochNotAtZero { .. } => {
                ErrorCode::OutOfOrderSequenceNumber
            }
        }
    }
}

/// The last sequence a batch covers; sequences wrap from `i32::MAX` to 0.
pub fn last_sequence(header: &BatchHeader) -> i32 {
    let last = i64::from(header.base_sequence) + i64::from(header.last_offset_delta);
    if last > i64::from(i32::MAX) {
        (last - i64::from(i32::MAX) - 1) as i32
    } else {
        last as i32
    }
}

fn follows(last_seq: i32, next_seq: i32) -> bool {
    i64::from(next_seq) == i64::from(last_seq) + 1 || (next_seq == 0 && last_seq == i32::MAX)
}

#[derive(Debug, Default)]
pub struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
}

impl ProducerStates {
    /// Checks a batch carrying a producer id against what this partition knows.
    pub fn check(&self, header: &BatchHeader) -> Result<SequenceCheck, SequenceError> {
        let producer_id = header.producer_id;
        let Some(entry) = self.producers.get(&producer_id) else {
            // The first batch of an unknown producer is taken whatever its
            // sequence, as Kafka does (the producer may have written to
            // other partitions, or its old batches may have been deleted).
            return Ok(SequenceCheck::Append);
        };
        let (epoch, first_seq) = (header.producer_epoch, header.base_sequence);
        if epoch < entry.epoch {
            return Err(SequenceError::StaleEpoch {
                producer_id,
                epoch,
                current: entry.epoch,
            });
        }
        if epoch > entry.epoch {
            return if first_seq == 0 {
                Ok(SequenceCheck::Append)
            } else {
                Err(SequenceError::NewEpochNotAtZero {
                    producer_id,
                    epoch,
                    first_seq,
                })
            };
        }
        let last_seq = last_sequence(header);
        if let Some(duplicate) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
        {
            return Ok(SequenceCheck::Duplicate(*duplicate));
        }
        match entry.batches.back() {
            Some(last) if !follows(last.last_seq, first_seq) => Err(SequenceError::OutOfOrder {
                producer_id,
                first_seq,
                last_seq: last.last_seq,
            }),
            _ => Ok(SequenceCheck::Append),
        }
    }

    /// Records a batch that was appended at `base_offset..=last_offset`.
    pub fn record(&mut self, header: &BatchHeader, base_offset: i64, last_offset: i64) {
        if header.producer_id < 0 {
            return;
        }
        let entry = self.producers.entry(header.producer_id).or_default();
        if header.producer_epoch != entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == BATCHES_REMEMBERED {
            entry.batches.pop_front();
        }
        entry.last_timestamp = header.max_timestamp;
        entry.batches.push_back(BatchSequence {
            first_seq: header.base_sequence,
            last_seq: last_sequence(header),
            base_offset,
            last_offset,
        });
    }

    /// The current epoch of `producer_id` here, if it has written here.
    pub fn epoch_of(&self, producer_id: i64) -> Option<i16> {
        self.producers.get(&producer_id).map(|e| e.epoch)
    }

    /// Forgets the producers whose last batch is `expiration_ms` or more
    /// older than `now_ms` (Kafka's `producer.id.expiration.ms`). Returns
    /// how many went.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, entry| now_ms.saturating_sub(entry.last_timestamp) < expiration_ms);
        before - self.producers.len()
    }

    /// How many producers this partition remembers.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// The largest producer id that has written here.
    pub fn max_producer_id(&self) -> Option<i64> {
        self.producers.keys().max().copied()
    }

    /// The snapshot file's bytes: every producer with its epoch, the
    /// timestamp of its last batch and its remembered batches, then a
    /// CRC32C of it all.
    pub fn encode_snapshot(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.put_slice(SNAPSHOT_MAGIC);
        out.put_u32(self.producers.len() as u32);
        let mut ids: Vec<&i64> = self.producers.keys().collect();
        ids.sort_unstable();
        for id in ids {
            let entry = &self.producers[id];
            out.put_i64(*id);
            out.put_i16(entry.epoch);
            out.put_i64(entry.last_timestamp);
            out.put_u8(entry.batches.len() as u8);
            for b in &entry.batches {
                out.put_i32(b.first_seq);
                out.put_i32(b.last_seq);
                out.put_i64(b.base_offset);
                out.put_i64(b.last_offset);
            }
        }
        let crc = crc32c::crc32c(&out);
        out.put_u32(crc);
        out
    }

    /// Reads a snapshot back; `None` if it is damaged in any way. A
    /// snapshot from before timestamps were kept (`MKP1`) gives each
    /// producer `loaded_at_ms` as its last batch's time, so it expires a
    /// full `producer.id.expiration.ms` after the upgrade.
    pub fn decode_snapshot(bytes: &[u8], loaded_at_ms: i64) -> Option<ProducerStates> {
        let body_len = bytes.len().checked_sub(4)?;
        let magic = bytes.get(..SNAPSHOT_MAGIC.len())?;
        let with_timestamps = match magic {
            m if m == SNAPSHOT_MAGIC => true,
            m if m == SNAPSHOT_MAGIC_V1 => false,
            _ => return None,
        };
        if body_len < SNAPSHOT_MAGIC.len() + 4 {
            return None;
        }
        if crc32c::crc32c(&bytes[..body_len]) != (&bytes[body_len..]).get_u32() {
            return None;
        }
        let mut body = &bytes[SNAPSHOT_MAGIC.len()..body_len];
        let count = body.get_u32();
        let mut producers = HashMap::new();
        for _ in 0..count {
            if body.remaining() < 11 + if with_timestamps { 8 } else { 0 } {
                return None;
            }
            let (id, epoch) = (body.get_i64(), body.get_i16());
            let last_timestamp = if with_timestamps { body.get_i64() } else { loaded_at_ms };
            let batches = body.get_u8() as usize;
            if batches > BATCHES_REMEMBERED || body.remaining() < batches * 24 {
                return None;
            }
            let batches = (0..batches)
                .map(|_| BatchSequence {
                    first_seq: body.get_i32(),
                    last_seq: body.get_i32(),
                    base_offset: body.get_i64(),
                    last_offset: body.get_i64(),
                })
                .collect();
            producers.insert(
                id,
                ProducerEntry {
                    epoch,
                    batches,
                    last_timestamp,
                },
            );
        }
        body.is_empty().then_some(ProducerStates { producers })
    }
}

const SNAPSHOT_MAGIC: &[u8; 4] = b"MKP2";
/// Snapshots written before producers' timestamps were kept.
const SNAPSHOT_MAGIC_V1: &[u8; 4] = b"MKP1";

#[cfg(test)]
mod tests {
    use super::*;

    fn header(producer_id: i64, epoch: i16, base_sequence: i32, records: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            batch_length: 0,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: records - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id,
            producer_epoch: epoch,
            base_sequence,
            records_count: records,
        }
    }

    #[test]
    fn sequences_duplicates_gaps_and_epochs() {
        let mut states = ProducerStates::default();
        // Unknown producer: any sequence is accepted.
        assert_eq!(states.check(&header(7, 0, 40, 5)), Ok(SequenceCheck::Append));
        states.record(&header(7, 0, 40, 5), 0, 4);
        assert_eq!(states.check(&header(7, 0, 45, 5)), Ok(SequenceCheck::Append));
        states.record(&header(7, 0, 45, 5), 5, 9);
        // A duplicate of either remembered batch.
        let first = BatchSequence {
            first_seq: 40,
            last_seq: 44,
            base_offset: 0,
            last_offset: 4,
        };
        assert_eq!(states.check(&header(7, 0, 40, 5)), Ok(SequenceCheck::Duplicate(first)));
        // A gap.
        assert_eq!(
            states.check(&header(7, 0, 51, 1)).unwrap_err().error_code(),
            ErrorCode::OutOfOrderSequenceNumber
        );
        // A stale epoch.
        states.record(&header(7, 1, 0, 1), 10, 10);
        assert_eq!(
            states.check(&header(7, 0, 50, 1)).unwrap_err().error_code(),
            ErrorCode::InvalidProducerEpoch
        );
        // A new epoch must start at 0.
        assert!(states.check(&header(7, 2, 3, 1)).is_err());
        assert_eq!(states.check(&header(7, 2, 0, 1)), Ok(SequenceCheck::Append));
    }

    #[test]
    fn only_five_batches_are_remembered() {
        let mut states = ProducerStates::default();
        for i in 0..6 {
            states.record(&header(1, 0, i, 1), i64::from(i), i64::from(i));
        }
        assert!(matches!(
            states.check(&header(1, 0, 1, 1)),
            Ok(SequenceCheck::Duplicate(_))
        ));
        // The sixth-last is forgotten: no longer a duplicate, and out of order.
        assert!(states.check(&header(1, 0, 0, 1)).is_err());
    }

    #[test]
    fn a_snapshot_round_trips_and_refuses_damage() {
        let mut states = ProducerStates::default();
        for i in 0..7 {
            states.record(&header(1, 0, i, 1), i64::from(i), i64::from(i));
        }
        states.record(&header(9, 3, 0, 4), 7, 10);
        let bytes = states.encode_snapshot();
        let read = ProducerStates::decode_snapshot(&bytes, 0).unwrap();
        assert_eq!(read.epoch_of(9), Some(3));
        assert!(matches!(
            read.check(&header(1, 0, 6, 1)),
            Ok(SequenceCheck::Duplicate(_))
        ));
        assert_eq!(read.check(&header(1, 0, 7, 1)), Ok(SequenceCheck::Append));
        assert!(
            read.check(&header(1, 0, 9, 1)).is_err(),
            "the gap is seen after a snapshot"
        );
        let mut scribbled = bytes.clone();
        scribbled[9] ^= 1;
        assert!(ProducerStates::decode_snapshot(&scribbled, 0).is_none());
        assert!(ProducerStates::decode_snapshot(&bytes[..bytes.len() - 2], 0).is_none());
    }

    #[test]
    fn producers_that_wrote_nothing_for_the_expiration_time_are_forgotten() {
        let mut states = ProducerStates::default();
        let mut at = |producer_id, timestamp| {
            let mut h = header(producer_id, 0, 0, 1);
            h.max_timestamp = timestamp;
            states.record(&h, 0, 0);
        };
        at(1, 1_000);
        at(2, 5_000);
        assert_eq!(states.expire(10_999, 10_000), 0);
        assert_eq!(states.expire(11_000, 10_000), 1, "exactly the expiration time");
        assert_eq!((states.epoch_of(1), states.epoch_of(2)), (None, Some(0)));
        // Forgotten: its next batch is a new producer's, whatever its sequence.
        assert_eq!(states.check(&header(1, 0, 42, 1)), Ok(SequenceCheck::Append));

        let read = ProducerStates::decode_snapshot(&states.encode_snapshot(), 0).unwrap();
        let mut read = read;
        assert_eq!(read.expire(14_999, 10_000), 0, "the timestamp survives a snapshot");
        assert_eq!(read.expire(15_000, 10_000), 1);
    }

    #[test]
    fn a_snapshot_without_timestamps_counts_from_when_it_was_read() {
        let mut states = ProducerStates::default();
        states.record(&header(7, 2, 0, 3), 0, 2);
        // The same snapshot as written before timestamps: no i64 after the
        // epoch, the old magic, its own CRC.
        let current = states.encode_snapshot();
        let mut old = b"MKP1".to_vec();
        old.extend_from_slice(&current[4..8]); // producer count
        old.extend_from_slice(&current[8..18]); // id and epoch
        old.extend_from_slice(&current[26..current.len() - 4]); // batches
        let crc = crc32c::crc32c(&old);
        old.extend_from_slice(&crc.to_be_bytes());
        let mut read = ProducerStates::decode_snapshot(&old, 50_000).unwrap();
        assert_eq!(read.epoch_of(7), Some(2));
        assert_eq!(read.check(&header(7, 2, 3, 1)), Ok(SequenceCheck::Append));
        assert_eq!(read.expire(59_999, 10_000), 0);
        assert_eq!(read.expire(60_000, 10_000), 1);
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        let mut states = ProducerStates::default();
        let near_end = header(3, 0, i32::MAX - 1, 2);
        assert_eq!(last_sequence(&near_end), i32::MAX);
        states.record(&near_end, 0, 1);
        assert_eq!(states.check(&header(3, 0, 0, 3)), Ok(SequenceCheck::Append));
        let across = header(3, 0, i32::MAX, 3);
        assert_eq!(last_sequence(&across), 1);
    }
}
