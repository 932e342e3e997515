//! HServer-style errors: a gRPC status whose details carry
//! `{"error": <code>, "message": "<ExceptionName>", "extra": <text>}` (JSON),
//! as HServer's `ExInfo` does.
//!
//! Codes 200–207 and 300–303 are HServer's `ErrorCode`s; 208 (ShardNotFound),
//! 900 (ShardReaderExists) and 902 (ShardReaderNotFound) are this service's
//! choices next to HServer's documented 901/903.

use tonic::{Code, Status};

/// Builds a status with HServer's error details.
pub(crate) fn hs_status(code: Code, hs_code: i64, name: &str, message: String) -> Status {
    let details = serde_json::json!({ "error": hs_code, "message": name, "extra": message });
    Status::with_details(code, message, details.to_string().into_bytes().into())
}

pub(crate) fn stream_not_found(stream: &str) -> Status {
    hs_status(
        Code::NotFound,
        200,
        "StreamNotFound",
        format!(
            "stream {stream:?} does not exist; create it first (CreateStream) or check the name"
        ),
    )
}

pub(crate) fn stream_exists(stream: &str) -> Status {
    hs_status(
        Code::AlreadyExists,
        201,
        "StreamExists",
        format!("stream {stream:?} already exists; pick another name or delete it first"),
    )
}

pub(crate) fn stream_has_subscriptions(stream: &str, subs: &[String]) -> Status {
    hs_status(
        Code::FailedPrecondition,
        202,
        "FoundSubscription",
        format!(
            "stream {stream:?} is used by subscriptions {subs:?}; delete them first or pass force=true"
        ),
    )
}

pub(crate) fn invalid_replica_factor(n: u32) -> Status {
    hs_status(
        Code::InvalidArgument,
        203,
        "InvalidReplicaFactor",
        format!("replicationFactor {n} is invalid; it must be at least 1"),
    )
}

pub(crate) fn invalid_identifier(what: &str, name: &str, why: &str) -> Status {
    hs_status(
        Code::InvalidArgument,
        204,
        "InvalidObjectIdentifier",
        format!(
            "invalid {what} {name:?}: {why}; use 1-255 characters, a letter first, then letters, digits, '-' or '_'"
        ),
    )
}

pub(crate) fn invalid_shard_count(n: u32) -> Status {
    hs_status(
        Code::InvalidArgument,
        205,
        "InvalidShardCount",
        format!(
            "shardCount {n} is invalid; it must be between 1 and {}",
            crate::service::MAX_SHARDS
        ),
    )
}

pub(crate) fn empty_batch(stream: &str, shard: u64, why: &str) -> Status {
    hs_status(
        Code::InvalidArgument,
        206,
        "EmptyBatchedRecord",
        format!(
            "append to stream {stream:?} shard {shard} has an empty batch ({why}); send at least one record"
        ),
    )
}

pub(crate) fn invalid_record_size(stream: &str, shard: u64, size: usize, max: usize) -> Status {
    hs_status(
        Code::InvalidArgument,
        207,
        "InvalidRecordSize",
        format!(
            "append to stream {stream:?} shard {shard}: batch payload of {size} bytes exceeds the {max}-byte limit; send smaller batches"
        ),
    )
}

pub(crate) fn shard_not_found(stream: Option<&str>, shard: u64) -> Status {
    let msg = match stream {
        Some(s) => format!(
            "shard {shard} does not belong to stream {s:?}; list its shards with ListShards"
        ),
        None => format!("shard {shard} does not exist; list a stream's shards with ListShards"),
    };
    hs_status(Code::NotFound, 208, "ShardNotFound", msg)
}

pub(crate) fn subscription_not_found(id: &str) -> Status {
    hs_status(
        Code::NotFound,
        300,
        "SubscriptionNotFound",
        format!("subscription {id:?} does not exist; create it first (CreateSubscription)"),
    )
}

pub(crate) fn subscription_exists(id: &str) -> Status {
    hs_status(
        Code::AlreadyExists,
        301,
        "SubscriptionExists",
        format!("subscription {id:?} already exists; pick another id or delete it first"),
    )
}

pub(crate) fn reader_exists(id: &str) -> Status {
    hs_status(
        Code::AlreadyExists,
        900,
        "ShardReaderExists",
        format!("shard reader {id:?} already exists; use a fresh reader id"),
    )
}

pub(crate) fn conflict_reader_offset(reader_shard: u64, offset_shard: u64) -> Status {
    hs_status(
        Code::InvalidArgument,
        901,
        "ConflictShardReaderOffset",
        format!(
            "the start record id belongs to shard {offset_shard}, not to the reader's shard {reader_shard}"
        ),
    )
}

pub(crate) fn reader_not_found(id: &str) -> Status {
    hs_status(
        Code::NotFound,
        902,
        "ShardReaderNotFound",
        format!(
            "shard reader {id:?} does not exist (deleted, or never created); create it with CreateShardReader"
        ),
    )
}

pub(crate) fn invalid_argument(message: String) -> Status {
    hs_status(Code::InvalidArgument, 0, "InvalidArgument", message)
}

pub(crate) fn internal(what: &str, e: &dyn std::fmt::Display) -> Status {
    hs_status(
        Code::Internal,
        0,
        "InternalError",
        format!("{what}: {e}; check the server's data directory (disk full, permissions)"),
    )
}
