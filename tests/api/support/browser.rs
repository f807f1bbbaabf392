//! A real headless browser for the web app's tests: Debian's `chromium`,
//! driven through `chromedriver` (WebDriver) by fantoccini. Nothing downloads
//! a browser of its own; a missing package fails the test with its name.
//! Every browser gets a fresh profile and talks to loopback only (the flags
//! below turn off Chromium's own background traffic).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use super::poll::free_port;

pub struct Browser {
    pub client: Client,
    javascript: bool,
    driver: Child,
    _profile: tempfile::TempDir,
}

/// `/usr/bin/chromium` and `/usr/bin/chromedriver`, or `COOP_TEST_CHROMIUM`
/// / `COOP_TEST_CHROMEDRIVER`.
fn binaries() -> (String, String) {
    let chromium =
        std::env::var("COOP_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let driver =
        std::env::var("COOP_TEST_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
    for (path, package) in [(&chromium, "chromium"), (&driver, "chromium-driver")] {
        assert!(
            std::path::Path::new(path).exists(),
            "the browser tests need {path}: install Debian's {package} package (scripts/test.sh does, as root)"
        );
    }
    (chromium, driver)
}

impl Browser {
    /// A browser window of `width` × 900 pixels, with JavaScript on or off.
    pub async fn start(javascript: bool, width: u32) -> Self {
        let (chromium, driver_bin) = binaries();
        let port = free_port();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().expect("a browser profile folder");
        let mut prefs = json!({});
        if !javascript {
            prefs["profile.managed_default_content_settings.javascript"] = json!(2);
        }
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--no-first-run", "--disable-quic", "--disable-extensions",
                    format!("--user-data-dir={}", profile.path().display()),
                    format!("--window-size={width},900"),
                ],
                "prefs": prefs,
            }
        });
        let caps: serde_json::Map<String, Value> = capabilities.as_object().unwrap().clone();
        let url = format!("http://127.0.0.1:{port}");
        let mut last = None;
        for _ in 0..100 {
            // Plain HTTP to chromedriver on loopback: no TLS stack needed.
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    return Self {
                        client,
                        javascript,
                        driver,
                        _profile: profile,
                    };
                }
                Err(err) => last = Some(err),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not start a browser: {last:?}");
    }

    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.expect("current url");
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// Types into the field labelled by its `id`.
    pub async fn fill(&self, id: &str, value: &str) {
        let field = self
            .client
            .find(Locator::Id(id))
            .await
            .unwrap_or_else(|e| panic!("no field #{id}: {e}"));
        field.clear().await.ok();
        field.send_keys(value).await.expect("type");
    }

    pub async fn select(&self, id: &str, label: &str) {
        let field = self
            .client
            .find(Locator::Id(id))
            .await
            .unwrap_or_else(|e| panic!("no select #{id}: {e}"));
        field
            .select_by_label(label)
            .await
            .unwrap_or_else(|e| panic!("#{id}: no option {label:?}: {e}"));
    }

    /// Clicks the first element matching `css`.
    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("nothing matches {css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// The page's visible text (empty while a page is loading).
    pub async fn text(&self) -> String {
        match self.client.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Waits until the page says `text`; fails with what it says instead.
    pub async fn wait_for_text(&self, text: &str) {
        let started = std::time::Instant::now();
        loop {
            let now = self.text().await;
            if now.contains(text) {
                return;
            }
            if started.elapsed() > Duration::from_secs(15) {
                panic!(
                    "waited 15 s for {} to say {text:?}; it says:\n{now}",
                    self.path().await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Attribute `name` of the first element matching `css`, if both exist.
    pub async fn attribute(&self, css: &str, name: &str) -> Option<String> {
        let element = self.client.find(Locator::Css(css)).await.ok()?;
        element.attr(name).await.ok().flatten()
    }

    /// Whether JavaScript runs in this browser (WebDriver's scripts need it).
    pub fn javascript(&self) -> bool {
        self.javascript
    }

    pub async fn screenshot(&self, path: &std::path::Path) {
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::write(path, png).expect("write the screenshot");
    }

    /// axe-core's serious and critical violations on the current page.
    pub async fn accessibility_problems(&self) -> Vec<String> {
        let axe = axe_source();
        let script = format!(
            "{axe}\nconst done = arguments[arguments.length - 1];\
             axe.run(document, {{resultTypes: ['violations']}}).then(r => done(JSON.stringify(r.violations))).catch(e => done('ERROR ' + e));"
        );
        let answer = self
            .client
            .execute_async(&script, vec![])
            .await
            .expect("run axe");
        let text = answer.as_str().unwrap_or("[]");
        assert!(!text.starts_with("ERROR"), "axe failed: {text}");
        let violations: Vec<Value> = serde_json::from_str(text).expect("axe's answer");
        violations
            .into_iter()
            .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
            .map(|v| {
                let nodes: Vec<String> = v["nodes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .take(3)
                    .map(|n| n["html"].as_str().unwrap_or("").chars().take(120).collect())
                    .collect();
                format!("{} ({}): {} — {nodes:?}", v["id"], v["impact"], v["help"])
            })
            .collect()
    }

    /// Bytes the page and everything it loaded cost a browser with a cold
    /// cache: what came over the wire, and for what came from the browser's
    /// cache (the stylesheet and script after the first page), its compressed
    /// body plus 300 bytes for headers.
    pub async fn transferred_bytes(&self) -> u64 {
        let total = self
            .client
            .execute(
                "return performance.getEntries().filter(e => 'transferSize' in e)\
                   .reduce((a, e) => a + (e.transferSize > 0 ? e.transferSize : e.encodedBodySize + 300), 0);",
                vec![],
            )
            .await
            .expect("performance entries");
        total.as_u64().unwrap_or(0)
    }

    /// Content-Security-Policy violations of the current page, including
    /// those while it loaded (a buffered ReportingObserver sees them).
    pub async fn csp_violations(&self) -> Vec<String> {
        let answer = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1]; const seen = [];\
                 const o = new ReportingObserver(rs => { for (const r of rs) seen.push(r.body.effectiveDirective + ' ' + (r.body.blockedURL || '') + ' ' + (r.body.sample || '')); },\
                   {types: ['csp-violation'], buffered: true});\
                 o.observe();\
                 setTimeout(() => { for (const r of o.takeRecords()) seen.push(r.body.effectiveDirective + ' ' + (r.body.blockedURL || '')); o.disconnect(); done(JSON.stringify(seen)); }, 100);",
                vec![],
            )
            .await
            .expect("read CSP reports");
        serde_json::from_str(answer.as_str().unwrap_or("[]")).expect("CSP reports")
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// axe-core's script: `COOP_TEST_AXE`, or where scripts/test.sh installs it.
fn axe_source() -> String {
    let path = std::env::var("COOP_TEST_AXE").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        format!("{home}/.cache/coop/axe-4.11.0/node_modules/axe-core/axe.min.js")
    });
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("the accessibility checks need axe-core at {path} (npm package axe-core; scripts/test.sh installs it): {e}")
    })
}
