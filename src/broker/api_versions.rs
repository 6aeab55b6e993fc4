//! ApiVersions: the table in `protocol::api`, verbatim.

use crate::protocol::messages::api_versions::{ApiVersion, ApiVersionsRequest, ApiVersionsResponse};
use crate::protocol::{ErrorCode, SUPPORTED_APIS};

/// Every API we serve with its version range.
pub fn supported() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .map(|spec| ApiVersion {
            api_key: spec.key as i16,
            min_version: spec.min_version,
            max_version: spec.max_version,
        })
        .collect()
}

pub fn handle(version: i16, request: &ApiVersionsRequest) -> ApiVersionsResponse {
    // KIP-511: from v3 the client names itself, and Kafka refuses names that
    // do not look like software names with INVALID_REQUEST.
    let error_code = if version >= 3
        && !(is_valid_software_token(&request.client_software_name)
            && is_valid_software_token(&request.client_software_version))
    {
        ErrorCode::InvalidRequest
    } else {
        ErrorCode::None
    };
    ApiVersionsResponse {
        error_code: error_code.code(),
        api_keys: supported(),
        ..Default::default()
    }
}

/// The answer to an ApiVersions request of a version we do not know: v0
/// layout, UNSUPPORTED_VERSION, and our ranges so the client can retry.
pub fn unsupported_version_response() -> ApiVersionsResponse {
    ApiVersionsResponse {
        error_code: ErrorCode::UnsupportedVersion.code(),
        api_keys: supported(),
        ..Default::default()
    }
}

/// `[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?`, as Kafka checks it.
fn is_valid_software_token(token: &str) -> bool {
    let bytes = token.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn software_names_are_checked_as_kafka_does() {
        assert!(is_valid_software_token("librdkafka"));
        assert!(is_valid_software_token("2.0.2"));
        assert!(is_valid_software_token("kafka-python"));
        assert!(!is_valid_software_token(""));
        assert!(!is_valid_software_token("-x"));
        assert!(!is_valid_software_token("a b"));
    }
}
