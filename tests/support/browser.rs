//! Browser-test helpers: chromedriver, a headless Chromium session, polling,
//! the login form, and a blank-page check for screenshots. Used by the web UI
//! tests; they panic with what to install when Chromium is missing.
#![allow(dead_code)]

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// chromedriver on a free loopback port; killed when dropped.
pub struct Driver {
    child: Child,
    /// WebDriver endpoint.
    pub url: String,
}

impl Driver {
    /// Starts chromedriver, panicking with what to install when it is missing.
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // Its own process group, so that Chromium goes with it when killed.
        let child = Command::new("chromedriver")
            .process_group(0)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "the browser test needs chromedriver (Debian package chromium-driver; run scripts/deps.sh): {e}"
                )
            });
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        // Three browser tests start their drivers at once; on a loaded
        // 2-core machine one took over 20 s.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if reqwest::blocking::get(format!("{}/status", driver.url))
                .is_ok_and(|r| r.status().is_success())
            {
                return driver;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not answer on {} within 60 s",
                driver.url
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's Chromium binary.
pub fn chromium_binary() -> String {
    for path in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if std::path::Path::new(path).exists() {
            return path.to_owned();
        }
    }
    panic!("the browser test needs Chromium (Debian package chromium; run scripts/deps.sh)");
}

/// A headless Chromium session through `driver`.
pub async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium_binary(),
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,900", "--no-first-run", "--disable-extensions"],
        }),
    );
    let http = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(http)
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .unwrap_or_else(|e| panic!("chromedriver could not start Chromium: {e}"))
}

/// Polls `check` every 200 ms until it returns Some, or panics with `what`.
pub async fn until<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Text of every element matching `css`.
pub async fn texts(c: &Client, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in c.find_all(Locator::Css(css)).await.unwrap_or_default() {
        out.push(e.text().await.unwrap_or_default());
    }
    out
}

/// Logs in as alice through the form (the dashboard sends anonymous visitors there).
pub async fn login(c: &Client, base: &str) {
    // Not logged in: the dashboard sends us to the login form.
    c.goto(&format!("{base}/ui/")).await.unwrap();
    until(Duration::from_secs(10), "the login form", || async move {
        c.find(Locator::Id("login-form")).await.ok()
    })
    .await;
    assert!(c.current_url().await.unwrap().path().ends_with("/ui/login"));
    c.find(Locator::Id("username"))
        .await
        .unwrap()
        .send_keys("alice")
        .await
        .unwrap();
    c.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys("admin-password")
        .await
        .unwrap();
    c.find(Locator::Id("login-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Logs in as alice and waits until the UI has left the login page.
pub async fn login_and_leave(c: &Client, base: &str) {
    login(c, base).await;
    until(Duration::from_secs(10), "the login", || async move {
        let url = c.current_url().await.ok()?;
        (url.path() != "/ui/login").then_some(())
    })
    .await;
}

/// Connects to Docker (panicking loudly if it is down) and bootstraps busybox.
pub fn docker(tokio: &tokio::runtime::Runtime) -> slipway_runtime::Runtime {
    tokio.block_on(async {
        let rt = slipway_runtime::Runtime::connect()
            .await
            .unwrap_or_else(|e| {
                panic!("this test needs a reachable Docker Engine (run scripts/deps.sh): {e}")
            });
        slipway_runtime::images::ensure_busybox(&rt)
            .await
            .expect("bootstrap slipway/busybox");
        rt
    })
}

/// Luminance variance of a PNG (0 for a blank page).
pub fn variance(png_bytes: &[u8]) -> f64 {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().expect("screenshot is a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("PNG frame");
    let channels = info.color_type.samples();
    assert!(
        channels >= 3,
        "unexpected PNG colour type {:?}",
        info.color_type
    );
    let lum: Vec<f64> = buf[..info.buffer_size()]
        .chunks(channels)
        .map(|p| 0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64)
        .collect();
    let mean = lum.iter().sum::<f64>() / lum.len() as f64;
    lum.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / lum.len() as f64
}
