//! The session lock's Lua scripts, each with its KEYS and ARGV in order, and how they are
//! sent: `EVALSHA`, preloaded at start, `EVAL` once after a `NOSCRIPT`.
//!
//! Every key a script touches is declared in its KEYS and carries the session id as a hash
//! tag, so each script runs in one Redis Cluster slot. What each step means is told in
//! [`crate::session_lock`], which is the only caller.

use fred::{
    clients::Pool,
    interfaces::{ClientLike, LuaInterface},
};

/// Lets go of the lock (`KEYS[$l]`) that the releaser's token (`ARGV[$t]`) holds: hands it
/// to the first waiter that registered in the marker (`KEYS[$w]`), with a fresh lease
/// (`ARGV[$lease]`), and wakes it by publishing the session id (`ARGV[$i]`) on the channel
/// (`ARGV[$c]`); frees it when nobody waits. Never to the releaser itself: a mark naming it
/// is stale (it took the lock since), and handing it back would leave the lock to nobody
/// for a whole lease.
macro_rules! let_go {
    ($l:literal, $w:literal, $t:literal, $lease:literal, $c:literal, $i:literal) => {
        concat!(
            "local nxt = redis.call('get', KEYS[",
            $w,
            "]) ",
            "if nxt == ARGV[",
            $t,
            "] then redis.call('del', KEYS[",
            $w,
            "]) nxt = false end ",
            "if nxt then ",
            "redis.call('set', KEYS[",
            $l,
            "], nxt, 'PX', ARGV[",
            $lease,
            "]) ",
            "redis.call('del', KEYS[",
            $w,
            "]) ",
            "redis.call('publish', ARGV[",
            $c,
            "], ARGV[",
            $i,
            "]) ",
            "else redis.call('del', KEYS[",
            $l,
            "]) end "
        )
    };
}

/// How long a waiter's place in line lives; every retry of its owner renews it.
pub(crate) const WAITING_MS: &str = "300";

/// KEYS: lock, record, tombstone, waiting. ARGV: token, lease ms, waiting ms, in line (1
/// when an earlier attempt may have put the token in line).
/// `{1, record}` when taken (or handed to us by the previous holder), `{0}` when someone
/// holds it (then we are in line, if nobody is ahead), `{-1}` when we gave up already.
/// Taking a free lock also takes our token out of line: a mark naming the holder would make
/// its own release hand the lock back to it.
const ACQUIRE_LUA: &str = concat!(
    // The common case first: a free lock, taken in one command.
    "if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then ",
    "if redis.call('exists', KEYS[3]) == 1 then redis.call('del', KEYS[1]) return {-1} end ",
    "if ARGV[4] == '1' and redis.call('get', KEYS[4]) == ARGV[1] then ",
    "redis.call('del', KEYS[4]) end ",
    "return {1, redis.call('get', KEYS[2])} end ",
    "if redis.call('get', KEYS[1]) == ARGV[1] then ",
    "if redis.call('exists', KEYS[3]) == 1 then return {-1} end ",
    "return {1, redis.call('get', KEYS[2])} end ",
    "local first = redis.call('get', KEYS[4]) ",
    "if (not first) or first == ARGV[1] then ",
    "redis.call('set', KEYS[4], ARGV[1], 'PX', ARGV[3]) end ",
    "return {0}"
);
/// The fence of a write script, first in it: when `ARGV[$n]` (a count, `0` for none) asks for
/// more replicas in sync (`state=online` in `INFO replication`) than this server has, the
/// script returns `-1` having written nothing. A master whose replica was promoted has lost
/// it, so it refuses before anyone told it of the failover ([`crate::replication`]).
macro_rules! fence {
    ($n:literal) => {
        concat!(
            "local need = tonumber(ARGV[",
            $n,
            "]) ",
            "if need > 0 then local online = 0 ",
            "for _ in string.gmatch(redis.call('info', 'replication'), 'state=online') do ",
            "online = online + 1 end ",
            "if online < need then return -1 end end "
        )
    };
}

/// The retry guard of a write script, after its fence: when the save id `ARGV[$id]` is on
/// the list of recent saves (`KEYS[$saves]`), this is a retry of a save that ran (its answer
/// was lost with the connection): answers `1` (applied) at once. The list's expiry is renewed
/// (`ARGV[$ttl]`), a write, so that a `WAIT` after the retry covers the original write too.
macro_rules! applied_already {
    ($saves:literal, $id:literal, $ttl:literal) => {
        concat!(
            "for _, s in ipairs(redis.call('lrange', KEYS[",
            $saves,
            "], 0, -1)) do if s == ARGV[",
            $id,
            "] then redis.call('pexpire', KEYS[",
            $saves,
            "], ARGV[",
            $ttl,
            "]) return 1 end end "
        )
    };
}

/// KEYS: record, lock, saves, waiting. ARGV: bytes, expiry ms, token, last index of the saves
/// kept (a string: Lua arithmetic would format a float for every call), saves ttl ms, keep (1:
/// renew the lease for a hand-off, 0: let go), lease ms, channel, id, save id, replicas needed.
/// 1 written (now or by an earlier try of the same save), 0 the lock is not ours (nothing
/// written), 2 the record is gone (not revived), -1 fenced (nothing written).
const SAVE_LUA: &str = concat!(
    fence!("11"),
    // Not (or no longer) our lock: a retry of this save that ran already finds its id.
    "if redis.call('get', KEYS[2]) ~= ARGV[3] then ",
    applied_already!("3", "10", "5"),
    "return 0 end ",
    // XX: a record deleted meanwhile is not revived.
    "if not redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2], 'XX') then ",
    let_go!("2", "4", "3", "7", "8", "9"),
    "return 2 end ",
    "redis.call('lpush', KEYS[3], ARGV[10]) ",
    "redis.call('ltrim', KEYS[3], 0, ARGV[4]) ",
    "redis.call('pexpire', KEYS[3], ARGV[5]) ",
    "if ARGV[6] == '1' then redis.call('pexpire', KEYS[2], ARGV[7]) else ",
    let_go!("2", "4", "3", "7", "8", "9"),
    "end return 1"
);
/// KEYS: lock, saves, waiting. ARGV: token, save id, saves kept, lease ms, channel, id,
/// replicas needed. 0 not applied (and now never will be), 1 applied, 2 cannot tell, -1
/// fenced (asked nothing: ask again). Either way the lock is no longer ours afterwards.
const RESOLVE_LUA: &str = concat!(
    fence!("7"),
    "local saves = redis.call('lrange', KEYS[2], 0, -1) ",
    "local applied = false ",
    "for i = 1, #saves do if saves[i] == ARGV[2] then applied = true end end ",
    "local ours = redis.call('get', KEYS[1]) == ARGV[1] ",
    "if ours then ",
    let_go!("1", "3", "1", "4", "5", "6"),
    "end ",
    "if applied then return 1 end ",
    "if ours or #saves < tonumber(ARGV[3]) then return 0 end return 2"
);
/// KEYS: record, lock, waiting. ARGV: token, lease ms, channel, id, replicas needed.
/// 1 deleted (or already gone: a retry of a delete that ran), 0 the lock is not ours and the
/// record is still there, -1 fenced (nothing written).
const DELETE_HELD_LUA: &str = concat!(
    fence!("5"),
    "if redis.call('get', KEYS[2]) == ARGV[1] then redis.call('del', KEYS[1]) ",
    let_go!("2", "3", "1", "2", "3", "4"),
    "return 1 end ",
    "if redis.call('exists', KEYS[1]) == 0 then return 1 end return 0"
);
/// KEYS: lock, waiting. ARGV: token, lease ms, channel, id. Lets go only of our own lock.
const RELEASE_LUA: &str = concat!(
    "if redis.call('get', KEYS[1]) == ARGV[1] then ",
    let_go!("1", "2", "1", "2", "3", "4"),
    "return 1 end return 0"
);
/// KEYS: lock, tombstone, waiting. ARGV: token, tombstone ms, lease ms, channel, id.
/// Leaves the line, lets go of the lock if it is (or was handed) ours, else makes a late
/// acquire refuse.
const ABANDON_LUA: &str = concat!(
    "if redis.call('get', KEYS[3]) == ARGV[1] then redis.call('del', KEYS[3]) end ",
    "if redis.call('get', KEYS[1]) == ARGV[1] then ",
    let_go!("1", "3", "1", "3", "4", "5"),
    "return 1 end ",
    "redis.call('set', KEYS[2], '1', 'PX', ARGV[2]) return 0"
);
/// KEYS: record, lock. ARGV: the record's bytes as the request read them, the new bytes,
/// expiry ms. The optimistic write against one Redis without retries ([`CAS_SAVE_LUA`] less
/// its fence and its ids: the many-sessions benchmark's hot path, two commands and the
/// fewest arguments). 1 written, 0 changed or locked meanwhile (nothing written), 2 the
/// record is gone.
const CAS_SAVE_PLAIN_LUA: &str = concat!(
    "local cur = redis.call('mget', KEYS[1], KEYS[2]) ",
    "if not cur[1] then return 2 end ",
    "if cur[1] ~= ARGV[1] or cur[2] then return 0 end ",
    "redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1"
);
/// KEYS: record, lock, saves. ARGV: the record's bytes as the request read them, the new
/// bytes, expiry ms, save id, last index of the saves kept, saves ttl ms, replicas needed,
/// record the save id (1 when the client retries commands: `REDIS_RETRY_WRITES`).
/// The optimistic write: compare-and-set, refused while anyone holds the lock.
/// 1 written (now or by an earlier try of the same save), 0 changed or locked meanwhile
/// (nothing written), 2 the record is gone, -1 fenced (nothing written).
/// A retry finds its own bytes (nothing written since: the expiry is renewed, a write, so a
/// `WAIT` after it covers the first try), or, when ids are recorded, its id among the recent
/// saves (written over since). Without retries the list costs nothing: the common path runs
/// two commands.
const CAS_SAVE_LUA: &str = concat!(
    fence!("7"),
    // One call reads both (a missing key reads as false).
    "local cur = redis.call('mget', KEYS[1], KEYS[2]) ",
    "if cur[1] == ARGV[2] then redis.call('pexpire', KEYS[1], ARGV[3]) return 1 end ",
    "if not cur[1] then return 2 end ",
    "if cur[1] ~= ARGV[1] or cur[2] then ",
    "if ARGV[8] == '1' then ",
    applied_already!("3", "4", "6"),
    "end return 0 end ",
    "redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3]) ",
    "if ARGV[8] == '1' then ",
    "redis.call('lpush', KEYS[3], ARGV[4]) ",
    "redis.call('ltrim', KEYS[3], 0, ARGV[5]) ",
    "redis.call('pexpire', KEYS[3], ARGV[6]) end return 1"
);
/// KEYS: record. ARGV: the bytes read, the bytes written, replicas needed. After an
/// optimistic write whose answer was lost: 1 applied (the record holds what it wrote); 0 not
/// applied, and now never will be (the record still holds what it read: one trailing space is
/// appended, which changes no decoded value but fails the late compare-and-set; or it was
/// appended already, by an earlier try of this resolve); 2 cannot tell; -1 fenced (ask again).
const CAS_RESOLVE_LUA: &str = concat!(
    fence!("3"),
    "local cur = redis.call('get', KEYS[1]) ",
    "if cur == ARGV[2] then return 1 end ",
    "if cur == ARGV[1] then redis.call('set', KEYS[1], ARGV[1] .. ' ', 'KEEPTTL') return 0 end ",
    "if cur == ARGV[1] .. ' ' then return 0 end ",
    "return 2"
);
/// KEYS: lock. ARGV: token, lease ms. Extends the lease only if the lock is still ours.
const RENEW_LUA: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then \
     return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";

/// A script and its SHA1: sent as `EVALSHA`, so Redis neither receives nor hashes the body
/// on every call. On `NOSCRIPT` (a restarted or failed-over Redis) it falls back to `EVAL`,
/// which caches it again; `NOSCRIPT` means the script did not run, so the fallback cannot
/// apply anything twice.
pub(crate) struct Lua {
    text: &'static str,
    sha: std::sync::OnceLock<String>,
}

impl Lua {
    const fn new(text: &'static str) -> Lua {
        Lua {
            text,
            sha: std::sync::OnceLock::new(),
        }
    }

    fn sha(&self) -> &str {
        self.sha.get_or_init(|| fred::util::sha1_hash(self.text))
    }

    /// Runs the script with the keys and arguments `call` builds. `call` runs once, and a
    /// second time only after a `NOSCRIPT`, so the common case copies nothing.
    pub(crate) async fn run<C, R, K, V>(
        &self,
        client: &C,
        call: impl Fn() -> (K, V),
    ) -> Result<R, fred::error::Error>
    where
        C: LuaInterface + Sync,
        R: fred::types::FromValue,
        K: Into<fred::types::MultipleKeys> + Send,
        V: TryInto<fred::types::MultipleValues> + Send,
        V::Error: Into<fred::error::Error> + Send,
    {
        let (keys, args) = call();
        match client.evalsha(self.sha(), keys, args).await {
            Err(err) if err.details().starts_with("NOSCRIPT") => {
                let (keys, args) = call();
                client.eval(self.text, keys, args).await
            }
            answer => answer,
        }
    }
}

pub(crate) static ACQUIRE: Lua = Lua::new(ACQUIRE_LUA);
pub(crate) static SAVE: Lua = Lua::new(SAVE_LUA);
pub(crate) static RESOLVE: Lua = Lua::new(RESOLVE_LUA);
pub(crate) static DELETE_HELD: Lua = Lua::new(DELETE_HELD_LUA);
pub(crate) static RELEASE: Lua = Lua::new(RELEASE_LUA);
pub(crate) static ABANDON: Lua = Lua::new(ABANDON_LUA);
pub(crate) static RENEW: Lua = Lua::new(RENEW_LUA);
pub(crate) static CAS_SAVE: Lua = Lua::new(CAS_SAVE_LUA);
pub(crate) static CAS_SAVE_PLAIN: Lua = Lua::new(CAS_SAVE_PLAIN_LUA);
pub(crate) static CAS_RESOLVE: Lua = Lua::new(CAS_RESOLVE_LUA);

/// Every script, in the order they are preloaded.
const ALL: [&Lua; 10] = [
    &ACQUIRE,
    &SAVE,
    &RESOLVE,
    &DELETE_HELD,
    &RELEASE,
    &ABANDON,
    &RENEW,
    &CAS_SAVE,
    &CAS_SAVE_PLAIN,
    &CAS_RESOLVE,
];

/// The SHA1 of every script the app sends: after a replica's preload, `SCRIPT EXISTS` finds
/// them all, and from then on every call of them is an `EVALSHA`.
pub fn lock_script_shas() -> Vec<String> {
    ALL.iter().map(|lua| lua.sha().to_owned()).collect()
}

/// One Lua script as Redis receives it: `EVALSHA <sha> …`, or `EVAL <text> …` after a
/// `NOSCRIPT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// Its SHA1, as `EVALSHA` names it.
    pub sha: String,
    /// Its body, as `EVAL` sends it.
    pub text: &'static str,
}

impl Script {
    fn of(lua: &Lua) -> Script {
        Script {
            sha: lua.sha().to_owned(),
            text: lua.text,
        }
    }
}

/// The scripts of a session write that a relay of the app's Redis traffic needs to recognise:
/// the load of a locked write and the three ways of saving a record. (The optimistic load is
/// a plain `MGET` of the record and the lock; the last-write-wins path, `SESSION_LOCK=off`,
/// loads with `GET` and saves with `SET … XX`.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionScripts {
    /// Takes the lock and reads the record: the load of a locked write.
    pub acquire: Script,
    /// The save under the lock (fenced by the lock's token).
    pub save: Script,
    /// The optimistic compare-and-set that records its save id (`REDIS_RETRY_WRITES` on, or
    /// writes that wait for replicas).
    pub compare_and_set: Script,
    /// The optimistic compare-and-set without a save id (`REDIS_RETRY_WRITES` off).
    pub compare_and_set_unrecorded: Script,
}

impl SessionScripts {
    /// The three that save a record, for a relay that treats them alike.
    pub fn saves(&self) -> [&Script; 3] {
        [
            &self.save,
            &self.compare_and_set,
            &self.compare_and_set_unrecorded,
        ]
    }
}

/// The scripts of a session write.
pub fn session_scripts() -> SessionScripts {
    SessionScripts {
        acquire: Script::of(&ACQUIRE),
        save: Script::of(&SAVE),
        compare_and_set: Script::of(&CAS_SAVE),
        compare_and_set_unrecorded: Script::of(&CAS_SAVE_PLAIN),
    }
}

/// Loads every script into Redis (every master, in a cluster) once it answers, so even the
/// first calls go as `EVALSHA`.
pub fn preload(pool: &Pool) {
    let client = pool.next().clone();
    tokio::spawn(async move {
        let _ = client.wait_for_connect().await;
        for lua in ALL {
            if let Err(err) = client.script_load_cluster::<(), _>(lua.text).await {
                tracing::debug!(%err, "preloading a lock script failed; EVAL will load it");
            }
        }
    });
}
