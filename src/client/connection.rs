//! One connection to one broker: version negotiation through ApiVersions,
//! then request/response calls at the highest version both sides speak.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::ClientError;
use crate::protocol::messages::api_versions::{ApiVersionsRequest, ApiVersionsResponse};
use crate::protocol::messages::{Request, Response, response_header_is_flexible};
use crate::protocol::{ApiKey, ErrorCode, ResponseHeader, SUPPORTED_APIS};

/// Largest response frame a client accepts (a fetch is bounded by its own
/// max_bytes; this only stops a corrupt size from allocating gigabytes).
const RESPONSE_BYTES_MAX: usize = 256 * 1024 * 1024;

pub struct BrokerConnection {
    addr: String,
    stream: TcpStream,
    client_id: String,
    correlation_id: i32,
    /// Version to use per API: the highest both sides support.
    versions: HashMap<ApiKey, i16>,
    timeout: Duration,
}

impl BrokerConnection {
    /// Connects and negotiates versions.
    pub async fn connect(addr: &str, client_id: &str, timeout: Duration) -> Result<BrokerConnection, ClientError> {
        let io = |source| ClientError::Io {
            addr: addr.to_string(),
            source,
        };
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout(timeout))?
            .map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        let mut connection = BrokerConnection {
            addr: addr.to_string(),
            stream,
            client_id: client_id.to_string(),
            correlation_id: 0,
            versions: HashMap::from([(ApiKey::ApiVersions, ApiKey::ApiVersions.spec().max_version)]),
            timeout,
        };
        connection.negotiate().await?;
        Ok(connection)
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The address, client id, negotiated versions and the socket.
    pub(crate) fn into_parts(self) -> (String, String, HashMap<ApiKey, i16>, TcpStream) {
        (self.addr, self.client_id, self.versions, self.stream)
    }

    /// The version this connection uses for `key`, if the broker serves it.
    pub fn version(&self, key: ApiKey) -> Option<i16> {
        self.versions.get(&key).copied()
    }

    async fn negotiate(&mut self) -> Result<(), ClientError> {
        let request = Request::ApiVersions(ApiVersionsRequest {
            client_software_name: "minikafka".into(),
            client_software_version: env!("CARGO_PKG_VERSION").into(),
        });
        let mut response = self.api_versions(request.clone()).await?;
        if response.error_code == ErrorCode::UnsupportedVersion.code() {
            // KIP-511: the broker answered in v0 with its ranges; retry at
            // the highest ApiVersions version it speaks.
            let theirs = response
                .api_keys
                .iter()
                .find(|k| k.api_key == ApiKey::ApiVersions as i16);
            let version = theirs.map_or(0, |k| k.max_version.min(ApiKey::ApiVersions.spec().max_version));
            self.versions.insert(ApiKey::ApiVersions, version);
            response = self.api_versions(request).await?;
        }
        if response.error_code != 0 {
            return Err(ClientError::broker(response.error_code));
        }
        for ours in SUPPORTED_APIS {
            if let Some(theirs) = response.api_keys.iter().find(|k| k.api_key == ours.key as i16) {
                let version = ours.max_version.min(theirs.max_version);
                if version >= ours.min_version.max(theirs.min_version) {
                    self.versions.insert(ours.key, version);
                }
            }
        }
        Ok(())
    }

    async fn api_versions(&mut self, request: Request) -> Result<ApiVersionsResponse, ClientError> {
        match self.call(request).await? {
            Response::ApiVersions(response) => Ok(response),
            _ => unreachable!("call answers with the request's api"),
        }
    }

    /// Sends a request at the negotiated version and waits for its response.
    pub async fn call(&mut self, request: Request) -> Result<Response, ClientError> {
        let key = request.api_key();
        let version = self.version(key).ok_or(ClientError::UnsupportedApi(key))?;
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let correlation_id = self.correlation_id;
        let frame = request.encode_frame(version, correlation_id, &self.client_id);

        let timeout = self.timeout;
        let body = tokio::time::timeout(timeout, self.exchange(&frame))
            .await
            .map_err(|_| ClientError::Timeout(timeout))??;
        let (header, body) = ResponseHeader::parse(&body, response_header_is_flexible(key, version))?;
        if header.correlation_id != correlation_id {
            return Err(ClientError::CorrelationMismatch {
                expected: correlation_id,
                got: header.correlation_id,
            });
        }
        // An ApiVersions error answer is always v0 (KIP-511).
        let decode_version = match key {
            ApiKey::ApiVersions if body.len() >= 2 && body[..2] != [0, 0] => 0,
            _ => version,
        };
        Ok(Response::decode(key, decode_version, &body)?)
    }

    async fn exchange(&mut self, frame: &[u8]) -> Result<Bytes, ClientError> {
        let io = |source| ClientError::Io {
            addr: self.addr.clone(),
            source,
        };
        self.stream.write_all(frame).await.map_err(io)?;
        let size = self.stream.read_i32().await.map_err(io)?;
        let size = usize::try_from(size)
            .map_err(|_| ClientError::Decode(crate::protocol::DecodeError::InvalidLength(size.into())))?;
        if size > RESPONSE_BYTES_MAX {
            return Err(ClientError::Decode(crate::protocol::DecodeError::InvalidLength(
                size as i64,
            )));
        }
        let mut body = vec![0u8; size];
        self.stream.read_exact(&mut body).await.map_err(io)?;
        Ok(Bytes::from(body))
    }
}
