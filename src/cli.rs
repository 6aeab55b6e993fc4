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
    }
}

async fn run_broker(config: BrokerConfig) -> ExitCode {
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
