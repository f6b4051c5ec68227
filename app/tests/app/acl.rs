//! The least-privilege Redis user of `deploy/redis/users.acl`: the app works as `app`, and
//! `app` can do nothing else. (`TEST_REDIS_ACL=1 cargo test -p app` runs every app test as
//! `app`; these run as `app` always.)

use test_kit::RedisServer;

use crate::helpers::{Cluster, increment, open_session, plain, seed_visit, user, views_of};

#[tokio::test]
async fn the_app_works_as_the_app_user_and_redis_denies_it_nothing() {
    // Arrange: two replicas with the lock, as `app`.
    let cluster = Cluster::start_on(RedisServer::start_with_acl(), 2, |_| {}).await;
    assert!(cluster.redis.url().starts_with("redis://app:"));
    let client = user();

    // Act: everything a user does. Views on both replicas, parallel increments of one session
    // (the lock's scripts and wake-ups), a read, the page, a logout.
    for i in 0..4 {
        seed_visit(&client, &cluster.url(i % 2, "/session")).await;
    }
    let (cookie, _) = open_session(&cluster, "/api/session/views").await;
    let base = |i: usize| cluster.url(i % 2, "");
    let writes = (0..20).map(|i| {
        let (url, cookie) = (base(i), cookie.clone());
        async move {
            plain()
                .post(format!("{url}/api/session/views"))
                .header("cookie", cookie)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    });
    let statuses = futures_util::future::join_all(writes).await;
    let views = views_of(&cluster, &cookie).await;
    increment(&client, &base(0)).await;
    let logout = client
        .delete(cluster.url(1, "/api/session"))
        .send()
        .await
        .expect("logout");
    let ready = client
        .get(cluster.url(0, "/readyz"))
        .send()
        .await
        .expect("readyz");

    // Assert: it all worked, and Redis refused the app nothing.
    assert!(
        statuses.iter().all(|s| matches!(s, Ok(200))),
        "{statuses:?}"
    );
    assert_eq!(views, 21);
    assert_eq!(logout.status(), 204);
    assert_eq!(ready.status(), 200);
    assert_eq!(
        cluster.redis.cli(&["ACL", "LOG"]),
        "",
        "commands the app sent that users.acl denies"
    );
}

#[test]
fn the_app_user_cannot_touch_anything_else() {
    let redis = RedisServer::start_with_acl();
    redis.cli(&["SET", "not-a-session", "secret"]);
    for (args, what) in [
        (&["KEYS", "*"][..], "command"),
        (&["FLUSHALL"][..], "command"),
        (&["CONFIG", "GET", "*"][..], "command"),
        (&["SCRIPT", "FLUSH"][..], "command"),
        (&["GET", "not-a-session"][..], "keys"),
        (&["SET", "not-a-session", "x"][..], "keys"),
        (
            &["EVAL", "return redis.call('get', KEYS[1])", "1", "other"][..],
            "keys",
        ),
        (&["PUBLISH", "other-channel", "x"][..], "channels"),
    ] {
        let answer = redis.cli_as_app(args);
        assert!(
            answer.starts_with("NOPERM") && answer.contains(what),
            "{args:?}: {answer}"
        );
    }
    // Its own keys, yes.
    assert_eq!(redis.cli_as_app(&["SET", "session:{x}", "1"]), "OK");
    assert_eq!(redis.cli(&["GET", "not-a-session"]), "secret");
}
