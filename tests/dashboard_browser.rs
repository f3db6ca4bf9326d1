//! The dashboard in a real browser: starts `tickcast demo` (embedded broker, SQLite, simulated
//! market, 2-second bars so that bars close during the test), opens `GET /` in headless
//! Chromium through the DevTools protocol, and checks that the price series, the forecast
//! series and its bands render and that live updates arrive over the websocket. Saves a
//! screenshot to `target/dashboard.png` (or `$TICKCAST_SCREENSHOT`).
//!
//! Needs Chromium (`chromium`, Debian; scripts/test.sh installs it). Skipped with a message
//! when it is missing, unless TICKCAST_REQUIRE_SERVICES is set.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Kills the child on drop, so a failing assertion leaves no process behind.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(name))
                    .find(|p| p.is_file())
            })
        })
}

/// A DevTools-protocol session on one page.
struct Cdp {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next: u64,
    session: Option<String>,
}

impl Cdp {
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        self.ws
            .send(Message::Text(msg.to_string().into()))
            .await
            .unwrap();
        loop {
            let m = tokio::time::timeout(Duration::from_secs(60), self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method}"))
                .expect("devtools socket closed")
                .unwrap();
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["id"] == json!(id) {
                    assert!(v["error"].is_null(), "{method}: {v}");
                    return v["result"].clone();
                }
            }
        }
    }

    async fn eval(&mut self, expr: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expr, "returnByValue": true}),
            )
            .await;
        r["result"]["value"].clone()
    }

    async fn dataset(&mut self) -> Value {
        self.eval("JSON.stringify(Object.assign({}, document.body.dataset))")
            .await
            .as_str()
            .map(|s| serde_json::from_str(s).unwrap())
            .unwrap_or(Value::Null)
    }
}

fn n(v: &Value, key: &str) -> i64 {
    v[key].as_str().and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_renders_and_updates_in_chromium() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("TICKCAST_REQUIRE_SERVICES").is_none(),
            "Chromium is required (apt-get install chromium, or set CHROMIUM)"
        );
        eprintln!("SKIPPED dashboard_renders_and_updates_in_chromium: no chromium");
        return;
    };
    let dir = tempfile_dir("dashboard");
    // The demo on a free port; its first lines name the URL.
    let mut demo = Command::new(env!("CARGO_BIN_EXE_tickcast"))
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--intervals",
            "2s",
            "--history-minutes",
            "20",
            // naive alone: this is the debug build, where the models run unoptimised.
            "--models",
            "naive",
            "--horizons",
            "1,3",
            "--status-every",
            "0",
            // Rolling scores reach the store at each checkpoint: often, so the scoreboard fills.
            "--checkpoint-secs",
            "2",
        ])
        .arg("--db")
        .arg(dir.join("demo.db"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start tickcast demo");
    let out = demo.stdout.take().expect("demo stdout");
    let demo = Guard(demo);
    let base = {
        let mut lines = BufReader::new(out).lines();
        loop {
            let line = lines
                .next()
                .expect("demo exited before printing its URL")
                .unwrap();
            if let Some(rest) = line.trim().strip_prefix("dashboard: ") {
                // Keep reading the demo's output (its next lines, the status lines), so its
                // stdout stays open for as long as it runs.
                std::thread::spawn(move || lines.for_each(drop));
                break rest.trim().trim_end_matches('/').to_string();
            }
        }
    };
    // Wait until the history is stored (candles and forecasts), so the page has a picture to
    // draw.
    let http = reqwest::Client::new();
    let t0 = Instant::now();
    loop {
        let count = |path: String| {
            let http = http.clone();
            async move {
                match http.get(path).send().await {
                    Ok(r) => r
                        .json::<Value>()
                        .await
                        .ok()
                        .and_then(|v| v["count"].as_u64()),
                    Err(_) => None,
                }
                .unwrap_or(0)
            }
        };
        let forecasts = count(format!(
            "{base}/api/v1/forecasts?symbol=BTC-USDT&model=ensemble&horizon=1&limit=100"
        ))
        .await;
        let candles = count(format!("{base}/api/v1/candles?symbol=BTC-USDT&limit=100")).await;
        if forecasts >= 12 && candles >= 12 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(180),
            "the demo stored too few candles and forecasts after 3 minutes"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let profile = dir.join("chromium");
    let chrome = Command::new(&browser)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--remote-debugging-port=0",
            "--window-size=1280,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let _chrome = Guard(chrome);
    let port_file = profile.join("DevToolsActivePort");
    let t0 = Instant::now();
    let (port, path) = loop {
        if let Ok(s) = std::fs::read_to_string(&port_file) {
            let mut l = s.lines();
            if let (Some(p), Some(path)) = (l.next(), l.next()) {
                break (p.to_string(), path.to_string());
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "chromium did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}{path}"))
        .await
        .expect("devtools websocket");
    let mut cdp = Cdp {
        ws,
        next: 0,
        session: None,
    };
    let target = cdp
        .call("Target.createTarget", json!({"url": format!("{base}/")}))
        .await;
    let attached = cdp
        .call(
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        )
        .await;
    cdp.session = Some(attached["sessionId"].as_str().unwrap().to_string());

    // Rendered: closes, forecasts and bands in the chart's data, a canvas drawn, the
    // scoreboard filled.
    let t0 = Instant::now();
    let first = loop {
        let d = cdp.dataset().await;
        if n(&d, "candles") >= 12 && n(&d, "forecasts") >= 12 && n(&d, "bands") >= 12 {
            break d;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the dashboard did not render series and bands: {d}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(
        cdp.eval("document.querySelectorAll('#chart canvas').length > 0")
            .await,
        json!(true)
    );
    assert_eq!(
        cdp.eval("document.getElementById('symbol').value").await,
        json!("BTC-USDT")
    );
    assert_ne!(
        cdp.eval("document.getElementById('price').textContent")
            .await,
        json!("—")
    );
    // Prices print at the symbol's precision: the decimals its closes are quoted with (2 to
    // 10), every bound of the newest forecast's band to the same digit.
    assert_eq!(
        cdp.eval(
            "(() => { const d = S.decimals; \
              const parts = document.getElementById('b95').textContent.split(' – '); \
              return d >= 2 && d <= 10 && parts.length === 2 \
                && parts.every((p) => (p.split('.')[1] || '').length === d); })()"
        )
        .await,
        json!(true),
        "band text {}",
        cdp.eval("document.getElementById('b95').textContent").await
    );

    // The odds of a typed price: at the newest forecast's point, about even that the bar
    // closes at or above it; both figures shown as percentages.
    cdp.eval(
        "(() => { const f = [...S.fc.values()].sort((a, b) => b.base_ms - a.base_ms)[0]; \
          const el = document.getElementById('level'); el.value = String(f.point); \
          el.dispatchEvent(new Event('input')); return true; })()",
    )
    .await;
    let t0 = Instant::now();
    let odds = loop {
        let d = cdp.dataset().await;
        if d["above"].is_string() && d["touch"].is_string() {
            break d;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no odds for the typed price: {d}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let above: f64 = odds["above"].as_str().unwrap().parse().unwrap();
    let touch: f64 = odds["touch"].as_str().unwrap().parse().unwrap();
    assert!((0.3..=0.7).contains(&above), "above {above}");
    assert!(touch > 0.0 && touch <= 1.0, "touch {touch}");
    let text = cdp
        .eval("document.getElementById('prob').textContent")
        .await;
    assert!(
        text.as_str()
            .is_some_and(|t| t.contains('%') && t.contains("touches")),
        "{text}"
    );
    // The newest forecast names its model's version (`{model}.r{revision}.{hash}`).
    let version = odds["modelVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let shown = cdp.eval("document.getElementById('mv').textContent").await;
    assert!(version.contains(".r"), "model version {version:?}");
    assert_eq!(shown.as_str(), Some(version.as_str()));

    // Updates: live ticks move the price, closed bars and new forecasts arrive over the
    // websocket and grow the chart's data.
    let t0 = Instant::now();
    let later = loop {
        let d = cdp.dataset().await;
        if n(&d, "updates") > 0 && n(&d, "ticks") > 0 {
            break d;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "no live updates reached the page: first {first}, now {d}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        cdp.eval("document.getElementById('conn').textContent")
            .await,
        json!("● live")
    );
    // Let a redraw happen, then keep a picture.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let shot = cdp
        .call("Page.captureScreenshot", json!({"format": "png"}))
        .await;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    let path = std::env::var_os("TICKCAST_SCREENSHOT").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/dashboard.png"),
        PathBuf::from,
    );
    std::fs::write(&path, &png).unwrap();
    eprintln!(
        "dashboard: first render {first}, after updates {later}; screenshot {} ({} bytes)",
        path.display(),
        png.len()
    );
    drop(demo);
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tickcast-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
