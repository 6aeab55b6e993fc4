//! What a broker is started with. The CLI fills it from flags; embedding
//! programs and tests fill it directly.

use std::path::PathBuf;

/// Kafka's `socket.request.max.bytes` default: 100 MiB.
pub const SOCKET_REQUEST_MAX_BYTES_DEFAULT: usize = 100 * 1024 * 1024;
/// Kafka's `message.max.bytes` default (1 MiB plus record batch overhead).
pub const MESSAGE_MAX_BYTES_DEFAULT: usize = 1_048_588;
/// Kafka's `fetch.max.bytes` default (55 MiB): the most a Fetch answers.
pub const FETCH_MAX_BYTES_DEFAULT: usize = 57_671_680;
/// Kafka's `max.connections` and `max.connections.per.ip` default: no limit.
pub const MAX_CONNECTIONS_DEFAULT: usize = i32::MAX as usize;
/// Kafka's `connections.max.idle.ms` default: 10 minutes.
pub const CONNECTIONS_MAX_IDLE_MS_DEFAULT: u64 = 600_000;
/// Kafka's `socket.send.buffer.bytes` default: 100 KiB (the kernel
/// doubles it for its own bookkeeping).
///
/// Measured on loopback with rdkafka reading 1 GB of 10 KiB records: with
/// the OS's autotuned buffer (up to 4 MiB) the broker spent 355-383 ms in
/// sendfile, with 100 KiB 154-177 ms, at the same throughput and about the same
/// client CPU. 50 KiB slowed the reader down by a third.
pub const SOCKET_SEND_BUFFER_BYTES_DEFAULT: usize = 102_400;
/// Kafka's `producer.id.expiration.ms` default: one day.
pub const PRODUCER_ID_EXPIRATION_MS_DEFAULT: i64 = 86_400_000;
/// Kafka's `producer.id.expiration.check.interval.ms` default: 10 minutes.
pub const PRODUCER_ID_EXPIRATION_CHECK_INTERVAL_MS_DEFAULT: u64 = 600_000;
/// Kafka's `offsets.retention.minutes` default: 7 days.
pub const OFFSETS_RETENTION_MINUTES_DEFAULT: i64 = 10_080;
/// Kafka's `offsets.retention.check.interval.ms` default: 10 minutes.
pub const OFFSETS_RETENTION_CHECK_INTERVAL_MS_DEFAULT: u64 = 600_000;
/// The bound on request bytes held across the broker (Kafka's
/// `queued.max.request.bytes`, unbounded there by default; bounded here so
/// that many large producers cannot take the memory).
pub const QUEUED_MAX_REQUEST_BYTES_DEFAULT: usize = 256 * 1024 * 1024;
/// Kafka's `num.recovery.threads.per.data.dir` default (2 since Kafka 4.0,
/// KIP-1030; 1 before).
pub const NUM_RECOVERY_THREADS_PER_DATA_DIR_DEFAULT: usize = 2;

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Addresses to listen on, as `host:port` (a host may resolve to several).
    pub listeners: Vec<String>,
    /// `host:port` that Metadata tells clients to connect to. `None`: the
    /// host given to the first listener and the port it actually bound.
    pub advertised_listener: Option<String>,
    /// Where the logs live; `None` keeps everything in memory.
    pub data_dir: Option<PathBuf>,
    /// Partitions of an auto-created topic (Kafka's `num.partitions`).
    pub num_partitions: i32,
    /// Kafka's `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// This node's id, the leader of every partition.
    pub node_id: i32,
    /// Largest request frame accepted (Kafka's `socket.request.max.bytes`).
    pub socket_request_max_bytes: usize,
    /// Largest record batch accepted (Kafka's `message.max.bytes`).
    pub message_max_bytes: usize,
    /// The most record bytes one Fetch answers, whatever the client asks
    /// (Kafka's `fetch.max.bytes`).
    pub fetch_max_bytes: usize,
    /// Connections served at once; more wait to be accepted (Kafka's
    /// `max.connections`).
    pub max_connections: usize,
    /// Connections from one IP address; more are closed at once (Kafka's
    /// `max.connections.per.ip`).
    pub max_connections_per_ip: usize,
    /// A connection with no bytes read or written for this long is closed
    /// (Kafka's `connections.max.idle.ms`).
    pub connections_max_idle: std::time::Duration,
    /// SO_SNDBUF of accepted connections (Kafka's `socket.send.buffer.bytes`).
    /// `None`: the OS's default, which autotunes.
    pub socket_send_buffer_bytes: Option<usize>,
    /// Bytes of requests read and not yet answered, across all
    /// connections; a connection stops reading until its frame fits
    /// (Kafka's `queued.max.request.bytes`). Never below one maximal
    /// frame (`socket_request_max_bytes`).
    pub queued_max_request_bytes: usize,
    /// Consumer group settings (`group.*`).
    pub groups: crate::broker::coordinator::GroupConfig,
    /// Segment size of topics that do not set `segment.bytes` (Kafka's `log.segment.bytes`).
    pub segment_bytes: u64,
    /// Kafka's `log.roll.ms` for topics that do not set `segment.ms`: the
    /// age at which an active segment rolls.
    pub segment_ms: i64,
    /// Kafka's `log.retention.ms` for topics that do not set `retention.ms`; -1 keeps for ever.
    pub retention_ms: i64,
    /// Kafka's `log.retention.bytes` for topics that do not set `retention.bytes`; -1: no limit.
    pub retention_bytes: i64,
    /// How often retention runs (Kafka's `log.retention.check.interval.ms`).
    pub retention_check_interval: std::time::Duration,
    /// Answer acks=1/-1 produces only once their batches are fsynced (with
    /// one fsync shared by concurrent producers). Off: leave it to the OS,
    /// as Kafka does by default.
    pub fsync_always: bool,
    /// Kafka's `log.flush.interval.messages`: fsync a partition after this
    /// many records. `None`: never for this reason.
    pub flush_messages: Option<u64>,
    /// Kafka's `log.flush.interval.ms`: fsync partitions with unsynced
    /// records this often. `None`: never for this reason.
    pub flush_ms: Option<u64>,
    /// Kafka's `producer.id.expiration.ms`: a partition forgets an
    /// idempotent producer whose last batch there is this much older than
    /// the broker's clock.
    pub producer_id_expiration_ms: i64,
    /// Kafka's `producer.id.expiration.check.interval.ms`.
    pub producer_id_expiration_check_interval: std::time::Duration,
    /// Kafka's `offsets.retention.minutes`, in ms: a group's committed
    /// offsets go once it has had no members, and no commit, for this long.
    pub offsets_retention_ms: i64,
    /// Kafka's `offsets.retention.check.interval.ms`.
    pub offsets_retention_check_interval: std::time::Duration,
    /// Threads that open the logs at start-up (recovering them after a
    /// crash) and sync and close them at shutdown (Kafka's
    /// `num.recovery.threads.per.data.dir`).
    pub recovery_threads: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listeners: vec!["127.0.0.1:9092".into(), "[::1]:9092".into()],
            advertised_listener: Some("localhost:9092".into()),
            data_dir: Some(PathBuf::from("minikafka-data")),
            num_partitions: 1,
            auto_create_topics: true,
            node_id: 0,
            socket_request_max_bytes: SOCKET_REQUEST_MAX_BYTES_DEFAULT,
            message_max_bytes: MESSAGE_MAX_BYTES_DEFAULT,
            fetch_max_bytes: FETCH_MAX_BYTES_DEFAULT,
            max_connections: MAX_CONNECTIONS_DEFAULT,
            max_connections_per_ip: MAX_CONNECTIONS_DEFAULT,
            connections_max_idle: std::time::Duration::from_millis(CONNECTIONS_MAX_IDLE_MS_DEFAULT),
            socket_send_buffer_bytes: Some(SOCKET_SEND_BUFFER_BYTES_DEFAULT),
            queued_max_request_bytes: QUEUED_MAX_REQUEST_BYTES_DEFAULT,
            groups: crate::broker::coordinator::GroupConfig::default(),
            segment_bytes: crate::storage::log::SEGMENT_BYTES_DEFAULT,
            segment_ms: crate::storage::log::SEGMENT_MS_DEFAULT,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            retention_check_interval: std::time::Duration::from_secs(300),
            fsync_always: false,
            flush_messages: None,
            flush_ms: None,
            producer_id_expiration_ms: PRODUCER_ID_EXPIRATION_MS_DEFAULT,
            producer_id_expiration_check_interval: std::time::Duration::from_millis(
                PRODUCER_ID_EXPIRATION_CHECK_INTERVAL_MS_DEFAULT,
            ),
            offsets_retention_ms: OFFSETS_RETENTION_MINUTES_DEFAULT * 60_000,
            offsets_retention_check_interval: std::time::Duration::from_millis(
                OFFSETS_RETENTION_CHECK_INTERVAL_MS_DEFAULT,
            ),
            recovery_threads: NUM_RECOVERY_THREADS_PER_DATA_DIR_DEFAULT,
        }
    }
}

impl BrokerConfig {
    /// A broker on an ephemeral loopback port, advertising the port it gets:
    /// what a test or an embedding program usually wants.
    pub fn ephemeral(data_dir: Option<PathBuf>) -> Self {
        BrokerConfig {
            listeners: vec!["127.0.0.1:0".into()],
            advertised_listener: None,
            data_dir,
            ..BrokerConfig::default()
        }
    }
}
