//! A minimal W3C WebDriver client for the dashboard's browser test: chromedriver started on
//! a free port, headless Chromium sessions, plain HTTP/1.1 with JSON (no extra crates).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(name)).find(|p| p.is_file())
}

/// chromedriver, killed on drop.
pub struct Driver {
    child: Child,
    port: u16,
    chromium: PathBuf,
    profiles: tempfile::TempDir,
}

impl Driver {
    /// Starts chromedriver; panics naming the Debian packages when the browser is missing.
    pub async fn start() -> Self {
        let hint =
            "install the Debian packages `chromium` and `chromium-driver` (bash deploy/install-deps.sh --browser)";
        let chromium = which("chromium")
            .or_else(|| which("chromium-browser"))
            .unwrap_or_else(|| panic!("the dashboard's browser test needs Chromium: {hint}"));
        let driver =
            which("chromedriver").unwrap_or_else(|| panic!("the dashboard's browser test needs chromedriver: {hint}"));
        let port = proact_testkit::free_port().unwrap();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let d = Self { child, port, chromium, profiles: tempfile::tempdir().unwrap() };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while d.request("GET", "/status", None).await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "chromedriver did not answer on port {port}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        d
    }

    async fn request(&self, method: &str, path: &str, body: Option<&Value>) -> std::io::Result<Value> {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.port,
            body.len()
        );
        s.write_all(req.as_bytes()).await?;
        // chromedriver keeps the connection open whatever the request says: read the head,
        // then exactly Content-Length bytes.
        let mut raw = Vec::new();
        let mut buf = [0u8; 8192];
        let head_end = loop {
            if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = s.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::Error::other("connection closed before the response head"));
            }
            raw.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
        let len = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:").and_then(|v| v.trim().parse::<usize>().ok()))
            .ok_or_else(|| std::io::Error::other(format!("no content-length in {head}")))?;
        while raw.len() < head_end + len {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
        }
        let body = String::from_utf8_lossy(&raw[head_end..(head_end + len).min(raw.len())]).to_string();
        serde_json::from_str(&body).map_err(|e| std::io::Error::other(format!("{e}: {body}")))
    }

    /// A new headless Chromium with a fresh profile and a `width` × `height` window.
    pub async fn session(&self, width: u32, height: u32) -> Session<'_> {
        // A fresh profile per browser, removed with the driver's directory.
        let profile = tempfile::tempdir_in(self.profiles.path()).expect("profile directory").keep();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": self.chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--lang=fr-FR",
                    format!("--user-data-dir={}", profile.display()),
                    format!("--window-size={width},{height}"),
                ]
            }
        }}});
        let v = self.request("POST", "/session", Some(&caps)).await.expect("new session");
        let id = v["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {v}")).to_string();
        let s = Session { driver: self, id };
        s.cmd("POST", "/window/rect", json!({"width": width, "height": height})).await;
        s
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser (one page).
pub struct Session<'a> {
    driver: &'a Driver,
    id: String,
}

impl Session<'_> {
    async fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let body = (method != "GET" && method != "DELETE").then_some(body);
        let v = self
            .driver
            .request(method, &format!("/session/{}{path}", self.id), body.as_ref())
            .await
            .unwrap_or_else(|e| panic!("webdriver {method} {path}: {e}"));
        if v["value"]["error"].is_string() {
            panic!("webdriver {method} {path}: {}", v["value"]);
        }
        v["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", json!({ "url": url })).await;
    }

    /// Runs `script` (a function body; `arguments` are `args`) and returns its value.
    pub async fn eval(&self, script: &str, args: Value) -> Value {
        self.cmd("POST", "/execute/sync", json!({ "script": script, "args": args })).await
    }

    /// Waits until `script` returns a truthy value; returns it.
    pub async fn wait_for(&self, what: &str, script: &str, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let v = self.eval(script, json!([])).await;
            if !(v.is_null() || v == json!(false) || v == json!("") || v == json!(0)) {
                return v;
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The first element matching `css`.
    pub async fn find(&self, css: &str) -> String {
        let v = self.cmd("POST", "/element", json!({ "using": "css selector", "value": css })).await;
        v[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {css}: {v}")).to_string()
    }

    /// Clicks like a user (WebDriver element click: scrolled into view, hit-tested).
    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.cmd("POST", &format!("/element/{e}/click"), json!({})).await;
    }

    /// Replaces the value of the input `css` by typing `text`.
    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.cmd("POST", &format!("/element/{e}/clear"), json!({})).await;
        self.cmd("POST", &format!("/element/{e}/value"), json!({ "text": text })).await;
    }

    pub async fn text(&self, css: &str) -> String {
        let e = self.find(css).await;
        self.cmd("GET", &format!("/element/{e}/text"), json!({})).await.as_str().unwrap_or_default().to_string()
    }

    /// Saves a PNG screenshot of the viewport.
    pub async fn screenshot(&self, path: &Path) {
        let b64 = self.cmd("GET", "/screenshot", json!({})).await;
        let png = base64_decode(b64.as_str().expect("base64 screenshot"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }

    pub async fn quit(self) {
        let _ = self.driver.request("DELETE", &format!("/session/{}", self.id), None).await;
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

#[test]
fn base64_roundtrip_of_a_known_value() {
    assert_eq!(base64_decode("aGVsbG8gd29ybGQ="), b"hello world");
    assert_eq!(base64_decode("iVBORw0KGgo="), [0x89, b'P', b'N', b'G', 13, 10, 26, 10]);
}
