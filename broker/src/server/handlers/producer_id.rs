//! InitProducerId: hands idempotent producers their ids. Ids are reserved in durable blocks so
//! that no id is ever handed out twice, even across crashes.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::io::tasks;
use crate::producer::InitProducerIdOutcome;
use crate::server::broker::Broker;
use crate::server::data_dir;

/// Attempts at reserving a new block before giving up on one request.
const RESERVATION_ATTEMPTS_MAX: usize = 3;

fn failure(error: ResponseError) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_error_code(error.code())
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}

pub async fn init_producer_id(
    broker: &Arc<Broker>,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    if request.transactional_id.is_some() {
        // Transactions are not served; ApiVersions does not advertise their APIs.
        return failure(ResponseError::TransactionalIdAuthorizationFailed);
    }
    let _serialized = broker.producer_id_reservation.lock().await;
    // In a cluster every broker hands out ids, from its own reserved blocks: the ids of one
    // broker are spread so that no two brokers ever hand out the same one.
    let node = broker.cluster.get().map(|cluster| cluster.node_id as i64);
    let (asked_id, asked_epoch) = match node {
        None => (request.producer_id.0, request.producer_epoch),
        Some(node) => match crate::cluster::local_producer_id(request.producer_id.0, node) {
            Some(local) => (local, request.producer_epoch),
            None => (-1, -1),
        },
    };
    for _ in 0..RESERVATION_ATTEMPTS_MAX {
        let outcome = broker
            .producer_ids()
            .init_producer_id(asked_id, asked_epoch);
        match outcome {
            Err(error) => {
                tracing::error!(%error, "cannot allocate a producer id");
                return failure(ResponseError::UnknownServerError);
            }
            Ok(InitProducerIdOutcome::Ready {
                producer_id,
                producer_epoch,
            }) => {
                let producer_id = match node {
                    None => producer_id,
                    Some(node) => crate::cluster::cluster_producer_id(producer_id, node),
                };
                return InitProducerIdResponse::default()
                    .with_producer_id(ProducerId(producer_id))
                    .with_producer_epoch(producer_epoch);
            }
            Ok(InitProducerIdOutcome::NeedsReservation { reserve_up_to }) => {
                let for_io = broker.clone();
                let stored = tasks::run_blocking(move || {
                    data_dir::store_producer_id_limit(
                        for_io.seams.disk.as_ref(),
                        &for_io.config.data_dir,
                        reserve_up_to,
                    )
                })
                .await;
                if let Err(error) = stored {
                    tracing::error!(%error, "could not reserve producer ids");
                    return failure(ResponseError::KafkaStorageError);
                }
                broker.producer_ids().reservation_durable(reserve_up_to);
            }
        }
    }
    failure(ResponseError::CoordinatorNotAvailable)
}
