//! The consumer page `/<tenant>/_docs` in headless Chromium: a wrong key is
//! told, a key typed in shows its triggers with their parameters'
//! descriptions and a curl line, and a key given in the URL's fragment shows
//! its own. Skipped with a notice without chromium, unless `CI` is set.

use crate::browser::{Driver, which};
use crate::consumer_doc::app;
use crate::helpers::{ERP_KEY, WEBSHOP_KEY};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_page_shows_the_triggers_of_the_key_typed_in() {
    let (Some(chromium), Some(chromedriver)) = (which("chromium"), which("chromedriver")) else {
        if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0") {
            panic!("chromium and chromedriver are needed for the browser test (CI is set)");
        }
        crate::skips::skipped(
            "consumer docs page",
            "chromium / chromedriver not installed",
        );
        return;
    };
    let app = app().await;
    let driver = Driver::start(chromium, chromedriver).await;
    driver.goto(&app.url("/acme/_docs")).await;
    driver.type_into("#key", "fg_wrong").await;
    driver.click("#show").await;
    driver.find("#problem:not(:empty)").await;
    assert!(driver.text("#problem").await.contains("401"));

    driver.fill("#key", WEBSHOP_KEY).await;
    let section = "section[data-trigger=\"ItemPrice\"]";
    driver.find(section).await;
    let title = driver.text("#title").await;
    assert!(
        title.contains("acme") && title.contains("webshop"),
        "{title}"
    );
    let toc = driver.text("#toc").await;
    assert!(
        toc.contains("ItemPrice") && toc.contains("StockReservation"),
        "{toc}"
    );
    assert!(!toc.contains("CreateCustomerRecord"), "{toc}");
    let described = driver
        .text(&format!(
            "{section} tr[data-param=\"itemId\"] .param-description"
        ))
        .await;
    assert!(described.contains("catalogue"), "{described}");
    let about = driver.text(&format!("{section} .description")).await;
    assert!(about.contains("price table"), "{about}");
    let example = driver.text(&format!("{section} pre.curl")).await;
    assert!(example.contains("/acme/ItemPrice?itemId="), "{example}");
    let shot = driver.screenshot("consumer-docs.png").await;
    eprintln!("screenshot: {}", shot.display());

    // Another key, given in the URL's fragment: its own triggers.
    driver.click("#forget").await;
    driver
        .goto(&app.url(&format!("/acme/_docs#key={ERP_KEY}")))
        .await;
    driver
        .find("section[data-trigger=\"CreateCustomerRecord\"]")
        .await;
    assert!(
        driver
            .elements("section[data-trigger=\"StockReservation\"]")
            .await
            .is_empty()
    );
}
