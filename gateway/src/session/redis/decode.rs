//! Decoding what Redis answers: script replies into sessions, and the redis
//! crate's errors into [`StoreError`]s (unreachable or not understood).

use redis::Value;

use crate::clock::UnixMillis;
use crate::session::identity::{Digest32, subject_key};
use crate::session::{CloseReason, ClosedSession, Session, StoreError};

/// A session as the scripts return it: 11 fields, plus a close reason
/// (`lua/common.lua`, WIRE).
pub(super) type Fields = Vec<String>;

pub(super) fn store_error(e: &redis::RedisError) -> StoreError {
    if e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
    {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Protocol(e.to_string())
    }
}

pub(super) fn protocol(what: &str) -> StoreError {
    StoreError::Protocol(what.to_string())
}

pub(super) fn array(v: &Value) -> Result<&[Value], StoreError> {
    match v {
        Value::Array(items) => Ok(items),
        Value::Nil => Ok(&[]),
        _ => Err(protocol("expected an array")),
    }
}

pub(super) fn text(v: &Value) -> Result<String, StoreError> {
    match v {
        Value::BulkString(b) => Ok(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Ok(s.clone()),
        Value::Int(i) => Ok(i.to_string()),
        _ => Err(protocol("expected a string")),
    }
}

pub(super) fn int(v: &Value) -> Result<i64, StoreError> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::BulkString(_) | Value::SimpleString(_) => text(v)?
            .parse()
            .map_err(|_| protocol("expected an integer")),
        _ => Err(protocol("expected an integer")),
    }
}

/// Parses a session reply (11 fields, optionally a 12th with the close
/// reason); `Nil` or an empty array is no session.
pub(super) fn session_of(
    pool: &str,
    v: &Value,
) -> Result<Option<(Session, Option<CloseReason>)>, StoreError> {
    let items = array(v)?;
    if items.is_empty() {
        return Ok(None);
    }
    let fields: Fields = items.iter().map(text).collect::<Result<_, _>>()?;
    if fields.len() < 11 {
        return Err(protocol("session reply has too few fields"));
    }
    let identity =
        Digest32::parse(&fields[1]).ok_or_else(|| protocol("bad identity in session"))?;
    let number = |s: &str| {
        s.parse::<UnixMillis>()
            .map_err(|_| protocol("bad time in session"))
    };
    let session = Session {
        id: fields[0].clone(),
        identity,
        bucket: fields[2]
            .parse()
            .map_err(|_| protocol("bad bucket in session"))?,
        issuer: fields[3].clone(),
        subject: fields[4].clone(),
        client: (!fields[5].is_empty()).then(|| fields[5].clone()),
        // Layout 2 stores only the subject key's slot: the key follows from
        // issuer and subject, as at the admission.
        subject_key: subject_key(&fields[3], &fields[4]),
        created_ms: number(&fields[7])?,
        last_seen_ms: number(&fields[8])?,
        idle_expires_ms: number(&fields[9])?,
        absolute_expires_ms: number(&fields[10])?,
        pool: pool.to_string(),
    };
    let reason = fields.get(11).map(|r| match r.as_str() {
        "absolute" => CloseReason::Absolute,
        "logout" => CloseReason::Logout,
        "backchannel" => CloseReason::Backchannel,
        "admin" => CloseReason::Admin,
        "replaced" => CloseReason::Replaced,
        _ => CloseReason::Idle,
    });
    Ok(Some((session, reason)))
}

pub(super) fn closed_list(pool: &str, v: &Value) -> Result<Vec<ClosedSession>, StoreError> {
    let mut out = Vec::new();
    for item in array(v)? {
        if let Some((session, reason)) = session_of(pool, item)? {
            out.push(ClosedSession {
                session,
                reason: reason.unwrap_or(CloseReason::Idle),
            });
        }
    }
    Ok(out)
}
