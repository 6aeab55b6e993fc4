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

/// murmur2, 32 bits, seed 0x9747b28c: the Java client's default hash for
/// keyed records (`Utils.murmur2`).
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// The partition the Java client's default partitioner picks for `key`:
/// the murmur2 hash with its sign bit cleared, modulo the partition count.
pub fn murmur2_partition(key: &[u8], partition_count: u32) -> u32 {
    assert!(partition_count > 0, "a topic has at least one partition");
    (murmur2(key) & 0x7fff_ffff) % partition_count
}

/// How keyed records are spread over partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Partitioner {
    /// FNV-1a, as librdkafka's `partitioner=fnv1a` and Sarama.
    #[default]
    Fnv1a,
    /// murmur2, as the Java client.
    Murmur2,
}

impl Partitioner {
    pub fn partition(self, key: &[u8], partition_count: u32) -> u32 {
        match self {
            Partitioner::Fnv1a => fnv1a_partition(key, partition_count),
            Partitioner::Murmur2 => murmur2_partition(key, partition_count),
        }
    }
}

impl std::str::FromStr for Partitioner {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fnv1a" => Ok(Partitioner::Fnv1a),
            "murmur2" => Ok(Partitioner::Murmur2),
            other => Err(format!("unknown partitioner {other:?}: fnv1a or murmur2")),
        }
    }
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
    fn murmur2_known_answers() {
        // Values the Java client's Utils.murmur2 gives (its unit tests).
        assert_eq!(murmur2(b"21") as i32, -973_932_308);
        assert_eq!(murmur2(b"foobar") as i32, -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985_981_536);
        assert_eq!(murmur2(b"a-little-bit-longer-string") as i32, -1_486_304_829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32,
            -58_897_971
        );
        assert_eq!(murmur2(b"abc") as i32, 479_470_107);
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
