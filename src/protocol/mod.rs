//! The Kafka wire protocol: bytes in, typed messages out, and back.
//!
//! Nothing here does I/O. The primitives (`primitives`) know every wire type in
//! both its classic and its flexible (compact, tagged) form; each API is one
//! description (`messages::*`) written with the [`message!`](crate::message)
//! macro, which derives the decoder and the encoder from the same field list.
//! The one exception to "no I/O": a Fetch answer's records can be a slice of
//! a stored file (`file_slice`), which the encoder sets aside for the
//! connection to send, or reads when it was given nowhere to set it aside.

pub mod api;
mod describe;
pub mod error;
pub mod file_slice;
pub mod header;
pub mod messages;
pub mod primitives;
pub mod record_batch;
pub mod records;

pub use api::{ApiKey, ApiSpec, SUPPORTED_APIS};
pub use error::{DecodeError, ErrorCode};
pub use file_slice::{Deferred, DeferredSlices, FetchedRecords, FileSlice};
pub use header::{RequestHeader, ResponseHeader};
pub use primitives::{DecodeCx, EncodeCx, PResult, Wire, WireBuf};

use bytes::{Bytes, BytesMut};

/// Decodes a whole message body, refusing trailing bytes: a body that is longer
/// than its description is as malformed as one that is shorter.
pub fn decode_body<T: Wire>(body: &Bytes, version: i16, flexible: bool) -> Result<T, DecodeError> {
    let cx = DecodeCx {
        version,
        flexible,
        frame: body,
    };
    match T::decode(body, &cx) {
        Ok(([], value)) => Ok(value),
        Ok((rest, _)) => Err(DecodeError::TrailingBytes(rest.len())),
        Err(nom::Err::Error(e) | nom::Err::Failure(e)) => Err(e),
        Err(nom::Err::Incomplete(_)) => Err(DecodeError::Truncated),
    }
}

/// Decodes a request body, tolerating bytes after its end, and says how many
/// there were.
///
/// Kafka does not check that a request body was consumed whole, and a real
/// client depends on that: librdkafka 2.12 asks Metadata v9+ for all topics
/// with a 4-byte array-count placeholder of which only the first byte is
/// the (null) compact count. Refusing those bytes would refuse that client.
pub fn decode_request_body<T: Wire>(body: &Bytes, version: i16, flexible: bool) -> Result<(T, usize), DecodeError> {
    let cx = DecodeCx {
        version,
        flexible,
        frame: body,
    };
    match T::decode(body, &cx) {
        Ok((rest, value)) => Ok((value, rest.len())),
        Err(nom::Err::Error(e) | nom::Err::Failure(e)) => Err(e),
        Err(nom::Err::Incomplete(_)) => Err(DecodeError::Truncated),
    }
}

/// Encodes a message body at `version` into a fresh buffer.
pub fn encode_body<T: Wire>(message: &T, version: i16, flexible: bool) -> BytesMut {
    let mut buf = BytesMut::new();
    message.encode(&mut buf, &EncodeCx::new(version, flexible));
    buf
}

/// Appends a message body to `buf`, setting file slices aside in
/// `deferred` when given.
pub fn encode_body_into<T: Wire, B: WireBuf>(
    message: &T,
    version: i16,
    flexible: bool,
    buf: &mut B,
    deferred: Option<&DeferredSlices>,
) {
    message.encode(
        buf,
        &EncodeCx {
            version,
            flexible,
            deferred,
        },
    );
}
