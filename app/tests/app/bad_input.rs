//! Garbage, forged, oversized and tampered cookies give a fresh session; bad JSON is a 4xx;
//! a session deleted mid-request is a 409 and stays deleted.

use std::time::Duration;

use crate::helpers::{Cluster, Slow, plain, set_cookie, user};

async fn count_with_cookie(url: &str, cookie: &str) -> (u16, String) {
    let res = plain()
        .get(url)
        .header("cookie", cookie)
        .send()
        .await
        .expect("request");
    let status = res.status().as_u16();
    (status, res.text().await.expect("body"))
}

#[tokio::test]
async fn garbage_forged_and_oversized_cookies_start_a_fresh_session() {
    let cluster = Cluster::start(1, |_| {}).await;
    let url = cluster.url(0, "/session");
    let long = format!("sid={}", "A".repeat(8_000));
    for cookie in [
        "sid=garbage",
        "sid=",
        "sid=%%%%",
        "sid=AAAAAAAAAAAAAAAAAAAAAA", // well-formed id that no session has
        long.as_str(),
        "sid=1; sid=2",
    ] {
        let (status, body) = count_with_cookie(&url, cookie).await;
        assert_eq!(status, 200, "{cookie:.40}");
        assert_eq!(body, "Session View Cnt  1", "{cookie:.40}");
    }
}

#[tokio::test]
async fn a_tampered_signed_cookie_is_rejected() {
    let secret = "s".repeat(64);
    let cluster = Cluster::start(2, |c| {
        c.session_secret = Some(app::Secret::new(&secret).expect("long enough"));
    })
    .await;
    let url0 = cluster.url(0, "/session");
    let first = plain().get(&url0).send().await.expect("first");
    let cookie = set_cookie(&first).expect("signed cookie set");
    // The signed cookie works on the other replica: both share the secret.
    assert_eq!(
        count_with_cookie(&cluster.url(1, "/session"), &cookie)
            .await
            .1,
        "Session View Cnt  2"
    );

    // Flip one character of the signature: a fresh session, not the old one.
    let (name, value) = cookie.split_once('=').expect("name=value");
    let mut bytes = value.as_bytes().to_vec();
    bytes[0] = if bytes[0] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{name}={}", String::from_utf8(bytes).expect("ascii"));
    assert_eq!(
        count_with_cookie(&url0, &tampered).await,
        (200, "Session View Cnt  1".into())
    );

    // The bare session id without its signature is rejected too.
    let unsigned = format!("{name}={}", &value[value.len() - 22..]);
    assert_eq!(
        count_with_cookie(&url0, &unsigned).await,
        (200, "Session View Cnt  1".into())
    );
}

#[tokio::test]
async fn invalid_json_is_a_4xx_with_a_message() {
    let cluster = Cluster::start(1, |_| {}).await;
    let url = cluster.url(0, "/api/session/views");
    let client = user();
    for (content_type, body) in [
        ("application/json", "{not json"),
        ("application/json", r#"{"by": "two"}"#),
        ("application/json", r#"{"by": 0}"#),
        ("application/json", r#"{"by": 1, "extra": true}"#),
    ] {
        let res = client
            .post(&url)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request");
        let status = res.status();
        assert!(status.is_client_error(), "{body}: {status}");
        assert!(
            !res.text().await.expect("body").is_empty(),
            "{body}: a message"
        );
    }
    let ok = client
        .post(&url)
        .header("content-type", "application/json")
        .body(r#"{"by": 5}"#)
        .send()
        .await
        .expect("request");
    assert_eq!(ok.status(), 200);
    assert_eq!(
        ok.json::<serde_json::Value>().await.expect("json")["views"],
        5
    );
}

#[tokio::test]
async fn a_session_deleted_between_load_and_save_stays_deleted_and_is_a_409() {
    // tower-sessions-redis-store 0.16 answers 500 when its `SET … XX` finds no key; a plain
    // `SET` would bring the deleted session back. Both modes refuse the write with a 409.
    for lock in [false, true] {
        let cluster = Cluster::start_slow(
            1,
            |_| Some(Slow::Saves(Duration::from_millis(300))),
            |c| c.session_lock = lock,
        )
        .await;
        let url = cluster.url(0, "/session");
        let first = plain().get(&url).send().await.expect("first");
        let cookie = set_cookie(&first).expect("a session");
        let id = cookie.split_once('=').expect("name=value").1.to_owned();
        let request = tokio::spawn({
            let (url, cookie) = (url.clone(), cookie.clone());
            async move { count_with_cookie(&url, &cookie).await.0 }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The record goes (an admin, an expiry); a lock, if any, stays.
        assert_eq!(
            cluster
                .redis
                .cli(&["DEL", &app::Keys::default().record(&id)]),
            "1"
        );

        assert_eq!(request.await.expect("task"), 409, "lock {lock}");
        assert_eq!(
            cluster
                .redis
                .cli(&["EXISTS", &app::Keys::default().record(&id)]),
            "0",
            "lock {lock}: not revived"
        );
        assert_eq!(
            count_with_cookie(&url, &cookie).await,
            (200, "Session View Cnt  1".into()),
            "lock {lock}: a fresh session"
        );
    }
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405() {
    let cluster = Cluster::start(1, |_| {}).await;
    let client = user();
    let res = client.get(cluster.url(0, "/nope")).send().await.expect("r");
    assert_eq!(res.status(), 404);
    let res = client
        .put(cluster.url(0, "/api/session"))
        .send()
        .await
        .expect("r");
    assert_eq!(res.status(), 405);
}
