//! The README as a newcomer uses it: start the real `baton serve --demo` on a fresh data dir (its
//! embedded PostgreSQL), take the token it prints, and run every `curl` line it prints and every
//! ```` ```sh ```` block of the README with `bash -euo pipefail`, as pasted into a second
//! terminal. Each must exit 0 and print something. Only the address changes (the test's own
//! port for `127.0.0.1:8080`), and `cargo run … --release --` becomes the binary under test (the
//! same program, without a release build). A block that needs another setup is preceded by a line
//! starting with [`SKIP`], saying why. The server's own log, redirected to a file as a service
//! manager would, must hold no colour codes and, after a clean start and SIGTERM, no warning.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The line before a ```` ```sh ```` block that this test must not run.
const SKIP: &str = "<!-- not run by tests/readme.rs";

/// A ```` ```sh ```` block of the README: its first line number and text, and whether it runs.
struct Block {
    line: usize,
    text: String,
    runs: bool,
}

fn sh_blocks(readme: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut previous = "";
    let mut lines = readme.lines().enumerate();
    while let Some((i, line)) = lines.next() {
        if line.trim() == "```sh" {
            let runs = !previous.trim_start().starts_with(SKIP);
            let text: Vec<&str> = lines
                .by_ref()
                .map(|(_, l)| l)
                .take_while(|l| l.trim() != "```")
                .collect();
            blocks.push(Block {
                line: i + 2,
                text: text.join("\n"),
                runs,
            });
        }
        if !line.trim().is_empty() {
            previous = line;
        }
    }
    blocks
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `script` with `bash -euo pipefail` in `dir`; its exit status, stdout and stderr. A script
/// still running after a minute is killed and fails.
fn run_bash(dir: &Path, script: &str, env: &[(&str, &str)]) -> (bool, String, String) {
    let (out, err) = (dir.join("script.out"), dir.join("script.err"));
    let mut child = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status.is_some_and(|s| s.success()),
        std::fs::read_to_string(out).unwrap(),
        std::fs::read_to_string(err).unwrap() + if status.is_none() { "(timed out)" } else { "" },
    )
}

/// The token and the `curl` lines `serve --demo` printed.
fn printed(lines: &mpsc::Receiver<String>, child: &mut Child, log: &Path) -> (String, Vec<String>) {
    let mut token = None;
    let mut curls = Vec::new();
    loop {
        let line = match lines.recv_timeout(Duration::from_secs(120)) {
            Ok(line) => line,
            Err(e) => panic!(
                "serve --demo printed no token ({e}; exit {:?}): {}",
                child.try_wait(),
                std::fs::read_to_string(log).unwrap_or_default()
            ),
        };
        if let Some(t) = line.strip_prefix("export BATON_TOKEN=") {
            token = Some(t.to_owned());
        } else if line.starts_with("curl ") {
            curls.push(line);
        } else if line.trim().is_empty() && !curls.is_empty() {
            return (token.expect("the token comes before the curl lines"), curls);
        }
    }
}

#[tokio::test]
async fn readme_examples_and_demo_curl_lines_run_verbatim_against_the_demo() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    // One name for the token everywhere: the one the demo prints.
    assert!(
        !readme.replace("$BATON_TOKEN", "").contains("$TOKEN"),
        "the README uses $BATON_TOKEN, as the demo prints"
    );
    let blocks = sh_blocks(&readme);
    let runnable: Vec<&Block> = blocks.iter().filter(|b| b.runs).collect();
    assert!(
        runnable.len() >= 6,
        "{} runnable blocks of {}",
        runnable.len(),
        blocks.len()
    );

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("baton.log");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["serve", "--demo", "--addr", &addr])
        .env_remove("DATABASE_URL")
        .env_remove("BATON_JWT_SECRET")
        .env_remove("BATON_ADDR")
        .env_remove("BATON_LOG_FORMAT")
        .env_remove("RUST_LOG")
        .env("BATON_DATA_DIR", &data)
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
    let (token, curls) = printed(&lines, &mut child, &log);
    assert!(curls.len() >= 5, "{curls:?}");
    assert!(
        curls.iter().any(|c| c.contains("/handoff_state?")),
        "a PolyAI line: {curls:?}"
    );
    assert!(
        curls.iter().any(|c| c.contains("/v1/handoffs?")),
        "a handoffs list line: {curls:?}"
    );

    let bin = env!("CARGO_BIN_EXE_baton");
    let data_str = data.to_str().unwrap();
    let env = [
        ("BATON_TOKEN", token.as_str()),
        ("BATON_DATA_DIR", data_str),
    ];
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let mut failures = Vec::new();
    let mut check = |what: String, script: &str| {
        let started = Instant::now();
        let (ok, out, err) = run_bash(&work, script, &env);
        eprintln!("{what}: {:?}, {} bytes", started.elapsed(), out.len());
        if !ok || out.trim().is_empty() {
            failures.push(format!(
                "{what} (exit ok: {ok})\n--- script\n{script}\n--- stdout\n{out}\n--- stderr\n{err}"
            ));
        }
    };
    for line in &curls {
        check(format!("printed: {line}"), line);
    }
    for block in runnable {
        let script = block
            .text
            .replace("127.0.0.1:8080", &addr)
            .replace("localhost:8080", &addr)
            .replace("cargo run -q --release --", "\"$BATON_BIN\"")
            .replace("cargo run --release --", "\"$BATON_BIN\"");
        assert!(
            !script.contains("cargo ") && !script.contains(":8080"),
            "README line {}: a block this test cannot rewrite; mark it with {SKIP}: why -->\n{script}",
            block.line
        );
        check(
            format!("README block at line {}", block.line),
            &format!("BATON_BIN='{bin}'\n{script}"),
        );
    }

    // The ETag is what the README says it is: "<organization id, 32 hex digits>-<revision>".
    let res = reqwest::Client::new()
        .get(format!("http://{addr}/v1/api/human_handoff/configuration"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    let inner = etag.trim_matches('"');
    let (org, revision) = inner.split_once('-').unwrap();
    assert!(
        org.len() == 32
            && org.bytes().all(|b| b.is_ascii_hexdigit())
            && revision.parse::<u64>().is_ok(),
        "{etag}"
    );
    assert!(
        readme.contains("`\"<organization id as 32 hex digits, no hyphens>-<revision>\"`"),
        "the README documents the ETag as sent"
    );

    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(status.success(), "exit {status}: {logged}");
    assert!(
        !logged.contains("\x1b["),
        "no colour codes in a log that is not a terminal: {logged}"
    );
    for line in logged.lines() {
        assert!(
            !line.contains(" WARN ") && !line.contains(" ERROR "),
            "a clean start and stop warns of nothing: {line}"
        );
    }
    assert!(logged.contains("shut down cleanly"), "{logged}");
}
