//! One client connection: size-prefixed frames in, responses out, in request
//! order.
//!
//! Requests on a connection are handled one after another, as Kafka does
//! (it mutes a connection while a request is in flight), so responses leave
//! in the order requests came even when a client pipelines. Every complete
//! frame already read is handled before the responses are written, so a
//! pipelining client gets its answers in few syscalls, and nothing more is
//! read until they are: what a client has in flight is bounded by one read.
//!
//! A frame's whole size is reserved under the broker-wide bound on request
//! bytes (`limits`) as soon as its size prefix is read, before its body, and
//! given back once it is answered, as Kafka's memory pool does: when the
//! bound is reached, connections stop reading and their clients wait.
//! Reserving whole frames, never parts, means every frame being read can
//! finish, so connections waiting for room cannot starve each other. Bytes
//! read between frames (at most one chunk per connection) are not counted.
//!
//! Large Fetch answers carry their records as slices of segment files
//! (`FileSlice`): the encoder sets them aside with their place in the
//! write buffer, and `flush` writes the buffer up to each one, then the
//! slice with `sendfile`, so those bytes go from the page cache to the
//! socket without passing through this process.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::time::Duration;
use tokio::io::{AsyncReadExt, Interest};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::Instrument;

use super::limits::{ConnectionSlot, Limits};
use crate::broker::{Broker, Reply, api_versions_unsupported};
use crate::protocol::api::api_name;
use crate::protocol::header::RequestPrefix;
use crate::protocol::messages::{Request, Response, response_header_is_flexible};
use crate::protocol::{ApiKey, DecodeError, Deferred, DeferredSlices, FileSlice, RequestHeader, ResponseHeader};

/// The most one read takes between frames: memory follows the bytes
/// actually received, not the size a frame claims.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// The most one read takes of a large frame's body.
const READ_BODY_CHUNK_BYTES: usize = 1024 * 1024;

/// Responses are written out once this many bytes wait, even if more
/// pipelined requests are already read: memory per connection stays bounded.
const WRITE_BUFFER_BYTES_MAX: usize = 1024 * 1024;

/// Why a connection was closed by us.
#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {size} bytes exceeds socket.request.max.bytes ({max})")]
    FrameTooLarge { size: i64, max: usize },
    #[error("frame size {0} is negative")]
    NegativeFrameSize(i32),
    #[error("connection closed in the middle of a frame ({0} bytes buffered)")]
    TruncatedFrame(usize),
    #[error("malformed request header: {0}")]
    BadHeader(DecodeError),
    #[error("unknown api key {key} ({name}) version {version}")]
    UnknownApi { key: i16, name: &'static str, version: i16 },
    #[error("unsupported version {version} of {name} (api key {key})")]
    UnsupportedVersion { key: i16, name: &'static str, version: i16 },
    #[error("{0}")]
    ClosedByBroker(String),
    #[error("idle for {0:?} (connections.max.idle.ms)")]
    Idle(Duration),
    #[error("the client read nothing of its answers for {0:?} (connections.max.idle.ms)")]
    Unread(Duration),
    #[error("malformed {name} v{version} request: {error}")]
    BadRequest {
        name: &'static str,
        version: i16,
        error: DecodeError,
    },
}

pub(super) struct Connection {
    socket: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    shutdown: watch::Receiver<bool>,
    read_buf: BytesMut,
    write_buf: BytesMut,
    /// File slices that belong in `write_buf`'s stream, at their positions.
    deferred: DeferredSlices,
    limits: Arc<Limits>,
    _slot: ConnectionSlot,
    /// Request bytes reserved under `limits` for the frame at the front of
    /// `read_buf` (0 until its size prefix has been read).
    reserved: usize,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.limits.release_request_bytes(self.reserved);
    }
}

impl Connection {
    pub(super) fn new(
        socket: TcpStream,
        peer: SocketAddr,
        broker: Arc<Broker>,
        limits: Arc<Limits>,
        slot: ConnectionSlot,
    ) -> Self {
        let shutdown = broker.shutdown_signal();
        Connection {
            socket,
            peer,
            broker,
            shutdown,
            read_buf: BytesMut::new(),
            write_buf: BytesMut::new(),
            deferred: DeferredSlices::default(),
            limits,
            _slot: slot,
            reserved: 0,
        }
    }

    pub(super) async fn run(mut self) {
        match self.serve().await {
            Ok(()) => tracing::debug!("connection closed"),
            Err(ConnectionError::Io(e)) => tracing::debug!(error = %e, "connection lost"),
            Err(ConnectionError::Idle(idle)) => tracing::debug!(?idle, "closing an idle connection"),
            Err(ConnectionError::Unread(idle)) => {
                tracing::debug!(?idle, "closing a connection whose client stopped reading")
            }
            Err(reason) => tracing::warn!(peer = %self.peer, %reason, "closing connection"),
        }
    }

    async fn serve(&mut self) -> Result<(), ConnectionError> {
        let mut shutting_down = *self.shutdown.borrow();
        let idle = self.broker.config().connections_max_idle;
        loop {
            while let Some(frame) = self.next_frame()? {
                // The reservation, if any, was this frame's.
                let held = std::mem::take(&mut self.reserved);
                let outcome = self.handle_frame(frame).await;
                self.limits.release_request_bytes(held);
                if outcome.is_err() {
                    // Answer what came before the bad frame, then close.
                    let _ = self.flush().await;
                }
                outcome?;
            }
            self.flush().await?;
            if shutting_down {
                return Ok(());
            }
            // A frame whose size is known: room for all of it under the
            // broker-wide bound before its body is read. While there is
            // none, this connection reads nothing and its client waits.
            if let Some(size) = self.frame_size()
                && self.reserved == 0
            {
                let total = 4 + size;
                tokio::select! {
                    () = self.limits.reserve_request_bytes(total) => self.reserved = total,
                    _ = Broker::stopped(&mut self.shutdown) => return Ok(()),
                }
                // One allocation of the frame's size, rather than doublings.
                self.read_buf.reserve(total - self.read_buf.len());
            }
            let want = self.read_size();
            self.read_buf.reserve(want);
            let mut room = (&mut self.read_buf).limit(want);
            let read = tokio::select! {
                read = self.socket.read_buf(&mut room) => Some(read?),
                () = tokio::time::sleep(idle) => return Err(ConnectionError::Idle(idle)),
                _ = Broker::stopped(&mut self.shutdown) => None,
            };
            match read {
                Some(0) => {
                    return match self.read_buf.len() {
                        0 => Ok(()),
                        buffered => Err(ConnectionError::TruncatedFrame(buffered)),
                    };
                }
                Some(_) => {}
                None => shutting_down = true,
            }
        }
    }

    /// How much the next read may take: the rest of a frame whose size is
    /// known (in steps), or a chunk.
    fn read_size(&self) -> usize {
        let missing = match self.frame_size() {
            Some(size) => (4 + size).saturating_sub(self.read_buf.len()),
            None => 0,
        };
        if missing > READ_CHUNK_BYTES {
            missing.min(READ_BODY_CHUNK_BYTES)
        } else {
            READ_CHUNK_BYTES
        }
    }

    /// The size the frame at the front of the read buffer announces.
    fn frame_size(&self) -> Option<usize> {
        let prefix: [u8; 4] = self.read_buf.get(..4)?.try_into().ok()?;
        usize::try_from(i32::from_be_bytes(prefix)).ok()
    }

    async fn flush(&mut self) -> Result<(), ConnectionError> {
        let written = self.write_out().await;
        // Whatever happened, these bytes are done with: after a failure part
        // of them is on the wire, and writing them again (the caller answers
        // what came before a bad frame) would put them there twice.
        self.write_buf.clear();
        written
    }

    async fn write_out(&mut self) -> Result<(), ConnectionError> {
        // Kafka's idle check counts writes that make no progress as idle
        // time too: a client that reads nothing for that long is dropped,
        // and with it the file slices its answer holds.
        let stall = self.broker.config().connections_max_idle;
        let more = rustix::net::SendFlags::MORE;
        let mut at = 0;
        for (position, part) in self.deferred.take() {
            send_all(&self.socket, &self.write_buf[at..position], more, stall).await?;
            match part {
                Deferred::File(slice) => {
                    send_file_slice(&self.socket, &slice, stall).await?;
                    self.broker.count_file_bytes_sent(slice.len);
                }
                Deferred::Bytes(bytes) => send_all(&self.socket, &bytes, more, stall).await?,
            }
            at = position;
        }
        let last = rustix::net::SendFlags::empty();
        send_all(&self.socket, &self.write_buf[at..], last, stall).await
    }

    /// Takes the next complete frame off the read buffer, if there is one.
    /// The size is checked before any room is made for the frame.
    fn next_frame(&mut self) -> Result<Option<Bytes>, ConnectionError> {
        if self.read_buf.len() < 4 {
            return Ok(None);
        }
        let size = i32::from_be_bytes([self.read_buf[0], self.read_buf[1], self.read_buf[2], self.read_buf[3]]);
        if size < 0 {
            return Err(ConnectionError::NegativeFrameSize(size));
        }
        let max = self.broker.config().socket_request_max_bytes;
        if size as usize > max {
            return Err(ConnectionError::FrameTooLarge {
                size: i64::from(size),
                max,
            });
        }
        let total = 4 + size as usize;
        if self.read_buf.len() < total {
            return Ok(None);
        }
        let mut frame = self.read_buf.split_to(total);
        if total > READ_CHUNK_BYTES {
            // The rest of the buffer would keep the large allocation alive
            // (and reuse it) after the frame is answered: memory outside the
            // bound. A fresh buffer takes the few bytes after the frame.
            self.read_buf = BytesMut::from(&self.read_buf[..]);
        }
        frame.advance(4);
        Ok(Some(frame.freeze()))
    }

    async fn handle_frame(&mut self, frame: Bytes) -> Result<(), ConnectionError> {
        let prefix = RequestPrefix::parse(&frame).map_err(ConnectionError::BadHeader)?;
        let (key, version) = (prefix.api_key, prefix.api_version);
        let name = api_name(key).unwrap_or("unknown");
        let Some(api) = ApiKey::from_i16(key) else {
            return Err(ConnectionError::UnknownApi { key, name, version });
        };
        let spec = api.spec();
        if !spec.supports(version) {
            if api == ApiKey::ApiVersions {
                // KIP-511: a client that speaks a newer ApiVersions than we do
                // gets our ranges in v0, then retries with one we support.
                let response = Response::ApiVersions(api_versions_unsupported());
                self.write_response(prefix.correlation_id, api, 0, &response);
                return Ok(());
            }
            return Err(ConnectionError::UnsupportedVersion { key, name, version });
        }
        let (header, body) =
            RequestHeader::parse(&frame, spec.is_flexible(version)).map_err(ConnectionError::BadHeader)?;
        let (request, trailing) = Request::decode_lenient(api, version, &body)
            .map_err(|error| ConnectionError::BadRequest { name, version, error })?;
        if trailing > 0 {
            // Kafka ignores them, and librdkafka 2.12 sends some (see
            // protocol-notes/metadata.md); worth a trace, not a refusal.
            tracing::debug!(
                api = name,
                version,
                trailing,
                "ignoring bytes after the end of a request"
            );
        }
        let span = tracing::debug_span!(
            "request",
            api = name,
            version,
            correlation_id = header.correlation_id,
            client_id = header.client_id.as_deref().unwrap_or("")
        );
        if api == ApiKey::Fetch {
            // A fetch may wait (long poll): answers already due go out first.
            self.flush().await?;
        }
        match self.broker.handle(&header, self.peer, request).instrument(span).await {
            Reply::Respond(response) => self.write_response(header.correlation_id, api, version, &response),
            Reply::Nothing => {}
            Reply::Close(reason) => return Err(ConnectionError::ClosedByBroker(reason)),
        }
        if self.write_buf.len() + self.deferred.bytes() >= WRITE_BUFFER_BYTES_MAX {
            self.flush().await?;
        }
        Ok(())
    }

    /// Appends a size-prefixed response frame to the write buffer (and its
    /// file slices, if any, to those set aside).
    fn write_response(&mut self, correlation_id: i32, api: ApiKey, version: i16, response: &Response) {
        let start = self.write_buf.len();
        let deferred_before = self.deferred.bytes();
        self.write_buf.put_i32(0);
        ResponseHeader { correlation_id }.encode(&mut self.write_buf, response_header_is_flexible(api, version));
        response.encode_deferring(version, &mut self.write_buf, Some(&self.deferred));
        let size = self.write_buf.len() - start - 4 + (self.deferred.bytes() - deferred_before);
        self.write_buf[start..start + 4].copy_from_slice(&(size as i32).to_be_bytes());
    }
}

/// Writes all of `bytes`, with `flags` (MSG_MORE when a file slice follows,
/// so that the two leave in full segments rather than a small one first).
/// A client that takes nothing for `stall` loses its connection.
async fn send_all(
    socket: &TcpStream,
    mut bytes: &[u8],
    flags: rustix::net::SendFlags,
    stall: Duration,
) -> Result<(), ConnectionError> {
    let flags = flags | rustix::net::SendFlags::NOSIGNAL;
    while !bytes.is_empty() {
        writable(socket, stall).await?;
        match socket.try_io(Interest::WRITABLE, || {
            rustix::net::send(socket, bytes, flags).map_err(std::io::Error::from)
        }) {
            Ok(sent) => bytes = &bytes[sent..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Waits until the socket takes bytes again, for at most `stall`.
async fn writable(socket: &TcpStream, stall: Duration) -> Result<(), ConnectionError> {
    match tokio::time::timeout(stall, socket.writable()).await {
        Ok(ready) => Ok(ready?),
        Err(_) => Err(ConnectionError::Unread(stall)),
    }
}

/// Sends a slice of a stored file with `sendfile`: from the page cache to
/// the socket, never through this process's memory. sendfile takes no
/// MSG_NOSIGNAL: a closed peer raises SIGPIPE, which Rust programs ignore
/// (the runtime sets it so before main), and the call returns EPIPE.
async fn send_file_slice(socket: &TcpStream, slice: &FileSlice, stall: Duration) -> Result<(), ConnectionError> {
    let mut position = slice.position;
    let end = slice.position + slice.len as u64;
    while position < end {
        writable(socket, stall).await?;
        let remaining = (end - position) as usize;
        match socket.try_io(Interest::WRITABLE, || {
            rustix::fs::sendfile(socket, &*slice.file, Some(&mut position), remaining).map_err(std::io::Error::from)
        }) {
            // The frame's size is already on the wire: a file that ends
            // early leaves nothing to do but close the connection.
            Ok(0) => {
                tracing::error!(
                    position,
                    end,
                    "a stored file ended inside the records being sent; closing"
                );
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "a stored file ended inside the records being sent",
                )
                .into());
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => {
                if !matches!(
                    e.kind(),
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                ) {
                    // Not the client going away: reading the segment failed.
                    tracing::error!(error = %e, position, "sending stored records failed; closing");
                }
                return Err(e.into());
            }
        }
    }
    Ok(())
}
