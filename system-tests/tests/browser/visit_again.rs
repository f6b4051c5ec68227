//! The person's view: the counter goes up by one per click while the serving replica changes.

use fantoccini::Locator;

use crate::helpers::{ChromeDriver, Target, output_dir, text_when};

/// Opening the page is visit 1; each of the 6 clicks on "Visit again" reloads it, so the counter
/// must read 1, 2, …, 7 in order, and round robin must have shown at least two replica names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visit_again_counts_one_by_one_across_replicas() {
    // Arrange
    let target = Target::from_env_or_start().await;
    let driver = ChromeDriver::start();
    let browser = driver.session().await;

    // Act
    browser
        .goto(&format!("{}/", target.url()))
        .await
        .expect("open the page");
    let mut counts = vec![text_when(&browser, "views", |t| !t.is_empty()).await];
    let mut nodes = vec![text_when(&browser, "node", |t| !t.is_empty()).await];
    for _ in 0..6 {
        let before = counts.last().cloned().unwrap_or_default();
        browser
            .find(Locator::Id("visit"))
            .await
            .expect("a 'Visit again' button")
            .click()
            .await
            .expect("click 'Visit again'");
        counts.push(text_when(&browser, "views", |t| !t.is_empty() && t != before).await);
        nodes.push(text_when(&browser, "node", |t| !t.is_empty()).await);
    }
    let png = browser.screenshot().await.expect("screenshot");
    let shot = output_dir().join("browser-visit-again.png");
    std::fs::write(&shot, &png).expect("write the screenshot");
    browser.close().await.expect("close the browser");
    target.stop().await;

    // Assert
    let counts: Vec<u64> = counts
        .iter()
        .map(|t| {
            t.trim()
                .parse()
                .unwrap_or_else(|_| panic!("counter {t:?} is not a number"))
        })
        .collect();
    assert_eq!(
        counts,
        (1..=7).collect::<Vec<u64>>(),
        "counter per page load; replicas {nodes:?}"
    );
    let mut distinct = nodes.clone();
    distinct.sort();
    distinct.dedup();
    assert!(
        distinct.len() >= 2,
        "only one replica name shown in 7 loads: {nodes:?}"
    );
    assert!(
        png.starts_with(b"\x89PNG"),
        "screenshot at {} is not a PNG",
        shot.display()
    );
    eprintln!(
        "browser: counts {counts:?}, replicas {nodes:?}, screenshot {}",
        shot.display()
    );
}
