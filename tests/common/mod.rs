//! Shared test helpers: an in-process broker on an ephemeral port, a raw
//! protocol client built on the library's codec, a capturing TCP proxy, and
//! polling with a deadline (never a sleep as synchronisation).

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use minikafka::protocol::messages::{Request, Response, response_header_is_flexible};
use minikafka::protocol::records::{Record, decode_batch};
use minikafka::protocol::{ApiKey, RequestHeader, ResponseHeader};
use minikafka::{BrokerConfig, BrokerHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const DEADLINE: Duration = Duration::from_secs(30);

/// A broker config on an ephemeral loopback port, storing in `dir`.
pub fn config(dir: &Path, partitions: i32) -> BrokerConfig {
    BrokerConfig {
        num_partitions: partitions,
        ..BrokerConfig::ephemeral(Some(dir.to_path_buf()))
    }
}

pub async fn start(config: BrokerConfig) -> BrokerHandle {
    init_logging();
    minikafka::start(config).await.expect("broker starts")
}

/// Broker logs go to the test's captured output (shown when a test fails);
/// RUST_LOG narrows or widens them (default: warnings).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("minikafka=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// Polls `check` until it returns `Some`, failing the test after `DEADLINE`.
pub async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every batch stored in a partition's log.
pub fn stored_batches(handle: &BrokerHandle, topic: &str, partition: i32) -> Vec<Bytes> {
    let topic = handle.broker().topic(topic).expect("topic exists");
    topic
        .partition(partition)
        .expect("partition exists")
        .log()
        .batches()
        .unwrap()
}

/// Every record stored in a partition's log, decompressed.
pub fn stored_records(handle: &BrokerHandle, topic: &str, partition: i32) -> Vec<Record> {
    stored_batches(handle, topic, partition)
        .iter()
        .flat_map(|b| decode_batch(b).unwrap())
        .collect()
}

/// Records stored per partition, for every partition of `topic`.
pub fn stored_records_by_partition(handle: &BrokerHandle, topic: &str) -> BTreeMap<i32, Vec<Record>> {
    let count = handle.broker().topic(topic).map_or(0, |t| t.partitions.len()) as i32;
    (0..count).map(|p| (p, stored_records(handle, topic, p))).collect()
}

/// Total number of offsets in every partition of `topic`.
pub fn log_end_total(handle: &BrokerHandle, topic: &str) -> i64 {
    handle
        .broker()
        .topic(topic)
        .map_or(0, |t| t.partitions.iter().map(|p| p.log().next_offset()).sum())
}

/// A client that speaks the protocol with the library's own codec, one
/// request at a time, and can also send raw bytes.
pub struct RawClient {
    stream: TcpStream,
    correlation_id: i32,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        RawClient {
            stream,
            correlation_id: 0,
        }
    }

    /// Encodes a request frame (size, header, body).
    pub fn frame(request: &Request, version: i16, correlation_id: i32) -> Vec<u8> {
        request.encode_frame(version, correlation_id, "minikafka-test").to_vec()
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Closes the sending half: the broker reads EOF after what was sent.
    pub async fn shutdown_write(&mut self) {
        self.stream.shutdown().await.unwrap();
    }

    /// Sends a request and returns the decoded response.
    pub async fn call(&mut self, request: Request, version: i16) -> Response {
        self.correlation_id += 1;
        let key = request.api_key();
        let frame = Self::frame(&request, version, self.correlation_id);
        self.send_raw(&frame).await;
        let body = self.read_frame().await.expect("a response frame");
        let (header, body) = ResponseHeader::parse(&body, response_header_is_flexible(key, version)).unwrap();
        assert_eq!(header.correlation_id, self.correlation_id);
        Response::decode(key, version, &body).unwrap()
    }

    /// Reads one response frame; `None` if the broker closed the connection.
    pub async fn read_frame(&mut self) -> Option<Bytes> {
        let mut size = [0u8; 4];
        if self.stream.read_exact(&mut size).await.is_err() {
            return None;
        }
        let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut body).await.ok()?;
        Some(Bytes::from(body))
    }

    /// Whether the broker closes the connection (EOF or reset) before the
    /// deadline without sending a single byte first.
    pub async fn is_closed_by_broker(&mut self) -> bool {
        let mut buf = [0u8; 1024];
        matches!(
            tokio::time::timeout(DEADLINE, self.stream.read(&mut buf)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

/// `minikafka broker` running as a child process.
pub struct RunningBinary {
    pub child: tokio::process::Child,
    pub addr: SocketAddr,
    /// The lines it has logged so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

/// Starts `minikafka broker` on an ephemeral port and reads the bound
/// address from its "listening" log line.
pub async fn spawn_broker(data_dir: &Path) -> RunningBinary {
    spawn_broker_with(data_dir, &[]).await
}

pub async fn spawn_broker_with(data_dir: &Path, extra: &[&str]) -> RunningBinary {
    spawn_broker_with_env(data_dir, extra, &[]).await
}

/// As [`spawn_broker_with`], with extra environment variables.
pub async fn spawn_broker_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> RunningBinary {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_minikafka"));
    command.env("RUST_LOG", "minikafka=info").envs(env.iter().copied());
    spawn_broker_as(command, data_dir, extra).await
}

/// As [`spawn_broker_with`], run by `command`: the binary itself, or a
/// program that runs what follows its own arguments (prlimit, say). The
/// environment is `command`'s: set RUST_LOG there (the "listening" line is
/// logged at info).
pub async fn spawn_broker_as(mut command: tokio::process::Command, data_dir: &Path, extra: &[&str]) -> RunningBinary {
    use tokio::io::AsyncBufReadExt;
    let mut child = command
        .args([
            "broker",
            "--listen",
            "127.0.0.1:0",
            "--num-partitions",
            "3",
            "--data-dir",
        ])
        .arg(data_dir)
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let log = Arc::new(Mutex::new(Vec::new()));
    let addr = tokio::time::timeout(DEADLINE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            log.lock().unwrap().push(line.clone());
            if line.contains("minikafka listening") {
                let addr = line.split("addr=").nth(1).unwrap().split_whitespace().next().unwrap();
                return addr.parse().unwrap();
            }
        }
        panic!("the broker exited before listening");
    })
    .await
    .expect("the broker starts listening");
    // Keep draining its log so it never blocks on a full pipe.
    let kept = log.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            kept.lock().unwrap().push(line);
        }
    });
    RunningBinary { child, addr, log }
}

impl RunningBinary {
    /// The broker process's peak resident memory so far (VmHWM), in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        self.status_kib("VmHWM:") * 1024
    }

    /// The broker process's resident memory now (VmRSS), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        self.status_kib("VmRSS:") * 1024
    }

    fn status_kib(&self, field: &str) -> u64 {
        let pid = self.child.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Log lines so far that contain `text`.
    pub fn logged(&self, text: &str) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(text))
            .cloned()
            .collect()
    }
}

/// Bytes one client sent through the proxy.
type ConnectionLog = Arc<Mutex<Vec<u8>>>;

/// A TCP proxy that records every byte clients send through it, one buffer
/// per connection, so tests can compare what was sent with what was stored.
pub struct CaptureProxy {
    pub addr: SocketAddr,
    listener: Option<TcpListener>,
    captured: Arc<Mutex<Vec<ConnectionLog>>>,
}

impl CaptureProxy {
    /// Binds the proxy; `forward_to` starts forwarding once the target is known.
    pub async fn bind() -> CaptureProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        CaptureProxy {
            addr: listener.local_addr().unwrap(),
            listener: Some(listener),
            captured: Arc::default(),
        }
    }

    pub fn forward_to(&mut self, target: SocketAddr) {
        let listener = self.listener.take().expect("forwarding starts once");
        let captured = self.captured.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                let log = Arc::new(Mutex::new(Vec::new()));
                captured.lock().unwrap().push(log.clone());
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = client_read.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        log.lock().unwrap().extend_from_slice(&buf[..n]);
                        if server_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = server_write.shutdown().await;
                });
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                });
            }
        });
    }

    /// Every complete request frame sent so far, per connection.
    pub fn request_frames(&self) -> Vec<Bytes> {
        let mut frames = Vec::new();
        for log in self.captured.lock().unwrap().iter() {
            let mut bytes = Bytes::from(log.lock().unwrap().clone());
            while bytes.len() >= 4 {
                let size = i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
                if bytes.len() < 4 + size {
                    break;
                }
                bytes.advance(4);
                frames.push(bytes.split_to(size));
            }
        }
        frames
    }

    /// The record batches of every Produce request sent, per (topic, partition), in order.
    pub fn produced_batches(&self) -> BTreeMap<(String, i32), Vec<Bytes>> {
        let mut batches: BTreeMap<(String, i32), Vec<Bytes>> = BTreeMap::new();
        for frame in self.request_frames() {
            let prefix = minikafka::protocol::header::RequestPrefix::parse(&frame).unwrap();
            if prefix.api_key != ApiKey::Produce as i16 {
                continue;
            }
            let flexible = ApiKey::Produce.spec().is_flexible(prefix.api_version);
            let (_, body) = RequestHeader::parse(&frame, flexible).unwrap();
            let Request::Produce(produce) = Request::decode(ApiKey::Produce, prefix.api_version, &body).unwrap() else {
                unreachable!()
            };
            for topic in produce.topic_data {
                for partition in topic.partition_data {
                    if let Some(records) = partition.records {
                        batches
                            .entry((topic.name.clone(), partition.index))
                            .or_default()
                            .push(records);
                    }
                }
            }
        }
        batches
    }
}

/// Asserts that stored batches are the sent ones, byte for byte, apart from
/// the base offset (bytes 0..8) and the partition leader epoch (12..16).
pub fn assert_stored_verbatim(sent: &[Bytes], stored: &[Bytes]) {
    assert_eq!(sent.len(), stored.len(), "one stored batch per sent batch");
    for (i, (sent, stored)) in sent.iter().zip(stored).enumerate() {
        assert_eq!(sent.len(), stored.len(), "batch {i} length");
        assert_eq!(sent[8..12], stored[8..12], "batch {i} length field");
        assert_eq!(sent[16..], stored[16..], "batch {i} bytes after the leader epoch");
    }
}

/// Builds the LD_PRELOAD shim `tests/native/<name>.c` into `dir`, with
/// `$CC` or `cc`; the library's path.
pub fn build_shim(name: &str, dir: &Path) -> PathBuf {
    let library = dir.join(format!("lib{name}.so"));
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/native/{name}.c"));
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = std::process::Command::new(&compiler)
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&library)
        .arg(&source)
        .args(["-ldl", "-lpthread"])
        .status()
        .unwrap_or_else(|e| panic!("running {compiler} to build the {name} shim: {e}"));
    assert!(status.success(), "building the {name} shim with {compiler}");
    library
}

/// The Python interpreter that has kafka-python (set by scripts/test.sh).
pub fn python() -> PathBuf {
    match std::env::var_os("MINIKAFKA_PYTHON") {
        Some(path) => PathBuf::from(path),
        None => {
            let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
            assert!(
                venv.exists(),
                "kafka-python is needed: run scripts/test.sh (it creates .venv) or set MINIKAFKA_PYTHON"
            );
            venv
        }
    }
}

/// Node.js, with KafkaJS installed in `tests/node/node_modules` (by
/// scripts/test.sh, which runs `npm ci` there).
pub fn node() -> PathBuf {
    let modules = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node/node_modules/kafkajs");
    assert!(
        modules.exists(),
        "KafkaJS is needed: run scripts/test.sh (it runs npm ci in tests/node)"
    );
    std::env::var_os("MINIKAFKA_NODE").map_or_else(|| PathBuf::from("node"), PathBuf::from)
}

/// The kcat binary (installed by scripts/test.sh).
pub fn kcat() -> PathBuf {
    let path = std::env::var_os("MINIKAFKA_KCAT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("kcat"));
    let found = std::process::Command::new(&path)
        .env_remove("LD_LIBRARY_PATH")
        .arg("-V")
        .output();
    assert!(
        found.is_ok(),
        "kcat is needed: run scripts/test.sh (it installs kcat) or set MINIKAFKA_KCAT"
    );
    path
}

pub fn python_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python").join(name)
}

/// Runs one `tests/python/kp_admin.py` action (kafka-python's
/// KafkaAdminClient) and returns the JSON object it prints.
pub async fn kp_admin(bootstrap: &str, args: &[&str]) -> serde_json::Value {
    let output = tokio::process::Command::new(python())
        .arg(python_script("kp_admin.py"))
        .args(["--bootstrap", bootstrap])
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    json_stdout(&output, &format!("kp_admin {args:?}"))
}

/// The JSON object a test script printed, once it exited successfully.
pub fn json_stdout(output: &std::process::Output, what: &str) -> serde_json::Value {
    assert!(
        output.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// A TCP proxy that cuts each connection (both directions, abruptly) after
/// a pseudo-random number of bytes of *responses*: requests the broker has
/// handled lose their answers, so the client must reconnect (through the
/// proxy, which the broker advertises) and resend what the broker already
/// has. That is the case idempotence exists for.
pub struct CuttingProxy {
    pub addr: SocketAddr,
    listener: Option<TcpListener>,
    pub cuts: Arc<std::sync::atomic::AtomicUsize>,
}

impl CuttingProxy {
    pub async fn bind() -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        CuttingProxy {
            addr: listener.local_addr().unwrap(),
            listener: Some(listener),
            cuts: Arc::default(),
        }
    }

    /// Forwards to `target`; each connection is cut after a number of
    /// response bytes drawn from `budget_bytes`, for the first `max_cuts` cuts.
    pub fn forward_to(&mut self, target: SocketAddr, seed: u64, budget_bytes: std::ops::Range<u64>, max_cuts: usize) {
        let listener = self.listener.take().expect("forwarding starts once");
        let cuts = self.cuts.clone();
        tokio::spawn(async move {
            let mut rng = seed | 1;
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                // xorshift64: reproducible from the seed the test prints.
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let cut_at = budget_bytes.start + rng % (budget_bytes.end - budget_bytes.start);
                let cut = cuts.load(std::sync::atomic::Ordering::SeqCst) < max_cuts;
                let cuts = cuts.clone();
                tokio::spawn(async move {
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let upstream = async {
                        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                    };
                    let downstream = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        let mut sent = 0u64;
                        loop {
                            let n = match server_read.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if cut && sent + n as u64 >= cut_at {
                                // Pass on part of this answer, then drop everything.
                                let part = (cut_at - sent) as usize;
                                let _ = client_write.write_all(&buf[..part]).await;
                                cuts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                return;
                            }
                            sent += n as u64;
                            if client_write.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    // Whichever side ends first ends both: the sockets drop.
                    tokio::select! {
                        _ = upstream => {}
                        _ = downstream => {}
                    }
                });
            }
        });
    }
}

/// A librdkafka consumer outside any group, assigned partitions
/// `0..partitions` of `topic` from the beginning.
pub fn consumer_from_beginning(bootstrap: &str, topic: &str, partitions: i32) -> rdkafka::consumer::BaseConsumer {
    use rdkafka::consumer::Consumer;
    let consumer: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "unused-with-assign")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = rdkafka::TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, rdkafka::Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    consumer
}

/// The wall clock in ms, as record timestamps and the broker's expiry use it.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A Fetch of partition 0 of `topic` from `offset`.
pub fn fetch_request(
    topic: &str,
    offset: i64,
    max_wait_ms: i32,
    min_bytes: i32,
    partition_max_bytes: i32,
) -> minikafka::protocol::messages::fetch::FetchRequest {
    use minikafka::protocol::messages::fetch::{FetchPartition, FetchRequest, FetchTopic};
    FetchRequest {
        max_wait_ms,
        min_bytes,
        topics: vec![FetchTopic {
            topic: topic.into(),
            partitions: vec![FetchPartition {
                partition: 0,
                fetch_offset: offset,
                partition_max_bytes,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}
