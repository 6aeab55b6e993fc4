//! Group requests: FindCoordinator, the classic group protocol (JoinGroup,
//! SyncGroup, Heartbeat, LeaveGroup), committed offsets (OffsetCommit,
//! OffsetFetch) and inspection (ListGroups, DescribeGroups, DeleteGroups,
//! OffsetDelete). The state machine is in `coordinator`; this module turns
//! requests into calls on it and its answers into responses.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::Broker;
use super::coordinator::{GroupState, JoinRequest};
use crate::protocol::ErrorCode;
use crate::protocol::messages::find_coordinator::{
    Coordinator as CoordinatorEntry, FindCoordinatorRequest, FindCoordinatorResponse,
};
use crate::protocol::messages::group_admin::*;
use crate::protocol::messages::groups::*;
use crate::protocol::messages::offsets::*;
use crate::storage::offsets::CommittedOffset;

/// Kafka's `offset.metadata.max.bytes`.
const OFFSET_METADATA_MAX_BYTES: usize = 4096;

pub fn find_coordinator(broker: &Broker, version: i16, request: &FindCoordinatorRequest) -> FindCoordinatorResponse {
    // One node: it coordinates every group (and every transactional id,
    // which InitProducerId then refuses until transactions exist).
    let advertised = broker.advertised();
    let node_id = broker.config().node_id;
    if version < 4 {
        return FindCoordinatorResponse {
            error_code: ErrorCode::None.code(),
            node_id,
            host: advertised.host.clone(),
            port: i32::from(advertised.port),
            ..Default::default()
        };
    }
    FindCoordinatorResponse {
        coordinators: request
            .coordinator_keys
            .iter()
            .map(|key| CoordinatorEntry {
                key: key.clone(),
                node_id,
                host: advertised.host.clone(),
                port: i32::from(advertised.port),
                error_code: ErrorCode::None.code(),
                error_message: None,
            })
            .collect(),
        ..Default::default()
    }
}

pub async fn join_group(
    broker: &Broker,
    version: i16,
    client_id: &str,
    client_host: &str,
    request: &JoinGroupRequest,
) -> JoinGroupResponse {
    let join = JoinRequest {
        group_id: request.group_id.clone(),
        member_id: request.member_id.clone(),
        instance_id: request.group_instance_id.clone(),
        client_id: client_id.to_string(),
        client_host: client_host.to_string(),
        session_timeout_ms: request.session_timeout_ms,
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        protocol_type: request.protocol_type.clone(),
        protocols: request
            .protocols
            .iter()
            .map(|p| (p.name.clone(), p.metadata.clone()))
            .collect(),
        version,
    };
    // A parked join must not hold up a shutdown.
    let mut shutdown = broker.shutdown_signal();
    let mut response = tokio::select! {
        response = broker.coordinator.join(join) => response,
        _ = Broker::stopped(&mut shutdown) => JoinGroupResponse {
            error_code: ErrorCode::NotCoordinator.code(),
            member_id: request.member_id.clone(),
            ..Default::default()
        },
    };
    if version < 7 {
        // Before v7 the protocol name is not nullable and there is no type.
        response.protocol_name = Some(response.protocol_name.unwrap_or_default());
    }
    response
}

pub async fn sync_group(broker: &Broker, request: &SyncGroupRequest) -> SyncGroupResponse {
    let assignments = request
        .assignments
        .iter()
        .map(|a| (a.member_id.clone(), a.assignment.clone()))
        .collect();
    let mut shutdown = broker.shutdown_signal();
    let sync = broker.coordinator.sync(
        &request.group_id,
        request.generation_id,
        &request.member_id,
        request.group_instance_id.as_deref(),
        assignments,
    );
    tokio::select! {
        response = sync => response,
        _ = Broker::stopped(&mut shutdown) => {
            SyncGroupResponse { error_code: ErrorCode::NotCoordinator.code(), ..Default::default() }
        }
    }
}

pub fn heartbeat(broker: &Broker, request: &HeartbeatRequest) -> HeartbeatResponse {
    let code = broker.coordinator.heartbeat(
        &request.group_id,
        request.generation_id,
        &request.member_id,
        request.group_instance_id.as_deref(),
    );
    HeartbeatResponse {
        error_code: code.code(),
        ..Default::default()
    }
}

pub fn leave_group(broker: &Broker, version: i16, request: &LeaveGroupRequest) -> LeaveGroupResponse {
    if version < 3 {
        let code = broker.coordinator.leave(&request.group_id, &request.member_id, None);
        return LeaveGroupResponse {
            error_code: code.code(),
            ..Default::default()
        };
    }
    let members = request
        .members
        .iter()
        .map(|m| MemberResponse {
            member_id: m.member_id.clone(),
            group_instance_id: m.group_instance_id.clone(),
            error_code: broker
                .coordinator
                .leave(&request.group_id, &m.member_id, m.group_instance_id.as_deref())
                .code(),
        })
        .collect();
    LeaveGroupResponse {
        error_code: ErrorCode::None.code(),
        members,
        ..Default::default()
    }
}

pub async fn offset_commit(broker: &Broker, request: &OffsetCommitRequest) -> OffsetCommitResponse {
    let group_check = if request.group_id.is_empty() {
        ErrorCode::InvalidGroupId
    } else {
        broker.coordinator.check_commit(
            &request.group_id,
            request.generation_id_or_member_epoch,
            &request.member_id,
            request.group_instance_id.as_deref(),
        )
    };
    let now = super::wall_clock_ms();
    let mut accepted = Vec::new();
    let mut topics: Vec<OffsetCommitResponseTopic> = request
        .topics
        .iter()
        .map(|topic| {
            let known = broker.topic(&topic.name);
            OffsetCommitResponseTopic {
                name: topic.name.clone(),
                partitions: topic
                    .partitions
                    .iter()
                    .map(|p| {
                        let code = if group_check != ErrorCode::None {
                            group_check
                        } else if known.as_ref().and_then(|t| t.partition(p.partition_index)).is_none() {
                            ErrorCode::UnknownTopicOrPartition
                        } else if p
                            .committed_metadata
                            .as_ref()
                            .is_some_and(|m| m.len() > OFFSET_METADATA_MAX_BYTES)
                        {
                            ErrorCode::OffsetMetadataTooLarge
                        } else {
                            accepted.push((
                                (topic.name.clone(), p.partition_index),
                                Some(CommittedOffset {
                                    offset: p.committed_offset,
                                    leader_epoch: p.committed_leader_epoch,
                                    metadata: p.committed_metadata.clone(),
                                    commit_timestamp: if p.commit_timestamp >= 0 {
                                        p.commit_timestamp
                                    } else {
                                        now
                                    },
                                    // v2-v4: a retention of its own, counted
                                    // from now, as Kafka counts it; -1 (and
                                    // every other version) leaves it to the
                                    // group's retention.
                                    expire_timestamp: (request.retention_time_ms != -1)
                                        .then(|| now.saturating_add(request.retention_time_ms)),
                                }),
                            ));
                            ErrorCode::None
                        };
                        OffsetCommitResponsePartition {
                            partition_index: p.partition_index,
                            error_code: code.code(),
                        }
                    })
                    .collect(),
            }
        })
        .collect();
    if !accepted.is_empty() {
        let written = {
            let mut store = broker.offsets();
            store
                .write(&request.group_id, accepted)
                .map(|()| broker.offsets_sync_due(&store))
        };
        let durable = match written {
            Ok(Some(end)) => broker.make_offsets_durable(end).await,
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = durable {
            tracing::error!(group = %request.group_id, error = %e, "writing committed offsets failed");
            // As Kafka's group coordinator answers a storage error: a
            // retriable code that sends the client to find the coordinator
            // again, where KAFKA_STORAGE_ERROR would end a Java client's
            // commitSync.
            for p in topics.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
                if p.error_code == 0 {
                    p.error_code = ErrorCode::NotCoordinator.code();
                }
            }
        }
    }
    OffsetCommitResponse {
        topics,
        ..Default::default()
    }
}

/// Committed offsets of one group, for the topics asked (all when `None`).
fn fetch_group(
    broker: &Broker,
    group_id: &str,
    topics: Option<&Vec<OffsetFetchRequestTopic>>,
) -> Vec<OffsetFetchResponseTopic> {
    let store = broker.offsets();
    let committed = store.group(group_id);
    let partition = |topic: &str, index: i32| {
        let found = committed.and_then(|c| c.get(&(topic.to_string(), index)));
        OffsetFetchResponsePartition {
            partition_index: index,
            committed_offset: found.map_or(-1, |c| c.offset),
            committed_leader_epoch: found.map_or(-1, |c| c.leader_epoch),
            // Kafka answers "" for a partition with nothing committed.
            metadata: Some(found.and_then(|c| c.metadata.clone()).unwrap_or_default()),
            error_code: ErrorCode::None.code(),
        }
    };
    match topics {
        Some(topics) => topics
            .iter()
            .map(|t| OffsetFetchResponseTopic {
                name: t.name.clone(),
                partitions: t.partition_indexes.iter().map(|i| partition(&t.name, *i)).collect(),
            })
            .collect(),
        None => {
            let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            for (topic, index) in committed.into_iter().flat_map(|c| c.keys()) {
                by_topic.entry(topic).or_default().push(*index);
            }
            by_topic
                .into_iter()
                .map(|(name, indexes)| OffsetFetchResponseTopic {
                    name: name.to_string(),
                    partitions: indexes.into_iter().map(|i| partition(name, i)).collect(),
                })
                .collect()
        }
    }
}

pub fn offset_fetch(broker: &Broker, version: i16, request: &OffsetFetchRequest) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = request
            .groups
            .iter()
            .map(|g| OffsetFetchResponseGroup {
                group_id: g.group_id.clone(),
                topics: fetch_group(broker, &g.group_id, g.topics.as_ref()),
                error_code: ErrorCode::None.code(),
            })
            .collect();
        return OffsetFetchResponse {
            groups,
            ..Default::default()
        };
    }
    // v0 and v1 have no null topic list: empty means none.
    let topics = match (&request.topics, version) {
        (Some(topics), _) => Some(topics),
        (None, v) if v >= 2 => None,
        (None, _) => return OffsetFetchResponse::default(),
    };
    OffsetFetchResponse {
        topics: fetch_group(broker, &request.group_id, topics),
        ..Default::default()
    }
}

pub fn list_groups(broker: &Broker, request: &ListGroupsRequest) -> ListGroupsResponse {
    let mut listed: BTreeMap<String, ListedGroup> = BTreeMap::new();
    for group in broker.coordinator.lock().values() {
        listed.insert(
            group.id.clone(),
            ListedGroup {
                group_id: group.id.clone(),
                protocol_type: group.protocol_type.clone().unwrap_or_default(),
                group_state: group.state.name().to_string(),
                group_type: "classic".into(),
            },
        );
    }
    // Groups known only by their committed offsets are Empty groups with
    // no protocol type, as Kafka lists a standalone group.
    for group in broker.offsets().groups() {
        listed.entry(group.clone()).or_insert_with(|| ListedGroup {
            group_id: group.clone(),
            protocol_type: String::new(),
            group_state: GroupState::Empty.name().into(),
            group_type: "classic".into(),
        });
    }
    let groups = listed
        .into_values()
        .filter(|g| {
            request.states_filter.is_empty()
                || request
                    .states_filter
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(&g.group_state))
        })
        .filter(|g| {
            request.types_filter.is_empty()
                || request
                    .types_filter
                    .iter()
                    .any(|t| t.eq_ignore_ascii_case(&g.group_type))
        })
        .collect();
    ListGroupsResponse {
        groups,
        ..Default::default()
    }
}

pub fn describe_groups(broker: &Broker, request: &DescribeGroupsRequest) -> DescribeGroupsResponse {
    // One lock at a time: which groups have offsets first, then the groups.
    let with_offsets: std::collections::HashSet<String> = broker.offsets().groups().cloned().collect();
    let groups = broker.coordinator.lock();
    let described = request
        .groups
        .iter()
        .map(|id| match groups.get(id) {
            Some(group) => {
                let protocol = group.protocol.clone().unwrap_or_default();
                let stable = group.state == GroupState::Stable;
                DescribedGroup {
                    error_code: ErrorCode::None.code(),
                    group_id: id.clone(),
                    group_state: group.state.name().into(),
                    protocol_type: group.protocol_type.clone().unwrap_or_default(),
                    protocol_data: if stable { protocol.clone() } else { String::new() },
                    members: group
                        .members
                        .values()
                        .map(|m| DescribedGroupMember {
                            member_id: m.id.clone(),
                            group_instance_id: m.instance_id.clone(),
                            client_id: m.client_id.clone(),
                            client_host: m.client_host.clone(),
                            member_metadata: if stable {
                                m.protocols
                                    .iter()
                                    .find(|(n, _)| *n == protocol)
                                    .map(|(_, b)| b.clone())
                                    .unwrap_or_default()
                            } else {
                                Bytes::new()
                            },
                            member_assignment: if stable { m.assignment.clone() } else { Bytes::new() },
                        })
                        .collect(),
                    ..Default::default()
                }
            }
            // An unknown group is described as Dead, without error (v0-v5).
            None => DescribedGroup {
                error_code: ErrorCode::None.code(),
                group_id: id.clone(),
                group_state: if with_offsets.contains(id) {
                    "Empty".into()
                } else {
                    "Dead".into()
                },
                ..Default::default()
            },
        })
        .collect();
    DescribeGroupsResponse {
        groups: described,
        ..Default::default()
    }
}

pub async fn delete_groups(broker: &Broker, request: &DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut results: Vec<DeletableGroupResult> = request
        .groups_names
        .iter()
        .map(|id| {
            let deleted = broker.coordinator.delete(id);
            let code = deleted.err().unwrap_or(ErrorCode::None);
            DeletableGroupResult {
                group_id: id.clone(),
                error_code: code.code(),
            }
        })
        .collect();
    let deleted = |r: &DeletableGroupResult| r.error_code == ErrorCode::None.code();
    let due = broker.offsets_sync_due(&broker.offsets());
    if let Some(end) = due.filter(|_| results.iter().any(deleted))
        && let Err(e) = broker.make_offsets_durable(end).await
    {
        tracing::error!(error = %e, "syncing deleted groups failed");
        // As for a write that failed: gone here, but maybe not after a
        // power loss.
        for result in results.iter_mut().filter(|r| deleted(r)) {
            result.error_code = ErrorCode::NotCoordinator.code();
        }
    }
    DeleteGroupsResponse {
        results,
        ..Default::default()
    }
}

pub async fn offset_delete(broker: &Broker, request: &OffsetDeleteRequest) -> OffsetDeleteResponse {
    // As Kafka: a consumer group keeps the offsets of the topics its members
    // subscribed to at its last generation (during a rebalance, the previous
    // one's), every topic when those are not known (no generation yet,
    // metadata that does not parse); any other group must be empty.
    // Under the coordinator's lock, so that no member joins or subscribes
    // anew between the check and the deletion.
    let response = broker.coordinator.with_group(&request.group_id, |group| {
        let (live, protected) = match group {
            None => (false, Protected::Nothing),
            Some(group) if group.state == GroupState::Empty => (true, Protected::Nothing),
            Some(group) if group.protocol_type.as_deref() == Some("consumer") => (
                true,
                group
                    .subscribed_topics()
                    .map_or(Protected::Everything, Protected::Topics),
            ),
            Some(_) => {
                return OffsetDeleteResponse {
                    error_code: ErrorCode::NonEmptyGroup.code(),
                    ..Default::default()
                };
            }
        };
        let mut offsets = broker.offsets();
        if offsets.group(&request.group_id).is_none() && !live {
            return OffsetDeleteResponse {
                error_code: ErrorCode::GroupIdNotFound.code(),
                ..Default::default()
            };
        }
        let mut deleted = Vec::new();
        let topics = request
            .topics
            .iter()
            .map(|t| OffsetDeleteResponseTopic {
                name: t.name.clone(),
                partitions: t
                    .partitions
                    .iter()
                    .map(|p| {
                        let code = if protected.covers(&t.name) {
                            ErrorCode::GroupSubscribedToTopic
                        } else {
                            deleted.push(((t.name.clone(), p.partition_index), None));
                            ErrorCode::None
                        };
                        OffsetDeleteResponsePartition {
                            partition_index: p.partition_index,
                            error_code: code.code(),
                        }
                    })
                    .collect(),
            })
            .collect();
        if let Err(e) = offsets.write(&request.group_id, deleted) {
            tracing::error!(group = %request.group_id, error = %e, "deleting committed offsets failed");
            return OffsetDeleteResponse {
                error_code: ErrorCode::NotCoordinator.code(),
                ..Default::default()
            };
        }
        OffsetDeleteResponse {
            topics,
            ..Default::default()
        }
    });
    let due = broker.offsets_sync_due(&broker.offsets());
    if let Some(end) = due.filter(|_| response.error_code == ErrorCode::None.code())
        && let Err(e) = broker.make_offsets_durable(end).await
    {
        tracing::error!(group = %request.group_id, error = %e, "syncing deleted committed offsets failed");
        return OffsetDeleteResponse {
            error_code: ErrorCode::NotCoordinator.code(),
            ..Default::default()
        };
    }
    response
}

/// Which of a group's committed offsets OffsetDelete must keep.
enum Protected {
    Nothing,
    Topics(std::collections::BTreeSet<String>),
    Everything,
}

impl Protected {
    fn covers(&self, topic: &str) -> bool {
        match self {
            Protected::Nothing => false,
            Protected::Topics(topics) => topics.contains(topic),
            Protected::Everything => true,
        }
    }
}
