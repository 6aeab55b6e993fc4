//! Command-line interface: `minikafka broker` and its flags.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use minikafka::BrokerConfig;
use minikafka::config::{MESSAGE_MAX_BYTES_DEFAULT, SOCKET_REQUEST_MAX_BYTES_DEFAULT};

#[derive(Parser)]
#[command(
    name = "minikafka",
    version,
    about = "A single-binary, Kafka wire-protocol compatible broker"
)]
struct Cli {
    /// Log level (any RUST_LOG filter); RUST_LOG, when set, wins.
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Fsync {
    Os,
    Always,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker.
    Broker(BrokerArgs),
    /// Print records of a topic (works against any Kafka broker).
    Consume(ConsumeArgs),
    /// Send records: from arguments, or one per line from stdin.
    Produce(ProduceArgs),
    /// Load tests.
    #[command(subcommand)]
    Perf(PerfCommand),
    /// Consumer groups: list, describe (with lag), delete.
    Groups(GroupsArgs),
    /// Topics: list, create, describe, delete, alter configs.
    Topics(TopicsArgs),
}

#[derive(clap::Args)]
struct TopicsArgs {
    /// Bootstrap servers, comma-separated.
    #[arg(
        short = 'b',
        long = "bootstrap-server",
        default_value = "localhost:9092",
        global = true
    )]
    bootstrap_server: String,
    #[command(subcommand)]
    action: TopicsAction,
}

#[derive(Subcommand)]
enum TopicsAction {
    /// Every topic with its partition count.
    List,
    /// Create a topic.
    Create {
        topic: String,
        /// Partitions (default: the broker's num.partitions).
        #[arg(short = 'p', long, default_value_t = -1, allow_hyphen_values = true)]
        partitions: i32,
        /// Replication factor (default: the broker's).
        #[arg(short = 'r', long, default_value_t = -1, allow_hyphen_values = true)]
        replication_factor: i16,
        /// Topic config KEY=VALUE (repeatable).
        #[arg(short = 'c', long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
    /// Partitions, leaders and every config of a topic.
    Describe { topic: String },
    /// Delete a topic and its data.
    Delete { topic: String },
    /// Set (KEY=VALUE) or remove (KEY) topic configs, leaving the others alone.
    Alter {
        topic: String,
        #[arg(short = 'c', long = "config", value_name = "KEY[=VALUE]", required = true)]
        configs: Vec<String>,
    },
}

#[derive(clap::Args)]
struct GroupsArgs {
    /// Bootstrap servers, comma-separated.
    #[arg(
        short = 'b',
        long = "bootstrap-server",
        default_value = "localhost:9092",
        global = true
    )]
    bootstrap_server: String,
    #[command(subcommand)]
    action: GroupsAction,
}

#[derive(Subcommand)]
enum GroupsAction {
    /// Every group, with its state.
    List,
    /// A group's members, committed offsets, log end offsets and lag.
    Describe { group: String },
    /// Delete an empty group and its committed offsets.
    Delete { group: String },
}

#[derive(Subcommand)]
enum PerfCommand {
    /// Produce records as fast as allowed and report throughput and latency
    /// (the counterpart of Kafka's producer perf test).
    Produce(PerfProduceArgs),
}

#[derive(clap::Args)]
struct ProducerFlags {
    /// Bootstrap servers, comma-separated.
    #[arg(short = 'b', long = "bootstrap-server", default_value = "localhost:9092")]
    bootstrap_server: String,
    /// acks: 0, 1 or all.
    #[arg(long, default_value = "all")]
    acks: minikafka::producer::Acks,
    /// linger.ms.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// batch.size in bytes.
    #[arg(long, default_value_t = 16384)]
    batch_size: usize,
    /// buffer.memory: bytes of records waiting for acknowledgement before sends wait.
    #[arg(long, default_value_t = 32 * 1024 * 1024)]
    buffer_memory: usize,
    /// compression.type: none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none", value_parser = parse_compression)]
    compression: minikafka::producer::Compression,
    /// Partitioner for keyed records: fnv1a (librdkafka's fnv1a, Sarama) or murmur2 (Java).
    #[arg(long, default_value = "fnv1a")]
    partitioner: minikafka::producer::Partitioner,
    /// request.timeout.ms.
    #[arg(long, default_value_t = 30_000)]
    request_timeout_ms: u64,
    /// delivery.timeout.ms.
    #[arg(long, default_value_t = 120_000)]
    delivery_timeout_ms: u64,
}

impl ProducerFlags {
    fn config(&self, client_id: &str) -> minikafka::producer::ProducerConfig {
        minikafka::producer::ProducerConfig {
            bootstrap_servers: self.bootstrap_server.clone(),
            client_id: client_id.into(),
            acks: self.acks,
            linger: std::time::Duration::from_millis(self.linger_ms),
            batch_size: self.batch_size,
            buffer_memory: self.buffer_memory,
            compression: self.compression,
            partitioner: self.partitioner,
            request_timeout: std::time::Duration::from_millis(self.request_timeout_ms),
            delivery_timeout: std::time::Duration::from_millis(self.delivery_timeout_ms),
            ..Default::default()
        }
    }
}

/// A socket buffer size: a positive byte count, or -1 for the OS's
/// default. 0 is refused, as Java's setSendBufferSize refuses it: Linux
/// would take it as its minimum, a few KiB.
fn parse_socket_buffer_bytes(s: &str) -> Result<i64, String> {
    match s.parse::<i64>() {
        Ok(-1) => Ok(-1),
        Ok(n) if (1..=i64::from(i32::MAX)).contains(&n) => Ok(n),
        _ => Err(format!("{s:?}: expected a byte count from 1 to {}, or -1", i32::MAX)),
    }
}

fn parse_compression(s: &str) -> Result<minikafka::producer::Compression, String> {
    use minikafka::producer::Compression;
    match s {
        "none" => Ok(Compression::None),
        "gzip" => Ok(Compression::Gzip),
        "snappy" => Ok(Compression::Snappy),
        "lz4" => Ok(Compression::Lz4),
        "zstd" => Ok(Compression::Zstd),
        other => Err(format!("unknown compression {other:?}")),
    }
}

#[derive(clap::Args)]
struct ProduceArgs {
    #[command(flatten)]
    producer: ProducerFlags,
    /// Topic to write to.
    #[arg(short = 't', long)]
    topic: String,
    /// Key of every record (unless -K splits keys out of the lines).
    #[arg(short = 'k', long)]
    key: Option<String>,
    /// Header key=value (repeatable).
    #[arg(short = 'H', long = "header", value_name = "KEY=VALUE")]
    headers: Vec<String>,
    /// Write to this partition instead of letting the partitioner choose.
    #[arg(short = 'p', long)]
    partition: Option<i32>,
    /// Split each stdin line into key and value at the first occurrence of
    /// this delimiter (as kcat's -K).
    #[arg(short = 'K', long = "key-delimiter")]
    key_delimiter: Option<String>,
    /// Print a line per delivered record (partition and offset).
    #[arg(short = 'v', long)]
    verbose: bool,
    /// Messages to send; without any, one per line from stdin.
    messages: Vec<String>,
}

#[derive(clap::Args)]
struct PerfProduceArgs {
    #[command(flatten)]
    producer: ProducerFlags,
    /// Topic to write to (auto-created with the broker's default partitions).
    #[arg(short = 't', long)]
    topic: String,
    /// Records to send.
    #[arg(long, default_value_t = 1_000_000)]
    num_records: u64,
    /// Bytes per record value.
    #[arg(long, default_value_t = 100)]
    record_size: usize,
    /// Records per second at most; -1 for no limit.
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    throughput: i64,
    /// Spread records over this many partitions round-robin (default: the partitioner's sticky choice).
    #[arg(long)]
    partitions: Option<i32>,
}

#[derive(clap::Args)]
struct ConsumeArgs {
    /// Bootstrap servers, comma-separated.
    #[arg(short = 'b', long = "bootstrap-server", default_value = "localhost:9092")]
    bootstrap_server: String,
    /// Topic to read.
    #[arg(short = 't', long)]
    topic: String,
    /// Read only this partition (default: all).
    #[arg(short = 'p', long)]
    partition: Option<i32>,
    /// Where to start: beginning, end, an offset N, or -N (N before the end).
    #[arg(short = 'o', long, default_value = "end", allow_hyphen_values = true)]
    offset: minikafka::client::StartOffset,
    /// Exit once every partition has been read to its end.
    #[arg(short = 'e', long)]
    exit_at_end: bool,
    /// Line format: %t topic, %p partition, %o offset, %k key, %s value,
    /// %T timestamp (ms), %h headers (k=v,...), %K key length, %S value length,
    /// %% a percent sign; \n and \t escapes.
    #[arg(short = 'f', long, default_value = "%s\\n")]
    format: String,
    /// Exit after this many records.
    #[arg(short = 'c', long)]
    count: Option<u64>,
    /// Request timeout in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
}

#[derive(clap::Args)]
struct BrokerArgs {
    /// Address to listen on, host:port (repeatable). A host that resolves to
    /// several addresses is bound on each. Default: 127.0.0.1:9092 and
    /// [::1]:9092, since clients may resolve localhost to either.
    #[arg(long = "listen", value_name = "HOST:PORT")]
    listen: Vec<String>,
    /// host:port that Metadata tells clients to connect to. Default: the host
    /// and port of the first --listen, or localhost:9092 with the default
    /// listeners.
    #[arg(long, value_name = "HOST:PORT")]
    advertised_listener: Option<String>,
    /// Directory holding the logs and the cluster identity.
    #[arg(long, value_name = "DIR", default_value = "minikafka-data")]
    data_dir: PathBuf,
    /// Keep everything in memory; nothing is written to disk.
    #[arg(long, conflicts_with = "data_dir")]
    in_memory: bool,
    /// Partitions of an auto-created topic (Kafka's num.partitions).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=100_000))]
    num_partitions: i32,
    /// Create topics that clients ask Metadata for (Kafka's auto.create.topics.enable).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    auto_create_topics: bool,
    /// This node's id.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i32).range(0..))]
    node_id: i32,
    /// Largest request frame accepted, in bytes (Kafka's socket.request.max.bytes).
    #[arg(long, default_value_t = SOCKET_REQUEST_MAX_BYTES_DEFAULT)]
    socket_request_max_bytes: usize,
    /// Largest record batch accepted, in bytes (Kafka's message.max.bytes).
    #[arg(long, default_value_t = MESSAGE_MAX_BYTES_DEFAULT)]
    message_max_bytes: usize,
    /// The most record bytes one Fetch answers (Kafka's fetch.max.bytes).
    #[arg(long, default_value_t = minikafka::config::FETCH_MAX_BYTES_DEFAULT)]
    fetch_max_bytes: usize,
    /// Connections served at once; more wait to be accepted (Kafka's max.connections).
    #[arg(long, default_value_t = minikafka::config::MAX_CONNECTIONS_DEFAULT, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_connections: usize,
    /// Connections from one IP address; more are closed (Kafka's max.connections.per.ip).
    #[arg(long, default_value_t = minikafka::config::MAX_CONNECTIONS_DEFAULT, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_connections_per_ip: usize,
    /// Close connections with no traffic for this long (Kafka's connections.max.idle.ms).
    #[arg(long, default_value_t = minikafka::config::CONNECTIONS_MAX_IDLE_MS_DEFAULT, value_parser = clap::value_parser!(u64).range(1..))]
    connections_max_idle_ms: u64,
    /// SO_SNDBUF of accepted connections in bytes; -1 for the OS's default
    /// (Kafka's socket.send.buffer.bytes).
    #[arg(long, default_value_t = minikafka::config::SOCKET_SEND_BUFFER_BYTES_DEFAULT as i64, allow_hyphen_values = true, value_parser = parse_socket_buffer_bytes)]
    socket_send_buffer_bytes: i64,
    /// Request bytes read and not yet answered, across all connections;
    /// a connection stops reading until its request fits (Kafka's
    /// queued.max.request.bytes, unbounded there). At least
    /// --socket-request-max-bytes.
    #[arg(long, default_value_t = minikafka::config::QUEUED_MAX_REQUEST_BYTES_DEFAULT)]
    queued_max_request_bytes: usize,
    /// When produced data is fsynced: os (leave it to the OS, as Kafka's
    /// default), or always (acks=1/all are answered after an fsync, shared by
    /// concurrent producers).
    #[arg(long, value_enum, default_value_t = Fsync::Os)]
    fsync: Fsync,
    /// fsync a partition after this many records (Kafka's log.flush.interval.messages).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    flush_messages: Option<u64>,
    /// fsync partitions with unsynced records this often (Kafka's log.flush.interval.ms).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    flush_ms: Option<u64>,
    /// Segment file size for topics without segment.bytes (Kafka's log.segment.bytes).
    #[arg(long, default_value_t = minikafka::storage::log::SEGMENT_BYTES_DEFAULT)]
    segment_bytes: u64,
    /// Age at which an active segment rolls, for topics without segment.ms (Kafka's log.roll.ms).
    #[arg(long, default_value_t = minikafka::storage::log::SEGMENT_MS_DEFAULT, value_parser = clap::value_parser!(i64).range(1..))]
    log_roll_ms: i64,
    /// How long records are kept, for topics without retention.ms; -1 for ever (log.retention.ms).
    #[arg(long, default_value_t = 604_800_000, allow_hyphen_values = true)]
    retention_ms: i64,
    /// Bytes a partition keeps, for topics without retention.bytes; -1 no limit (log.retention.bytes).
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    retention_bytes: i64,
    /// How often retention deletes old segments (log.retention.check.interval.ms).
    #[arg(long, default_value_t = 300_000)]
    log_retention_check_interval_ms: u64,
    /// How long a partition remembers an idempotent producer that writes
    /// nothing (Kafka's producer.id.expiration.ms).
    #[arg(long, default_value_t = minikafka::config::PRODUCER_ID_EXPIRATION_MS_DEFAULT, value_parser = clap::value_parser!(i64).range(1..))]
    producer_id_expiration_ms: i64,
    /// How often producers are checked for expiry (Kafka's producer.id.expiration.check.interval.ms).
    #[arg(long, default_value_t = minikafka::config::PRODUCER_ID_EXPIRATION_CHECK_INTERVAL_MS_DEFAULT, value_parser = clap::value_parser!(u64).range(1..))]
    producer_id_expiration_check_interval_ms: u64,
    /// How long a group with no members keeps its committed offsets after
    /// its last commit and its last member (Kafka's offsets.retention.minutes).
    #[arg(long, default_value_t = minikafka::config::OFFSETS_RETENTION_MINUTES_DEFAULT, value_parser = clap::value_parser!(i64).range(1..))]
    offsets_retention_minutes: i64,
    /// How often committed offsets are checked for expiry (Kafka's offsets.retention.check.interval.ms).
    #[arg(long, default_value_t = minikafka::config::OFFSETS_RETENTION_CHECK_INTERVAL_MS_DEFAULT, value_parser = clap::value_parser!(u64).range(1..))]
    offsets_retention_check_interval_ms: u64,
    /// How long an empty group's first rebalance waits for more members
    /// (Kafka's group.initial.rebalance.delay.ms; Kafka's default is 3000,
    /// ours suits development: consumers started together still meet).
    #[arg(long, default_value_t = 100)]
    group_initial_rebalance_delay_ms: u64,
    /// Smallest session timeout a group member may ask for (group.min.session.timeout.ms).
    #[arg(long, default_value_t = 6_000, value_parser = clap::value_parser!(i32).range(1..))]
    group_min_session_timeout_ms: i32,
    /// Largest session timeout a group member may ask for (group.max.session.timeout.ms).
    #[arg(long, default_value_t = 1_800_000, value_parser = clap::value_parser!(i32).range(1..))]
    group_max_session_timeout_ms: i32,
    /// Threads that open the logs at start-up, recovering them after a
    /// crash, and sync them at shutdown (Kafka's num.recovery.threads.per.data.dir).
    #[arg(long, default_value_t = minikafka::config::NUM_RECOVERY_THREADS_PER_DATA_DIR_DEFAULT, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    num_recovery_threads_per_data_dir: usize,
}

impl BrokerArgs {
    fn into_config(self) -> BrokerConfig {
        let defaults = BrokerConfig::default();
        let (listeners, advertised_listener) = if self.listen.is_empty() {
            (
                defaults.listeners,
                self.advertised_listener.or(defaults.advertised_listener),
            )
        } else {
            (self.listen, self.advertised_listener)
        };
        BrokerConfig {
            listeners,
            advertised_listener,
            data_dir: (!self.in_memory).then_some(self.data_dir),
            num_partitions: self.num_partitions,
            auto_create_topics: self.auto_create_topics,
            node_id: self.node_id,
            socket_request_max_bytes: self.socket_request_max_bytes,
            message_max_bytes: self.message_max_bytes,
            fetch_max_bytes: self.fetch_max_bytes,
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            connections_max_idle: std::time::Duration::from_millis(self.connections_max_idle_ms),
            socket_send_buffer_bytes: usize::try_from(self.socket_send_buffer_bytes).ok(),
            queued_max_request_bytes: self.queued_max_request_bytes,
            segment_bytes: self.segment_bytes,
            segment_ms: self.log_roll_ms,
            fsync_always: matches!(self.fsync, Fsync::Always),
            flush_messages: self.flush_messages,
            flush_ms: self.flush_ms,
            retention_ms: self.retention_ms,
            retention_bytes: self.retention_bytes,
            retention_check_interval: std::time::Duration::from_millis(self.log_retention_check_interval_ms.max(1)),
            producer_id_expiration_ms: self.producer_id_expiration_ms,
            offsets_retention_ms: self.offsets_retention_minutes.saturating_mul(60_000),
            offsets_retention_check_interval: std::time::Duration::from_millis(
                self.offsets_retention_check_interval_ms,
            ),
            producer_id_expiration_check_interval: std::time::Duration::from_millis(
                self.producer_id_expiration_check_interval_ms,
            ),
            groups: minikafka::broker::coordinator::GroupConfig {
                initial_rebalance_delay: std::time::Duration::from_millis(self.group_initial_rebalance_delay_ms),
                min_session_timeout_ms: self.group_min_session_timeout_ms,
                max_session_timeout_ms: self.group_max_session_timeout_ms,
            },
            recovery_threads: self.num_recovery_threads_per_data_dir,
        }
    }
}

fn init_tracing(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    // Colours only on a terminal: piped logs are read by people and programs.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.log_level, cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Broker(args) => runtime.block_on(run_broker(args.into_config())),
        Command::Consume(args) => runtime.block_on(consume(args)),
        Command::Produce(args) => runtime.block_on(produce(args)),
        Command::Perf(PerfCommand::Produce(args)) => runtime.block_on(perf_produce(args)),
        Command::Groups(args) => runtime.block_on(groups(args)),
        Command::Topics(args) => runtime.block_on(topics(args)),
    }
}

async fn run_broker(config: BrokerConfig) -> ExitCode {
    raise_open_file_limit();
    let handle = match minikafka::start(config).await {
        Ok(handle) => handle,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the broker");
            return ExitCode::FAILURE;
        }
    };
    wait_for_signal().await;
    tracing::info!("shutting down");
    handle.shutdown().await;
    ExitCode::SUCCESS
}

/// Raises the soft limit on open files to the hard one. The broker keeps
/// every segment's log and index files open, as Kafka does (whose
/// operators raise the limit by hand), and a connection costs one more; the
/// soft limit is often 1024 while the hard one is far higher.
fn raise_open_file_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    // An unlimited hard limit is not one the kernel takes as a soft one.
    if limit.current == limit.maximum || limit.maximum.is_none() {
        return;
    }
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => tracing::debug!(from = ?limit.current, to = ?limit.maximum, "raised the open-file limit"),
        Err(e) => tracing::warn!(error = %e, limit = ?limit.current, "cannot raise the open-file limit"),
    }
}

/// SIGINT or SIGTERM, whichever comes first.
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut sigterm) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = sigterm.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only SIGINT stops the broker");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn consume(args: ConsumeArgs) -> ExitCode {
    use std::io::Write;
    let timeout = std::time::Duration::from_millis(args.timeout_ms);
    let result = async {
        let cluster = minikafka::client::Cluster::connect(&args.bootstrap_server, "minikafka-consume", timeout).await?;
        let partitions = args.partition.map(|p| vec![p]);
        let mut consumer = minikafka::client::Consumer::new(cluster, &args.topic, partitions, args.offset).await?;
        let mut printed = 0u64;
        let stdout = std::io::stdout();
        loop {
            if args.count.is_some_and(|c| printed >= c) || (args.exit_at_end && consumer.at_end()) {
                return Ok(());
            }
            let records = consumer.poll().await?;
            let mut out = stdout.lock();
            for consumed in records {
                if args.count.is_some_and(|c| printed >= c) {
                    break;
                }
                let line = format_record(&args.format, &args.topic, &consumed);
                if out.write_all(&line).is_err() {
                    return Ok(()); // the reader went away (a closed pipe)
                }
                printed += 1;
            }
            let _ = out.flush();
        }
    };
    let result: Result<(), minikafka::client::ClientError> = result.await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("minikafka consume: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Renders one record with a kcat-style format string.
fn format_record(format: &str, topic: &str, consumed: &minikafka::client::ConsumedRecord) -> Vec<u8> {
    let record = &consumed.record;
    let mut out = Vec::with_capacity(64);
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' => match chars.next() {
                Some('t') => out.extend_from_slice(topic.as_bytes()),
                Some('p') => out.extend_from_slice(consumed.partition.to_string().as_bytes()),
                Some('o') => out.extend_from_slice(record.offset.to_string().as_bytes()),
                Some('k') => out.extend_from_slice(record.key.as_deref().unwrap_or_default()),
                Some('s') => out.extend_from_slice(record.value.as_deref().unwrap_or_default()),
                Some('K') => out.extend_from_slice(length(record.key.as_deref()).as_bytes()),
                Some('S') => out.extend_from_slice(length(record.value.as_deref()).as_bytes()),
                Some('T') => out.extend_from_slice(record.timestamp.to_string().as_bytes()),
                Some('h') => {
                    let headers: Vec<Vec<u8>> = record
                        .headers
                        .iter()
                        .map(|(k, v)| [k.as_bytes(), b"=", v.as_deref().unwrap_or_default()].concat())
                        .collect();
                    out.extend_from_slice(&headers.join(&b","[..]));
                }
                Some('%') => out.push(b'%'),
                Some(other) => {
                    out.push(b'%');
                    out.extend_from_slice(other.to_string().as_bytes());
                }
                None => out.push(b'%'),
            },
            '\\' => match chars.next() {
                Some('n') => out.push(b'\n'),
                Some('t') => out.push(b'\t'),
                Some(other) => out.extend_from_slice(format!("\\{other}").as_bytes()),
                None => out.push(b'\\'),
            },
            c => out.extend_from_slice(c.to_string().as_bytes()),
        }
    }
    out
}

/// A length as kcat prints it: -1 for null.
fn length(bytes: Option<&[u8]>) -> String {
    bytes.map_or(-1, |b| b.len() as i64).to_string()
}

async fn produce(args: ProduceArgs) -> ExitCode {
    use minikafka::producer::{Producer, ProducerRecord};
    use tokio::io::AsyncBufReadExt;
    let producer = match Producer::new(args.producer.config("minikafka-produce")).await {
        Ok(producer) => producer,
        Err(e) => {
            eprintln!("minikafka produce: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut headers = Vec::new();
    for header in &args.headers {
        let Some((key, value)) = header.split_once('=') else {
            eprintln!("minikafka produce: header {header:?} is not KEY=VALUE");
            return ExitCode::FAILURE;
        };
        headers.push((key.to_string(), Some(bytes::Bytes::from(value.to_string()))));
    }
    let record = |line: String| {
        let (key, value) = match &args.key_delimiter {
            Some(delimiter) => match line.split_once(delimiter.as_str()) {
                Some((key, value)) => (Some(key.to_string()), value.to_string()),
                None => (args.key.clone(), line),
            },
            None => (args.key.clone(), line),
        };
        ProducerRecord {
            topic: args.topic.clone(),
            key: key.map(bytes::Bytes::from),
            value: Some(bytes::Bytes::from(value)),
            headers: headers.clone(),
            partition: args.partition,
            timestamp: None,
        }
    };
    let mut deliveries = Vec::new();
    if args.messages.is_empty() {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        loop {
            match lines.next_line().await {
                Ok(Some(line)) => deliveries.push(producer.send(record(line)).await),
                Ok(None) => break,
                Err(e) => {
                    eprintln!("minikafka produce: reading stdin: {e}");
                    break;
                }
            }
        }
    } else {
        for message in args.messages.clone() {
            deliveries.push(producer.send(record(message)).await);
        }
    }
    let (mut delivered, mut failed) = (0u64, 0u64);
    for (i, delivery) in deliveries.into_iter().enumerate() {
        match delivery.await {
            Ok(meta) => {
                delivered += 1;
                if args.verbose {
                    println!(
                        "delivered record {i} to {}/{} at offset {}",
                        args.topic, meta.partition, meta.offset
                    );
                }
            }
            Err(e) => {
                failed += 1;
                eprintln!("minikafka produce: record {i} not delivered: {e}");
            }
        }
    }
    producer.close().await;
    if !args.verbose {
        println!("{delivered} delivered, {failed} failed");
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn perf_produce(args: PerfProduceArgs) -> ExitCode {
    use minikafka::producer::{Producer, ProducerRecord};
    use std::future::Future;
    use std::time::{Duration, Instant};
    let producer = match Producer::new(args.producer.config("minikafka-perf")).await {
        Ok(producer) => producer,
        Err(e) => {
            eprintln!("minikafka perf produce: {e}");
            return ExitCode::FAILURE;
        }
    };
    let value = bytes::Bytes::from(vec![b'x'; args.record_size]);
    let started = Instant::now();
    let mut progress_at = started + Duration::from_secs(5);
    // Deliveries complete roughly in send order: the oldest are checked
    // (without blocking) after every send, and awaited while a throttled
    // run waits for its next send, so a latency is taken within
    // microseconds of its acknowledgement, with no task per record. (Timed
    // only after the next send, a throttled run's latencies grew by that
    // wait, which the timer rounds up to a millisecond.)
    let mut in_flight: std::collections::VecDeque<(Instant, minikafka::producer::DeliveryFuture)> =
        std::collections::VecDeque::new();
    let mut collected: Vec<u64> = Vec::with_capacity(args.num_records as usize);
    let mut failures = 0u64;
    for i in 0..args.num_records {
        if args.throughput > 0 {
            let due = tokio::time::Instant::from(started + Duration::from_secs_f64(i as f64 / args.throughput as f64));
            while let Some((sent_at, delivery)) = in_flight.front_mut() {
                tokio::select! {
                    result = delivery => {
                        let latency = sent_at.elapsed().as_micros() as u64;
                        record_latency(result.map(|_| latency), &mut collected, &mut failures);
                        in_flight.pop_front();
                    }
                    () = tokio::time::sleep_until(due) => break,
                }
            }
            tokio::time::sleep_until(due).await;
        }
        let record = ProducerRecord {
            topic: args.topic.clone(),
            value: Some(value.clone()),
            partition: args.partitions.map(|n| (i % n.max(1) as u64) as i32),
            ..ProducerRecord::default()
        };
        let sent_at = Instant::now();
        in_flight.push_back((sent_at, producer.send(record).await));
        while let Some((sent_at, delivery)) = in_flight.front_mut() {
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            match std::pin::Pin::new(delivery).poll(&mut cx) {
                std::task::Poll::Ready(result) => {
                    record_latency(
                        result.map(|_| sent_at.elapsed().as_micros() as u64),
                        &mut collected,
                        &mut failures,
                    );
                    in_flight.pop_front();
                }
                std::task::Poll::Pending => break,
            }
        }
        if Instant::now() >= progress_at {
            let secs = started.elapsed().as_secs_f64();
            eprintln!("{} records sent, {:.0} records/s so far", i + 1, (i + 1) as f64 / secs);
            progress_at += Duration::from_secs(5);
        }
    }
    producer.flush().await;
    for (sent_at, delivery) in in_flight {
        record_latency(
            delivery.await.map(|_| sent_at.elapsed().as_micros() as u64),
            &mut collected,
            &mut failures,
        );
    }
    let secs = started.elapsed().as_secs_f64();
    collected.sort_unstable();
    let pick = |q: f64| {
        collected
            .get(((collected.len() as f64 * q) as usize).min(collected.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    let avg = collected.iter().sum::<u64>() as f64 / collected.len().max(1) as f64 / 1000.0;
    let records = collected.len() as f64;
    println!(
        "{} records sent, {:.1} records/sec ({:.2} MB/sec), {:.2} ms avg latency, {:.2} ms max latency, {:.2} ms 50th, {:.2} ms 99th, {:.2} ms 99.9th.",
        collected.len(),
        records / secs,
        records * args.record_size as f64 / 1e6 / secs,
        avg,
        collected.last().copied().unwrap_or(0) as f64 / 1000.0,
        pick(0.5),
        pick(0.99),
        pick(0.999),
    );
    if failures > 0 {
        eprintln!("{failures} records failed");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn record_latency(
    latency: Result<u64, minikafka::producer::ProduceError>,
    collected: &mut Vec<u64>,
    failures: &mut u64,
) {
    match latency {
        Ok(micros) => collected.push(micros),
        Err(e) => {
            if *failures < 5 {
                eprintln!("delivery failed: {e}");
            }
            *failures += 1;
        }
    }
}

async fn groups(args: GroupsArgs) -> ExitCode {
    use minikafka::client::{Cluster, groups};
    let timeout = std::time::Duration::from_secs(30);
    let result = async {
        let mut cluster = Cluster::connect(&args.bootstrap_server, "minikafka-groups", timeout).await?;
        match args.action {
            GroupsAction::List => {
                for group in groups::list_groups(&mut cluster).await? {
                    println!("{}\t{}\t{}", group.group_id, group.state, group.protocol_type);
                }
            }
            GroupsAction::Describe { group } => {
                let described = groups::describe_group(&mut cluster, &group).await?;
                println!(
                    "group {} is {} ({} members{})",
                    described.group_id,
                    described.state,
                    described.members,
                    if described.protocol.is_empty() {
                        String::new()
                    } else {
                        format!(", assignor {}", described.protocol)
                    }
                );
                println!(
                    "{:<24} {:>9} {:>14} {:>14} {:>8}  CONSUMER",
                    "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG"
                );
                for p in described.partitions {
                    let current = if p.committed >= 0 {
                        p.committed.to_string()
                    } else {
                        "-".into()
                    };
                    let owner = p
                        .owner
                        .map(|(id, host, client)| format!("{id} {host} {client}"))
                        .unwrap_or_else(|| "-".into());
                    println!(
                        "{:<24} {:>9} {:>14} {:>14} {:>8}  {}",
                        p.topic, p.partition, current, p.log_end, p.lag, owner
                    );
                }
            }
            GroupsAction::Delete { group } => {
                groups::delete_group(&mut cluster, &group).await?;
                println!("deleted group {group}");
            }
        }
        Ok::<(), minikafka::client::ClientError>(())
    };
    match result.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("minikafka groups: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn topics(args: TopicsArgs) -> ExitCode {
    use minikafka::client::{Cluster, admin};
    let timeout = std::time::Duration::from_secs(30);
    let result = async {
        let mut cluster = Cluster::connect(&args.bootstrap_server, "minikafka-topics", timeout).await?;
        match args.action {
            TopicsAction::List => {
                for (topic, partitions) in admin::list_topics(&mut cluster).await? {
                    println!("{topic}\t{partitions}");
                }
            }
            TopicsAction::Create {
                topic,
                partitions,
                replication_factor,
                configs,
            } => {
                let configs = configs
                    .iter()
                    .map(|c| {
                        c.split_once('=')
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .unwrap_or((c.clone(), String::new()))
                    })
                    .collect();
                admin::create_topic(&mut cluster, &topic, partitions, replication_factor, &configs).await?;
                println!("created topic {topic}");
            }
            TopicsAction::Describe { topic } => {
                let described = admin::describe_topic(&mut cluster, &topic).await?;
                println!(
                    "topic {} (id {}), {} partitions",
                    described.name,
                    described.id,
                    described.partitions.len()
                );
                for (partition, leader) in &described.partitions {
                    println!("  partition {partition}\tleader {leader}");
                }
                println!("configs:");
                for (name, value, default) in &described.configs {
                    println!("  {name}={value}{}", if *default { "  (default)" } else { "" });
                }
            }
            TopicsAction::Delete { topic } => {
                admin::delete_topic(&mut cluster, &topic).await?;
                println!("deleted topic {topic}");
            }
            TopicsAction::Alter { topic, configs } => {
                let changes = configs
                    .iter()
                    .map(|c| match c.split_once('=') {
                        Some((k, v)) => (k.to_string(), Some(v.to_string())),
                        None => (c.clone(), None),
                    })
                    .collect();
                admin::alter_topic_configs(&mut cluster, &topic, &changes).await?;
                println!("altered topic {topic}");
            }
        }
        Ok::<(), minikafka::client::ClientError>(())
    };
    match result.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("minikafka topics: {e}");
            ExitCode::FAILURE
        }
    }
}
