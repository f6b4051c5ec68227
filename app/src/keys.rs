//! Every Redis key and pub/sub channel the app uses, in one place. All of them start with
//! `SESSION_KEY_PREFIX` (default `session:`), so they share one namespace in a shared Redis,
//! `redis-cli --scan --pattern 'session:*'` lists them, and one ACL key pattern (`~session:*`)
//! and one channel pattern (`&session:*`) cover them.
//!
//! The keys of one session carry its id as a hash tag (`session:{id}`, `session:{id}:lock`),
//! so in Redis Cluster the record, its lock and the lock's helper keys live in one slot and
//! one Lua script may touch them all.

use std::{fmt::Display, sync::Arc};

/// The default `SESSION_KEY_PREFIX`.
pub const DEFAULT_PREFIX: &str = "session:";

/// What a session's lock key adds to its record key.
const LOCK_SUFFIX: &str = ":lock";

/// The key and channel names under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: Arc<str>,
    channel: Arc<str>,
}

impl Default for Keys {
    fn default() -> Keys {
        Keys::unchecked(DEFAULT_PREFIX)
    }
}

impl Keys {
    /// The names under `prefix`; refuses a prefix that is empty or has `{`, `}`, whitespace
    /// or control characters (a brace would break the hash tag, a space the ACL pattern).
    pub fn new(prefix: &str) -> Result<Keys, String> {
        if prefix.is_empty() {
            return Err("must not be empty".to_owned());
        }
        if let Some(bad) = prefix
            .chars()
            .find(|c| matches!(c, '{' | '}') || c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "`{prefix}` must not contain {bad:?} (no braces, whitespace or control characters)"
            ));
        }
        Ok(Keys::unchecked(prefix))
    }

    fn unchecked(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.into(),
            channel: format!("{prefix}lock-free").into(),
        }
    }

    /// The prefix itself.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Session `id`'s record: `session:{id}`.
    pub fn record(&self, id: impl Display) -> String {
        format!("{}{{{id}}}", self.prefix)
    }

    /// Session `id`'s record and lock keys, with the id encoded once.
    pub fn record_and_lock(&self, id: impl Display) -> (String, String) {
        let record = self.record(id);
        let lock = record.clone() + LOCK_SUFFIX;
        (record, lock)
    }

    /// Session `id`'s lock: `session:{id}:lock`.
    pub fn lock(&self, id: impl Display) -> String {
        self.record(id) + LOCK_SUFFIX
    }

    /// The ids of session `id`'s recent saves, for resolving a save whose answer was lost.
    pub fn saves(&self, id: impl Display) -> String {
        format!("{}{{{id}}}:saves", self.prefix)
    }

    /// The token next in line for session `id`'s lock.
    pub fn waiting(&self, id: impl Display) -> String {
        format!("{}{{{id}}}:waiting", self.prefix)
    }

    /// The tombstone of an acquire with `token` whose answer was lost.
    pub fn tombstone(&self, id: impl Display, token: &str) -> String {
        format!("{}{{{id}}}:abandoned:{token}", self.prefix)
    }

    /// The pub/sub channel on which freed locks are announced (messages are session ids).
    pub fn channel(&self) -> &str {
        &self.channel
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_starts_with_the_prefix_and_shares_the_sessions_hash_tag() {
        let keys = Keys::new("oauth.session:").expect("valid");
        let names = [
            keys.record("abc"),
            keys.lock("abc"),
            keys.saves("abc"),
            keys.waiting("abc"),
            keys.tombstone("abc", "t1"),
        ];
        for name in &names {
            assert!(name.starts_with("oauth.session:{abc}"), "{name}");
        }
        assert_eq!(keys.record("abc"), "oauth.session:{abc}");
        assert_eq!(keys.channel(), "oauth.session:lock-free");
        assert_eq!(Keys::default().lock("x"), "session:{x}:lock");
    }

    #[test]
    fn a_prefix_that_would_break_a_hash_tag_or_an_acl_pattern_is_refused() {
        for bad in ["", "a{b", "a}b", "has space", "tab\t", "nl\n"] {
            assert!(Keys::new(bad).is_err(), "{bad:?}");
        }
        assert!(Keys::new("app-1.sessions:").is_ok());
    }
}
