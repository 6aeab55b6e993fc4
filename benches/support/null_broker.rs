//! A Kafka endpoint that answers every Produce at once and keeps nothing:
//! what a producing client reaches on this machine when the broker costs
//! (almost) nothing. It speaks only what a plain, non-idempotent producer
//! needs (ApiVersions, Metadata, Produce) and closes a connection that asks
//! for anything else. It checks nothing: it is a yardstick, not a broker.
//!
//! It runs in the bench's own process, on one thread per connection, so it
//! shares the machine's cores with the client as a broker process would.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use bytes::{BufMut, Bytes, BytesMut};
use minikafka::protocol::messages::api_versions::{ApiVersion, ApiVersionsResponse};
use minikafka::protocol::messages::metadata::{
    MetadataRequest, MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use minikafka::protocol::messages::produce::{
    PartitionProduceResponse, ProduceRequest, ProduceResponse, TopicProduceResponse,
};
use minikafka::protocol::messages::{Request, Response, response_header_is_flexible};
use minikafka::protocol::{ApiKey, ErrorCode, RequestHeader, ResponseHeader, SUPPORTED_APIS};

/// Where a record batch keeps its last offset delta (after base offset,
/// length, leader epoch, magic, CRC and attributes).
const LAST_OFFSET_DELTA_AT: usize = 23;
/// Produce from v3 only: record batches (magic 2), whose header it reads.
const PRODUCE_MIN_VERSION: i16 = 3;
/// A frame larger than this closes the connection.
const FRAME_BYTES_MAX: usize = 256 << 20;

pub struct NullBroker {
    pub addr: SocketAddr,
}

impl NullBroker {
    /// Listens on a free loopback port; every topic it is asked about has
    /// `partitions` partitions, all led by it.
    pub fn start(partitions: i32) -> NullBroker {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || serve(stream, addr, partitions));
            }
        });
        NullBroker { addr }
    }
}

fn serve(mut stream: TcpStream, addr: SocketAddr, partitions: i32) {
    let _ = stream.set_nodelay(true);
    let mut frame = BytesMut::new();
    let mut out = BytesMut::new();
    // A running offset per (topic, partition) on this connection, so that
    // answers look like a log's to the one producer a bench run makes.
    let mut next_offsets = std::collections::HashMap::<(String, i32), i64>::new();
    loop {
        let mut size = [0u8; 4];
        if stream.read_exact(&mut size).is_err() {
            return;
        }
        let size = i32::from_be_bytes(size).max(0) as usize;
        if size > FRAME_BYTES_MAX {
            return;
        }
        frame.clear();
        frame.resize(size, 0);
        if stream.read_exact(&mut frame).is_err() {
            return;
        }
        let frame = frame.split().freeze();
        let Some(response) = answer(&frame, addr, partitions, &mut next_offsets) else {
            return;
        };
        let Some((correlation_id, key, version, response)) = response else {
            continue; // acks=0: no answer
        };
        out.clear();
        out.put_i32(0);
        ResponseHeader { correlation_id }.encode(&mut out, response_header_is_flexible(key, version));
        response.encode(version, &mut out);
        let len = (out.len() - 4) as i32;
        out[..4].copy_from_slice(&len.to_be_bytes());
        if stream.write_all(&out).is_err() {
            return;
        }
    }
}

type Answer = Option<(i32, ApiKey, i16, Response)>;

/// The answer to one request frame; `None` closes the connection.
fn answer(
    frame: &Bytes,
    addr: SocketAddr,
    partitions: i32,
    next_offsets: &mut std::collections::HashMap<(String, i32), i64>,
) -> Option<Answer> {
    let prefix = minikafka::protocol::header::RequestPrefix::parse(frame).ok()?;
    let key = ApiKey::from_i16(prefix.api_key)?;
    let served = [ApiKey::ApiVersions, ApiKey::Metadata, ApiKey::Produce];
    if !served.contains(&key) {
        eprintln!("null broker: closing a connection that sent {key:?}");
        return None;
    }
    let (version, correlation_id) = (prefix.api_version, prefix.correlation_id);
    let spec = key.spec();
    if !spec.supports(version) || (key == ApiKey::Produce && version < PRODUCE_MIN_VERSION) {
        // Only ApiVersions is answered at an unknown version (in v0).
        return (key == ApiKey::ApiVersions).then(|| {
            let response = api_versions(&served, ErrorCode::UnsupportedVersion);
            Some((correlation_id, key, 0, Response::ApiVersions(response)))
        });
    }
    let (_, body) = RequestHeader::parse(frame, spec.is_flexible(version)).ok()?;
    let (request, _) = Request::decode_lenient(key, version, &body).ok()?;
    let response = match request {
        Request::ApiVersions(_) => Response::ApiVersions(api_versions(&served, ErrorCode::None)),
        Request::Metadata(request) => Response::Metadata(metadata(&request, addr, partitions)),
        Request::Produce(request) => {
            let response = produce(&request, next_offsets);
            if request.acks == 0 {
                return Some(None);
            }
            Response::Produce(response)
        }
        _ => return None,
    };
    Some(Some((correlation_id, key, version, response)))
}

fn api_versions(served: &[ApiKey], error: ErrorCode) -> ApiVersionsResponse {
    ApiVersionsResponse {
        error_code: error.code(),
        api_keys: SUPPORTED_APIS
            .iter()
            .filter(|spec| served.contains(&spec.key))
            .map(|spec| ApiVersion {
                api_key: spec.key as i16,
                min_version: if spec.key == ApiKey::Produce {
                    PRODUCE_MIN_VERSION
                } else {
                    spec.min_version
                },
                max_version: spec.max_version,
            })
            .collect(),
        ..Default::default()
    }
}

/// The topics asked for, by name; a request for every topic (or by id)
/// gets none, which no producer sends.
fn metadata(request: &MetadataRequest, addr: SocketAddr, partitions: i32) -> MetadataResponse {
    let names = request.topics.iter().flatten().filter_map(|t| t.name.clone());
    MetadataResponse {
        brokers: vec![MetadataResponseBroker {
            node_id: 0,
            host: addr.ip().to_string(),
            port: i32::from(addr.port()),
            rack: None,
        }],
        cluster_id: Some("null-broker".to_string()),
        controller_id: 0,
        topics: names
            .map(|name| MetadataResponseTopic {
                name: Some(name),
                partitions: (0..partitions)
                    .map(|index| MetadataResponsePartition {
                        partition_index: index,
                        leader_id: 0,
                        leader_epoch: 0,
                        replica_nodes: vec![0],
                        isr_nodes: vec![0],
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn produce(
    request: &ProduceRequest,
    next_offsets: &mut std::collections::HashMap<(String, i32), i64>,
) -> ProduceResponse {
    ProduceResponse {
        responses: request
            .topic_data
            .iter()
            .map(|topic| TopicProduceResponse {
                name: topic.name.clone(),
                partition_responses: topic
                    .partition_data
                    .iter()
                    .map(|partition| {
                        let next = next_offsets.entry((topic.name.clone(), partition.index)).or_default();
                        let base_offset = *next;
                        // Only the first batch's header is read: enough for
                        // offsets that advance, not a check of the records.
                        let records = partition.records.as_deref().unwrap_or_default();
                        let delta = records
                            .get(LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4)
                            .map_or(0, |b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                        *next += i64::from(delta) + 1;
                        PartitionProduceResponse {
                            index: partition.index,
                            base_offset,
                            ..Default::default()
                        }
                    })
                    .collect(),
            })
            .collect(),
        ..Default::default()
    }
}
