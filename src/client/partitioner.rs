//! Choosing a partition for a keyed record.
//!
//! The seed design's `HashStringToInt32` lives on here as FNV-1a 32-bit, used
//! the way librdkafka's `partitioner=fnv1a` (and Sarama's default hash
//! partitioner) use it, so a key lands on the same partition whichever of
//! them produced it: the hash is read as a signed 32-bit number, made
//! non-negative (wrapping, as the C code's `h = -h` does for `INT32_MIN`),
//! and taken modulo the partition count.

const FNV_OFFSET_BASIS: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

/// FNV-1a, 32 bits.
pub fn fnv1a_32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(FNV_OFFSET_BASIS, |hash, byte| {
        (hash ^ u32::from(*byte)).wrapping_mul(FNV_PRIME)
    })
}

/// The partition librdkafka's `fnv1a` partitioner picks for `key`.
pub fn fnv1a_partition(key: &[u8], partition_count: u32) -> u32 {
    assert!(partition_count > 0, "a topic has at least one partition");
    let hash = (fnv1a_32(key) as i32).wrapping_abs() as u32;
    hash % partition_count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_known_answers() {
        // Test vectors from the FNV reference (Fowler, Noll, Vo).
        assert_eq!(fnv1a_32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a_32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a_32(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn partitions_follow_the_signed_absolute_hash() {
        // "a" hashes to 0xe40c292c, negative as i32: |h| = 0x1bf3d6d4.
        assert_eq!(fnv1a_partition(b"a", 1000), 0x1bf3_d6d4 % 1000);
        // "foobar" hashes to 0xbf9cf968, negative as i32.
        assert_eq!(fnv1a_partition(b"foobar", 7), 0x4063_0698 % 7);
        for key in [&b"kafka"[..], b"", b"1234"] {
            assert!(fnv1a_partition(key, 3) < 3);
        }
    }
}
