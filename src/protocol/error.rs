//! Two kinds of error live here and they must not be confused:
//! [`DecodeError`] is ours (the bytes did not match the description), while
//! [`ErrorCode`] is Kafka's (data carried in a response, not a Rust error).

use nom::error::{ErrorKind, ParseError};

/// Why a byte sequence is not a valid encoding of the message it claims to be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated: the frame ends inside a field")]
    Truncated,
    #[error("invalid length {0}")]
    InvalidLength(i64),
    #[error("array of {count} elements cannot fit in the {remaining_bytes} bytes that remain")]
    ArrayTooLong { count: u64, remaining_bytes: usize },
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    #[error("varint longer than its type allows")]
    VarintTooLong,
    #[error("tagged field {tag} has {extra} bytes more than its value")]
    TaggedFieldTooLong { tag: u32, extra: usize },
    #[error("{0} unexpected bytes after the end of the message")]
    TrailingBytes(usize),
    #[error("malformed input ({0:?})")]
    Malformed(ErrorKind),
}

impl ParseError<&[u8]> for DecodeError {
    fn from_error_kind(_input: &[u8], kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::Eof | ErrorKind::Complete => DecodeError::Truncated,
            other => DecodeError::Malformed(other),
        }
    }

    fn append(_input: &[u8], _kind: ErrorKind, other: Self) -> Self {
        other
    }
}

macro_rules! error_codes {
    ($($name:ident = $code:literal, $retriable:literal;)*) => {
        /// Kafka's error codes (the subset we answer with, or may meet).
        ///
        /// Numbers and names are Kafka's (`org.apache.kafka.common.protocol.Errors`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($name,)*
            /// A code this build does not name; kept so nothing from the wire is lost.
            Unknown(i16),
        }

        impl ErrorCode {
            /// The number that goes on the wire.
            pub fn code(self) -> i16 {
                match self {
                    $(ErrorCode::$name => $code,)*
                    ErrorCode::Unknown(code) => code,
                }
            }

            /// Maps a wire number back to a name.
            pub fn from_code(code: i16) -> Self {
                match code {
                    $($code => ErrorCode::$name,)*
                    other => ErrorCode::Unknown(other),
                }
            }

            /// Whether a client may retry the request that got this error.
            pub fn is_retriable(self) -> bool {
                match self {
                    $(ErrorCode::$name => $retriable,)*
                    ErrorCode::Unknown(_) => false,
                }
            }
        }
    };
}

error_codes! {
    None = 0, false;
    UnknownServerError = -1, false;
    OffsetOutOfRange = 1, false;
    CorruptMessage = 2, true;
    UnknownTopicOrPartition = 3, true;
    InvalidFetchSize = 4, false;
    LeaderNotAvailable = 5, true;
    NotLeaderOrFollower = 6, true;
    RequestTimedOut = 7, true;
    MessageTooLarge = 10, false;
    NetworkException = 13, true;
    InvalidTopicException = 17, false;
    RecordListTooLarge = 18, false;
    NotEnoughReplicas = 19, true;
    NotEnoughReplicasAfterAppend = 20, true;
    InvalidRequiredAcks = 21, false;
    CoordinatorLoadInProgress = 14, true;
    CoordinatorNotAvailable = 15, true;
    NotCoordinator = 16, true;
    OffsetMetadataTooLarge = 12, false;
    IllegalGeneration = 22, false;
    InconsistentGroupProtocol = 23, false;
    InvalidGroupId = 24, false;
    UnknownMemberId = 25, false;
    InvalidSessionTimeout = 26, false;
    RebalanceInProgress = 27, false;
    InvalidCommitOffsetSize = 28, false;
    InvalidTimestamp = 32, false;
    UnsupportedVersion = 35, false;
    TopicAlreadyExists = 36, false;
    InvalidPartitions = 37, false;
    InvalidReplicationFactor = 38, false;
    InvalidReplicaAssignment = 39, false;
    InvalidConfig = 40, false;
    InvalidRequest = 42, false;
    UnsupportedForMessageFormat = 43, false;
    OutOfOrderSequenceNumber = 45, false;
    DuplicateSequenceNumber = 46, false;
    InvalidProducerEpoch = 47, false;
    KafkaStorageError = 56, true;
    NonEmptyGroup = 68, false;
    GroupIdNotFound = 69, false;
    FetchSessionIdNotFound = 70, true;
    FencedLeaderEpoch = 74, true;
    UnknownLeaderEpoch = 75, true;
    UnsupportedCompressionType = 76, false;
    InvalidRecord = 87, false;
    MemberIdRequired = 79, false;
    FencedInstanceId = 82, false;
    GroupSubscribedToTopic = 86, false;
    ProducerFenced = 90, false;
    UnknownTopicId = 100, true;
    MismatchedEndpointType = 114, false;
    UnsupportedEndpointType = 115, false;
}

impl From<ErrorCode> for i16 {
    fn from(code: ErrorCode) -> i16 {
        code.code()
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ErrorCode::Unknown(code) => write!(f, "UNKNOWN_ERROR_CODE({code})"),
            named => write!(f, "{named:?}({})", named.code()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_numbers() {
        for code in -1..=120 {
            assert_eq!(ErrorCode::from_code(code).code(), code);
        }
        assert_eq!(ErrorCode::from_code(3), ErrorCode::UnknownTopicOrPartition);
        assert_eq!(ErrorCode::CorruptMessage.code(), 2);
    }
}
