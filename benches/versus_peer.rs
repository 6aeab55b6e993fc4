//! minikafka beside a peer broker, Tansu 0.6, under the same load in one
//! run, with the machine's loopback as the ceiling:
//!
//! - start-up (spawn to the first answered ApiVersions) and idle RSS;
//! - produce 1,000,000 x 100 B and 100,000 x 10 KiB records to 6-partition
//!   topics, acks=1 and acks=all, with librdkafka (rdkafka), and with
//!   `minikafka perf produce` (acks=1);
//! - consume each topic back from the beginning with rdkafka;
//! - produce latency at 5,000 msg/s, acks=all, p50/p99/p99.9;
//! - minikafka's start-up holding 1 GB, after a clean shutdown and after a
//!   crash (Tansu keeps nothing across a restart, so it has no counterpart),
//!   and its RSS after a clean start holding 2 GB of 4 KiB batches (one
//!   index entry each) beside its RSS holding nothing;
//! - per phase, the broker's CPU seconds (user+sys, /proc) and peak RSS
//!   (sampled every 5 ms), and the share of the machine's CPU time the
//!   hypervisor took (steal, /proc/stat): a phase with steal is not a
//!   measure of either broker;
//! - the ceiling: the same bytes (at least 1 GB) over one loopback
//!   connection into a sink, with the CPU its sending and receiving threads
//!   use per GB: the floor under any broker's cost on this machine;
//! - a broker that does no work: rdkafka producing the same load (acks=1)
//!   into an endpoint that answers at once and keeps nothing
//!   (`support/null_broker.rs`), what the client reaches on these cores
//!   when the broker costs nothing. Not a strict bound: how fast answers
//!   come back changes how much CPU librdkafka itself spends.
//!
//! minikafka writes its log to disk (a temporary directory, default flush
//! policy); Tansu keeps its data in memory (`memory://`).
//!
//! `scripts/bench_vs_tansu.sh` installs the peer and runs this; directly:
//! `MINIKAFKA_PEER_TANSU=/path/to/tansu cargo bench --bench versus_peer`.
//! `MINIKAFKA_BENCH_ONLY=10KiB,perf` narrows a run to the named loads (100B,
//! 10KiB) and kinds of phase (rdkafka, perf, latency, restart); a list naming no
//! load runs both, one naming no kind runs every kind.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, FutureProducer, FutureRecord, Producer};

#[path = "support/null_broker.rs"]
mod null_broker;

const PARTITIONS: i32 = 6;

struct Broker {
    name: &'static str,
    child: std::process::Child,
    addr: String,
    startup: Duration,
}

impl Broker {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn cpu(&self) -> CpuSample {
        CpuSample::of(self.pid())
    }

    fn rss_bytes(&self) -> u64 {
        rss_of(self.pid())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `stat` fields after the command name: utime is [11], stime [12],
/// cutime [13], cstime [14], in clock ticks.
fn stat_fields(path: &str) -> Vec<u64> {
    let stat = std::fs::read_to_string(path).unwrap();
    stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect()
}

/// A process's CPU time: per thread in nanoseconds (schedstat), and the
/// whole process in clock ticks, which also counts threads that exited.
struct CpuSample {
    ticks: u64,
    threads: std::collections::BTreeMap<u32, u64>,
}

impl CpuSample {
    fn of(pid: u32) -> Self {
        let fields = stat_fields(&format!("/proc/{pid}/stat"));
        let mut threads = std::collections::BTreeMap::new();
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
            let Ok(tid) = task.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if let Ok(schedstat) = std::fs::read_to_string(task.path().join("schedstat")) {
                let ns = schedstat.split_whitespace().next().and_then(|n| n.parse().ok());
                threads.insert(tid, ns.unwrap_or(0));
            }
        }
        CpuSample {
            ticks: fields[11] + fields[12],
            threads,
        }
    }

    /// CPU seconds from `self` to `later`: to the nanosecond when every
    /// thread of `self` is still there, else in ticks (10 ms).
    fn seconds_until(&self, later: &CpuSample) -> f64 {
        if self.threads.keys().all(|tid| later.threads.contains_key(tid)) {
            let ns: u64 = later
                .threads
                .iter()
                .map(|(tid, ns)| ns - self.threads.get(tid).copied().unwrap_or(0).min(*ns))
                .sum();
            ns as f64 / 1e9
        } else {
            (later.ticks - self.ticks) as f64 / 100.0
        }
    }
}

/// This process's CPU seconds with its waited-for children's: the client
/// side of a phase (rdkafka in-process, or `minikafka perf produce`).
fn client_cpu_seconds() -> f64 {
    let fields = stat_fields("/proc/self/stat");
    (fields[11] + fields[12] + fields[13] + fields[14]) as f64 / 100.0
}

fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Spawns a broker and waits for its first answered ApiVersions.
fn spawn(name: &'static str, command: &mut std::process::Command, port: u16) -> Broker {
    let started = Instant::now();
    let child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}");
    let frame = minikafka::protocol::messages::Request::ApiVersions(Default::default()).encode_frame(3, 1, "bench");
    loop {
        assert!(started.elapsed() < Duration::from_secs(30), "{name} did not start");
        if let Ok(mut stream) = std::net::TcpStream::connect(&addr) {
            use std::io::{Read, Write};
            let mut size = [0u8; 4];
            if stream.write_all(&frame).is_ok() && stream.read_exact(&mut size).is_ok() {
                break;
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Broker {
        name,
        child,
        addr,
        startup: started.elapsed(),
    }
}

/// Samples a process's RSS every 5 ms until stopped; returns the peak.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let (stop, peak) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let thread = {
            let (stop, peak) = (stop.clone(), peak.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_of(pid), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        RssSampler { stop, peak, thread }
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        self.peak.load(Ordering::Relaxed)
    }
}

/// One phase's figures for one broker.
#[derive(Clone, Copy, Default)]
struct Figures {
    seconds: f64,
    records: u64,
    bytes: u64,
    cpu_seconds: f64,
    /// The client's CPU seconds in the phase (ticks).
    client_cpu_seconds: f64,
    peak_rss: u64,
    /// The share of all CPU time in the phase that the hypervisor stole.
    steal: f64,
}

impl Figures {
    fn records_per_second(&self) -> f64 {
        self.records as f64 / self.seconds
    }
    fn mb_per_second(&self) -> f64 {
        self.bytes as f64 / self.seconds / 1e6
    }
    fn cpu_per_gb(&self) -> f64 {
        self.cpu_seconds / (self.bytes as f64 / 1e9)
    }
    fn client_cpu_per_gb(&self) -> f64 {
        self.client_cpu_seconds / (self.bytes as f64 / 1e9)
    }
}

/// The machine's CPU time so far, all of it and what the hypervisor
/// stole (the `cpu` line of /proc/stat, in ticks).
#[derive(Clone, Copy)]
struct HostCpu {
    total: u64,
    steal: u64,
}

impl HostCpu {
    fn now() -> HostCpu {
        let stat = std::fs::read_to_string("/proc/stat").unwrap();
        let line = stat.lines().find(|l| l.starts_with("cpu ")).unwrap();
        // user nice system idle iowait irq softirq steal guest guest_nice;
        // guest time is already counted in user.
        let ticks: Vec<u64> = line.split_whitespace().skip(1).map(|f| f.parse().unwrap()).collect();
        HostCpu {
            total: ticks.iter().take(8).sum(),
            steal: ticks[7],
        }
    }

    /// The share of the CPU time since `self` that was stolen.
    fn steal_until(&self, later: &HostCpu) -> f64 {
        (later.steal - self.steal) as f64 / (later.total - self.total).max(1) as f64
    }
}

/// Waits for the dirty pages earlier phases left to be written back, so
/// that writeback does not run inside the next phase's measurement.
fn settle_writeback() {
    rustix::fs::sync();
}

fn measure(broker: &Broker, records: u64, bytes: u64, work: impl FnOnce()) -> Figures {
    settle_writeback();
    let sampler = RssSampler::start(broker.pid());
    let (cpu, client_cpu, host) = (broker.cpu(), client_cpu_seconds(), HostCpu::now());
    let started = Instant::now();
    work();
    let seconds = started.elapsed().as_secs_f64();
    Figures {
        seconds,
        records,
        bytes,
        cpu_seconds: cpu.seconds_until(&broker.cpu()),
        client_cpu_seconds: client_cpu_seconds() - client_cpu,
        peak_rss: sampler.finish(),
        steal: host.steal_until(&HostCpu::now()),
    }
}

fn create_topics(addr: &str, names: &[String]) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let admin: AdminClient<DefaultClientContext> =
            ClientConfig::new().set("bootstrap.servers", addr).create().unwrap();
        let topics: Vec<NewTopic> = names
            .iter()
            .map(|n| NewTopic::new(n, PARTITIONS, TopicReplication::Fixed(1)))
            .collect();
        let created = admin.create_topics(&topics, &AdminOptions::new()).await.unwrap();
        for result in created {
            result.unwrap();
        }
    });
}

/// Deletes a topic once its phases are measured, on both brokers alike, so
/// the next phase does not find memory taken by data nobody reads again.
/// On this VM new memory the host has to back costs several times more
/// than memory given back and reused (see `file_write_cpu_per_gb`); a
/// broker running for long reuses its page cache in the same way.
fn delete_topic(addr: &str, name: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let admin: AdminClient<DefaultClientContext> =
            ClientConfig::new().set("bootstrap.servers", addr).create().unwrap();
        for result in admin.delete_topics(&[name], &AdminOptions::new()).await.unwrap() {
            result.unwrap();
        }
    });
}

fn produce(addr: &str, topic: &str, count: u64, size: usize, acks: &str) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("acks", acks)
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create()
        .unwrap();
    let payload = vec![b'x'; size];
    for i in 0..count {
        let key = (i % 1024).to_be_bytes();
        loop {
            match producer.send(BaseRecord::to(topic).key(&key[..]).payload(&payload)) {
                Ok(()) => break,
                Err((_, _)) => {
                    producer.poll(Duration::from_millis(1));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120)).unwrap();
}

fn consume(addr: &str, topic: &str, count: u64) {
    // librdkafka stops fetching a partition whose local queue is full
    // (queued.min.messages) for fetch.queue.backoff.ms, 1 s by default: a
    // broker that answers fast enough to fill it would be timed by that
    // pause, not by its own speed. Both brokers get the same setting.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "bench-assign")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .set("fetch.queue.backoff.ms", "10")
        .create()
        .unwrap();
    // Leaders known before the assignment: otherwise librdkafka's first
    // offset lookup finds no leader and retries 500 ms later, a pause that
    // both brokers' figures would carry and that neither causes.
    consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let mut assignment = rdkafka::TopicPartitionList::new();
    for p in 0..PARTITIONS {
        assignment
            .add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut read = 0;
    while read < count {
        assert!(Instant::now() < deadline, "consumed {read} of {count} from {topic}");
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
            read += 1;
        }
    }
}

/// minikafka's start-up with 100,000 x 10 KiB records (1 GB) stored in six
/// partitions: after a clean shutdown (SIGTERM), then after a crash
/// (SIGKILL, which is how `Broker` stops on drop), recovering with one
/// thread and with the default number, twice each, taking the faster.
fn restarts_with_data() -> Restarts {
    let data = tempfile::tempdir().unwrap();
    let start = |extra: &[&str]| spawn_minikafka_with(data.path(), extra);
    let mut broker = start(&[]);
    let topic = "restart".to_string();
    create_topics(&broker.addr, std::slice::from_ref(&topic));
    perf_produce(&broker.addr, &topic, 100_000, 10 * 1024);
    let status = std::process::Command::new("kill")
        .args(["-TERM", &broker.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(broker.child.wait().unwrap().success(), "a clean shutdown");
    let after_clean_shutdown = start(&[]).startup; // dropped: killed
    let (mut one_thread, mut default_threads) = (Duration::MAX, Duration::MAX);
    for _ in 0..2 {
        one_thread = one_thread.min(start(&["--num-recovery-threads-per-data-dir", "1"]).startup);
        default_threads = default_threads.min(start(&[]).startup);
    }
    Restarts {
        after_clean_shutdown,
        after_crash_one_thread: one_thread,
        after_crash: default_threads,
    }
}

struct Restarts {
    after_clean_shutdown: Duration,
    after_crash_one_thread: Duration,
    after_crash: Duration,
}

/// minikafka's RSS (bytes) after a start holding nothing, then its RSS and
/// start-up after a clean start holding 2 GB of 4 KiB batches in 256 MiB
/// segments, written through the storage layer (a producer sending batches
/// that small would take a minute).
fn holding_small_batches() -> (u64, u64, Duration) {
    let empty = tempfile::tempdir().unwrap();
    let rss_empty = rss_of(spawn_minikafka(empty.path()).pid());
    let data = tempfile::tempdir().unwrap();
    {
        let (catalog, _) = minikafka::storage::Catalog::open(data.path(), 0, 1).unwrap();
        let mut logs = catalog.create_topic("small", uuid::Uuid::from_u128(1), 1).unwrap();
        let log = &mut logs[0];
        log.set_segment_bytes(256 << 20);
        // 37 records of 100 B: a batch of about 4 KiB.
        let mut builder = minikafka::protocol::records::RecordBatchBuilder::new(1_700_000_000_000);
        for _ in 0..37 {
            builder.push(minikafka::protocol::records::Record {
                value: Some(vec![b'x'; 100].into()),
                ..Default::default()
            });
        }
        let batch = builder
            .build(minikafka::protocol::record_batch::Compression::None)
            .unwrap();
        let header = minikafka::protocol::record_batch::BatchHeader::parse(&batch).unwrap();
        for _ in 0..(2u64 << 30) / batch.len() as u64 {
            log.append(&batch, &header, 0).unwrap();
        }
        log.close().unwrap();
    }
    settle_writeback();
    let holding = spawn_minikafka(data.path());
    (rss_empty, rss_of(holding.pid()), holding.startup)
}

/// The release broker on a free port, its log in `data_dir`.
fn spawn_minikafka(data_dir: &std::path::Path) -> Broker {
    spawn_minikafka_with(data_dir, &[])
}

/// The same, with `extra` flags.
fn spawn_minikafka_with(data_dir: &std::path::Path, extra: &[&str]) -> Broker {
    let port = free_port();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_minikafka"));
    command
        .args(["broker", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(data_dir)
        .args(["--log-level", "warn"])
        .args(extra);
    spawn("minikafka", &mut command, port)
}

fn perf_produce(addr: &str, topic: &str, count: u64, size: usize) {
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_minikafka"))
        .args([
            "perf",
            "produce",
            "-b",
            addr,
            "-t",
            topic,
            "--acks",
            "1",
            "--linger-ms",
            "5",
        ])
        .args(["--batch-size", "1000000", "--num-records", &count.to_string()])
        .args(["--record-size", &size.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

/// Latencies (ms) of `count` acks=all sends at `rate` per second, after a
/// warm-up send to each partition.
fn latencies(addr: &str, topic: &str, rate: u64, count: u64) -> Vec<f64> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", addr)
            .set("acks", "all")
            .set("linger.ms", "0")
            .create()
            .unwrap();
        // Warm-up, not measured: the first sends wait for the client to
        // learn the topic's leaders and connect to them (tens of ms in
        // librdkafka), which is start-up, not produce latency.
        for partition in 0..PARTITIONS {
            producer
                .send(
                    FutureRecord::to(topic)
                        .partition(partition)
                        .key("warm-up")
                        .payload("warm-up"),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(e, _)| e)
                .unwrap();
        }
        let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
        let mut sends = tokio::task::JoinSet::new();
        for i in 0..count {
            tick.tick().await;
            let producer = producer.clone();
            let topic = topic.to_string();
            sends.spawn(async move {
                let started = Instant::now();
                let value = vec![b'x'; 100];
                let key = i.to_be_bytes();
                producer
                    .send(
                        FutureRecord::to(&topic).key(&key[..]).payload(&value),
                        Duration::from_secs(30),
                    )
                    .await
                    .map_err(|(e, _)| e)
                    .unwrap();
                started.elapsed().as_secs_f64() * 1000.0
            });
        }
        let mut all = Vec::with_capacity(count as usize);
        while let Some(latency) = sends.join_next().await {
            all.push(latency.unwrap());
        }
        all.sort_by(f64::total_cmp);
        all
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// CPU seconds this thread has run (schedstat: nanoseconds, not ticks).
fn thread_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    stat.split_whitespace().next().unwrap().parse::<u64>().unwrap() as f64 / 1e9
}

/// The loopback's limits: one connection pushing bytes into a sink that
/// discards them, each end a thread of its own.
#[derive(Clone, Copy)]
struct Ceiling {
    mb_per_second: f64,
    /// CPU seconds per GB of the sending and of the receiving thread: what
    /// any broker pays at least to send (consume) or to receive (produce)
    /// bytes over this machine's loopback.
    sender_cpu_per_gb: f64,
    receiver_cpu_per_gb: f64,
    /// The share of the machine's CPU time stolen meanwhile.
    steal: f64,
}

/// The same bytes (at least 1 GB, so the CPU figures are not a few
/// milliseconds) through one loopback connection into a sink.
fn ceiling(bytes: u64) -> Ceiling {
    use std::io::{Read, Write};
    let bytes = bytes.max(1_000_000_000);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let sink = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        let cpu = thread_cpu_seconds();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = socket.read(&mut buf).unwrap();
            if n == 0 {
                return (total, thread_cpu_seconds() - cpu);
            }
            total += n as u64;
        }
    });
    let chunk = vec![b'x'; 1 << 20];
    let mut socket = std::net::TcpStream::connect(addr).unwrap();
    let (started, cpu, host) = (Instant::now(), thread_cpu_seconds(), HostCpu::now());
    let mut sent = 0;
    while sent < bytes {
        let n = (bytes - sent).min(chunk.len() as u64) as usize;
        socket.write_all(&chunk[..n]).unwrap();
        sent += n as u64;
    }
    drop(socket);
    let sender_cpu = thread_cpu_seconds() - cpu;
    let (received, receiver_cpu) = sink.join().unwrap();
    assert_eq!(received, bytes);
    let gb = bytes as f64 / 1e9;
    Ceiling {
        mb_per_second: bytes as f64 / started.elapsed().as_secs_f64() / 1e6,
        sender_cpu_per_gb: sender_cpu / gb,
        receiver_cpu_per_gb: receiver_cpu / gb,
        steal: host.steal_until(&HostCpu::now()),
    }
}

/// CPU seconds per GB of writing 256 MB (1 MiB writes) to a new file
/// under `dir`: the page cache's cost on this machine at the moment, which
/// a broker that stores what it is sent pays at least.
fn file_write_cpu_per_gb(dir: &std::path::Path) -> f64 {
    use std::io::Write;
    const CHUNKS: usize = 256;
    let path = dir.join("write-floor");
    let chunk = vec![b'x'; 1 << 20];
    let (mut file, cpu) = (std::fs::File::create(&path).unwrap(), thread_cpu_seconds());
    for _ in 0..CHUNKS {
        file.write_all(&chunk).unwrap();
    }
    let seconds = thread_cpu_seconds() - cpu;
    drop(file);
    std::fs::remove_file(&path).unwrap();
    seconds / (CHUNKS as f64 * chunk.len() as f64 / 1e9)
}

const LOADS: [&str; 2] = ["100B", "10KiB"];
const KINDS: [&str; 4] = ["rdkafka", "perf", "latency", "restart"];

/// Whether MINIKAFKA_BENCH_ONLY selects `name`, one of `category`.
fn selected(category: &[&str], name: &str) -> bool {
    let only = std::env::var("MINIKAFKA_BENCH_ONLY").unwrap_or_default();
    let words: Vec<&str> = only.split(',').map(str::trim).collect();
    !category.iter().any(|c| words.contains(c)) || words.contains(&name)
}

struct Phase {
    name: String,
    /// The loopback's throughput, for produce phases.
    ceiling_mb_s: Option<f64>,
    /// rdkafka's throughput into the null broker, for rdkafka produce phases.
    client_bound_mb_s: Option<f64>,
    /// The least CPU per GB any broker that keeps its data on disk pays in
    /// this phase: the loopback receiver's plus a plain file write's for
    /// produce, the loopback sender's for consume.
    floor_cpu_per_gb: f64,
    /// A plain 256 MB file write's CPU per GB, right after a produce phase.
    file_write_cpu_per_gb: Option<f64>,
    figures: Vec<Figures>,
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let Ok(tansu) = std::env::var("MINIKAFKA_PEER_TANSU") else {
        eprintln!("set MINIKAFKA_PEER_TANSU to Tansu's binary (scripts/bench_vs_tansu.sh does)");
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let mut brokers = Vec::new();
    for which in ["minikafka", "tansu"] {
        let broker = if which == "minikafka" {
            spawn_minikafka(data.path())
        } else {
            let port = free_port();
            let url = format!("tcp://127.0.0.1:{port}");
            let mut command = std::process::Command::new(&tansu);
            command.args(["broker", "--listener-url", &url, "--advertised-listener-url", &url]);
            command.args(["--storage-engine", "memory://tansu/"]);
            spawn("tansu", &mut command, port)
        };
        brokers.push(broker);
    }
    std::thread::sleep(Duration::from_secs(1)); // settle before idle RSS
    let idle: Vec<u64> = brokers.iter().map(Broker::rss_bytes).collect();

    let loads: [(&str, u64, usize); 2] = [("100B", 1_000_000, 100), ("10KiB", 100_000, 10 * 1024)];
    let mut phases: Vec<Phase> = Vec::new();
    let mut ceilings = Vec::new();
    let data_dir = data.path().to_path_buf();
    let null_broker = null_broker::NullBroker::start(PARTITIONS);
    let mut client_bounds = Vec::new();
    let mut add = |name: String, ceiling: Ceiling, produce: bool, client_bound: Option<f64>, figures: Vec<Figures>| {
        // What a plain writer pays for the page cache right now (it varies
        // on this VM with how much memory the host backs), measured after
        // the phase so that it does not warm the phase up.
        let file_write = produce.then(|| file_write_cpu_per_gb(&data_dir));
        phases.push(Phase {
            name,
            ceiling_mb_s: produce.then_some(ceiling.mb_per_second),
            client_bound_mb_s: client_bound,
            floor_cpu_per_gb: match file_write {
                Some(write) => ceiling.receiver_cpu_per_gb + write,
                None => ceiling.sender_cpu_per_gb,
            },
            file_write_cpu_per_gb: file_write,
            figures,
        })
    };
    for (label, count, size) in loads {
        if !selected(&LOADS, label) {
            continue;
        }
        let bytes = count * size as u64;
        let ceiling = ceiling(bytes);
        ceilings.push((label, ceiling));
        // The better of two runs: the first in this process also pays for
        // first touching the client's memory. The null broker answers
        // acks=1 and acks=all alike, so one figure stands for both phases.
        let client_bound = selected(&KINDS, "rdkafka").then(|| {
            (0..2)
                .map(|_| {
                    let (started, host) = (Instant::now(), HostCpu::now());
                    produce(
                        &null_broker.addr.to_string(),
                        &format!("null-{label}"),
                        count,
                        size,
                        "1",
                    );
                    let mb_s = bytes as f64 / started.elapsed().as_secs_f64() / 1e6;
                    (mb_s, host.steal_until(&HostCpu::now()))
                })
                .fold((0.0, 0.0), |best, run| if run.0 > best.0 { run } else { best })
        });
        if let Some((mb_s, steal)) = client_bound {
            client_bounds.push((label, mb_s, mb_s / ceiling.mb_per_second, steal));
        }
        let client_bound = client_bound.map(|(mb_s, _)| mb_s);
        for acks in ["1", "all"].into_iter().filter(|_| selected(&KINDS, "rdkafka")) {
            let topic = format!("rd-{label}-acks{acks}");
            let figures = brokers
                .iter()
                .map(|b| {
                    create_topics(&b.addr, std::slice::from_ref(&topic));
                    measure(b, count, bytes, || produce(&b.addr, &topic, count, size, acks))
                })
                .collect();
            add(
                format!("produce {count} x {label}, acks={acks}, rdkafka"),
                ceiling,
                true,
                client_bound,
                figures,
            );
            let figures = brokers
                .iter()
                .map(|b| measure(b, count, bytes, || consume(&b.addr, &topic, count)))
                .collect();
            add(
                format!("consume {count} x {label} (acks={acks} topic), rdkafka"),
                ceiling,
                false,
                None,
                figures,
            );
            for b in &brokers {
                delete_topic(&b.addr, &topic);
            }
        }
        if !selected(&KINDS, "perf") {
            continue;
        }
        let topic = format!("perf-{label}");
        let figures = brokers
            .iter()
            .map(|b| {
                create_topics(&b.addr, std::slice::from_ref(&topic));
                measure(b, count, bytes, || perf_produce(&b.addr, &topic, count, size))
            })
            .collect();
        add(
            format!("produce {count} x {label}, acks=1, minikafka perf produce"),
            ceiling,
            true,
            None,
            figures,
        );
        for b in &brokers {
            delete_topic(&b.addr, &topic);
        }
    }

    println!();
    println!("minikafka: release binary, log on disk (default flush policy); tansu 0.6: memory://, data in memory");
    println!(
        "rdkafka consumers: fetch.queue.backoff.ms=10, metadata fetched before assign; latency: after one warm-up send per partition"
    );
    println!("every phase starts after a sync, and a topic is deleted (on both brokers) once its phases are measured");
    println!(
        "start-up to first ApiVersions: minikafka {:.1} ms, tansu {:.1} ms; idle RSS: minikafka {:.1} MB, tansu {:.1} MB",
        brokers[0].startup.as_secs_f64() * 1000.0,
        brokers[1].startup.as_secs_f64() * 1000.0,
        idle[0] as f64 / 1e6,
        idle[1] as f64 / 1e6
    );
    println!();
    println!(
        "{:<58} {:>10} {:>9} {:>8} {:>8} {:>9} {:>8}   {:>10} {:>9} {:>8} {:>8} {:>9} {:>8}   {:>6} {:>7} {:>8} {:>6} {:>9}",
        "phase",
        "mk rec/s",
        "mk MB/s",
        "mk cpu",
        "cpu/GB",
        "mk RSS",
        "client",
        "peer rec/s",
        "peer MB/s",
        "peer cpu",
        "cpu/GB",
        "peer RSS",
        "client",
        "thrpt",
        "cpu/GB",
        "ceiling",
        "floor",
        "steal %"
    );
    for phase in &phases {
        let (ours, theirs) = (phase.figures[0], phase.figures[1]);
        let ceiling = phase
            .ceiling_mb_s
            .map_or_else(|| "-".to_string(), |c| format!("{:.2}", ours.mb_per_second() / c));
        println!(
            "{:<58} {:>10.0} {:>9.1} {:>8.3} {:>8.3} {:>8.0}M {:>8.2}   {:>10.0} {:>9.1} {:>8.3} {:>8.3} {:>8.0}M {:>8.2}   {:>6.2} {:>7.2} {:>8} {:>6.2} {:>9}",
            phase.name,
            ours.records_per_second(),
            ours.mb_per_second(),
            ours.cpu_seconds,
            ours.cpu_per_gb(),
            ours.peak_rss as f64 / 1e6,
            ours.client_cpu_per_gb(),
            theirs.records_per_second(),
            theirs.mb_per_second(),
            theirs.cpu_seconds,
            theirs.cpu_per_gb(),
            theirs.peak_rss as f64 / 1e6,
            theirs.client_cpu_per_gb(),
            ours.records_per_second() / theirs.records_per_second(),
            ours.cpu_per_gb() / theirs.cpu_per_gb(),
            ceiling,
            ours.cpu_per_gb() / phase.floor_cpu_per_gb,
            format!("{:.1}/{:.1}", ours.steal * 100.0, theirs.steal * 100.0)
        );
    }
    println!("(thrpt and cpu/GB columns: minikafka / peer; ceiling: minikafka MB/s / the loopback sink's MB/s;");
    println!(
        " floor: minikafka cpu/GB / the loopback's own cpu/GB at the broker's end: receiving for produce, sending for consume;"
    );
    println!(" steal %: the machine's CPU time the hypervisor took in minikafka's / the peer's phase)");
    for (label, c) in &ceilings {
        println!(
            "loopback, {label} load: {:.0} MB/s; sender {:.3} cpu s/GB, receiver {:.3} cpu s/GB (steal {:.1}%)",
            c.mb_per_second,
            c.sender_cpu_per_gb,
            c.receiver_cpu_per_gb,
            c.steal * 100.0
        );
    }
    for (label, mb_s, of_ceiling, steal) in &client_bounds {
        println!(
            "rdkafka into a broker that keeps nothing (answers each Produce at once, in this process; the better of two runs), \
             {label} load, acks=1: {mb_s:.0} MB/s, {of_ceiling:.2} of the loopback (steal {:.1}%)",
            steal * 100.0
        );
    }
    for phase in &phases {
        if let Some(bound) = phase.client_bound_mb_s {
            println!(
                "\"{}\": minikafka {:.2}, tansu {:.2} of that",
                phase.name,
                phase.figures[0].mb_per_second() / bound,
                phase.figures[1].mb_per_second() / bound
            );
        }
    }
    for phase in &phases {
        if let Some(write) = phase.file_write_cpu_per_gb {
            println!("plain file write after \"{}\": {write:.3} cpu s/GB", phase.name);
        }
    }

    println!();
    for broker in brokers.iter().filter(|_| selected(&KINDS, "latency")) {
        settle_writeback();
        let topic = "latency".to_string();
        create_topics(&broker.addr, std::slice::from_ref(&topic));
        let host = HostCpu::now();
        let sorted = latencies(&broker.addr, &topic, 5000, 25_000);
        println!(
            "{:<9} produce latency at 5,000 msg/s, acks=all: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms (steal {:.1}%)",
            broker.name,
            percentile(&sorted, 0.50),
            percentile(&sorted, 0.99),
            percentile(&sorted, 0.999),
            host.steal_until(&HostCpu::now()) * 100.0
        );
    }
    if selected(&KINDS, "restart") {
        drop(brokers);
        settle_writeback();
        let restarts = restarts_with_data();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "minikafka start-up holding 1 GB in 6 partitions: {:.1} ms after a clean shutdown, {:.1} ms after a crash \
             ({:.1} ms recovering on one thread: {:.2}x)",
            ms(restarts.after_clean_shutdown),
            ms(restarts.after_crash),
            ms(restarts.after_crash_one_thread),
            ms(restarts.after_crash) / ms(restarts.after_crash_one_thread)
        );
        let (empty, holding, startup) = holding_small_batches();
        println!(
            "minikafka RSS after a start: {:.1} MB holding nothing, {:.1} MB holding 2 GB of 4 KiB batches (start-up {:.1} ms)",
            empty as f64 / 1e6,
            holding as f64 / 1e6,
            startup.as_secs_f64() * 1000.0
        );
    }
}
