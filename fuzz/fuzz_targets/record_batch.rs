//! A produced record batch through the broker's validation, at the first
//! byte's choice of Produce version; a batch that passes must then decode
//! (or fail to decode) without a panic, as consumers and ListOffsets read it.
//! When the first byte's top bit is set the CRC is made right first, so the
//! fuzzer gets past it into the header checks, decompression and records.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use minikafka::protocol::record_batch::{batch_crc, validate_produced_batch};
use minikafka::protocol::records::decode_batch;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, batch)) = data.split_first() else {
        return;
    };
    let version = 3 + i16::from(selector % 9);
    let mut batch = batch.to_vec();
    if selector & 0x80 != 0 && batch.len() >= 61 {
        let crc = batch_crc(&batch);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
    }
    let batch = Bytes::from(batch);
    if validate_produced_batch(Some(&batch), version, 1 << 20).is_ok() {
        let _ = decode_batch(&batch);
    }
});
