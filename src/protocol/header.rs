//! Request and response headers.
//!
//! Request header v1 is api key, version, correlation id and a nullable
//! client id; v2 (used with flexible request versions) adds a tagged-field
//! section but keeps the client id a classic, non-compact string
//! (`RequestHeader.json`: `"flexibleVersions": "none"` on ClientId).
//! Response header v1 adds a tagged-field section to v0; ApiVersions always
//! answers with v0 (KIP-511), whatever its version.

use bytes::{BufMut, Bytes};
use nom::number::complete::{be_i16, be_i32};

use super::error::DecodeError;
use super::primitives::{DecodeCx, EncodeCx, Wire, WireBuf, put_empty_tagged_fields, tagged_fields};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeader {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
}

/// The part every request header version shares: enough to answer or log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestPrefix {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

fn unwrap_nom<T>(result: Result<T, nom::Err<DecodeError>>) -> Result<T, DecodeError> {
    result.map_err(|e| match e {
        nom::Err::Error(e) | nom::Err::Failure(e) => e,
        nom::Err::Incomplete(_) => DecodeError::Truncated,
    })
}

impl RequestPrefix {
    pub fn parse(frame: &[u8]) -> Result<RequestPrefix, DecodeError> {
        let (rest, api_key) = unwrap_nom(be_i16(frame))?;
        let (rest, api_version) = unwrap_nom(be_i16(rest))?;
        let (_, correlation_id) = unwrap_nom(be_i32(rest))?;
        Ok(RequestPrefix {
            api_key,
            api_version,
            correlation_id,
        })
    }
}

impl RequestHeader {
    /// Parses a request header (v1, or v2 when `flexible`) from the start of
    /// `frame` and returns it with the body that follows.
    pub fn parse(frame: &Bytes, flexible: bool) -> Result<(RequestHeader, Bytes), DecodeError> {
        let prefix = RequestPrefix::parse(frame)?;
        let cx = DecodeCx {
            version: 1,
            flexible: false,
            frame,
        };
        let (rest, client_id) = unwrap_nom(Option::<String>::decode(&frame[8..], &cx))?;
        let rest = if flexible {
            unwrap_nom(tagged_fields(rest, |_, _| Ok(false)))?.0
        } else {
            rest
        };
        let header = RequestHeader {
            api_key: prefix.api_key,
            api_version: prefix.api_version,
            correlation_id: prefix.correlation_id,
            client_id,
        };
        Ok((header, frame.slice_ref(rest)))
    }

    /// Writes the header (v1, or v2 when `flexible`).
    pub fn encode<B: WireBuf>(&self, buf: &mut B, flexible: bool) {
        buf.put_i16(self.api_key);
        buf.put_i16(self.api_version);
        buf.put_i32(self.correlation_id);
        self.client_id.encode(buf, &EncodeCx::new(1, false));
        if flexible {
            put_empty_tagged_fields(buf);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHeader {
    pub correlation_id: i32,
}

impl ResponseHeader {
    /// Writes the header (v0, or v1 when `flexible`).
    pub fn encode<B: BufMut>(&self, buf: &mut B, flexible: bool) {
        buf.put_i32(self.correlation_id);
        if flexible {
            put_empty_tagged_fields(buf);
        }
    }

    /// Parses a response header and returns the body that follows.
    pub fn parse(frame: &Bytes, flexible: bool) -> Result<(ResponseHeader, Bytes), DecodeError> {
        let (rest, correlation_id) = unwrap_nom(be_i32(&frame[..]))?;
        let rest = if flexible {
            unwrap_nom(tagged_fields(rest, |_, _| Ok(false)))?.0
        } else {
            rest
        };
        Ok((ResponseHeader { correlation_id }, frame.slice_ref(rest)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_header_v2_keeps_a_classic_client_id() {
        let header = RequestHeader {
            api_key: 3,
            api_version: 12,
            correlation_id: 7,
            client_id: Some("rdkafka".into()),
        };
        let mut buf = Vec::new();
        header.encode(&mut buf, true);
        buf.extend_from_slice(b"body");
        assert_eq!(&buf[8..10], &[0, 7], "int16 length, not a compact varint");
        let frame = Bytes::from(buf);
        let (back, body) = RequestHeader::parse(&frame, true).unwrap();
        assert_eq!(back, header);
        assert_eq!(&body[..], b"body");
    }

    #[test]
    fn truncated_headers_are_errors() {
        assert_eq!(RequestPrefix::parse(&[0, 3, 0]), Err(DecodeError::Truncated));
        let frame = Bytes::from_static(&[0, 3, 0, 1, 0, 0, 0, 1, 0, 9, b'a']);
        assert_eq!(RequestHeader::parse(&frame, false), Err(DecodeError::Truncated));
    }
}
