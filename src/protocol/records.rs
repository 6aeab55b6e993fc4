//! Individual records inside a v2 batch: building batches (for clients and
//! tests) and reading them back, compressed or not.
//!
//! The broker's produce and fetch paths never come here: they move whole
//! batches. This is for the bundled client and for tests that check what
//! real clients wrote.

use std::io::{Read, Write};

use bytes::{BufMut, Bytes, BytesMut};
use nom::Parser;
use nom::bytes::complete::take;
use nom::number::complete::be_i8;

use super::error::DecodeError;
use super::primitives::{PResult, put_varint, put_varlong, varint, varint_len, varlong, varlong_len};
use super::record_batch::{BATCH_HEADER_BYTES, BatchHeader, Compression, LOG_OVERHEAD_BYTES, batch_crc};

/// One record, with absolute offset and timestamp.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error("batch header is malformed")]
    BadHeader,
    #[error("unknown compression codec in attributes {0:#x}")]
    UnknownCompression(i16),
    #[error("decompression failed: {0}")]
    Decompress(#[from] std::io::Error),
    #[error("record is malformed: {0}")]
    Decode(#[from] DecodeError),
    #[error("batch announces {announced} records but holds {found}")]
    CountMismatch { announced: i32, found: usize },
}

/// Builds one uncompressed-or-compressed v2 batch (base offset 0, no producer id).
///
/// Records are encoded once, after room left for the batch header, so an
/// uncompressed batch is finished in place: the header and CRC are written
/// into that room and the buffer becomes the batch without another copy.
pub struct RecordBatchBuilder {
    base_timestamp: i64,
    max_timestamp: i64,
    count: i32,
    /// The header's room, then the encoded records.
    buf: BytesMut,
}

impl RecordBatchBuilder {
    pub fn new(base_timestamp: i64) -> Self {
        Self::with_capacity(base_timestamp, 0)
    }

    /// A builder whose buffer holds `bytes` of batch before it grows: a
    /// producer passes its batch.size, so filling a batch never copies
    /// the records to a larger buffer.
    pub fn with_capacity(base_timestamp: i64, bytes: usize) -> Self {
        Self::reusing(base_timestamp, BytesMut::new(), bytes)
    }

    /// A builder that writes into `buf` (emptied first; the buffer of a
    /// batch already sent), grown to `bytes` if it is smaller.
    pub fn reusing(base_timestamp: i64, mut buf: BytesMut, bytes: usize) -> Self {
        buf.clear();
        buf.reserve(bytes.max(BATCH_HEADER_BYTES));
        buf.put_bytes(0, BATCH_HEADER_BYTES);
        RecordBatchBuilder {
            base_timestamp,
            max_timestamp: base_timestamp,
            count: 0,
            buf,
        }
    }

    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Size of the batch if built now without compression.
    pub fn size_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Appends a record; its `offset` is ignored (records are numbered in
    /// push order) and a zero timestamp means the batch's base timestamp.
    pub fn push(&mut self, record: Record) {
        let timestamp = if record.timestamp == 0 {
            self.base_timestamp
        } else {
            record.timestamp
        };
        self.max_timestamp = self.max_timestamp.max(timestamp);
        let timestamp_delta = timestamp - self.base_timestamp;
        // The record's length comes first, so add it up before writing: no
        // scratch buffer per record.
        let field = |bytes: Option<&[u8]>| bytes.map_or(varint_len(-1), |b| varint_len(b.len() as i32) + b.len());
        let headers_len: usize = record
            .headers
            .iter()
            .map(|(k, v)| field(Some(k.as_bytes())) + field(v.as_deref()))
            .sum();
        let body_len = 1
            + varlong_len(timestamp_delta)
            + varint_len(self.count)
            + field(record.key.as_deref())
            + field(record.value.as_deref())
            + varint_len(record.headers.len() as i32)
            + headers_len;
        let records = &mut self.buf;
        records.reserve(body_len + 5);
        put_varint(records, body_len as i32);
        records.put_i8(0);
        put_varlong(records, timestamp_delta);
        put_varint(records, self.count);
        put_nullable_varint_bytes(records, record.key.as_deref());
        put_nullable_varint_bytes(records, record.value.as_deref());
        put_varint(records, record.headers.len() as i32);
        for (key, value) in &record.headers {
            put_nullable_varint_bytes(records, Some(key.as_bytes()));
            put_nullable_varint_bytes(records, value.as_deref());
        }
        self.count += 1;
    }

    /// Finishes the batch: compresses the records and writes the header and CRC.
    pub fn build(self, compression: Compression) -> std::io::Result<Bytes> {
        self.build_returning_spare(compression).map(|(batch, _)| batch)
    }

    /// Finishes the batch, and gives back a buffer it does not need, for
    /// the next batch: the records' buffer of a compressed batch or, when
    /// an uncompressed batch fills less than half of its buffer, that
    /// buffer (the batch takes an exact copy). A batch waiting for its
    /// answer then holds about what its records weigh.
    pub fn build_returning_spare(self, compression: Compression) -> std::io::Result<(Bytes, Option<BytesMut>)> {
        let (mut batch, spare) = match compression {
            Compression::None => (self.buf, None),
            _ => {
                let payload = compress(compression, &self.buf[BATCH_HEADER_BYTES..])?;
                let mut batch = BytesMut::with_capacity(BATCH_HEADER_BYTES + payload.len());
                batch.put_bytes(0, BATCH_HEADER_BYTES);
                batch.put_slice(&payload);
                (batch, Some(self.buf))
            }
        };
        let payload_len = batch.len() - BATCH_HEADER_BYTES;
        let mut header = &mut batch[..BATCH_HEADER_BYTES];
        header.put_i64(0);
        header.put_i32((BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES + payload_len) as i32);
        header.put_i32(-1);
        header.put_i8(2);
        header.put_u32(0);
        header.put_i16(compression as i16);
        header.put_i32(self.count - 1);
        header.put_i64(self.base_timestamp);
        header.put_i64(self.max_timestamp);
        header.put_i64(-1);
        header.put_i16(-1);
        header.put_i32(-1);
        header.put_i32(self.count);
        let crc = batch_crc(&batch);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        if spare.is_none() && batch.capacity() > 2 * batch.len() {
            return Ok((Bytes::copy_from_slice(&batch), Some(batch)));
        }
        Ok((batch.freeze(), spare))
    }
}

fn put_nullable_varint_bytes(buf: &mut impl BufMut, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varint(buf, -1),
        Some(b) => {
            put_varint(buf, b.len() as i32);
            buf.put_slice(b);
        }
    }
}

fn compress(compression: Compression, raw: &[u8]) -> std::io::Result<Vec<u8>> {
    Ok(match compression {
        Compression::None => raw.to_vec(),
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(raw)?;
            encoder.finish()?
        }
        Compression::Snappy => snap::raw::Encoder::new()
            .compress_vec(raw)
            .map_err(std::io::Error::other)?,
        Compression::Lz4 => {
            let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
            encoder.write_all(raw)?;
            encoder.finish().map_err(std::io::Error::other)?
        }
        Compression::Zstd => zstd::encode_all(raw, 3)?,
    })
}

/// Snappy as the Java client frames it (xerial): a magic header, then
/// length-prefixed raw snappy blocks. librdkafka sends raw snappy instead.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";

/// The most a batch's records may take once decompressed. Decompression
/// reads what the producer sent, and a few compressed bytes can claim (or
/// expand to) gigabytes: past this the batch is refused, not allocated.
pub const DECOMPRESSED_BATCH_BYTES_MAX: usize = 128 * 1024 * 1024;

fn too_large() -> std::io::Error {
    std::io::Error::other(format!(
        "records decompress to more than {DECOMPRESSED_BATCH_BYTES_MAX} bytes"
    ))
}

/// Reads a decompressing reader to its end, refusing output past the bound.
fn read_bounded(reader: impl Read, out: &mut Vec<u8>) -> std::io::Result<()> {
    let room = (DECOMPRESSED_BATCH_BYTES_MAX - out.len()) as u64;
    reader.take(room + 1).read_to_end(out)?;
    if out.len() > DECOMPRESSED_BATCH_BYTES_MAX {
        return Err(too_large());
    }
    Ok(())
}

/// One raw snappy block, its announced length checked before anything is
/// allocated for it.
fn snappy_block(block: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
    let len = snap::raw::decompress_len(block).map_err(std::io::Error::other)?;
    if len > DECOMPRESSED_BATCH_BYTES_MAX - out.len() {
        return Err(too_large());
    }
    let start = out.len();
    out.resize(start + len, 0);
    let written = snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(std::io::Error::other)?;
    out.truncate(start + written);
    Ok(())
}

fn decompress(compression: Compression, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    match compression {
        Compression::None => out.extend_from_slice(data),
        Compression::Gzip => read_bounded(flate2::read::MultiGzDecoder::new(data), &mut out)?,
        Compression::Snappy if data.starts_with(XERIAL_MAGIC) => {
            // Magic (8), version (4), compatible version (4), then blocks.
            let mut rest = data
                .get(16..)
                .ok_or_else(|| std::io::Error::other("short xerial header"))?;
            while !rest.is_empty() {
                let len = rest
                    .get(..4)
                    .ok_or_else(|| std::io::Error::other("short xerial block"))?;
                let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
                let block = rest
                    .get(4..4 + len)
                    .ok_or_else(|| std::io::Error::other("short xerial block"))?;
                snappy_block(block, &mut out)?;
                rest = &rest[4 + len..];
            }
        }
        Compression::Snappy => snappy_block(data, &mut out)?,
        Compression::Lz4 => read_bounded(lz4_flex::frame::FrameDecoder::new(data), &mut out)?,
        Compression::Zstd => read_bounded(zstd::stream::read::Decoder::new(data)?, &mut out)?,
    }
    Ok(out)
}

/// Reads every record of one batch (decompressing as needed).
pub fn decode_batch(batch: &[u8]) -> Result<Vec<Record>, RecordsError> {
    let header = BatchHeader::parse(batch).ok_or(RecordsError::BadHeader)?;
    let end = header.total_bytes().min(batch.len());
    let compression = header
        .compression()
        .ok_or(RecordsError::UnknownCompression(header.attributes))?;
    let payload = decompress(compression, &batch[BATCH_HEADER_BYTES..end])?;
    let mut rest = &payload[..];
    // The count is the producer's word: room for no more records than the
    // bytes could hold (each takes at least 7).
    let mut records = Vec::with_capacity((header.records_count.max(0) as usize).min(payload.len() / 7));
    while !rest.is_empty() {
        let (next, record) = record(rest, &header).map_err(|e| match e {
            nom::Err::Error(e) | nom::Err::Failure(e) => e,
            nom::Err::Incomplete(_) => DecodeError::Truncated,
        })?;
        records.push(record);
        rest = next;
    }
    if records.len() != header.records_count.max(0) as usize {
        return Err(RecordsError::CountMismatch {
            announced: header.records_count,
            found: records.len(),
        });
    }
    Ok(records)
}

/// Reads every record of a sequence of batches.
pub fn decode_batches(mut bytes: &[u8]) -> Result<Vec<Record>, RecordsError> {
    let mut records = Vec::new();
    while bytes.len() >= BATCH_HEADER_BYTES {
        let header = BatchHeader::parse(bytes).ok_or(RecordsError::BadHeader)?;
        let size = header.total_bytes();
        if size > bytes.len() {
            break; // a partial batch at the end of a fetch, as Kafka allows
        }
        records.extend(decode_batch(&bytes[..size])?);
        bytes = &bytes[size..];
    }
    Ok(records)
}

fn nullable_varint_bytes(input: &[u8]) -> PResult<'_, Option<Bytes>> {
    let (rest, len) = varint(input)?;
    if len < 0 {
        return Ok((rest, None));
    }
    let (rest, data) = take(len as usize).parse(rest)?;
    Ok((rest, Some(Bytes::copy_from_slice(data))))
}

fn record<'a>(input: &'a [u8], header: &BatchHeader) -> PResult<'a, Record> {
    let (rest, length) = varint(input)?;
    let length = usize::try_from(length).map_err(|_| nom::Err::Error(DecodeError::InvalidLength(length.into())))?;
    let (after, body) = take(length).parse(rest)?;
    let (body, _attributes) = be_i8(body)?;
    let (body, timestamp_delta) = varlong(body)?;
    let (body, offset_delta) = varint(body)?;
    let (body, key) = nullable_varint_bytes(body)?;
    let (body, value) = nullable_varint_bytes(body)?;
    let (mut body, header_count) = varint(body)?;
    if header_count < 0 || header_count as usize > body.len() {
        return Err(nom::Err::Error(DecodeError::InvalidLength(header_count.into())));
    }
    let mut headers = Vec::with_capacity(header_count as usize);
    for _ in 0..header_count {
        let (next, key) = nullable_varint_bytes(body)?;
        let (next, value) = nullable_varint_bytes(next)?;
        let key = String::from_utf8(key.unwrap_or_default().to_vec())
            .map_err(|_| nom::Err::Error(DecodeError::InvalidUtf8))?;
        headers.push((key, value));
        body = next;
    }
    // As clients read it: in a LogAppendTime batch the broker's time, not
    // the producer's deltas, is each record's timestamp.
    // Wrapping: the deltas are the producer's, and a batch whose base and
    // delta overflow gets a meaningless value, not a panic (found by fuzzing).
    let timestamp = if header.is_log_append_time() {
        header.max_timestamp
    } else {
        header.base_timestamp.wrapping_add(timestamp_delta)
    };
    Ok((
        after,
        Record {
            offset: header.base_offset.wrapping_add(i64::from(offset_delta)),
            timestamp,
            key,
            value,
            headers,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_batch_gives_its_buffer_back_for_the_next() {
        let record = |len: usize| Record {
            value: Some(Bytes::from(vec![7u8; len])),
            ..Record::default()
        };
        // Filled past half: the batch is the buffer itself, handed back
        // once nobody else holds it.
        let mut builder = RecordBatchBuilder::with_capacity(1, 1 << 20);
        builder.push(record(600_000));
        let (batch, spare) = builder.build_returning_spare(Compression::None).unwrap();
        assert!(spare.is_none());
        let address = batch.as_ptr();
        let buf = batch.try_into_mut().expect("nobody else holds the batch");
        assert!(buf.capacity() >= 1 << 20, "capacity {}", buf.capacity());
        // Mostly empty: the batch is an exact copy, the buffer is spare at once.
        let mut again = RecordBatchBuilder::reusing(2, buf, 1 << 20);
        again.push(record(1));
        let (small, spare) = again.build_returning_spare(Compression::None).unwrap();
        let spare = spare.expect("a mostly empty buffer comes back");
        assert_eq!(spare.as_ptr(), address, "the same memory, not a new allocation");
        assert!(small.len() < 200);
        assert_eq!(decode_batches(&small).unwrap()[0].value.as_deref(), Some(&[7u8][..]));
        // Compressed: the records' buffer is spare, the batch is new.
        let mut zipped = RecordBatchBuilder::reusing(3, spare, 1 << 20);
        zipped.push(record(50_000));
        let (batch, spare) = zipped.build_returning_spare(Compression::Lz4).unwrap();
        assert_eq!(spare.map(|s| s.as_ptr()), Some(address));
        assert_eq!(
            decode_batches(&batch).unwrap()[0].value.as_ref().map(Bytes::len),
            Some(50_000)
        );
    }

    #[test]
    fn batches_round_trip_with_every_codec() {
        for compression in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut builder = RecordBatchBuilder::new(1000);
            let sent: Vec<Record> = (0..50)
                .map(|i| Record {
                    offset: i,
                    timestamp: 1000 + i,
                    key: (i % 3 != 0).then(|| Bytes::from(format!("k{i}"))),
                    value: Some(Bytes::from(vec![i as u8; i as usize])),
                    headers: vec![("h".into(), Some(Bytes::from_static(b"v"))), ("n".into(), None)],
                })
                .collect();
            for r in &sent {
                builder.push(r.clone());
            }
            let batch = builder.build(compression).unwrap();
            assert_eq!(BatchHeader::parse(&batch).unwrap().compression(), Some(compression));
            assert_eq!(decode_batch(&batch).unwrap(), sent, "{compression:?}");
        }
    }

    /// Found by fuzzing: a base offset and timestamp at i64::MAX with
    /// positive deltas overflowed while decoding the records.
    #[test]
    fn offsets_and_timestamps_that_overflow_do_not_panic() {
        let mut builder = RecordBatchBuilder::new(i64::MAX);
        builder.push(Record {
            value: Some(Bytes::from_static(b"a")),
            ..Record::default()
        });
        builder.push(Record {
            value: Some(Bytes::from_static(b"b")),
            ..Record::default()
        });
        let mut batch = builder.build(Compression::None).unwrap().to_vec();
        batch[..8].copy_from_slice(&i64::MAX.to_be_bytes());
        let records = decode_batch(&batch).unwrap();
        assert_eq!(records[0].offset, i64::MAX);
        assert_eq!(records.len(), 2);
    }

    /// Found by fuzzing (fuzz/fuzz_targets/record_batch.rs): a snappy batch
    /// whose block claims 2.4 GB made the decoder allocate all of it.
    #[test]
    fn decompression_refuses_what_would_exceed_the_bound() {
        let mut claims_too_much = Vec::new();
        // A raw snappy block's preamble is its decompressed length (varint).
        let mut len = (DECOMPRESSED_BATCH_BYTES_MAX + 1) as u64;
        while len >= 0x80 {
            claims_too_much.push((len as u8) | 0x80);
            len >>= 7;
        }
        claims_too_much.push(len as u8);
        claims_too_much.extend_from_slice(&[0; 8]);
        assert!(decompress(Compression::Snappy, &claims_too_much).is_err());
        // A gzip bomb: a few KiB that expand past the bound.
        let zeros = vec![0u8; 1 << 20];
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        for _ in 0..=DECOMPRESSED_BATCH_BYTES_MAX >> 20 {
            encoder.write_all(&zeros).unwrap();
        }
        let bomb = encoder.finish().unwrap();
        assert!(bomb.len() < DECOMPRESSED_BATCH_BYTES_MAX / 100);
        let error = decompress(Compression::Gzip, &bomb).unwrap_err();
        assert!(error.to_string().contains("more than"), "{error}");
        // Within the bound, as before.
        let small = compress(Compression::Lz4, b"hello").unwrap();
        assert_eq!(decompress(Compression::Lz4, &small).unwrap(), b"hello");
    }

    #[test]
    fn log_append_time_batches_give_every_record_the_batch_time() {
        let mut builder = RecordBatchBuilder::new(1000);
        for i in 0..3 {
            builder.push(Record {
                timestamp: 1000 + i,
                ..Record::default()
            });
        }
        let mut batch = builder.build(Compression::None).unwrap().to_vec();
        // What the broker does to a batch for a LogAppendTime topic.
        batch[22] |= 0x08;
        batch[35..43].copy_from_slice(&5000i64.to_be_bytes());
        let timestamps: Vec<i64> = decode_batch(&batch).unwrap().iter().map(|r| r.timestamp).collect();
        assert_eq!(timestamps, [5000, 5000, 5000]);
    }

    #[test]
    fn xerial_snappy_is_read() {
        let raw = b"hello hello hello hello";
        let block = snap::raw::Encoder::new().compress_vec(raw).unwrap();
        let mut framed = XERIAL_MAGIC.to_vec();
        framed.extend_from_slice(&1u32.to_be_bytes());
        framed.extend_from_slice(&1u32.to_be_bytes());
        framed.extend_from_slice(&(block.len() as u32).to_be_bytes());
        framed.extend_from_slice(&block);
        assert_eq!(decompress(Compression::Snappy, &framed).unwrap(), raw);
    }
}
