//! How a session record is kept in Redis: its bytes (MessagePack, the format of
//! tower-sessions-redis-store) and its expiry, relative to now on Redis's clock.
//!
//! One place for the format, so the plain store, the lock's scripts and the group commit all
//! write and read records the same way.

use std::time::Duration;

use time::OffsetDateTime;
use tower_sessions::{session::Record, session_store};

/// The record's bytes.
pub fn encode(record: &Record) -> session_store::Result<Vec<u8>> {
    rmp_serde::to_vec(record).map_err(|err| session_store::Error::Encode(err.to_string()))
}

/// The record in `bytes`; one that cannot be decoded (an older format, a hand edit) is
/// treated as absent, so the user gets a fresh session instead of a 500.
pub fn decode(bytes: &[u8]) -> Option<Record> {
    match rmp_serde::from_slice(bytes) {
        Ok(record) => Some(record),
        Err(err) => {
            tracing::warn!(%err, "undecodable session record; starting a fresh session");
            None
        }
    }
}

/// The time from now until `expiry`, rounded up to whole milliseconds, at least 1 ms: what
/// `PX` gets, so no replica's clock decides when a session ends.
pub fn ttl(expiry: OffsetDateTime) -> Duration {
    let micros = (expiry - OffsetDateTime::now_utc()).whole_microseconds();
    let millis = u64::try_from((micros + 999) / 1000).unwrap_or(0);
    Duration::from_millis(millis.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_is_relative_and_rounds_up() {
        let now = OffsetDateTime::now_utc();
        let one_second = ttl(now + time::Duration::seconds(1));
        assert!(one_second <= Duration::from_secs(1), "{one_second:?}");
        assert!(one_second >= Duration::from_millis(990), "{one_second:?}");
        assert_eq!(
            ttl(now - time::Duration::seconds(5)),
            Duration::from_millis(1)
        );
    }

    #[test]
    fn a_record_survives_the_round_trip_and_garbage_reads_as_absent() {
        let record = Record {
            id: tower_sessions::session::Id::default(),
            data: std::collections::HashMap::from([("views".to_owned(), 3.into())]),
            expiry_date: OffsetDateTime::now_utc(),
        };
        let bytes = encode(&record).expect("encodes");
        assert_eq!(decode(&bytes).map(|r| r.id), Some(record.id));
        assert!(decode(b"not msgpack").is_none());
    }
}
