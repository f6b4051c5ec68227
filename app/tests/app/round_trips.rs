//! Redis round trips per request, as Redis's `MONITOR` sees them: a read costs one, a write
//! two, and a locked write two as well (the lock rides along with the GET and the SET).
//! Commands run inside a Lua script show up as `[0 lua]` lines and travel in their
//! `EVALSHA`'s round trip, so they are not counted; neither is the handshake of a pool
//! connection that opens meanwhile. Counts, not timings.

use std::{
    io::Read,
    process::{Command, Stdio},
    time::Duration,
};

use crate::helpers::{Cluster, increment, read, user};

/// Runs `requests`, and returns the client commands Redis received meanwhile.
async fn commands_during<Fut: std::future::Future<Output = ()>>(
    cluster: &Cluster,
    requests: Fut,
) -> Vec<String> {
    let mut monitor = Command::new("redis-cli")
        .args(["-p", &cluster.redis.port().to_string(), "MONITOR"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("redis-cli MONITOR");
    // MONITOR answers OK once it is subscribed; wait for that before sending traffic.
    let mut stdout = monitor.stdout.take().expect("stdout");
    let mut ok = [0u8; 3];
    stdout.read_exact(&mut ok).expect("MONITOR started");
    requests.await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    monitor.kill().expect("stop MONITOR");
    let mut out = String::new();
    stdout.read_to_string(&mut out).expect("MONITOR output");
    let _ = monitor.wait();
    out.lines()
        .filter(|line| line.contains(" 127.0.0.1:") && !line.contains("lua]"))
        .filter_map(|line| line.split('"').nth(1).map(str::to_uppercase))
        // fred's connection handshake (a pool connection may still be opening) and the lock
        // scripts' one-time SCRIPT LOAD at start: not per request.
        .filter(|command| !matches!(command.as_str(), "PING" | "CLIENT" | "INFO" | "SCRIPT"))
        .collect()
}

#[tokio::test]
async fn reads_cost_one_round_trip_writes_two_with_or_without_the_lock() {
    let cluster = Cluster::start(2, |c| {
        if c.node_name.as_deref() == Some("node-1") {
            c.session_lock = false;
        }
    })
    .await;
    let locked = cluster.replicas[0].url();
    let unlocked = cluster.replicas[1].url();
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
    let locked_writes = commands_during(&cluster, async {
        for _ in 0..n {
            increment(&client, &locked).await;
        }
    })
    .await;

    assert_eq!(reads, vec!["GET"; n], "a read is one GET");
    assert_eq!(writes, ["GET", "SET"].repeat(n), "a write is GET + SET");
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
