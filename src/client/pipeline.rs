//! A connection with several requests in flight: requests are written as
//! they come and responses matched to them in order (Kafka answers each
//! connection's requests in the order they were sent).

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use super::{BrokerConnection, ClientError};
use crate::protocol::messages::{Request, Response, response_header_is_flexible};
use crate::protocol::{ApiKey, Deferred, DeferredSlices, ResponseHeader};

/// Requests queued for writing on one connection.
const QUEUED_REQUESTS_MAX: usize = 64;

/// Byte fields at least this large (record batches) are written from where
/// they are rather than copied into the request frame.
const WRITTEN_IN_PLACE_BYTES_MIN: usize = 16 * 1024;

/// The answer to a request: a response, or nothing for a request that gets
/// none (acks=0 produce).
pub type Answer = Result<Option<Response>, ClientError>;

struct Outgoing {
    frame: BytesMut,
    /// Byte fields left out of `frame`, each with its position there.
    in_place: Vec<(usize, Bytes)>,
    awaiting: Option<Awaiting>,
    reply: oneshot::Sender<Answer>,
}

struct Awaiting {
    correlation_id: i32,
    key: ApiKey,
    version: i16,
}

/// A handle to a connection served by its own task; cheap to clone.
#[derive(Clone)]
pub struct PipelinedConnection {
    addr: String,
    client_id: String,
    versions: std::collections::HashMap<ApiKey, i16>,
    queue: mpsc::Sender<Outgoing>,
    correlation: std::sync::Arc<std::sync::atomic::AtomicI32>,
}

impl PipelinedConnection {
    /// Takes over a negotiated connection.
    pub fn new(connection: BrokerConnection) -> PipelinedConnection {
        let (addr, client_id, versions, stream) = connection.into_parts();
        let (queue, requests) = mpsc::channel(QUEUED_REQUESTS_MAX);
        tokio::spawn(serve(stream, requests, addr.clone()));
        PipelinedConnection {
            addr,
            client_id,
            versions,
            queue,
            correlation: std::sync::Arc::new(std::sync::atomic::AtomicI32::new(1_000)),
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn version(&self, key: ApiKey) -> Option<i16> {
        self.versions.get(&key).copied()
    }

    /// Queues `request`; the returned receiver gets its answer. With
    /// `expects_response` false (acks=0 produce) it gets `None` once written.
    pub async fn send(&self, request: &Request, expects_response: bool) -> oneshot::Receiver<Answer> {
        let (reply, answer) = oneshot::channel();
        let key = request.api_key();
        let Some(version) = self.version(key) else {
            let _ = reply.send(Err(ClientError::UnsupportedApi(key)));
            return answer;
        };
        let correlation_id = self.correlation.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let deferred = DeferredSlices::with_bytes_from(WRITTEN_IN_PLACE_BYTES_MIN);
        let frame = request.encode_frame_deferring(version, correlation_id, &self.client_id, Some(&deferred));
        let in_place = deferred
            .take()
            .into_iter()
            .map(|(position, part)| match part {
                Deferred::Bytes(bytes) => (position, bytes),
                // Requests hold no file slices; one would be read in, since
                // the frame's size counts it.
                Deferred::File(slice) => (position, slice.read_or_zeros()),
            })
            .collect();
        let awaiting = expects_response.then_some(Awaiting {
            correlation_id,
            key,
            version,
        });
        let outgoing = Outgoing {
            frame,
            in_place,
            awaiting,
            reply,
        };
        if let Err(mpsc::error::SendError(outgoing)) = self.queue.send(outgoing).await {
            let _ = outgoing.reply.send(Err(closed(&self.addr)));
        }
        answer
    }

    /// Whether `other` is a handle to this same connection.
    pub fn same(&self, other: &PipelinedConnection) -> bool {
        self.queue.same_channel(&other.queue)
    }

    /// Whether the connection's task has ended (the connection is gone).
    pub fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }
}

/// Writes a request: its frame with the byte fields left out of it put
/// back in their places, in vectored writes.
async fn write_outgoing(writer: &mut tokio::net::tcp::OwnedWriteHalf, outgoing: &Outgoing) -> std::io::Result<()> {
    if outgoing.in_place.is_empty() {
        return writer.write_all(&outgoing.frame).await;
    }
    let mut parts: Vec<&[u8]> = Vec::with_capacity(2 * outgoing.in_place.len() + 1);
    let mut at = 0;
    for (position, bytes) in &outgoing.in_place {
        parts.push(&outgoing.frame[at..*position]);
        parts.push(bytes);
        at = *position;
    }
    parts.push(&outgoing.frame[at..]);
    parts.retain(|p| !p.is_empty());
    let mut slices: Vec<std::io::IoSlice<'_>> = parts.iter().map(|p| std::io::IoSlice::new(p)).collect();
    let mut remaining: &mut [std::io::IoSlice<'_>] = &mut slices;
    while !remaining.is_empty() {
        let written = writer.write_vectored(remaining).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        std::io::IoSlice::advance_slices(&mut remaining, written);
    }
    Ok(())
}

fn closed(addr: &str) -> ClientError {
    ClientError::Io {
        addr: addr.to_string(),
        source: std::io::ErrorKind::ConnectionAborted.into(),
    }
}

async fn serve(stream: TcpStream, mut requests: mpsc::Receiver<Outgoing>, addr: String) {
    let (mut reader, mut writer) = stream.into_split();
    let mut pending: VecDeque<(Awaiting, oneshot::Sender<Answer>)> = VecDeque::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let failure: ClientError = loop {
        tokio::select! {
            outgoing = requests.recv() => {
                let Some(outgoing) = outgoing else { break closed(&addr) };
                if let Err(source) = write_outgoing(&mut writer, &outgoing).await {
                    let _ = outgoing.reply.send(Err(ClientError::Io { addr: addr.clone(), source }));
                    break closed(&addr);
                }
                match outgoing.awaiting {
                    Some(awaiting) => pending.push_back((awaiting, outgoing.reply)),
                    None => { let _ = outgoing.reply.send(Ok(None)); }
                }
            }
            read = reader.read_buf(&mut buf), if !pending.is_empty() => {
                match read {
                    Ok(0) => break closed(&addr),
                    Err(source) => break ClientError::Io { addr: addr.clone(), source },
                    Ok(_) => {}
                }
                while let Some(frame) = take_frame(&mut buf) {
                    let Some((awaiting, reply)) = pending.pop_front() else { break };
                    let _ = reply.send(decode(&frame, &awaiting).map(Some));
                }
            }
        }
    };
    let message = failure.to_string();
    for (_, reply) in pending {
        let _ = reply.send(Err(ClientError::Io {
            addr: addr.clone(),
            source: std::io::Error::other(message.clone()),
        }));
    }
    drop(failure);
}

fn take_frame(buf: &mut BytesMut) -> Option<Bytes> {
    if buf.len() < 4 {
        return None;
    }
    let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]).max(0) as usize;
    if buf.len() < 4 + size {
        buf.reserve(4 + size - buf.len());
        return None;
    }
    buf.advance(4);
    Some(buf.split_to(size).freeze())
}

fn decode(frame: &Bytes, awaiting: &Awaiting) -> Result<Response, ClientError> {
    let (header, body) = ResponseHeader::parse(frame, response_header_is_flexible(awaiting.key, awaiting.version))?;
    if header.correlation_id != awaiting.correlation_id {
        return Err(ClientError::CorrelationMismatch {
            expected: awaiting.correlation_id,
            got: header.correlation_id,
        });
    }
    Ok(Response::decode(awaiting.key, awaiting.version, &body)?)
}
