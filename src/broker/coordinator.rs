//! The group coordinator: the classic consumer group protocol's state
//! machine (Kafka's `GroupCoordinator` and `GroupMetadata`).
//!
//! A group moves Empty -> PreparingRebalance (members (re)join) ->
//! CompletingRebalance (the leader computes assignments) -> Stable, and back
//! to PreparingRebalance whenever a member joins, leaves, changes its
//! protocols or misses its session timeout. JoinGroup and SyncGroup requests
//! park on a oneshot until their phase completes; the state itself sits
//! behind one std mutex, never held across an await.
//!
//! What a group is between starts goes to the committed-offsets log when a
//! rebalance completes and when the group empties, under the coordinator's
//! lock and then the store's, as Kafka writes its group metadata: its
//! protocol type and generation, and its members with their assignments
//! or when it emptied. A start begins with those groups, and their members
//! heartbeat on as if nothing had happened.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::wall_clock_ms;
use crate::protocol::ErrorCode;
use crate::protocol::messages::consumer_protocol::decode_subscribed_topics;
use crate::protocol::messages::groups::{JoinGroupResponse, JoinGroupResponseMember, SyncGroupResponse};
use crate::storage::offsets::{KeptGroup, KeptMember, OffsetStore};

/// Settings, with Kafka's names.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of
    /// an empty group waits for more members. Kafka's 3 s makes every test
    /// and every local run wait; 100 ms still gathers consumers that start
    /// together.
    pub initial_rebalance_delay: Duration,
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            initial_rebalance_delay: Duration::from_millis(100),
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    /// The state's name as Kafka spells it (ListGroups, DescribeGroups).
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    last_seen: Instant,
    join: Option<(oneshot::Sender<JoinGroupResponse>, i16)>,
    sync: Option<oneshot::Sender<SyncGroupResponse>>,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// Members by id, in the order they first joined.
    pub members: BTreeMap<u64, Member>,
    next_seq: u64,
    /// Ids handed out with MEMBER_ID_REQUIRED, not yet used, with their expiry.
    pending_ids: HashMap<String, Instant>,
    /// Static members: group.instance.id -> member id.
    pub instances: HashMap<String, String>,
    /// When the joining phase ends whoever has rejoined.
    join_deadline: Option<Instant>,
    /// Until when an empty group's first rebalance waits for more members.
    join_not_before: Option<Instant>,
    /// When the group last became Empty (or was created), wall clock ms:
    /// what the expiry of its committed offsets counts from (KIP-211).
    empty_since: i64,
    /// What the members of a consumer-protocol group subscribed to when
    /// its generation last changed (Kafka's `subscribedTopics`): during a
    /// rebalance, the previous generation's. `None`: not known.
    subscribed: Option<BTreeSet<String>>,
    /// What the offsets log last recorded of it.
    kept: Option<KeptGroup>,
    /// The last write of its record failed: the timer tries it again.
    keep_failed: bool,
}

/// Whether a group has members, as far as the coordinator knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    /// Members whose subscriptions do not count: another protocol type, a
    /// group that is not Stable, or metadata that does not parse.
    Members,
    /// Consumer-protocol members of a Stable group, subscribed between them
    /// to these topics.
    Subscribed(BTreeSet<String>),
    /// Empty since then (wall clock ms; later than now for a group kept
    /// without its members while it had some, a record of layout 0,
    /// until their sessions would have timed out).
    EmptySince(i64),
    /// No coordinator entry: not joined since the broker started, or
    /// deleted since (DeleteGroups, or emptied with nothing committed).
    Unknown,
}

impl Group {
    /// The topics the members of a consumer-protocol group subscribe to,
    /// as Kafka computes them each time the generation changes: while a
    /// rebalance is under way, those of the previous generation. `None`
    /// when not known: another protocol type, no generation yet, or a
    /// member whose subscription does not parse.
    pub fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
        self.subscribed.clone()
    }

    /// Kafka's `computeSubscribedTopics`, at a new generation: each
    /// member's ConsumerProtocolSubscription for the chosen protocol, read
    /// as v0 (the prefix of every version); none for an empty group.
    fn compute_subscribed(&self) -> Option<BTreeSet<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        if self.members.is_empty() {
            return Some(BTreeSet::new());
        }
        let protocol = self.protocol.as_deref()?;
        let mut topics = BTreeSet::new();
        for member in self.members.values() {
            topics.extend(decode_subscribed_topics(&member.metadata_for(protocol)).ok()?);
        }
        Some(topics)
    }

    /// Whether the group has members, or since when it has had none.
    fn membership(&self) -> Membership {
        match self.state {
            GroupState::Empty => Membership::EmptySince(self.empty_since),
            // As Kafka's removeExpiredOffsets: by subscription only once
            // the group is Stable.
            GroupState::Stable => self
                .subscribed_topics()
                .map_or(Membership::Members, Membership::Subscribed),
            _ => Membership::Members,
        }
    }

    fn new(id: &str) -> Group {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            next_seq: 0,
            pending_ids: HashMap::new(),
            instances: HashMap::new(),
            join_deadline: None,
            join_not_before: None,
            empty_since: wall_clock_ms(),
            subscribed: None,
            kept: None,
            keep_failed: false,
        }
    }

    /// What the offsets log should hold of it. Kafka writes a group's
    /// metadata when a rebalance completes (with the assignments) and when
    /// the group empties, and nothing before its first join completes; in
    /// between, the last record stands.
    fn to_kept(&self) -> Option<KeptGroup> {
        if self.generation == 0 && self.kept.is_none() {
            return None;
        }
        let mut kept = KeptGroup {
            protocol_type: self.protocol_type.clone(),
            generation: self.generation,
            empty_since_ms: None,
            session_timeout_ms: 0,
            protocol: None,
            leader: None,
            members: Vec::new(),
        };
        match self.state {
            GroupState::PreparingRebalance | GroupState::CompletingRebalance => return self.kept.clone(),
            GroupState::Empty => kept.empty_since_ms = Some(self.empty_since),
            GroupState::Stable => {
                let protocol = self.protocol.clone().unwrap_or_default();
                kept.members = self
                    .members
                    .values()
                    .map(|m| KeptMember {
                        id: m.id.clone(),
                        instance_id: m.instance_id.clone(),
                        client_id: m.client_id.clone(),
                        client_host: m.client_host.clone(),
                        session_timeout_ms: millis(m.session_timeout),
                        rebalance_timeout_ms: millis(m.rebalance_timeout),
                        subscription: m.metadata_for(&protocol),
                        assignment: m.assignment.clone(),
                    })
                    .collect();
                kept.session_timeout_ms = kept.members.iter().map(|m| m.session_timeout_ms).max().unwrap_or(0);
                kept.protocol = Some(protocol);
                kept.leader = self.leader.clone();
            }
        }
        Some(kept)
    }

    /// The group `kept` describes, at a start (`started_ms` on the wall
    /// clock, `now` on the timers'). One with members comes back Stable
    /// with them, each session counting from now, as Kafka loads its group
    /// metadata: they heartbeat and commit on under their generation, or
    /// time out. A record of layout 0 kept no members even when the group
    /// had some: that group comes back Empty, emptied once their longest
    /// session would have timed out after this start, when Kafka would
    /// have removed the last of them.
    fn restored(id: &str, kept: KeptGroup, started_ms: i64, now: Instant) -> Group {
        let mut group = Group::new(id);
        group.protocol_type = kept.protocol_type.clone();
        group.generation = kept.generation;
        if kept.members.is_empty() {
            group.empty_since = kept
                .empty_since_ms
                .unwrap_or(started_ms.saturating_add(i64::from(kept.session_timeout_ms)));
        } else {
            let protocol = kept.protocol.clone().unwrap_or_default();
            for m in &kept.members {
                if let Some(instance) = &m.instance_id {
                    group.instances.insert(instance.clone(), m.id.clone());
                }
                let seq = group.next_seq;
                group.next_seq += 1;
                group.members.insert(
                    seq,
                    Member {
                        id: m.id.clone(),
                        instance_id: m.instance_id.clone(),
                        client_id: m.client_id.clone(),
                        client_host: m.client_host.clone(),
                        session_timeout: duration_ms(m.session_timeout_ms),
                        rebalance_timeout: duration_ms(m.rebalance_timeout_ms),
                        protocols: vec![(protocol.clone(), m.subscription.clone())],
                        assignment: m.assignment.clone(),
                        last_seen: now,
                        join: None,
                        sync: None,
                    },
                );
            }
            group.state = GroupState::Stable;
            group.protocol = Some(protocol);
            group.leader = kept.leader.clone();
            group.subscribed = group.compute_subscribed();
        }
        group.kept = Some(kept);
        group
    }

    pub fn member(&self, id: &str) -> Option<&Member> {
        self.members.values().find(|m| m.id == id)
    }

    fn member_mut(&mut self, id: &str) -> Option<&mut Member> {
        self.members.values_mut().find(|m| m.id == id)
    }

    fn remove_member(&mut self, id: &str) -> Option<Member> {
        let seq = *self.members.iter().find(|(_, m)| m.id == id)?.0;
        let member = self.members.remove(&seq)?;
        if let Some(instance) = &member.instance_id
            && self.instances.get(instance).is_some_and(|m| m == id)
        {
            self.instances.remove(instance);
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
        Some(member)
    }
}

/// What a JoinGroup request needs, decoded.
pub struct JoinRequest {
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub version: i16,
}

/// First JoinGroup version that asks a new member to come back with an id.
const FIRST_MEMBER_ID_REQUIRED_VERSION: i16 = 4;

/// The empty-but-valid assignment for a consumer the leader gave nothing
/// (ConsumerProtocolAssignment v0: no topics, null user data). Some clients
/// cannot parse zero bytes here (nisshi#679, franz-go).
const EMPTY_CONSUMER_ASSIGNMENT: &[u8] = &[0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];

pub struct Coordinator {
    config: GroupConfig,
    groups: Mutex<HashMap<String, Group>>,
    /// Where groups are kept between starts (the committed-offsets log).
    store: Arc<Mutex<OffsetStore>>,
    /// Wakes the timer task when a deadline is set.
    pub(crate) timers: tokio::sync::Notify,
}

fn error_join(code: ErrorCode, member_id: &str) -> JoinGroupResponse {
    JoinGroupResponse {
        error_code: code.code(),
        member_id: member_id.to_string(),
        ..Default::default()
    }
}

fn error_sync(code: ErrorCode) -> SyncGroupResponse {
    SyncGroupResponse {
        error_code: code.code(),
        ..Default::default()
    }
}

impl Coordinator {
    /// Starts with the groups `store` keeps, with the members they had
    /// (see [`Group::restored`]).
    pub fn new(config: GroupConfig, store: Arc<Mutex<OffsetStore>>) -> Coordinator {
        let (started_ms, now) = (wall_clock_ms(), Instant::now());
        let kept: Vec<(String, KeptGroup)> = store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .kept_groups()
            .map(|(id, kept)| (id.clone(), kept.clone()))
            .collect();
        let coordinator = Coordinator {
            config,
            groups: Mutex::new(HashMap::new()),
            store,
            timers: tokio::sync::Notify::new(),
        };
        {
            let mut groups = coordinator.lock();
            for (id, kept) in kept {
                let mut group = Group::restored(&id, kept, started_ms, now);
                // A group restored without its members records since when
                // it counts as empty, so that the next start counts the same.
                coordinator.keep(&mut group);
                groups.insert(id, group);
            }
        }
        coordinator
    }

    /// Records `group` in the offsets log if it changed since it last was;
    /// false if that write failed. The caller holds the coordinator's lock.
    /// A failed write is logged, and tried again at the next timer run.
    fn keep(&self, group: &mut Group) -> bool {
        let kept = group.to_kept();
        if kept.is_none() || kept == group.kept {
            group.keep_failed = false;
            return true;
        }
        let (written, rewrite_due) = {
            let mut store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
            let written = store.keep_group(&group.id, kept.clone());
            (written, store.rewrite_due())
        };
        if rewrite_due {
            // Group records alone can grow the log (a group that rebalances
            // and never commits): the timer task rewrites it, outside this
            // lock (`Broker::run_group_timers`).
            self.timers.notify_one();
        }
        let failed_before = std::mem::replace(&mut group.keep_failed, written.is_err());
        match written {
            Ok(()) => {
                if failed_before {
                    tracing::info!(group = %group.id, "recording the group worked again");
                }
                group.kept = kept;
                true
            }
            Err(e) => {
                // Logged once, not at each retry of the timer's.
                if failed_before {
                    tracing::debug!(group = %group.id, error = %e, "recording the group failed again");
                } else {
                    tracing::error!(group = %group.id, error = %e, "recording the group failed");
                }
                self.timers.notify_one();
                false
            }
        }
    }

    /// [`Coordinator::keep`] for `group_id`, if it exists.
    fn keep_by_id(&self, group_id: &str) {
        if let Some(group) = self.lock().get_mut(group_id) {
            self.keep(group);
        }
    }

    /// When a failed write of a group's record is tried again.
    const KEEP_RETRY: Duration = Duration::from_secs(1);

    pub fn lock(&self) -> MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Handles JoinGroup; the response arrives once the joining phase ends.
    pub async fn join(&self, request: JoinRequest) -> JoinGroupResponse {
        let group_id = request.group_id.clone();
        let started = self.start_join(request);
        self.keep_by_id(&group_id);
        let receiver = match started {
            Ok(receiver) => receiver,
            Err(response) => return *response,
        };
        self.timers.notify_one();
        receiver
            .await
            .unwrap_or_else(|_| error_join(ErrorCode::UnknownMemberId, ""))
    }

    fn start_join(&self, request: JoinRequest) -> Result<oneshot::Receiver<JoinGroupResponse>, Box<JoinGroupResponse>> {
        if request.group_id.is_empty() {
            return Err(error_join(ErrorCode::InvalidGroupId, &request.member_id).into());
        }
        if !(self.config.min_session_timeout_ms..=self.config.max_session_timeout_ms)
            .contains(&request.session_timeout_ms)
        {
            return Err(error_join(ErrorCode::InvalidSessionTimeout, &request.member_id).into());
        }
        if request.protocols.is_empty() || request.protocol_type.is_empty() {
            return Err(error_join(ErrorCode::InconsistentGroupProtocol, &request.member_id).into());
        }
        let now = Instant::now();
        let mut groups = self.lock();
        if !request.member_id.is_empty() && !groups.contains_key(&request.group_id) {
            // A member id for a group that does not exist: nothing to create.
            return Err(error_join(ErrorCode::UnknownMemberId, &request.member_id).into());
        }
        let group = groups
            .entry(request.group_id.clone())
            .or_insert_with(|| Group::new(&request.group_id));
        if !group.members.is_empty() {
            let same_type = group.protocol_type.as_deref() == Some(request.protocol_type.as_str());
            let shared = request.protocols.iter().any(|(name, _)| {
                group
                    .members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            });
            if !same_type || !shared {
                return Err(error_join(ErrorCode::InconsistentGroupProtocol, &request.member_id).into());
            }
        }
        let session_timeout = Duration::from_millis(request.session_timeout_ms as u64);
        let rebalance_timeout = if request.rebalance_timeout_ms > 0 {
            Duration::from_millis(request.rebalance_timeout_ms as u64)
        } else {
            session_timeout // v0 has no rebalance timeout
        };

        // Work out who this is.
        let member_id = if request.member_id.is_empty() {
            let new_id = format!(
                "{}-{}",
                request.instance_id.as_deref().unwrap_or(&request.client_id),
                uuid::Uuid::new_v4()
            );
            match &request.instance_id {
                Some(instance) => {
                    // A static member comes back under a new id; the old one
                    // is fenced from now on.
                    if let Some(old) = group.instances.get(instance).cloned()
                        && let Some(mut member) = group.remove_member(&old)
                    {
                        // Leadership follows the member to its new id.
                        if group.leader.is_none() && group.state != GroupState::Empty {
                            group.leader = Some(new_id.clone());
                        }
                        member.id = new_id.clone();
                        if let Some((join, _)) = member.join.take() {
                            let _ = join.send(error_join(ErrorCode::FencedInstanceId, &old));
                        }
                        let seq = group.next_seq;
                        group.next_seq += 1;
                        group.members.insert(seq, member);
                        // As Kafka: the new id is recorded at once, so that
                        // after a restart the old one stays fenced, even if
                        // a rebalance follows.
                        self.keep(group);
                    }
                    group.instances.insert(instance.clone(), new_id.clone());
                    new_id
                }
                None if request.version >= FIRST_MEMBER_ID_REQUIRED_VERSION => {
                    // KIP-394: the member must come back with this id.
                    group.pending_ids.insert(new_id.clone(), now + session_timeout);
                    return Err(error_join(ErrorCode::MemberIdRequired, &new_id).into());
                }
                None => new_id,
            }
        } else {
            if let Some(instance) = &request.instance_id
                && group.instances.get(instance).is_some_and(|m| *m != request.member_id)
            {
                return Err(error_join(ErrorCode::FencedInstanceId, &request.member_id).into());
            }
            if group.pending_ids.remove(&request.member_id).is_none() && group.member(&request.member_id).is_none() {
                return Err(error_join(ErrorCode::UnknownMemberId, &request.member_id).into());
            }
            request.member_id.clone()
        };

        let (sender, receiver) = oneshot::channel();
        let existing = group.member(&member_id).map(|m| m.protocols == request.protocols);
        match existing {
            // A member that rejoins with nothing new while the group is
            // settled gets the current generation back, no rebalance (it may
            // have missed its response). The leader always rebalances: it
            // needs everyone's metadata again.
            Some(true)
                if matches!(group.state, GroupState::Stable | GroupState::CompletingRebalance)
                    && group.leader.as_deref() != Some(member_id.as_str()) =>
            {
                let member = group.member_mut(&member_id).expect("checked above");
                member.last_seen = now;
                let response = JoinGroupResponse {
                    error_code: ErrorCode::None.code(),
                    generation_id: group.generation,
                    protocol_type: group.protocol_type.clone(),
                    protocol_name: group.protocol.clone(),
                    leader: group.leader.clone().unwrap_or_default(),
                    member_id: member_id.clone(),
                    ..Default::default()
                };
                let _ = sender.send(response);
                return Ok(receiver);
            }
            Some(_) => {
                let member = group.member_mut(&member_id).expect("checked above");
                member.protocols = request.protocols;
                member.session_timeout = session_timeout;
                member.rebalance_timeout = rebalance_timeout;
                member.last_seen = now;
                if let Some((old, _)) = member.join.replace((sender, request.version)) {
                    let _ = old.send(error_join(ErrorCode::UnknownMemberId, &member_id));
                }
            }
            None => {
                let seq = group.next_seq;
                group.next_seq += 1;
                group.members.insert(
                    seq,
                    Member {
                        id: member_id.clone(),
                        instance_id: request.instance_id.clone(),
                        client_id: request.client_id.clone(),
                        client_host: request.client_host.clone(),
                        session_timeout,
                        rebalance_timeout,
                        protocols: request.protocols,
                        assignment: Bytes::new(),
                        last_seen: now,
                        join: Some((sender, request.version)),
                        sync: None,
                    },
                );
            }
        }
        if group.members.len() == 1 {
            // The first member decides what kind of group this is.
            group.protocol_type = Some(request.protocol_type);
        }
        self.prepare_rebalance(group, now);
        Self::try_complete_join(group, now, false);
        Ok(receiver)
    }

    /// Moves a group into PreparingRebalance (if not there already).
    fn prepare_rebalance(&self, group: &mut Group, now: Instant) {
        if group.state == GroupState::PreparingRebalance {
            return;
        }
        tracing::debug!(group = %group.id, from = group.state.name(), "rebalancing");
        if group.state == GroupState::CompletingRebalance {
            // Members waiting in SyncGroup must rejoin.
            for member in group.members.values_mut() {
                if let Some(sync) = member.sync.take() {
                    let _ = sync.send(error_sync(ErrorCode::RebalanceInProgress));
                }
            }
        }
        let timeout = group
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        group.join_deadline = Some(now + timeout);
        group.join_not_before = (group.state == GroupState::Empty).then(|| now + self.config.initial_rebalance_delay);
        group.state = GroupState::PreparingRebalance;
    }

    /// Ends the joining phase if every member has rejoined (or, with
    /// `deadline_passed`, with whoever has).
    fn try_complete_join(group: &mut Group, now: Instant, deadline_passed: bool) {
        if group.state != GroupState::PreparingRebalance {
            return;
        }
        let all_joined = group.members.values().all(|m| m.join.is_some());
        let waiting_initial = group.join_not_before.is_some_and(|t| now < t);
        if !(deadline_passed || (all_joined && !waiting_initial)) {
            return;
        }
        // Members that did not rejoin in time are out, except static ones,
        // which stay until their session expires (KIP-345).
        let gone: Vec<String> = group
            .members
            .values()
            .filter(|m| m.join.is_none() && m.instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            group.remove_member(&id);
        }
        group.generation += 1;
        group.join_deadline = None;
        group.join_not_before = None;
        if group.members.is_empty() {
            // The protocol type stays: ListGroups still shows an empty
            // consumer group as one, as Kafka does.
            group.state = GroupState::Empty;
            group.empty_since = wall_clock_ms();
            group.protocol = None;
            group.subscribed = group.compute_subscribed();
            return;
        }
        group.protocol = select_protocol(group);
        group.subscribed = group.compute_subscribed();
        if group.leader.as_ref().is_none_or(|l| group.member(l).is_none()) {
            group.leader = group.members.values().next().map(|m| m.id.clone());
        }
        group.state = GroupState::CompletingRebalance;
        tracing::debug!(
            group = %group.id,
            generation = group.generation,
            members = group.members.len(),
            protocol = group.protocol.as_deref().unwrap_or(""),
            leader = group.leader.as_deref().unwrap_or(""),
            "joining phase complete"
        );
        let protocol = group.protocol.clone().unwrap_or_default();
        let leader = group.leader.clone().unwrap_or_default();
        let everyone: Vec<JoinGroupResponseMember> = group
            .members
            .values()
            .map(|m| JoinGroupResponseMember {
                member_id: m.id.clone(),
                group_instance_id: m.instance_id.clone(),
                metadata: m.metadata_for(&protocol),
            })
            .collect();
        for member in group.members.values_mut() {
            member.assignment = Bytes::new();
            member.last_seen = now;
            if let Some((join, _version)) = member.join.take() {
                let _ = join.send(JoinGroupResponse {
                    error_code: ErrorCode::None.code(),
                    generation_id: group.generation,
                    protocol_type: group.protocol_type.clone(),
                    protocol_name: Some(protocol.clone()),
                    leader: leader.clone(),
                    member_id: member.id.clone(),
                    members: if member.id == leader {
                        everyone.clone()
                    } else {
                        Vec::new()
                    },
                    ..Default::default()
                });
            }
        }
    }

    /// Handles SyncGroup; followers wait for the leader's assignments.
    pub async fn sync(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncGroupResponse {
        let receiver = {
            let mut groups = self.lock();
            let Some(group) = groups.get_mut(group_id) else {
                return error_sync(ErrorCode::UnknownMemberId);
            };
            if let Err(code) = check_member(group, member_id, instance_id, Some(generation)) {
                return error_sync(code);
            }
            let (sender, receiver) = oneshot::channel();
            match group.state {
                GroupState::Empty => return error_sync(ErrorCode::UnknownMemberId),
                GroupState::PreparingRebalance => return error_sync(ErrorCode::RebalanceInProgress),
                GroupState::Stable => {
                    let (protocol_type, protocol_name) = (group.protocol_type.clone(), group.protocol.clone());
                    let member = group.member_mut(member_id).expect("checked");
                    member.last_seen = Instant::now();
                    let _ = sender.send(SyncGroupResponse {
                        error_code: 0,
                        protocol_type,
                        protocol_name,
                        assignment: member.assignment.clone(),
                        ..Default::default()
                    });
                }
                GroupState::CompletingRebalance => {
                    let is_leader = group.leader.as_deref() == Some(member_id);
                    let member = group.member_mut(member_id).expect("checked");
                    member.last_seen = Instant::now();
                    member.sync = Some(sender);
                    if is_leader {
                        let consumer = group.protocol_type.as_deref() == Some("consumer");
                        let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                        for member in group.members.values_mut() {
                            member.assignment = given.remove(&member.id).unwrap_or_else(|| {
                                if consumer {
                                    Bytes::from_static(EMPTY_CONSUMER_ASSIGNMENT)
                                } else {
                                    Bytes::new()
                                }
                            });
                        }
                        group.state = GroupState::Stable;
                        if self.keep(group) {
                            tracing::debug!(group = %group.id, generation = group.generation, "group stable");
                        } else {
                            // As Kafka when it cannot store the group: the
                            // members waiting in SyncGroup are told to find
                            // the coordinator again, and the group rebalances.
                            for member in group.members.values_mut() {
                                member.assignment = Bytes::new();
                                if let Some(sync) = member.sync.take() {
                                    let _ = sync.send(error_sync(ErrorCode::NotCoordinator));
                                }
                            }
                            group.state = GroupState::CompletingRebalance;
                            self.prepare_rebalance(group, Instant::now());
                            self.timers.notify_one();
                        }
                    }
                    if group.state == GroupState::Stable {
                        for member in group.members.values_mut() {
                            if let Some(sync) = member.sync.take() {
                                let _ = sync.send(SyncGroupResponse {
                                    error_code: 0,
                                    protocol_type: group.protocol_type.clone(),
                                    protocol_name: group.protocol.clone(),
                                    assignment: member.assignment.clone(),
                                    ..Default::default()
                                });
                            }
                        }
                    }
                }
            }
            receiver
        };
        receiver
            .await
            .unwrap_or_else(|_| error_sync(ErrorCode::RebalanceInProgress))
    }

    /// Handles Heartbeat.
    pub fn heartbeat(&self, group_id: &str, generation: i32, member_id: &str, instance_id: Option<&str>) -> ErrorCode {
        let mut groups = self.lock();
        let Some(group) = groups.get_mut(group_id) else {
            return ErrorCode::UnknownMemberId;
        };
        if let Err(code) = check_member(group, member_id, instance_id, None) {
            return code;
        }
        let state = group.state;
        let current = group.generation;
        let member = group.member_mut(member_id).expect("checked");
        member.last_seen = Instant::now();
        match state {
            GroupState::PreparingRebalance => ErrorCode::RebalanceInProgress,
            _ if generation != current => ErrorCode::IllegalGeneration,
            GroupState::Empty => ErrorCode::UnknownMemberId,
            GroupState::CompletingRebalance | GroupState::Stable => ErrorCode::None,
        }
    }

    /// Handles LeaveGroup for one member (by id, or by instance id).
    pub fn leave(&self, group_id: &str, member_id: &str, instance_id: Option<&str>) -> ErrorCode {
        let mut groups = self.lock();
        let Some(group) = groups.get_mut(group_id) else {
            return ErrorCode::UnknownMemberId;
        };
        let id = match instance_id {
            Some(instance) => match group.instances.get(instance) {
                Some(id) if member_id.is_empty() || id == member_id => id.clone(),
                Some(_) => return ErrorCode::FencedInstanceId,
                None => return ErrorCode::UnknownMemberId,
            },
            None => member_id.to_string(),
        };
        let Some(member) = group.remove_member(&id) else {
            return ErrorCode::UnknownMemberId;
        };
        drop(member);
        let now = Instant::now();
        self.member_gone(group, now);
        self.keep(group);
        ErrorCode::None
    }

    /// After a member left or expired: rebalance the rest, or empty the group.
    fn member_gone(&self, group: &mut Group, now: Instant) {
        match group.state {
            GroupState::Empty => {}
            GroupState::PreparingRebalance => Self::try_complete_join(group, now, false),
            GroupState::CompletingRebalance | GroupState::Stable => {
                if group.members.is_empty() {
                    group.state = GroupState::Empty;
                    group.empty_since = wall_clock_ms();
                    group.generation += 1;
                    group.protocol = None;
                    group.subscribed = group.compute_subscribed();
                } else {
                    self.prepare_rebalance(group, now);
                    // The survivors find out through REBALANCE_IN_PROGRESS.
                }
            }
        }
        self.timers.notify_one();
    }

    /// Expires members past their session timeout, ends joining phases past
    /// their deadline; returns when it next needs to run.
    pub fn tick(&self, now: Instant) -> Option<Instant> {
        let mut groups = self.lock();
        let mut next: Option<Instant> = None;
        let mut soonest = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        for group in groups.values_mut() {
            let before = (group.state, group.generation, group.members.len());
            group.pending_ids.retain(|_, expiry| *expiry > now);
            let expired: Vec<String> = group
                .members
                .values()
                .filter(|m| m.join.is_none() && m.sync.is_none() && now >= m.last_seen + m.session_timeout)
                .map(|m| m.id.clone())
                .collect();
            for id in expired {
                tracing::info!(group = %group.id, member = %id, "member missed its session timeout; removing it");
                group.remove_member(&id);
                self.member_gone(group, now);
            }
            if group.state == GroupState::PreparingRebalance {
                let deadline_passed = group.join_deadline.is_some_and(|d| now >= d);
                Self::try_complete_join(group, now, deadline_passed);
            }
            // Whatever a run changes of what is kept changes one of these.
            if (group.state, group.generation, group.members.len()) != before || group.keep_failed {
                self.keep(group);
            }
            if group.keep_failed {
                soonest(now + Self::KEEP_RETRY);
            }
            // Members parked in JoinGroup or SyncGroup do not expire (the
            // join deadline covers them): their session is not a deadline.
            for member in group.members.values().filter(|m| m.join.is_none() && m.sync.is_none()) {
                soonest(member.last_seen + member.session_timeout);
            }
            if let Some(t) = group.join_deadline {
                soonest(t);
            }
            if let Some(t) = group.join_not_before.filter(|t| *t > now) {
                soonest(t);
            }
            for expiry in group.pending_ids.values() {
                soonest(*expiry);
            }
        }
        next
    }

    /// Whether `member_id` may commit for `generation` (OffsetCommit rules).
    pub fn check_commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> ErrorCode {
        let groups = self.lock();
        let group = groups.get(group_id);
        match group {
            // No live group: commits outside any generation are allowed
            // (admin tools, consumers that assign partitions themselves).
            None => {
                if generation < 0 {
                    ErrorCode::None
                } else {
                    ErrorCode::IllegalGeneration
                }
            }
            Some(group) if group.state == GroupState::Empty => {
                if generation < 0 {
                    ErrorCode::None
                } else {
                    ErrorCode::UnknownMemberId
                }
            }
            Some(group) => {
                if generation < 0 && member_id.is_empty() {
                    return ErrorCode::UnknownMemberId;
                }
                if let Err(code) = check_member(group, member_id, instance_id, None) {
                    return code;
                }
                if generation != group.generation {
                    return ErrorCode::IllegalGeneration;
                }
                // Commits during PreparingRebalance are allowed (consumers
                // commit before they rejoin, under the old generation);
                // between join and sync they are not, as in Kafka.
                if group.state == GroupState::CompletingRebalance {
                    return ErrorCode::RebalanceInProgress;
                }
                ErrorCode::None
            }
        }
    }

    /// Runs `decide` with whether `group_id` has members, or since when it
    /// has had none, holding the coordinator's lock until it returns:
    /// no member joins and no group empties meanwhile. `decide` may take
    /// the offsets lock (always after this one, never the other way round).
    /// `decide` must not call the coordinator: its lock is not reentrant.
    pub fn with_membership<T>(&self, group_id: &str, decide: impl FnOnce(Membership) -> T) -> T {
        self.with_group(group_id, |group| {
            decide(group.map_or(Membership::Unknown, Group::membership))
        })
    }

    /// Runs `act` with `group_id`'s entry, if any, holding the coordinator's
    /// lock until it returns, as [`Coordinator::with_membership`] does.
    pub fn with_group<T>(&self, group_id: &str, act: impl FnOnce(Option<&Group>) -> T) -> T {
        let groups = self.lock();
        act(groups.get(group_id))
    }

    /// Deletes an empty group, or one known only by its commits
    /// (DeleteGroups): its commits and its record go from the offsets log
    /// first, under the coordinator's lock, so no member joins meanwhile,
    /// and the entry only once they have, so a failed write leaves the
    /// group as it was.
    pub fn delete(&self, group_id: &str) -> Result<(), ErrorCode> {
        let mut groups = self.lock();
        let live = match groups.get(group_id) {
            Some(group) if group.state != GroupState::Empty => return Err(ErrorCode::NonEmptyGroup),
            Some(_) => true,
            None => false,
        };
        let mut store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        if !live && store.group(group_id).is_none() {
            return Err(ErrorCode::GroupIdNotFound);
        }
        store.delete_group(group_id).map_err(|e| {
            tracing::error!(group = %group_id, error = %e, "deleting the group's commits failed");
            ErrorCode::NotCoordinator
        })?;
        groups.remove(group_id);
        Ok(())
    }

    /// Removes the Empty groups that hold no commits, and their records, as
    /// Kafka's offset cleanup moves them to Dead. A group still holding
    /// ids handed out with MEMBER_ID_REQUIRED waits for them to expire, so
    /// that a consumer between its two JoinGroups is not turned away.
    /// Returns how many went.
    pub fn remove_idle_groups(&self, now: Instant) -> usize {
        let mut groups = self.lock();
        let mut store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        let idle: Vec<String> = groups
            .iter()
            .filter(|(id, group)| {
                group.state == GroupState::Empty
                    && group.pending_ids.values().all(|expiry| *expiry <= now)
                    && store.group(id).is_none()
            })
            .map(|(id, _)| id.clone())
            .collect();
        let mut removed = 0;
        for id in idle {
            // Its record goes first: a group whose record stays would come
            // back at the next start.
            if let Err(e) = store.delete_group(&id) {
                tracing::error!(group = %id, error = %e, "deleting the record of an empty group failed");
                continue;
            }
            groups.remove(&id);
            removed += 1;
        }
        removed
    }
}

/// A timeout as the protocol's milliseconds (it came as an i32).
fn millis(timeout: Duration) -> i32 {
    i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX)
}

/// Kept milliseconds as a timeout (a negative one as none).
fn duration_ms(ms: i32) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

fn check_member(
    group: &Group,
    member_id: &str,
    instance_id: Option<&str>,
    generation: Option<i32>,
) -> Result<(), ErrorCode> {
    if let Some(instance) = instance_id
        && group.instances.get(instance).is_some_and(|m| m != member_id)
    {
        return Err(ErrorCode::FencedInstanceId);
    }
    if group.member(member_id).is_none() {
        return Err(ErrorCode::UnknownMemberId);
    }
    if generation.is_some_and(|g| g != group.generation) {
        return Err(ErrorCode::IllegalGeneration);
    }
    Ok(())
}

/// The protocol every member supports that most members prefer (each votes
/// for its first supported choice), as Kafka selects it.
fn select_protocol(group: &Group) -> Option<String> {
    let first = group.members.values().next()?;
    let candidates: Vec<&String> = first
        .protocols
        .iter()
        .map(|(name, _)| name)
        .filter(|name| {
            group
                .members
                .values()
                .all(|m| m.protocols.iter().any(|(n, _)| n == *name))
        })
        .collect();
    let mut votes: BTreeMap<&String, usize> = BTreeMap::new();
    for member in group.members.values() {
        if let Some((name, _)) = member.protocols.iter().find(|(n, _)| candidates.contains(&n)) {
            *votes.entry(name).or_default() += 1;
        }
    }
    candidates
        .iter()
        .max_by_key(|c| {
            (
                votes.get(*c).copied().unwrap_or(0),
                std::cmp::Reverse(candidates.iter().position(|x| x == *c)),
            )
        })
        .map(|c| c.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A group recorded without its members, as a record of layout 0 said
    /// of a group that had some, comes back Empty, emptied once their
    /// longest session would have timed out after the start.
    #[test]
    fn a_group_kept_without_its_members_counts_as_emptied_after_their_session() {
        let mut store = OffsetStore::in_memory();
        let kept = KeptGroup {
            protocol_type: Some("consumer".into()),
            generation: 3,
            empty_since_ms: None,
            session_timeout_ms: 10_000,
            protocol: None,
            leader: None,
            members: Vec::new(),
        };
        store.keep_group("old", Some(kept)).unwrap();
        let before = wall_clock_ms();
        let coordinator = Coordinator::new(GroupConfig::default(), Arc::new(Mutex::new(store)));
        let after = wall_clock_ms();
        let Membership::EmptySince(since) = coordinator.with_membership("old", |m| m) else {
            panic!("restored Empty")
        };
        assert!((before + 10_000..=after + 10_000).contains(&since), "{since}");
        let groups = coordinator.lock();
        assert_eq!(groups["old"].generation, 3);
        assert_eq!(groups["old"].protocol_type.as_deref(), Some("consumer"));
    }
}
