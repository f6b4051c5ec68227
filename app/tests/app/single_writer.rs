//! One writer per session, attacked where one request's answer depends on another's write:
//! a lock left by a dead holder under hot load, a holder killed with `kill -9`, a client's
//! retry racing its original while Redis pauses writes and drops connections, and a delete,
//! a timeout and a disconnect inside a group. Judged only by outcomes: rates, statuses and
//! the counter in Redis.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use app::Config;
use futures_util::future::join_all;

use crate::helpers::{Cluster, Slow, app_process, open_session, plain, set_cookie, views_of};

/// The hot-load tests take turns: each keeps both cores busy for seconds, and the other tests
/// of this binary (some of them timed, like the expiry tests) should not starve meanwhile.
static HOT_LOAD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A named setting of the protocol's options.
type Variant = (&'static str, fn(&mut Config));

/// The two ends of the protocol's options: group commit with hand-offs, and neither.
fn variants() -> [Variant; 2] {
    [
        ("group commit and hand-offs", |c| {
            c.session_lock_group_commit = true;
            c.session_lock_handoffs = 8;
        }),
        ("no group commit, no hand-offs", |c| {
            c.session_lock_group_commit = false;
            c.session_lock_handoffs = 0;
        }),
    ]
}

/// One answered (or failed) request of a load: when it completed, and its status (0: no
/// answer).
struct Done {
    at: Duration,
    status: u16,
}

/// `conns` clients each sending `POST /api/session/views` with `cookie` in a loop, round
/// robin over `urls` (each client starts at its own), until `until` after `start`.
async fn hammer(
    urls: &[String],
    cookie: &str,
    conns: usize,
    start: Instant,
    until: Duration,
) -> Vec<Done> {
    let workers = (0..conns).map(|w| {
        let (urls, cookie) = (urls.to_vec(), cookie.to_owned());
        async move {
            let client = plain();
            let mut done = Vec::new();
            let mut i = w;
            while start.elapsed() < until {
                let status = client
                    .post(format!("{}/api/session/views", urls[i % urls.len()]))
                    .header("cookie", &cookie)
                    .timeout(Duration::from_secs(8))
                    .send()
                    .await
                    .map_or(0, |res| res.status().as_u16());
                done.push(Done {
                    at: start.elapsed(),
                    status,
                });
                i += 1;
            }
            done
        }
    });
    join_all(workers).await.into_iter().flatten().collect()
}

/// Successes per second between `from` and `to`.
fn rate(done: &[Done], from: Duration, to: Duration) -> f64 {
    let n = done
        .iter()
        .filter(|d| d.status == 200 && d.at >= from && d.at < to)
        .count();
    n as f64 / (to - from).as_secs_f64()
}

/// Sets `lock` to a dead holder's token for `lease`, as a replica that died holding it
/// leaves it; retried while this replica's own writer holds the lock. Returns when it was
/// set.
async fn leave_a_dead_holder(
    cluster: &Cluster,
    lock: &str,
    lease: Duration,
    start: Instant,
) -> Duration {
    let px = lease.as_millis().to_string();
    for _ in 0..2_000 {
        if cluster
            .redis
            .cli(&["SET", lock, "dead-holder", "NX", "PX", &px])
            == "OK"
        {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("the lock was never free");
}

/// Hot load on `replicas` replicas; a dead holder's lock left after 1 s. The rate must come
/// back within one lease plus a second, and nothing acknowledged may be lost.
async fn a_dead_holders_lock_costs_one_lease(replicas: usize) {
    let _turn = HOT_LOAD.lock().await;
    let lease = Duration::from_millis(1_000);
    for (name, variant) in variants() {
        let cluster = Cluster::start(replicas, |c| {
            c.session_lock_lease = Duration::from_millis(1_000);
            variant(c);
        })
        .await;
        let (cookie, id) = open_session(&cluster, "/api/session/views").await;
        let urls: Vec<String> = cluster.replicas.iter().map(|r| r.url()).collect();
        let lock = app::Keys::default().lock(&id);
        let start = Instant::now();
        let run = Duration::from_millis(4_500);

        let (done, died) = tokio::join!(hammer(&urls, &cookie, 8, start, run), async {
            tokio::time::sleep(Duration::from_millis(1_000)).await;
            leave_a_dead_holder(&cluster, &lock, lease, start).await
        });

        let before = rate(&done, Duration::from_millis(250), died);
        let back = died + lease + Duration::from_secs(1);
        let after = rate(&done, back, back + Duration::from_secs(1));
        assert!(
            after >= before * 0.3,
            "{name}, {replicas} replica(s): {before:.0}/s before the dead holder, {after:.0}/s \
             from one lease plus a second after it"
        );
        let acked = done.iter().filter(|d| d.status == 200).count() as u64;
        let unknown = done
            .iter()
            .filter(|d| d.status == 0 || d.status == 504)
            .count() as u64;
        let views = views_of(&cluster, &cookie).await;
        assert!(
            (1 + acked..=1 + acked + unknown).contains(&views),
            "{name}: final {views}, acknowledged {acked}, unknown {unknown}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_holders_lock_under_hot_load_on_one_replica_costs_one_lease() {
    a_dead_holders_lock_costs_one_lease(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_holders_lock_under_hot_load_on_two_replicas_costs_one_lease() {
    a_dead_holders_lock_costs_one_lease(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_killed_under_hot_load_costs_the_survivor_one_lease() {
    let _turn = HOT_LOAD.lock().await;
    for (name, variant) in variants() {
        // Arrange: the victim is a real process, so it can be SIGKILLed mid-write.
        let cluster = Cluster::start(1, |c| {
            c.session_lock_lease = Duration::from_millis(1_000);
            variant(c);
        })
        .await;
        let (group_commit, hand_offs) = {
            let mut c = Config::for_test("redis://unused", "x");
            variant(&mut c);
            (c.session_lock_group_commit, c.session_lock_handoffs)
        };
        let (mut victim, victim_url) = app_process(
            &cluster,
            "victim",
            &[
                ("SESSION_LOCK_LEASE", "1000ms".to_owned()),
                ("SESSION_LOCK_GROUP_COMMIT", group_commit.to_string()),
                ("SESSION_LOCK_HANDOFFS", hand_offs.to_string()),
            ],
        )
        .await;
        let (cookie, _) = open_session(&cluster, "/api/session/views").await;
        let survivor = [cluster.replicas[0].url()];
        let start = Instant::now();
        let run = Duration::from_millis(4_500);

        // Act: both replicas hot on one session; the victim is killed at 1 s.
        let (on_survivor, on_victim, killed) = tokio::join!(
            hammer(&survivor, &cookie, 6, start, run),
            hammer(std::slice::from_ref(&victim_url), &cookie, 6, start, run),
            async {
                tokio::time::sleep(Duration::from_millis(1_000)).await;
                victim.kill().expect("SIGKILL");
                let _ = victim.wait();
                start.elapsed()
            }
        );

        // Assert: the survivor is back at speed within one lease plus a second.
        let before = rate(&on_survivor, Duration::from_millis(250), killed);
        let back = killed + Duration::from_secs(2);
        let after = rate(&on_survivor, back, back + Duration::from_secs(1));
        assert!(
            after >= before * 0.3,
            "{name}: survivor {before:.0}/s before the kill, {after:.0}/s from one lease \
             plus a second after it"
        );
        let all: Vec<&Done> = on_survivor.iter().chain(&on_victim).collect();
        let acked = all.iter().filter(|d| d.status == 200).count() as u64;
        let unknown = all
            .iter()
            .filter(|d| d.status == 0 || d.status == 504)
            .count() as u64;
        let views = views_of(&cluster, &cookie).await;
        assert!(
            (1 + acked..=1 + acked + unknown).contains(&views),
            "{name}: final {views}, acknowledged {acked}, unknown {unknown}"
        );
    }
}

/// `POST /api/session/views` with `cookie` and request id `id`: status and the count.
async fn post_with_id(
    client: &reqwest::Client,
    url: &str,
    cookie: &str,
    id: &str,
) -> (u16, Option<u64>) {
    let Ok(res) = client
        .post(url)
        .header("cookie", cookie)
        .header("x-request-id", id)
        .timeout(Duration::from_secs(8))
        .send()
        .await
    else {
        return (0, None);
    };
    let status = res.status().as_u16();
    let views = res
        .json::<serde_json::Value>()
        .await
        .ok()
        .and_then(|v| v["views"].as_u64());
    (status, views)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_racing_their_originals_while_redis_stalls_and_drops_connections_lose_nothing() {
    let _turn = HOT_LOAD.lock().await;
    for (name, variant) in variants() {
        // Arrange: REDIS_TIMEOUT 200ms, so a paused write times out and is resolved.
        let cluster = Cluster::start(1, |c| {
            c.redis_timeout = Duration::from_millis(200);
            variant(c);
        })
        .await;
        let (cookie, _) = open_session(&cluster, "/api/session/views").await;
        let url = cluster.url(0, "/api/session/views");
        let start = Instant::now();
        let run = Duration::from_millis(4_000);

        // Act: 8 clients each send every request twice, 0.5 ms apart, with one id, while
        // Redis six times pauses writes for 300 ms and then drops every client connection.
        let clients = (0..8).map(|w| {
            let (url, cookie) = (url.clone(), cookie.clone());
            async move {
                let (a, b) = (plain(), plain());
                let mut sent = Vec::new();
                let mut n = 0;
                while start.elapsed() < run {
                    let id = format!("w{w}-{n}");
                    let original = post_with_id(&a, &url, &cookie, &id);
                    let retry = async {
                        tokio::time::sleep(Duration::from_micros(500)).await;
                        post_with_id(&b, &url, &cookie, &id).await
                    };
                    let (first, second) = tokio::join!(original, retry);
                    sent.push((id, first, second));
                    n += 1;
                }
                sent
            }
        });
        let faults = async {
            for _ in 0..6 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                cluster.redis.cli(&["CLIENT", "PAUSE", "300", "WRITE"]);
                tokio::time::sleep(Duration::from_millis(330)).await;
                cluster.redis.cli(&["CLIENT", "KILL", "TYPE", "normal"]);
            }
        };
        let (sent, ()) = tokio::join!(join_all(clients), faults);
        tokio::time::sleep(Duration::from_millis(500)).await;

        // Assert
        let (mut acked, mut maybe) = (0u64, 0u64);
        let mut value_of: HashMap<u64, String> = HashMap::new();
        for (id, first, second) in sent.iter().flatten() {
            let answers: Vec<(u16, Option<u64>)> = [*first, *second].into();
            let counts: HashSet<u64> = answers
                .iter()
                .filter(|(s, _)| *s == 200)
                .filter_map(|(_, v)| *v)
                .collect();
            assert!(counts.len() <= 1, "{name}: id {id} answered {answers:?}");
            if let Some(&count) = counts.iter().next() {
                acked += 1;
                if let Some(other) = value_of.insert(count, id.clone()) {
                    panic!("{name}: count {count} answered to {other} and to {id}");
                }
            } else if answers.iter().any(|(s, _)| *s == 0 || *s == 504) {
                maybe += 1;
            }
            for (status, _) in &answers {
                assert!(
                    [200, 503, 504, 0].contains(status),
                    "{name}: id {id} answered {answers:?}"
                );
            }
        }
        let views = views_of(&cluster, &cookie).await;
        assert!(acked > 0, "{name}: something got through");
        // Every acknowledged id counted once; an id answered only 503 counted never.
        assert!(
            (1 + acked..=1 + acked + maybe).contains(&views),
            "{name}: final {views}, {acked} ids acknowledged, {maybe} unknown"
        );
    }
}

/// `POST /api/session/views` with `cookie` on replica 0, once per `(gap, patience)`: sent
/// `gap` after the start by a client that gives up after `patience`. Each answer's status
/// (0: the client gave up), `Retry-After`, and count.
async fn group(
    cluster: &Cluster,
    cookie: &str,
    sends: &[(Duration, Duration)],
) -> Vec<(u16, bool, Option<u64>)> {
    let url = cluster.url(0, "/api/session/views");
    let sends = sends.iter().map(|&(gap, patience)| {
        let (url, cookie) = (url.clone(), cookie.to_owned());
        async move {
            tokio::time::sleep(gap).await;
            let client = reqwest::Client::builder()
                .timeout(patience)
                .build()
                .expect("client");
            match client.post(url).header("cookie", cookie).send().await {
                Ok(res) => {
                    let status = res.status().as_u16();
                    let retry_after = res.headers().contains_key("retry-after");
                    let views = res
                        .json::<serde_json::Value>()
                        .await
                        .ok()
                        .and_then(|v| v["views"].as_u64());
                    (status, retry_after, views)
                }
                Err(_) => (0, false, None),
            }
        }
    });
    join_all(sends).await
}

/// One replica whose writer takes `delay` per change, locked from the first write (so the
/// first holds the lock while later ones queue), with `variant`; and a session on it.
async fn slow_locked(delay: Duration, variant: fn(&mut Config)) -> (Cluster, String, String) {
    let cluster = Cluster::start_slow(
        1,
        |_| Some(Slow::Loads(delay)),
        |c| {
            c.session_lock_optimistic = false;
            variant(c);
        },
    )
    .await;
    let (cookie, id) = open_session(&cluster, "/api/session/views").await;
    (cluster, cookie, id)
}

#[tokio::test]
async fn a_delete_inside_a_group_ends_the_session_between_the_writes_around_it() {
    for (name, variant) in variants() {
        let (cluster, cookie, id) = slow_locked(Duration::from_millis(200), variant).await;
        let url = cluster.url(0, "/api/session/views");

        // Act: a write, then a logout 50 ms later and a write 100 ms later, all queued
        // behind the first.
        let first = plain().post(&url).header("cookie", &cookie).send();
        let logout = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            plain()
                .delete(cluster.url(0, "/api/session"))
                .header("cookie", &cookie)
                .send()
                .await
        };
        let last = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            plain().post(&url).header("cookie", &cookie).send().await
        };
        let (first, logout, last) = tokio::join!(first, logout, last);
        let (first, logout, last) = (
            first.expect("first"),
            logout.expect("logout"),
            last.expect("last"),
        );

        // Assert: in arrival order: counted, deleted, then a fresh session for the late
        // write (its cookie's session had ended); the old record stays gone.
        assert_eq!(first.status(), 200, "{name}");
        assert_eq!(logout.status(), 204, "{name}");
        assert_eq!(last.status(), 200, "{name}");
        let fresh = set_cookie(&last).expect("a new session");
        assert_ne!(fresh, cookie, "{name}: a new id, never the old one revived");
        let views = last.json::<serde_json::Value>().await.expect("json")["views"].clone();
        assert_eq!(views, 1, "{name}");
        assert_eq!(
            cluster
                .redis
                .cli(&["EXISTS", &app::Keys::default().record(&id)]),
            "0",
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_timeout_inside_a_group_is_504_once_taken_and_503_while_queued_and_then_never_applied() {
    // REQUEST_TIMEOUT 1 s; each job's change takes 1.5 s. The first job is taken at once
    // (its round goes on: 504); the second, queued behind it, times out before a round
    // could take it (503: nothing was written, and nothing will be).
    for (name, variant) in variants() {
        let cluster = Cluster::start_slow(
            1,
            |_| Some(Slow::Loads(Duration::from_millis(1_500))),
            |c| {
                c.request_timeout = Duration::from_secs(1);
                variant(c);
            },
        )
        .await;
        let (cookie, _) = open_session(&cluster, "/api/session/views").await;
        let patient = Duration::from_secs(5);

        let answers = group(
            &cluster,
            &cookie,
            &[
                (Duration::ZERO, patient),
                (Duration::from_millis(100), patient),
            ],
        )
        .await;
        tokio::time::sleep(Duration::from_millis(1_000)).await;

        assert_eq!((answers[0].0, answers[0].1), (504, false), "{name}");
        assert_eq!((answers[1].0, answers[1].1), (503, true), "{name}");
        assert_eq!(
            views_of(&cluster, &cookie).await,
            2,
            "{name}: the first's round landed; the second never did"
        );
    }
}

#[tokio::test]
async fn a_caller_that_goes_away_does_not_cancel_its_round_and_a_queued_one_is_never_applied() {
    for (name, variant) in variants() {
        // Each job's change takes 300 ms. Job 1's client leaves at 100 ms, mid-round; job 2
        // (at 50 ms) waits for its answer; job 3 (at 50 ms) leaves at 150 ms, while queued.
        let (cluster, cookie, _) = slow_locked(Duration::from_millis(300), variant).await;

        let (leaves, stays) = (Duration::from_millis(100), Duration::from_secs(5));
        let at_50 = Duration::from_millis(50);
        let answers = group(
            &cluster,
            &cookie,
            &[(Duration::ZERO, leaves), (at_50, stays), (at_50, leaves)],
        )
        .await;
        tokio::time::sleep(Duration::from_millis(700)).await;

        assert_eq!(answers[0].0, 0, "{name}: job 1's client left");
        assert_eq!(answers[2].0, 0, "{name}: job 3's client left");
        assert_eq!(answers[1].0, 200, "{name}");
        assert_eq!(answers[1].2, Some(3), "{name}: job 1 counted, then job 2");
        assert_eq!(views_of(&cluster, &cookie).await, 3, "{name}: job 3 never");
    }
}
