//! Consumer group administration from the client side, through the
//! standard APIs only (so it works against Apache Kafka too): list groups,
//! describe one with its committed offsets and lag, delete one.

use std::collections::BTreeMap;

use super::{ClientError, Cluster};
use crate::protocol::ErrorCode;
use crate::protocol::messages::consumer_protocol::decode_assignment;
use crate::protocol::messages::find_coordinator::FindCoordinatorRequest;
use crate::protocol::messages::group_admin::{DeleteGroupsRequest, DescribeGroupsRequest, ListGroupsRequest};
use crate::protocol::messages::list_offsets::{
    LATEST_TIMESTAMP, ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
};
use crate::protocol::messages::offsets::OffsetFetchRequest;
use crate::protocol::messages::{Request, Response};

/// A group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    pub group_id: String,
    pub protocol_type: String,
    pub state: String,
}

/// One partition of a described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// -1 when nothing is committed.
    pub committed: i64,
    pub log_end: i64,
    /// `log_end - committed`, or the whole log when nothing is committed.
    pub lag: i64,
    /// The member that owns the partition now, if any: (member id, host, client id).
    pub owner: Option<(String, String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: String,
    pub protocol: String,
    pub members: usize,
    pub partitions: Vec<PartitionLag>,
}

fn unexpected() -> ClientError {
    ClientError::Decode(crate::protocol::DecodeError::Malformed(nom::error::ErrorKind::Verify))
}

/// Every group every broker coordinates.
pub async fn list_groups(cluster: &mut Cluster) -> Result<Vec<ListedGroup>, ClientError> {
    cluster.refresh(&[], false).await?;
    let mut groups = Vec::new();
    for node in cluster.broker_ids() {
        let Response::ListGroups(response) = cluster
            .broker(node)
            .await?
            .call(Request::ListGroups(ListGroupsRequest::default()))
            .await?
        else {
            return Err(unexpected());
        };
        if response.error_code != 0 {
            return Err(ClientError::broker(response.error_code));
        }
        groups.extend(response.groups.into_iter().map(|g| ListedGroup {
            group_id: g.group_id,
            protocol_type: g.protocol_type,
            state: g.group_state,
        }));
    }
    groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    Ok(groups)
}

async fn coordinator(cluster: &mut Cluster, group: &str) -> Result<i32, ClientError> {
    cluster.refresh(&[], false).await?;
    let request = Request::FindCoordinator(FindCoordinatorRequest {
        key: group.to_string(),
        key_type: 0,
        coordinator_keys: vec![group.to_string()],
    });
    match cluster.any_broker().await?.call(request).await? {
        Response::FindCoordinator(r) if !r.coordinators.is_empty() => {
            let c = &r.coordinators[0];
            if c.error_code != 0 {
                return Err(ClientError::broker(c.error_code));
            }
            Ok(c.node_id)
        }
        Response::FindCoordinator(r) => {
            if r.error_code != 0 {
                return Err(ClientError::broker(r.error_code));
            }
            Ok(r.node_id)
        }
        _ => Err(unexpected()),
    }
}

/// Describes `group`: state, members, and per partition the committed
/// offset, the log end offset and the lag.
pub async fn describe_group(cluster: &mut Cluster, group: &str) -> Result<GroupDescription, ClientError> {
    let node = coordinator(cluster, group).await?;
    let request = Request::DescribeGroups(DescribeGroupsRequest {
        groups: vec![group.to_string()],
        ..Default::default()
    });
    let Response::DescribeGroups(described) = cluster.broker(node).await?.call(request).await? else {
        return Err(unexpected());
    };
    let described = described.groups.into_iter().next().ok_or_else(unexpected)?;
    if described.error_code != 0 {
        return Err(ClientError::broker(described.error_code));
    }
    let mut owners: BTreeMap<(String, i32), (String, String, String)> = BTreeMap::new();
    for member in &described.members {
        if let Ok(assignment) = decode_assignment(&member.member_assignment) {
            for topic in assignment.assigned_partitions {
                for partition in topic.partitions {
                    owners.insert(
                        (topic.topic.clone(), partition),
                        (
                            member.member_id.clone(),
                            member.client_host.clone(),
                            member.client_id.clone(),
                        ),
                    );
                }
            }
        }
    }
    let request = Request::OffsetFetch(OffsetFetchRequest {
        group_id: group.to_string(),
        topics: None,
        groups: vec![crate::protocol::messages::offsets::OffsetFetchRequestGroup {
            group_id: group.to_string(),
            ..Default::default()
        }],
        ..Default::default()
    });
    let Response::OffsetFetch(fetched) = cluster.broker(node).await?.call(request).await? else {
        return Err(unexpected());
    };
    let topics = if fetched.groups.is_empty() {
        fetched.topics
    } else {
        fetched.groups.into_iter().flat_map(|g| g.topics).collect()
    };
    let mut committed: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for topic in topics {
        for p in topic.partitions {
            if p.error_code == 0 && p.committed_offset >= 0 {
                committed.insert((topic.name.clone(), p.partition_index), p.committed_offset);
            }
        }
    }
    // Partitions owned but never committed count too.
    for key in owners.keys() {
        committed.entry(key.clone()).or_insert(-1);
    }
    let names: Vec<String> = committed
        .keys()
        .map(|(t, _)| t.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    if !name_refs.is_empty() {
        cluster.refresh(&name_refs, false).await?;
    }
    let mut partitions = Vec::new();
    for ((topic, partition), offset) in committed {
        let log_end = log_end_offset(cluster, &topic, partition).await?;
        let lag = if offset >= 0 {
            (log_end - offset).max(0)
        } else {
            log_end
        };
        let owner = owners.get(&(topic.clone(), partition)).cloned();
        partitions.push(PartitionLag {
            topic,
            partition,
            committed: offset,
            log_end,
            lag,
            owner,
        });
    }
    Ok(GroupDescription {
        group_id: group.to_string(),
        state: described.group_state,
        protocol: described.protocol_data,
        members: described.members.len(),
        partitions,
    })
}

async fn log_end_offset(cluster: &mut Cluster, topic: &str, partition: i32) -> Result<i64, ClientError> {
    let leader = cluster
        .topic(topic)
        .and_then(|t| t.leaders.get(partition as usize).copied())
        .ok_or_else(|| ClientError::Topic {
            topic: topic.into(),
            reason: format!("no leader for partition {partition}"),
        })?;
    let request = Request::ListOffsets(ListOffsetsRequest {
        replica_id: -1,
        topics: vec![ListOffsetsTopic {
            name: topic.into(),
            partitions: vec![ListOffsetsPartition {
                partition_index: partition,
                timestamp: LATEST_TIMESTAMP,
                ..Default::default()
            }],
        }],
        ..Default::default()
    });
    let Response::ListOffsets(response) = cluster.broker(leader).await?.call(request).await? else {
        return Err(unexpected());
    };
    let answer = response
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or_else(unexpected)?;
    if answer.error_code != 0 {
        return Err(ClientError::broker(answer.error_code));
    }
    Ok(answer.answered_offset())
}

/// Deletes an empty group and its committed offsets.
pub async fn delete_group(cluster: &mut Cluster, group: &str) -> Result<(), ClientError> {
    let node = coordinator(cluster, group).await?;
    let request = Request::DeleteGroups(DeleteGroupsRequest {
        groups_names: vec![group.to_string()],
    });
    let Response::DeleteGroups(response) = cluster.broker(node).await?.call(request).await? else {
        return Err(unexpected());
    };
    match response.results.first().map(|r| ErrorCode::from_code(r.error_code)) {
        Some(ErrorCode::None) => Ok(()),
        Some(code) => Err(ClientError::Broker { code, message: None }),
        None => Err(unexpected()),
    }
}
