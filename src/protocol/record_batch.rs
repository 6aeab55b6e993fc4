//! Record batch v2 headers: parsing, validation and the two fields the broker
//! rewrites. Individual records are never looked at here.
//!
//! Layout (all big-endian):
//!
//! ```text
//!  0  base_offset            i64  \ rewritten by the broker; both lie
//!  8  batch_length           i32  | before the CRC'd range
//! 12  partition_leader_epoch i32  /
//! 16  magic                  i8   (2)
//! 17  crc                    u32  CRC32C of bytes 21..end
//! 21  attributes             i16  codec (bits 0-2), timestamp type (3),
//!                                 transactional (4), control (5)
//! 23  last_offset_delta      i32
//! 27  base_timestamp         i64
//! 35  max_timestamp          i64
//! 43  producer_id            i64
//! 51  producer_epoch         i16
//! 53  base_sequence          i32
//! 57  records_count          i32
//! 61  records...
//! ```

use bytes::{BufMut, Bytes};

use super::error::ErrorCode;

/// Size of the fixed part of a v2 batch.
pub const BATCH_HEADER_BYTES: usize = 61;
/// Bytes before `batch_length`'s count starts (base offset + the length itself).
pub const LOG_OVERHEAD_BYTES: usize = 12;
/// Where the CRC'd range starts.
const CRC_START: usize = 21;

/// Compression codecs, numbered as in the attributes field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None = 0,
    Gzip = 1,
    Snappy = 2,
    Lz4 = 3,
    Zstd = 4,
}

impl Compression {
    pub fn from_attributes(attributes: i16) -> Option<Compression> {
        match attributes & 0x07 {
            0 => Some(Compression::None),
            1 => Some(Compression::Gzip),
            2 => Some(Compression::Snappy),
            3 => Some(Compression::Lz4),
            4 => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// The fixed header of a v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn be<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

impl BatchHeader {
    /// Reads the header fields; `bytes` must hold at least [`BATCH_HEADER_BYTES`].
    pub fn parse(bytes: &[u8]) -> Option<BatchHeader> {
        if bytes.len() < BATCH_HEADER_BYTES {
            return None;
        }
        Some(BatchHeader {
            base_offset: i64::from_be_bytes(be(bytes, 0)),
            batch_length: i32::from_be_bytes(be(bytes, 8)),
            partition_leader_epoch: i32::from_be_bytes(be(bytes, 12)),
            magic: bytes[16] as i8,
            crc: u32::from_be_bytes(be(bytes, 17)),
            attributes: i16::from_be_bytes(be(bytes, 21)),
            last_offset_delta: i32::from_be_bytes(be(bytes, 23)),
            base_timestamp: i64::from_be_bytes(be(bytes, 27)),
            max_timestamp: i64::from_be_bytes(be(bytes, 35)),
            producer_id: i64::from_be_bytes(be(bytes, 43)),
            producer_epoch: i16::from_be_bytes(be(bytes, 51)),
            base_sequence: i32::from_be_bytes(be(bytes, 53)),
            records_count: i32::from_be_bytes(be(bytes, 57)),
        })
    }

    /// Total size of the batch on the wire and in the log.
    pub fn total_bytes(&self) -> usize {
        // A negative length (only in a header not yet validated) counts as 0.
        LOG_OVERHEAD_BYTES + self.batch_length.max(0) as usize
    }

    pub fn compression(&self) -> Option<Compression> {
        Compression::from_attributes(self.attributes)
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    /// The timestamp type bit: LogAppendTime, whose one timestamp (the
    /// batch's max_timestamp, set by the broker) is every record's.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & 0x08 != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }

    /// Number of offsets the batch takes in the log.
    pub fn offset_count(&self) -> i64 {
        i64::from(self.last_offset_delta) + 1
    }

    pub fn last_offset(&self) -> i64 {
        // Saturating: the header may be a client's or a damaged file's.
        self.base_offset.saturating_add(i64::from(self.last_offset_delta))
    }
}

/// CRC32C over the bytes the batch's CRC covers.
pub fn batch_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[CRC_START..])
}

/// Why a produced record set was refused; each maps to Kafka's error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("record set is empty or null; exactly one record batch is required")]
    Missing,
    #[error("record set of {0} bytes is too short for a record batch header")]
    TooShort(usize),
    #[error("magic {0}: produce v3+ carries record batches of magic 2 only")]
    UnsupportedMagic(i8),
    #[error("batch length {declared} does not match the {actual} bytes present")]
    LengthMismatch { declared: i64, actual: usize },
    #[error("{0} bytes follow the first record batch; exactly one batch per partition is allowed")]
    MoreThanOneBatch(usize),
    #[error("CRC32C mismatch: batch says {stored:#010x}, bytes give {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("records count {count} does not match last offset delta {last_offset_delta}")]
    CountMismatch { count: i32, last_offset_delta: i32 },
    #[error("unknown compression codec {0}")]
    UnknownCompression(i16),
    #[error("zstd compression needs produce v7 or later")]
    ZstdBeforeV7,
    #[error("control batches may only be written by the broker")]
    ControlBatch,
    #[error("a batch with a producer id needs an epoch and a sequence, not {producer_epoch} and {base_sequence}")]
    InvalidProducerFields { producer_epoch: i16, base_sequence: i32 },
    #[error("batch of {size} bytes exceeds the maximum of {max} bytes")]
    TooLarge { size: usize, max: usize },
}

impl BatchError {
    pub fn error_code(&self) -> ErrorCode {
        match self {
            BatchError::TooShort(_) | BatchError::LengthMismatch { .. } | BatchError::CrcMismatch { .. } => {
                ErrorCode::CorruptMessage
            }
            BatchError::UnknownCompression(_) | BatchError::ZstdBeforeV7 => ErrorCode::UnsupportedCompressionType,
            BatchError::TooLarge { .. } => ErrorCode::MessageTooLarge,
            BatchError::Missing
            | BatchError::UnsupportedMagic(_)
            | BatchError::MoreThanOneBatch(_)
            | BatchError::CountMismatch { .. }
            | BatchError::ControlBatch
            | BatchError::InvalidProducerFields { .. } => ErrorCode::InvalidRecord,
        }
    }
}

/// Validates the record set of one partition in a Produce request as Kafka
/// does (`ProduceRequest.validateRecords` and the batch-level checks of
/// `LogValidator`): exactly one batch of magic 2, lengths that agree, a CRC
/// that matches, a codec we know (zstd only from produce v7), no control
/// batch, and a size within `max_batch_bytes`. Records are not decompressed.
pub fn validate_produced_batch(
    records: Option<&Bytes>,
    produce_version: i16,
    max_batch_bytes: usize,
) -> Result<BatchHeader, BatchError> {
    let bytes = match records {
        Some(bytes) if !bytes.is_empty() => bytes,
        _ => return Err(BatchError::Missing),
    };
    // Magic sits at byte 16 in every message format, so check it first: a
    // legacy message set must be refused as such, not as a bad v2 header.
    if bytes.len() > 16 && bytes[16] != 2 {
        return Err(BatchError::UnsupportedMagic(bytes[16] as i8));
    }
    let header = BatchHeader::parse(bytes).ok_or(BatchError::TooShort(bytes.len()))?;
    let declared = LOG_OVERHEAD_BYTES as i64 + i64::from(header.batch_length);
    if header.batch_length < (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32 || declared > bytes.len() as i64 {
        return Err(BatchError::LengthMismatch {
            declared,
            actual: bytes.len(),
        });
    }
    if (declared as usize) < bytes.len() {
        return Err(BatchError::MoreThanOneBatch(bytes.len() - declared as usize));
    }
    if bytes.len() > max_batch_bytes {
        return Err(BatchError::TooLarge {
            size: bytes.len(),
            max: max_batch_bytes,
        });
    }
    let computed = batch_crc(bytes);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    match header.compression() {
        None => return Err(BatchError::UnknownCompression(header.attributes & 0x07)),
        Some(Compression::Zstd) if produce_version < 7 => return Err(BatchError::ZstdBeforeV7),
        Some(_) => {}
    }
    // In i64: a last_offset_delta of i32::MAX must not overflow (found by
    // fuzzing).
    if header.records_count < 0
        || header.last_offset_delta < 0
        || i64::from(header.records_count) != i64::from(header.last_offset_delta) + 1
    {
        return Err(BatchError::CountMismatch {
            count: header.records_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    if header.is_control() {
        return Err(BatchError::ControlBatch);
    }
    if header.producer_id >= 0 && (header.base_sequence < 0 || header.producer_epoch < 0) {
        return Err(BatchError::InvalidProducerFields {
            producer_epoch: header.producer_epoch,
            base_sequence: header.base_sequence,
        });
    }
    Ok(header)
}

/// The 16 bytes that replace the start of a batch when it is appended: the
/// assigned base offset, the unchanged length, and the leader epoch. Neither
/// rewritten field is covered by the CRC, so the rest of the batch is stored
/// exactly as the producer sent it.
pub fn rewritten_prefix(batch: &[u8], base_offset: i64, leader_epoch: i32) -> [u8; 16] {
    let mut prefix = [0u8; 16];
    let mut out = &mut prefix[..];
    out.put_i64(base_offset);
    out.put_slice(&batch[8..12]);
    out.put_i32(leader_epoch);
    prefix
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::protocol::records::{Record, RecordBatchBuilder};

    pub(crate) fn sample_batch(records: usize) -> Bytes {
        let mut builder = RecordBatchBuilder::new(1_700_000_000_000);
        for i in 0..records {
            builder.push(Record {
                key: Some(Bytes::from(format!("key-{i}"))),
                value: Some(Bytes::from(format!("value-{i}"))),
                ..Record::default()
            });
        }
        builder.build(Compression::None).unwrap()
    }

    /// Found by fuzzing (fuzz/fuzz_targets/record_batch.rs): the count
    /// check overflowed on a last_offset_delta of i32::MAX.
    #[test]
    fn a_last_offset_delta_of_i32_max_is_refused_not_overflowed() {
        let mut batch = sample_batch(1).to_vec();
        batch[23..27].copy_from_slice(&i32::MAX.to_be_bytes());
        let crc = batch_crc(&batch);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        let result = validate_produced_batch(Some(&Bytes::from(batch)), 9, 1 << 20);
        assert!(matches!(result, Err(BatchError::CountMismatch { .. })), "{result:?}");
    }

    #[test]
    fn a_well_formed_batch_validates() {
        let batch = sample_batch(3);
        let header = validate_produced_batch(Some(&batch), 9, 1 << 20).unwrap();
        assert_eq!(header.records_count, 3);
        assert_eq!(header.offset_count(), 3);
        assert_eq!(header.total_bytes(), batch.len());
    }

    #[test]
    fn each_defect_gets_its_error_code() {
        let batch = sample_batch(2);
        let check = |bytes: Vec<u8>, version: i16| {
            validate_produced_batch(Some(&Bytes::from(bytes)), version, 1 << 20)
                .unwrap_err()
                .error_code()
        };
        let mut corrupt = batch.to_vec();
        *corrupt.last_mut().unwrap() ^= 0xff;
        assert_eq!(check(corrupt, 9), ErrorCode::CorruptMessage);

        let mut two = batch.to_vec();
        two.extend_from_slice(&batch);
        assert_eq!(check(two, 9), ErrorCode::InvalidRecord);

        let mut legacy = batch.to_vec();
        legacy[16] = 1;
        assert_eq!(check(legacy, 9), ErrorCode::InvalidRecord);

        assert_eq!(check(batch[..40].to_vec(), 9), ErrorCode::CorruptMessage);
        assert_eq!(check(batch[..batch.len() - 1].to_vec(), 9), ErrorCode::CorruptMessage);

        let mut zstd = batch.to_vec();
        zstd[22] |= 4;
        let crc = batch_crc(&zstd);
        zstd[17..21].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(check(zstd.clone(), 6), ErrorCode::UnsupportedCompressionType);
        assert!(validate_produced_batch(Some(&Bytes::from(zstd)), 7, 1 << 20).is_ok());

        let mut codec7 = batch.to_vec();
        codec7[22] |= 7;
        let crc = batch_crc(&codec7);
        codec7[17..21].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(check(codec7, 9), ErrorCode::UnsupportedCompressionType);

        assert_eq!(
            validate_produced_batch(Some(&batch), 9, batch.len() - 1)
                .unwrap_err()
                .error_code(),
            ErrorCode::MessageTooLarge
        );
        assert_eq!(
            validate_produced_batch(None, 9, 1 << 20).unwrap_err().error_code(),
            ErrorCode::InvalidRecord
        );
    }

    #[test]
    fn the_rewritten_prefix_keeps_the_crc_valid() {
        let batch = sample_batch(2);
        let prefix = rewritten_prefix(&batch, 42, 0);
        let mut stored = prefix.to_vec();
        stored.extend_from_slice(&batch[16..]);
        let header = BatchHeader::parse(&stored).unwrap();
        assert_eq!(header.base_offset, 42);
        assert_eq!(header.partition_leader_epoch, 0);
        assert_eq!(batch_crc(&stored), header.crc);
        assert_eq!(&stored[16..], &batch[16..]);
    }
}
