//! The dashboard in a real browser: the real `baton serve --demo` (its embedded PostgreSQL, its
//! demo data) and Debian's `chromium`, headless, driven over WebDriver by `chromedriver`
//! (`apt-get install chromium chromium-driver`; `.ci/run` installs them). What the page shows
//! is compared with what the API answers the test for the same question.
//!
//! One browser for the whole file: the scenarios run in order in one test (the browser and the
//! demo take seconds to start, the scenarios a fraction of that). Chromedriver's and the server's
//! output go to files in the test's temporary directory, printed when a scenario fails.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// A program on `PATH` (or named by the environment variable `var`).
fn program(var: &str, names: &[&str]) -> PathBuf {
    if let Some(p) = std::env::var_os(var) {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "{} not found (set {var}): the dashboard tests need Debian's chromium and chromium-driver \
         (`apt-get install chromium chromium-driver`, as .ci/run does)",
        names.join(" or ")
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `baton serve --demo` on a fresh data dir: its address, printed dashboard URL and token.
struct Demo {
    child: Child,
    data: PathBuf,
    base: String,
    url: String,
    token: String,
}

impl Demo {
    fn start(dir: &Path) -> Demo {
        let data = dir.join("data");
        let log = dir.join("baton.log");
        let port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(["serve", "--demo", "--admin-addr", "off"])
            .args(["--addr", &format!("127.0.0.1:{port}")])
            .env_remove("DATABASE_URL")
            .env_remove("BATON_JWT_SECRET")
            .env_remove("BATON_ADDR")
            .env("BATON_DATA_DIR", &data)
            .env("BATON_RATE_LIMIT_PER_MINUTE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let (mut url, mut token) = (None, None);
        while token.is_none() {
            let line = lines
                .recv_timeout(Duration::from_secs(180))
                .unwrap_or_else(|e| {
                    panic!(
                        "serve --demo printed no token ({e}): {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    )
                });
            if line.starts_with("http://") && line.contains("/#token=") {
                url = Some(line.trim().to_owned());
            } else if let Some(t) = line.strip_prefix("export BATON_TOKEN=") {
                token = Some(t.to_owned());
            }
        }
        let (url, token) = (url.expect("the dashboard URL comes first"), token.unwrap());
        assert_eq!(url, format!("http://127.0.0.1:{port}/#token={token}"));
        Demo {
            child,
            data,
            base: format!("http://127.0.0.1:{port}"),
            url,
            token,
        }
    }

    /// Runs an admin command of the binary on the demo's data dir; its stdout.
    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(args)
            .env_remove("DATABASE_URL")
            .env("BATON_DATA_DIR", &self.data)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "baton {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

/// Chromedriver and one headless chromium session.
struct Browser {
    driver: Child,
    client: Client,
}

impl Browser {
    async fn start(dir: &Path) -> Browser {
        let chromium = program("BATON_CHROMIUM", &["chromium", "chromium-browser"]);
        let chromedriver = program("BATON_CHROMEDRIVER", &["chromedriver"]);
        let port = free_port();
        let log = std::fs::File::create(dir.join("chromedriver.log")).unwrap();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let profile = dir.join("chromium-profile");
        let caps = json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--window-size=1280,800",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }
        });
        let caps = caps.as_object().unwrap().clone();
        let started = Instant::now();
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(c) => break c,
                Err(e) if started.elapsed() < Duration::from_secs(30) => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!(
                    "no WebDriver session: {e}\n{}",
                    std::fs::read_to_string(dir.join("chromedriver.log")).unwrap_or_default()
                ),
            }
        };
        Browser { driver, client }
    }

    async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    /// Waits (at most 20 s) until `script` returns true.
    async fn until(&self, script: &str, what: &str) {
        let started = Instant::now();
        loop {
            if self.js(script).await == json!(true) {
                return;
            }
            if started.elapsed() > Duration::from_secs(20) {
                let page = self
                    .js("return document.querySelector('main')?.innerText ?? document.body.innerText")
                    .await;
                panic!("timed out waiting for {what} ({script}); the page says: {page}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until view `name` has rendered (or failed to: that fails the test, with the message).
    async fn ready(&self, name: &str) {
        self.until(
            &format!(
                "const v = document.querySelector('.view[data-view=\"{name}\"]'); \
                 if (v?.dataset.state === 'error') throw new Error(v.innerText); \
                 return v?.dataset.state === 'ready';"
            ),
            &format!("the {name} view"),
        )
        .await;
    }

    async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .text()
            .await
            .unwrap()
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .click()
            .await
            .unwrap();
    }

    /// Types `text` into the field `css` in place of its value.
    async fn type_into(&self, css: &str, text: &str) {
        let el = self.client.find(Locator::Css(css)).await.unwrap();
        el.clear().await.unwrap();
        el.send_keys(text).await.unwrap();
    }

    /// Sets a `<select>` and lets the page see the change.
    async fn choose(&self, css: &str, value: &str) {
        self.client
            .execute(
                "const s = document.querySelector(arguments[0]); s.value = arguments[1]; \
                 s.dispatchEvent(new Event('change', {bubbles: true}));",
                vec![json!(css), json!(value)],
            )
            .await
            .unwrap();
    }

    async fn stop(mut self) {
        let _ = self.client.close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The API's answer, as the test asks for it.
async fn get(demo: &Demo, token: &str, path: &str, query: &[(&str, &str)]) -> (Value, String) {
    let res = reqwest::Client::new()
        .get(format!("{}{path}", demo.base))
        .query(query)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{path}");
    let etag = res
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (res.json().await.unwrap(), etag)
}

/// The period and zone the pickers show: `[start, end, zone]`.
const RANGE: &str = "const v = (id) => document.getElementById(id).value; \
                     return [v('start'), v('end'), v('tz')]";

/// `1234567` as the page writes it: `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[tokio::test]
async fn the_dashboard_in_a_real_browser_shows_and_edits_what_the_api_holds() {
    let dir = tempfile::tempdir().unwrap();
    // The embedded cluster runs as `postgres` when the tests run as root: it must reach the dir.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let demo = Demo::start(dir.path());
    let browser = Browser::start(dir.path()).await;
    let scenarios = async {
        overview_shows_the_apis_figures(&browser, &demo).await;
        handoffs_view_pages_through_every_handoff(&browser, &demo).await;
        configuration_saves_and_explains_conflicts(&browser, &demo).await;
        endpoints_this_server_may_lack_are_explained(&browser, &demo).await;
        read_only_token_disables_editing(&browser, &demo).await;
        reseller_token_picks_an_organization(&browser, &demo).await;
        bad_token_asks_for_another(&browser, &demo).await;
    };
    let outcome = tokio::time::timeout(Duration::from_secs(240), scenarios).await;
    browser.stop().await;
    if outcome.is_err() {
        panic!(
            "the scenarios took over 4 minutes; chromedriver said:\n{}",
            std::fs::read_to_string(dir.path().join("chromedriver.log")).unwrap_or_default()
        );
    }
}

async fn overview_shows_the_apis_figures(b: &Browser, demo: &Demo) {
    b.client.goto(&demo.url).await.unwrap();
    b.ready("overview").await;
    // The token left the address bar for this tab's storage.
    assert_eq!(b.js("return location.hash").await, json!("#/overview"));
    assert_eq!(
        b.js("return sessionStorage.getItem('baton.token')").await,
        json!(demo.token)
    );
    for preset in ["30", "90"] {
        b.choose("#preset", preset).await;
        b.ready("overview").await;
        let range = b.js(RANGE).await;
        let (start, end, tz) = (
            range[0].as_str().unwrap(),
            range[1].as_str().unwrap(),
            range[2].as_str().unwrap(),
        );
        assert_eq!(tz, "Europe/Berlin", "the organization's zone by default");
        let q = [("start_date", start), ("end_date", end), ("timezone", tz)];
        let (a, _) = get(demo, &demo.token, "/handoff-analytics", &q).await;
        let total = a["total_handoffs"].as_u64().unwrap();
        let sessions = a["total_sessions"].as_u64().unwrap();
        assert!(total > 100, "the demo has handoffs in {preset} days");
        assert_eq!(
            b.text("[data-figure=total_handoffs]").await,
            thousands(total)
        );
        assert_eq!(
            b.text("[data-figure=total_sessions]").await,
            thousands(sessions)
        );
        let rate = b.text("[data-figure=handoff_rate]").await;
        let shown: f64 = rate.trim_end_matches(" %").parse().unwrap();
        let expected = 100.0 * total as f64 / sessions as f64;
        assert!((shown - expected).abs() < 0.006, "{rate} vs {expected}");
        assert_eq!(
            b.text("[data-figure=summary]").await,
            a["summary"].as_str().unwrap()
        );
        for (list, key, field) in [
            ("reasons", "reason", "reasons"),
            ("sentiments", "sentiment", "sentiments"),
        ] {
            let shown = b
                .js(&format!(
                    "return [...document.querySelectorAll('[data-list={list}] li')]\
                     .map(li => [li.dataset.key, Number(li.dataset.value)])"
                ))
                .await;
            let expected: Vec<Value> = a[field]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| json!([r[key].as_str().unwrap_or("none"), r["count"]]))
                .collect();
            assert_eq!(shown, json!(expected), "{list}");
        }
        let combos = b
            .js("return document.querySelectorAll('[data-table=combinations] tbody tr').length")
            .await;
        assert_eq!(
            combos,
            json!(a["reason_combinations"].as_array().unwrap().len().min(10))
        );
        // The daily chart is drawn (a canvas per chart).
        b.until(
            "return document.querySelectorAll('.chart canvas').length >= 1",
            "the trend chart",
        )
        .await;
    }
    // On a 360 px wide screen nothing sticks out sideways (wide tables scroll in their panel).
    b.client.set_window_size(360, 800).await.unwrap();
    b.until(
        "return window.innerWidth <= 360 \
         && document.documentElement.scrollWidth <= window.innerWidth",
        "a page as narrow as the window",
    )
    .await;
    b.client.set_window_size(1280, 800).await.unwrap();
}

async fn handoffs_view_pages_through_every_handoff(b: &Browser, demo: &Demo) {
    b.click("#nav a[data-view=handoffs]").await;
    b.ready("handoffs").await;
    b.choose("select[name=limit]", "100").await;
    b.click(".filters button[type=submit]").await;
    b.ready("handoffs").await;
    let range = b.js(RANGE).await;
    let mut seen = Vec::new();
    let mut page = 1;
    loop {
        b.until(
            &format!(
                "return document.querySelector('[data-page]')?.dataset.page === '{page}' \
                 && document.querySelector('.view').dataset.state === 'ready'"
            ),
            &format!("page {page}"),
        )
        .await;
        let ids = b
            .js("return [...document.querySelectorAll('[data-table=handoffs] tbody tr td:nth-child(2)')].map(td => td.innerText)")
            .await;
        let ids = ids.as_array().unwrap().clone();
        assert!(ids.len() <= 100);
        seen.extend(ids.into_iter().map(|v| v.as_str().unwrap().to_owned()));
        let more = b
            .js("return !document.querySelector('[data-action=next]').disabled")
            .await;
        if more != json!(true) {
            break;
        }
        b.click("[data-action=next]").await;
        page += 1;
    }
    // The API's own pages, for the same range.
    let mut expected = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let mut q = vec![
            ("start_date", range[0].as_str().unwrap()),
            ("end_date", range[1].as_str().unwrap()),
            ("timezone", range[2].as_str().unwrap()),
            ("limit", "500"),
        ];
        if let Some(n) = next.as_deref() {
            q.push(("next", n));
        }
        let (body, _) = get(demo, &demo.token, "/v1/handoffs", &q).await;
        for h in body["handoffs"].as_array().unwrap() {
            expected.push(h["handoff_id"].as_str().unwrap().to_owned());
        }
        match body["next"].as_str() {
            Some(n) => next = Some(n.to_owned()),
            None => break,
        }
    }
    assert!(page > 2, "several pages ({page})");
    assert_eq!(seen.len(), expected.len());
    assert_eq!(seen, expected, "the same handoffs, in the same order");

    // One handoff: its history and its PolyAI data, as the API has them.
    b.client
        .goto(&format!("{}/#/handoffs/demo-handoff-refund", demo.base))
        .await
        .unwrap();
    b.until(
        "return !!document.querySelector('[data-handoff=\"demo-handoff-refund\"]') \
         && document.querySelector('.view').dataset.state === 'ready'",
        "the handoff",
    )
    .await;
    let (one, _) = get(demo, &demo.token, "/v1/handoffs/demo-handoff-refund", &[]).await;
    let rows = b
        .js("return document.querySelectorAll('[data-table=history] tbody tr').length")
        .await;
    assert_eq!(rows, json!(one["history"].as_array().unwrap().len()));
    let data: Value = serde_json::from_str(&b.text("[data-json=data]").await).unwrap();
    assert_eq!(data, one["data"]);
}

async fn configuration_saves_and_explains_conflicts(b: &Browser, demo: &Demo) {
    const PATH: &str = "/v1/api/human_handoff/configuration";
    b.click("#nav a[data-view=configuration]").await;
    b.ready("configuration").await;

    // A change saved from the page is what the API then holds.
    b.type_into(
        "textarea[name=question_message]",
        "Shall I fetch a colleague?",
    )
    .await;
    b.click("button[data-action=save]").await;
    b.until(
        "return document.querySelector('[data-result]')?.dataset.result === 'saved'",
        "the saved message",
    )
    .await;
    let (doc, etag) = get(demo, &demo.token, PATH, &[]).await;
    assert_eq!(
        doc["settings"]["question_message"],
        "Shall I fetch a colleague?"
    );

    // Another writer (the test, through the API) saves after the page loaded the document.
    let mut theirs = doc.clone();
    theirs["settings"]["confirmation_message"] = json!("Theirs.");
    let res = reqwest::Client::new()
        .put(format!("{}{PATH}", demo.base))
        .bearer_auth(&demo.token)
        .header("if-match", &etag)
        .json(&theirs)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    b.type_into("textarea[name=question_message]", "Mine, too late.")
        .await;
    b.click("button[data-action=save]").await;
    b.until(
        "return document.querySelector('[data-result]')?.dataset.result === 'conflict'",
        "the conflict message",
    )
    .await;
    let message = b.text("[data-result=conflict]").await;
    assert!(message.contains("someone else changed"), "{message}");
    let (now, _) = get(demo, &demo.token, PATH, &[]).await;
    assert_eq!(now["settings"]["confirmation_message"], "Theirs.");
    assert_eq!(
        now["settings"]["question_message"], "Shall I fetch a colleague?",
        "nothing overwritten"
    );

    // Reload, then a value the API refuses: its message next to the field.
    b.click("[data-result=conflict] button").await;
    b.ready("configuration").await;
    b.type_into(
        "[data-field='settings.timezone'] input",
        "Mars/Olympus_Mons",
    )
    .await;
    b.click("button[data-action=save]").await;
    b.until(
        "return document.querySelector('[data-result]')?.dataset.result === 'invalid'",
        "the validation message",
    )
    .await;
    let inline = b.text("[data-error-for='settings.timezone']").await;
    assert!(!inline.is_empty());
    assert_eq!(
        b.js("return document.querySelector(\"[data-field='settings.timezone'] input\").getAttribute('aria-invalid')")
            .await,
        json!("true")
    );
    let (after, _) = get(demo, &demo.token, PATH, &[]).await;
    assert_eq!(after, now, "a refused save changes nothing");
}

/// Lifecycle and webhooks: on a server without those endpoints (404 from the fallback) the views
/// say so; on a server with them, they render.
async fn endpoints_this_server_may_lack_are_explained(b: &Browser, demo: &Demo) {
    for (view, path) in [
        ("lifecycle", "/v1/handoff-lifecycle"),
        ("webhooks", "/v1/webhooks"),
    ] {
        let status = reqwest::Client::new()
            .get(format!("{}{path}", demo.base))
            .bearer_auth(&demo.token)
            .send()
            .await
            .unwrap()
            .status();
        b.click(&format!("#nav a[data-view={view}]")).await;
        b.ready(view).await;
        let missing = b
            .js(&format!(
                "return document.querySelector('[data-missing={view}]')?.innerText ?? null"
            ))
            .await;
        if status == 404 {
            let text = missing.as_str().unwrap_or_default();
            assert!(text.contains("has no") && text.contains(path), "{text}");
        } else {
            assert_eq!(missing, Value::Null, "{view}: {path} answers {status}");
        }
        if view == "webhooks" && status == 200 {
            // A subscription made through the API is listed by the view.
            let url = "https://93.184.215.14/baton-hook";
            let res = reqwest::Client::new()
                .post(format!("{}{path}", demo.base))
                .bearer_auth(&demo.token)
                .json(&json!({"url": url, "event_types": ["handoff.completed"]}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 201);
            b.click("#nav a[data-view=overview]").await;
            b.ready("overview").await;
            b.click("#nav a[data-view=webhooks]").await;
            b.ready("webhooks").await;
            let listed = b.text("[data-table=webhooks]").await;
            assert!(listed.contains(url), "{listed}");
        }
        if view == "lifecycle" && status == 200 {
            // The figures the page shows are the API's for the page's range and zone.
            let range = b.js(RANGE).await;
            let q: Vec<(&str, &str)> = vec![
                ("start_date", range[0].as_str().unwrap()),
                ("end_date", range[1].as_str().unwrap()),
                ("timezone", range[2].as_str().unwrap()),
            ];
            let (l, _) = get(demo, &demo.token, path, &q).await;
            let totals = &l["totals"];
            assert!(totals["initiated"].as_u64().unwrap() > 100, "{l}");
            for figure in ["initiated", "open"] {
                assert_eq!(
                    b.text(&format!("[data-figure={figure}]")).await,
                    thousands(totals[figure].as_u64().unwrap()),
                    "{figure}"
                );
            }
            assert_eq!(
                b.text("[data-figure=outside_working_hours]").await,
                thousands(totals["outside_working_hours"].as_u64().unwrap())
            );
        }
    }
}

async fn read_only_token_disables_editing(b: &Browser, demo: &Demo) {
    let reader = demo.cli(&["token", "issue", "--org", "demo", "--scope", "read_all"]);
    b.client
        .goto(&format!("{}/#token={reader}&view=configuration", demo.base))
        .await
        .unwrap();
    b.ready("configuration").await;
    assert_eq!(
        b.js("return document.querySelector('[data-scope]').dataset.scope")
            .await,
        json!("read only")
    );
    let why = b.text("[data-readonly]").await;
    assert!(why.contains("read-only"), "{why}");
    assert_eq!(
        b.js(
            "return [document.querySelector('button[data-action=save]').disabled, \
              document.querySelector('textarea[name=question_message]').matches(':disabled')]"
        )
        .await,
        json!([true, true])
    );
}

async fn reseller_token_picks_an_organization(b: &Browser, demo: &Demo) {
    demo.cli(&["reseller", "create", "acme-resale"]);
    let shop: Value = serde_json::from_str(&demo.cli(&[
        "org",
        "create",
        "acme-shop",
        "--reseller",
        "acme-resale",
        "--timezone",
        "America/New_York",
    ]))
    .unwrap();
    let token = demo.cli(&[
        "token",
        "issue",
        "--reseller",
        "acme-resale",
        "--scope",
        "read_all",
    ]);
    b.client
        .goto(&format!("{}/#token={token}&view=overview", demo.base))
        .await
        .unwrap();
    b.ready("overview").await;
    assert_eq!(
        b.js("const v = (id) => document.getElementById(id); \
              return [v('org-label').hidden, v('org').value, v('tz').value]")
            .await,
        json!([false, shop["id"], "America/New_York"])
    );
    assert_eq!(b.text("[data-figure=total_handoffs]").await, "0");
}

async fn bad_token_asks_for_another(b: &Browser, demo: &Demo) {
    b.client
        .goto(&format!("{}/#token=not-a-token", demo.base))
        .await
        .unwrap();
    b.until(
        "return !document.getElementById('login-error').hidden",
        "the login form's message",
    )
    .await;
    let text = b.text("#login-error").await;
    assert!(text.contains("refused"), "{text}");
}
