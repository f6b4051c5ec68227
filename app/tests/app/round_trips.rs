//! Redis round trips per request, as Redis's `MONITOR` sees them: a read costs one, a write
//! two, and a write with the lock on two as well: optimistic (`MGET` of the record and the
//! lock, then a compare-and-set script), or locked (the lock rides along with the GET and
//! the SET, each in one script).
//! Commands run inside a Lua script show up as `[0 lua]` lines and travel in their
//! `EVALSHA`'s round trip, so they are not counted; neither is the handshake of a pool
//! connection that opens meanwhile. Counts, not timings.

use crate::helpers::{Cluster, commands_during, increment, read, user};

#[tokio::test]
async fn reads_cost_one_round_trip_writes_two_with_or_without_the_lock() {
    let cluster = Cluster::start(3, |c| match c.node_name.as_deref() {
        Some("node-1") => c.session_lock = false,
        Some("node-2") => c.session_lock_optimistic = false,
        _ => {}
    })
    .await;
    let optimistic = cluster.replicas[0].url();
    let unlocked = cluster.replicas[1].url();
    let locked = cluster.replicas[2].url();
    let client = user();
    increment(&client, &locked).await; // open the session
    let n = 10;

    let reads = commands_during(&cluster, async {
        for _ in 0..n {
            read(&client, &locked).await;
        }
    })
    .await;
    let writes = commands_during(&cluster, async {
        for _ in 0..n {
            increment(&client, &unlocked).await;
        }
    })
    .await;
    let optimistic_writes = commands_during(&cluster, async {
        for _ in 0..n {
            increment(&client, &optimistic).await;
        }
    })
    .await;
    let locked_writes = commands_during(&cluster, async {
        for _ in 0..n {
            increment(&client, &locked).await;
        }
    })
    .await;

    assert_eq!(reads, vec!["GET"; n], "a read is one GET");
    assert_eq!(writes, ["GET", "SET"].repeat(n), "a write is GET + SET");
    assert_eq!(
        optimistic_writes,
        ["MGET", "EVALSHA"].repeat(n),
        "an optimistic write reads the record and the lock, then compares and sets"
    );
    assert_eq!(
        locked_writes,
        ["EVALSHA", "EVALSHA"].repeat(n),
        "a locked write is lock+GET in one script, then SET+unlock in another"
    );
}

#[tokio::test]
async fn locked_writes_survive_a_redis_that_forgot_its_scripts() {
    // A restarted or failed-over Redis has no scripts cached: EVALSHA answers NOSCRIPT, and
    // the script is sent whole once (it had not run, so nothing applies twice).
    let cluster = Cluster::start(1, |_| {}).await;
    let client = user();
    let url = cluster.replicas[0].url();
    increment(&client, &url).await;
    increment(&client, &url).await;
    assert_eq!(cluster.redis.cli(&["SCRIPT", "FLUSH"]), "OK");

    let after = increment(&client, &url).await;

    assert_eq!(after["views"], 3);
    assert_eq!(read(&client, &url).await["views"], 3);
}
