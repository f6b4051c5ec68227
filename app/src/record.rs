//! How a session record is kept in Redis: its bytes and its expiry, relative to now on
//! Redis's clock.
//!
//! Two codecs (`SESSION_CODEC`):
//! - **json** (the default): readable in `redis-cli GET`, like the original Express demo's
//!   records: `{"id":"…","expires":"2026-11-25T21:44:03.12Z","data":{"views":13,"history":[…]}}`;
//! - **msgpack**: tower-sessions-redis-store's format, smaller.
//!
//! Reading does not depend on the setting: a JSON record starts with `{`, a MessagePack one
//! never does, so records written under either codec are read, and switching codec loses no
//! session. One place for the format, so the plain store, the lock's scripts and the group
//! commit all write and read records the same way.

use std::{collections::HashMap, str::FromStr, time::Duration};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tower_sessions::{
    session::{Id, Record},
    session_store,
};

use crate::config::SessionCodec;

/// The JSON shape of a record: the id as the cookie carries it, the expiry as RFC 3339.
/// Written from borrowed parts (`&Data`), read into owned ones, so a save copies nothing.
#[derive(Serialize, Deserialize)]
struct JsonRecord<D> {
    id: String,
    #[serde(with = "time::serde::rfc3339")]
    expires: OffsetDateTime,
    data: D,
}

/// The record's bytes in `codec`.
pub fn encode(record: &Record, codec: SessionCodec) -> session_store::Result<Vec<u8>> {
    let encoded = match codec {
        SessionCodec::Msgpack => rmp_serde::to_vec(record).map_err(|e| e.to_string()),
        SessionCodec::Json => serde_json::to_vec(&JsonRecord {
            id: record.id.to_string(),
            expires: record.expiry_date,
            data: &record.data,
        })
        .map_err(|e| e.to_string()),
    };
    encoded.map_err(session_store::Error::Encode)
}

/// A write's bytes: `record` renewed to expire `ttl` from now, encoded in `codec`; `None`
/// (logged) for a record that cannot be encoded, which is a bug: nothing is written.
pub fn renewed(record: &mut Record, ttl: Duration, codec: SessionCodec) -> Option<Vec<u8>> {
    record.expiry_date = OffsetDateTime::now_utc() + ttl;
    match encode(record, codec) {
        Ok(bytes) => Some(bytes),
        Err(err) => {
            tracing::error!(%err, "session record not encodable; nothing written");
            None
        }
    }
}

/// The record in `bytes`, whichever codec wrote it; one that cannot be decoded (another
/// format, a hand edit) is treated as absent, so the user gets a fresh session and the log a
/// warning, never a 500.
pub fn decode(bytes: &[u8]) -> Option<Record> {
    let json = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let decoded = if json {
        serde_json::from_slice::<JsonRecord<HashMap<String, serde_json::Value>>>(bytes)
            .map_err(|e| e.to_string())
            .and_then(|r| {
                Ok(Record {
                    id: Id::from_str(&r.id).map_err(|e| e.to_string())?,
                    data: r.data,
                    expiry_date: r.expires,
                })
            })
    } else {
        rmp_serde::from_slice(bytes).map_err(|e| e.to_string())
    };
    match decoded {
        Ok(record) => Some(record),
        Err(err) => {
            tracing::warn!(%err, json, "undecodable session record; starting a fresh session");
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

    fn sample() -> Record {
        Record {
            id: Id::default(),
            data: HashMap::from([
                ("views".to_owned(), 13.into()),
                ("history".to_owned(), serde_json::json!(["app-1", "app-2"])),
            ]),
            // Whole seconds: RFC 3339 keeps nanoseconds too, but compare simply.
            expiry_date: OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time"),
        }
    }

    #[test]
    fn a_record_fenced_with_a_trailing_space_still_decodes_the_same() {
        // An optimistic write whose answer was lost is fenced by appending one space to the
        // record it read (see `lock_scripts`): the value must read exactly as before.
        for codec in [SessionCodec::Json, SessionCodec::Msgpack] {
            let record = sample();
            let mut bytes = encode(&record, codec).expect("encode");
            bytes.push(b' ');
            let decoded = decode(&bytes).expect("decodes");
            assert_eq!(decoded.id, record.id, "{codec:?}");
            assert_eq!(decoded.data, record.data, "{codec:?}");
            assert_eq!(decoded.expiry_date, record.expiry_date, "{codec:?}");
        }
    }

    #[test]
    fn either_codec_reads_what_the_other_wrote() {
        let record = sample();
        for codec in [SessionCodec::Json, SessionCodec::Msgpack] {
            let bytes = encode(&record, codec).expect("encodes");
            assert_eq!(decode(&bytes), Some(record.clone()), "{codec:?}");
        }
    }

    #[test]
    fn json_records_are_readable() {
        let bytes = encode(&sample(), SessionCodec::Json).expect("encodes");
        let text = String::from_utf8(bytes).expect("utf-8");
        assert!(text.starts_with(r#"{"id":""#), "{text}");
        assert!(
            text.contains(r#""expires":"2027-01-15T08:00:00Z""#),
            "{text}"
        );
        assert!(text.contains(r#""views":13"#), "{text}");
        assert!(text.contains(r#""history":["app-1","app-2"]"#), "{text}");
    }

    #[test]
    fn garbage_reads_as_absent() {
        assert!(decode(b"not msgpack").is_none());
        assert!(decode(b"{\"id\":\"not an id\"}").is_none());
        assert!(decode(b"{truncated").is_none());
        assert!(decode(b"").is_none());
    }
}
