//! InitProducerId: producer ids and epochs for idempotent producers.
//!
//! A new producer gets a fresh id (never reused, see
//! `storage::producer_ids`) at epoch 0. From v3 a producer that already has
//! an id sends it with its epoch (KIP-360, after a sequence error or a
//! timeout): if that is the id's current epoch, the epoch is bumped and the
//! producer continues under the same id. Transactions are not served yet.

use crate::broker::Broker;
use crate::protocol::ErrorCode;
use crate::protocol::messages::init_producer_id::{InitProducerIdRequest, InitProducerIdResponse};

/// First version with the PRODUCER_FENCED error code.
const FIRST_PRODUCER_FENCED_VERSION: i16 = 4;

pub fn handle(broker: &Broker, version: i16, request: &InitProducerIdRequest) -> InitProducerIdResponse {
    let refuse = |code: ErrorCode| InitProducerIdResponse {
        error_code: code.code(),
        producer_epoch: -1,
        ..Default::default()
    };
    if (request.producer_id < 0) != (request.producer_epoch < 0) {
        // An id without an epoch (or the reverse) is not a producer Kafka
        // knows how to resume: it refuses the pair as a malformed request.
        return refuse(ErrorCode::InvalidRequest);
    }
    if request.transactional_id.is_some() {
        // No transaction coordinator yet. INVALID_REQUEST is fatal in
        // clients and Java words it as "sent to an incompatible broker".
        tracing::warn!(
            transactional_id = request.transactional_id.as_deref(),
            "transactions are not supported yet"
        );
        return refuse(ErrorCode::InvalidRequest);
    }
    let mut issued = broker
        .producers
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if request.producer_id >= 0 {
        // The epoch this id is at: the newer of the last one we issued and
        // the newest its batches carry in any partition (clients such as
        // librdkafka bump epochs on their own, and a restart forgets what
        // was issued).
        let in_logs = broker
            .topics()
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .filter_map(|p| p.log().producers().epoch_of(request.producer_id))
            })
            .max();
        let current = issued.epoch_of(request.producer_id).max(in_logs);
        match current {
            Some(current) if request.producer_epoch == current && current < i16::MAX - 1 => {
                let epoch = current + 1;
                issued.remember(request.producer_id, epoch);
                return InitProducerIdResponse {
                    error_code: ErrorCode::None.code(),
                    producer_id: request.producer_id,
                    producer_epoch: epoch,
                    ..Default::default()
                };
            }
            Some(current) if request.producer_epoch < current => {
                return refuse(if version >= FIRST_PRODUCER_FENCED_VERSION {
                    ErrorCode::ProducerFenced
                } else {
                    ErrorCode::InvalidProducerEpoch
                });
            }
            // Unknown id, an epoch we never gave, or an exhausted epoch: a
            // new id, which is what Kafka always answers idempotent producers.
            _ => {}
        }
    }
    match issued.allocate() {
        Ok(producer_id) => {
            issued.remember(producer_id, 0);
            InitProducerIdResponse {
                error_code: ErrorCode::None.code(),
                producer_id,
                producer_epoch: 0,
                ..Default::default()
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot reserve producer ids");
            refuse(ErrorCode::KafkaStorageError)
        }
    }
}
