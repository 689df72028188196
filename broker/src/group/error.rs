//! The errors of group operations, one variant per Kafka error code they answer with.

use kafka_protocol::error::ResponseError;
use thiserror::Error;

/// Why a group request (or one partition or member of it) is refused. Every variant maps
/// to exactly one Kafka error code, which is what the client sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum GroupError {
    /// INVALID_GROUP_ID: empty or longer than `GROUP_ID_BYTES_MAX`.
    #[error("invalid group id")]
    InvalidGroupId,
    /// COORDINATOR_NOT_AVAILABLE: the coordinator cannot take this group now (for example
    /// `GROUPS_MAX` groups exist already); the client retries.
    #[error("coordinator not available")]
    CoordinatorNotAvailable,
    /// UNKNOWN_MEMBER_ID: the member id is not (or no longer) part of the group.
    #[error("unknown member id")]
    UnknownMemberId,
    /// ILLEGAL_GENERATION: the request carries a generation other than the current one.
    #[error("illegal generation")]
    IllegalGeneration,
    /// REBALANCE_IN_PROGRESS: the member must rejoin.
    #[error("rebalance in progress")]
    RebalanceInProgress,
    /// INCONSISTENT_GROUP_PROTOCOL: no protocol in common with the group, or an empty
    /// protocol type or list.
    #[error("inconsistent group protocol")]
    InconsistentGroupProtocol,
    /// INVALID_SESSION_TIMEOUT: outside the configured minimum and maximum.
    #[error("invalid session timeout")]
    InvalidSessionTimeout,
    /// MEMBER_ID_REQUIRED: first step of the two-step join (JoinGroup v4+).
    #[error("member id required")]
    MemberIdRequired,
    /// GROUP_MAX_SIZE_REACHED: the group has its maximum number of members.
    #[error("group max size reached")]
    GroupMaxSizeReached,
    /// FENCED_INSTANCE_ID: another member id now owns this group.instance.id.
    #[error("fenced instance id")]
    FencedInstanceId,
    /// NON_EMPTY_GROUP: only an Empty group can be deleted.
    #[error("non-empty group")]
    NonEmptyGroup,
    /// GROUP_ID_NOT_FOUND: the group does not exist.
    #[error("group id not found")]
    GroupIdNotFound,
    /// GROUP_SUBSCRIBED_TO_TOPIC: OffsetDelete of a partition whose topic a member of the
    /// group subscribes to.
    #[error("group subscribed to topic")]
    GroupSubscribedToTopic,
    /// OFFSET_METADATA_TOO_LARGE: commit metadata above `offset.metadata.max.bytes`.
    #[error("offset metadata too large")]
    OffsetMetadataTooLarge,
    /// INVALID_COMMIT_OFFSET_SIZE: the group would exceed the partitions it may hold
    /// offsets for, or a topic name is too long to store.
    #[error("invalid commit offset size")]
    InvalidCommitOffsetSize,
    /// UNKNOWN_TOPIC_OR_PARTITION: a negative partition index in a commit.
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    /// INVALID_REQUEST: a field exceeds a bound of this broker (metadata bytes, protocol
    /// count, instance id length).
    #[error("invalid request")]
    InvalidRequest,
}

impl GroupError {
    /// The Kafka error code for the response.
    pub fn code(self) -> i16 {
        self.response_error().code()
    }

    /// The matching `kafka_protocol` error.
    pub fn response_error(self) -> ResponseError {
        match self {
            GroupError::InvalidGroupId => ResponseError::InvalidGroupId,
            GroupError::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
            GroupError::UnknownMemberId => ResponseError::UnknownMemberId,
            GroupError::IllegalGeneration => ResponseError::IllegalGeneration,
            GroupError::RebalanceInProgress => ResponseError::RebalanceInProgress,
            GroupError::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol,
            GroupError::InvalidSessionTimeout => ResponseError::InvalidSessionTimeout,
            GroupError::MemberIdRequired => ResponseError::MemberIdRequired,
            GroupError::GroupMaxSizeReached => ResponseError::GroupMaxSizeReached,
            GroupError::FencedInstanceId => ResponseError::FencedInstanceId,
            GroupError::NonEmptyGroup => ResponseError::NonEmptyGroup,
            GroupError::GroupIdNotFound => ResponseError::GroupIdNotFound,
            GroupError::GroupSubscribedToTopic => ResponseError::GroupSubscribedToTopic,
            GroupError::OffsetMetadataTooLarge => ResponseError::OffsetMetadataTooLarge,
            GroupError::InvalidCommitOffsetSize => ResponseError::InvalidCommitOffsetSize,
            GroupError::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
            GroupError::InvalidRequest => ResponseError::InvalidRequest,
        }
    }
}

/// The error code of an outcome: 0 for success.
pub(crate) fn error_code(result: Result<(), GroupError>) -> i16 {
    match result {
        Ok(()) => 0,
        Err(error) => error.code(),
    }
}
