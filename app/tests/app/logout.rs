//! Logout racing a write: the session stays deleted, with the lock on (the delete waits for
//! the write, whatever the cookie's spelling) and with it off (`SET … XX` never revives it).

use std::time::Duration;

use reqwest::header::HeaderValue;

use crate::helpers::{Cluster, Slow, open_session, plain};

/// Starts a slow write on `cookie`, ends the session with `DELETE /api/session` sent with
/// `delete_cookie` 100 ms later; returns the two statuses.
async fn race(cluster: &Cluster, cookie: &str, delete_cookie: &[u8]) -> (u16, u16) {
    let write = tokio::spawn({
        let req = plain()
            .post(cluster.url(0, "/api/session/views"))
            .header("cookie", cookie);
        async move { req.send().await.expect("write").status().as_u16() }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let deleted = plain()
        .delete(cluster.url(0, "/api/session"))
        .header(
            "cookie",
            HeaderValue::from_bytes(delete_cookie).expect("legal header value"),
        )
        .send()
        .await
        .expect("delete")
        .status()
        .as_u16();
    (write.await.expect("task"), deleted)
}

#[tokio::test]
async fn logout_racing_a_locked_write_stays_deleted_whatever_the_spelling() {
    let cluster =
        Cluster::start_slow(1, |_| Some(Slow::Saves(Duration::from_millis(300))), |_| {}).await;
    for spelling in [
        "{c}",
        "other=1; {c}",
        "city=Zürich; {c}",
        "sid=AAAAAAAAAAAAAAAAAAAAAA; {c}",
    ] {
        // Arrange
        let (cookie, id) = open_session(&cluster, "/api/session/views").await;
        let delete_cookie = spelling.replace("{c}", &cookie);

        // Act
        let (write, delete) = race(&cluster, &cookie, delete_cookie.as_bytes()).await;

        // Assert: the delete waited for the write, then ended the session for good.
        assert_eq!((write, delete), (200, 204), "{spelling}");
        assert_eq!(
            cluster
                .redis
                .cli(&["EXISTS", &app::Keys::default().record(&id)]),
            "0",
            "{spelling}: not revived"
        );
    }
}

#[tokio::test]
async fn logout_racing_an_unlocked_write_stays_deleted() {
    let cluster = Cluster::start_slow(
        1,
        |_| Some(Slow::Saves(Duration::from_millis(300))),
        |c| c.session_lock = false,
    )
    .await;
    let (cookie, id) = open_session(&cluster, "/api/session/views").await;

    let (write, delete) = race(&cluster, &cookie, cookie.as_bytes()).await;

    // Last writer wins, but a deleted session is never written back.
    assert_eq!((write, delete), (409, 204));
    assert_eq!(
        cluster
            .redis
            .cli(&["EXISTS", &app::Keys::default().record(&id)]),
        "0"
    );
}

#[tokio::test]
async fn a_logout_waits_for_the_lock_and_is_refused_while_it_stays_taken() {
    let cluster = Cluster::start(1, |c| c.session_lock_wait = Duration::from_millis(200)).await;
    let (cookie, id) = open_session(&cluster, "/api/session/views").await;
    let lock = app::Keys::default().lock(&id);
    cluster
        .redis
        .cli(&["SET", &lock, "someone-else", "PX", "10000"]);

    let res = plain()
        .delete(cluster.url(0, "/api/session"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("delete");

    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "1");
    assert_eq!(
        cluster
            .redis
            .cli(&["EXISTS", &app::Keys::default().record(&id)]),
        "1",
        "nothing deleted"
    );
}
