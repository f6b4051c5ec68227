//! One hot session: its requests on one replica are served first come, first served; a
//! request that waits on the same replica gets the lock handed over (one round trip for its
//! write); a flooded replica cannot keep other replicas' requests out beyond the hand-off
//! budget; and a replica killed while it holds the session loses nothing.

use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::helpers::{
    Cluster, Slow, app_process, commands_during, metric, open_session, plain, views_of,
};

/// `POST /api/session/views` on `base` with `cookie`; the count it answered.
async fn increment(base: &str, cookie: &str) -> Result<u64, String> {
    let res = plain()
        .post(format!("{base}/api/session/views"))
        .header("cookie", cookie)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if res.status() != 200 {
        return Err(format!("HTTP {}", res.status()));
    }
    let json: serde_json::Value = res.json().await.map_err(|e| e.to_string())?;
    json["views"].as_u64().ok_or_else(|| "no views".to_owned())
}

#[tokio::test]
async fn requests_of_one_session_on_one_replica_are_served_in_arrival_order() {
    // Arrange: each write takes 100 ms, so the next ones queue behind it.
    let cluster =
        Cluster::start_slow(1, |_| Some(Slow::Loads(Duration::from_millis(100))), |_| {}).await;
    let (cookie, _) = open_session(&cluster, "/api/session/views").await;
    let base = cluster.replicas[0].url();

    // Act: six requests, sent 30 ms apart.
    let mut sent = Vec::new();
    for _ in 0..6 {
        let (base, cookie) = (base.clone(), cookie.clone());
        sent.push(tokio::spawn(async move { increment(&base, &cookie).await }));
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let mut answers = Vec::new();
    for request in sent {
        answers.push(request.await.expect("task").expect("answered"));
    }

    // Assert: the n-th to arrive was the n-th to count.
    assert_eq!(answers, [2, 3, 4, 5, 6, 7]);
}

/// Two writes of one session on one replica, the second arriving while the first holds the
/// lock; returns their answers, the Redis round trips `MONITOR` saw, and the hand-offs.
/// The optimistic first try is off: the first write must hold the lock for it to be handed
/// over (with it on, the first write takes no lock, and the second takes it from Redis).
async fn two_overlapping_writes(group_commit: bool) -> ((u64, u64), Vec<String>, f64) {
    let cluster = Cluster::start_slow(
        1,
        |_| Some(Slow::Loads(Duration::from_millis(200))),
        |c| {
            c.session_lock_group_commit = group_commit;
            c.session_lock_optimistic = false;
        },
    )
    .await;
    let (cookie, _) = open_session(&cluster, "/api/session/views").await;
    let base = cluster.replicas[0].url();
    let mut answers = (0, 0);
    let commands = commands_during(&cluster, async {
        let first = tokio::spawn({
            let (base, cookie) = (base.clone(), cookie.clone());
            async move { increment(&base, &cookie).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let second = increment(&base, &cookie).await.expect("second");
        answers = (first.await.expect("task").expect("first"), second);
    })
    .await;
    let metrics = plain()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    (
        answers,
        commands,
        metric(&metrics, "session_lock_hand_offs_total"),
    )
}

#[tokio::test]
async fn a_write_handed_over_on_the_same_replica_costs_one_round_trip() {
    // Acquire, save kept for the hand-off, save released: 3 round trips for 2 writes.
    let (answers, commands, hand_offs) = two_overlapping_writes(false).await;

    assert_eq!(answers, (2, 3));
    assert_eq!(commands, ["EVALSHA", "EVALSHA", "EVALSHA"]);
    assert_eq!(hand_offs, 1.0);
}

#[tokio::test]
async fn with_group_commit_two_queued_writes_share_one_write() {
    // Acquire, then one save that carries both changes: 2 round trips for 2 writes, and the
    // first is answered only after that save.
    let (answers, commands, hand_offs) = two_overlapping_writes(true).await;

    assert_eq!(answers, (2, 3));
    assert_eq!(commands, ["EVALSHA", "EVALSHA"]);
    assert_eq!(hand_offs, 1.0);
}

/// Floods replica 0 with `flood` writes of one session, and sends one write to replica 1
/// once the flood holds the lock; returns the count replica 1's write answered.
async fn other_replica_during_a_flood(hand_offs: u32, flood: usize) -> u64 {
    let cluster = Cluster::start_slow(
        2,
        |_| Some(Slow::LoadsAndSaves(Duration::from_millis(15))),
        |c| c.session_lock_handoffs = hand_offs,
    )
    .await;
    let (cookie, _) = open_session(&cluster, "/api/session/views").await;
    let (a, b) = (cluster.replicas[0].url(), cluster.replicas[1].url());
    let flooding: Vec<_> = (0..flood)
        .map(|_| {
            let (a, cookie) = (a.clone(), cookie.clone());
            tokio::spawn(async move { increment(&a, &cookie).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let other = increment(&b, &cookie).await.expect("replica 1 served");
    for f in flooding {
        f.await.expect("task").expect("flood request served");
    }
    assert_eq!(views_of(&cluster, &cookie).await, 1 + flood as u64 + 1);
    other
}

#[tokio::test]
async fn a_flooded_replica_cannot_keep_another_replica_out_beyond_the_hand_off_budget() {
    // With an unbounded budget replica 1 waits for the whole flood; with 2 hand-offs in a
    // row it gets in after a few of the flood's writes.
    let flood = 24;
    let unbounded = other_replica_during_a_flood(1000, flood).await;
    let bounded = other_replica_during_a_flood(2, flood).await;

    assert!(
        unbounded >= flood as u64,
        "unbounded: served at {unbounded}"
    );
    assert!(
        bounded <= 12,
        "bounded: served at {bounded} of {}",
        flood + 2
    );
}

#[tokio::test]
async fn a_replica_killed_while_holding_a_hot_session_loses_nothing() {
    // Arrange: replica `victim` is a real process (so it can be SIGKILLed) with a 1 s lease;
    // two in-process replicas share the same Redis.
    let cluster = Cluster::start(2, |c| c.session_lock_lease = Duration::from_millis(1000)).await;
    let (mut victim, victim_url) = app_process(
        &cluster,
        "victim",
        &[("SESSION_LOCK_LEASE", "1000ms".to_owned())],
    )
    .await;
    let (cookie, _) = open_session(&cluster, "/api/session/views").await;
    let urls = [
        victim_url.clone(),
        cluster.replicas[0].url(),
        cluster.replicas[1].url(),
    ];

    // Act: 12 writers round robin over the three replicas for 1.5 s; the victim is killed
    // after 400 ms, with writes of the session queued on it.
    let stop_at = Instant::now() + Duration::from_millis(1500);
    let writers = (0..12).map(|w| {
        let (urls, cookie) = (urls.clone(), cookie.clone());
        async move {
            let (mut acked, mut unknown, mut survivors_failed) = (0u64, 0u64, 0u64);
            let mut i = w;
            while Instant::now() < stop_at {
                let target = &urls[i % 3];
                match increment(target, &cookie).await {
                    Ok(_) => acked += 1,
                    Err(_) if i % 3 == 0 => unknown += 1,
                    Err(_) => {
                        unknown += 1;
                        survivors_failed += 1;
                    }
                }
                i += 1;
            }
            (acked, unknown, survivors_failed)
        }
    });
    let kill = async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        victim.kill().expect("SIGKILL");
        let _ = victim.wait();
    };
    let (results, ()) = tokio::join!(join_all(writers), kill);

    // Assert: every acknowledged write is in the count (unknown ones may or may not be), and
    // the surviving replicas kept serving: the dead holder's lease is shorter than the wait.
    let acked: u64 = results.iter().map(|r| r.0).sum();
    let unknown: u64 = results.iter().map(|r| r.1).sum();
    let survivors_failed: u64 = results.iter().map(|r| r.2).sum();
    let final_views = views_of(&cluster, &cookie).await;
    assert!(acked > 0);
    assert!(
        (1 + acked..=1 + acked + unknown).contains(&final_views),
        "final {final_views}, acknowledged {acked}, unknown {unknown}"
    );
    assert_eq!(
        survivors_failed, 0,
        "the other replicas kept serving the session"
    );
}

/// `GET /session` with `cookie` and a request id; status and body.
async fn visit_with_id(base: &str, cookie: &str, id: &str) -> (u16, String) {
    let res = plain()
        .get(format!("{base}/session"))
        .header("cookie", cookie)
        .header("x-request-id", id)
        .send()
        .await
        .expect("visit");
    (res.status().as_u16(), res.text().await.expect("body"))
}

#[tokio::test]
async fn a_deferred_write_is_written_by_a_successor_that_writes_nothing_itself() {
    // Arrange: request `old` applied; then a new request holds the lock for 200 ms (the
    // optimistic first try is off: a write must hold the lock to pass its change on).
    let cluster = Cluster::start_slow(
        1,
        |_| Some(Slow::Loads(Duration::from_millis(200))),
        |c| c.session_lock_optimistic = false,
    )
    .await;
    let (cookie, _) = open_session(&cluster, "/session").await;
    let base = cluster.replicas[0].url();
    assert_eq!(
        visit_with_id(&base, &cookie, "old").await,
        (200, "Session View Cnt  2".into())
    );
    let new = tokio::spawn({
        let (base, cookie) = (base.clone(), cookie.clone());
        async move { visit_with_id(&base, &cookie, "new").await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;

    // Act: a replay of `old` queues behind it; it gets the unwritten record and changes
    // nothing, so it must write the record for `new`.
    let replay = visit_with_id(&base, &cookie, "old").await;
    let new = new.await.expect("task");

    // Assert
    assert_eq!(replay, (200, "Session View Cnt  2".into()));
    assert_eq!(new, (200, "Session View Cnt  3".into()));
    assert_eq!(views_of(&cluster, &cookie).await, 3);
}

#[tokio::test]
async fn when_the_write_that_carries_a_deferred_change_fails_both_answers_say_so() {
    // Arrange: two writes queue on one replica; the first passes its change on unwritten
    // (it holds the lock: the optimistic first try is off). Loads and saves both take 200
    // ms, so the one write carrying both changes goes out at ~400 ms.
    let cluster = Cluster::start_slow(
        1,
        |_| Some(Slow::LoadsAndSaves(Duration::from_millis(200))),
        |c| c.session_lock_optimistic = false,
    )
    .await;
    let (cookie, id) = open_session(&cluster, "/api/session/views").await;
    let base = cluster.replicas[0].url();
    let first = tokio::spawn({
        let (base, cookie) = (base.clone(), cookie.clone());
        async move { increment(&base, &cookie).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = tokio::spawn({
        let (base, cookie) = (base.clone(), cookie.clone());
        async move { increment(&base, &cookie).await }
    });

    // Act: while the second runs its handler, someone else takes the lock (as after a lost
    // lease), so the one write carrying both changes is refused.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let lock = app::Keys::default().lock(&id);
    cluster.redis.cli(&["SET", &lock, "usurper", "PX", "10000"]);
    let (first, second) = (first.await.expect("task"), second.await.expect("task"));

    // Assert: neither claims success, and nothing landed.
    assert_eq!(first, Err("HTTP 503 Service Unavailable".into()));
    assert_eq!(second, Err("HTTP 503 Service Unavailable".into()));
    cluster.redis.cli(&["DEL", &lock]);
    assert_eq!(views_of(&cluster, &cookie).await, 1);
}
