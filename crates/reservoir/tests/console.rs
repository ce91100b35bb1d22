//! The console in a real browser and the OpenAPI document against the running server.
//!
//! Runs `reservoir demo`, which collects the demo home and serves it, then the Python checks in `tests/e2e/`: Playwright
//! driving Debian's headless Chromium (screenshots kept under the target folder) and
//! openapi-spec-validator + Schemathesis. Needs `chromium`, and `pip install playwright
//! openapi-spec-validator schemathesis`; `.ci/run` installs them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use reservoir_testkit::workspace_root;

struct Server {
    child: Child,
    url: String,
    /// The PostgreSQL listener's address, as `reservoir demo` printed it.
    pg: Option<std::net::SocketAddr>,
    /// The first operator's password, as `reservoir demo` printed it.
    admin_password: Option<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM, so that the server shuts down gracefully; then make sure it is gone.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// Starts `reservoir ARGS…` and waits for the console URL it prints.
fn start(args: &[&std::ffi::OsStr]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_reservoir"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start reservoir");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut admin_password = None;
    let url = loop {
        let line = lines
            .next()
            .expect("reservoir exited before printing the console URL")
            .expect("read stdout");
        if let Some(rest) = line.trim().strip_prefix("login admin") {
            admin_password = rest
                .trim()
                .strip_prefix("password ")
                .map(|p| p.trim().to_string());
        }
        if let Some(rest) = line.strip_prefix("Reservoir console: ") {
            break rest.trim().trim_end_matches('/').to_string();
        }
    };
    // The listeners that follow, up to the line that says the server is ready.
    let mut pg = None;
    for line in lines.by_ref() {
        let line = line.expect("read stdout");
        if let Some(rest) = line.strip_prefix("PostgreSQL:") {
            pg = rest
                .trim()
                .strip_prefix("postgres://")
                .and_then(|r| r.split('/').next())
                .and_then(|a| a.parse().ok());
        }
        if line.starts_with("Press Ctrl-C") {
            break;
        }
    }
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        url,
        pg,
        admin_password,
    }
}

fn python(script: &str, args: &[&str]) {
    let path = workspace_root().join("tests/e2e").join(script);
    let status = Command::new("python3").arg(&path).args(args).status().unwrap_or_else(|e| {
        panic!("cannot run python3 ({e}); the browser and OpenAPI tests need python3 with playwright, openapi-spec-validator and schemathesis")
    });
    assert!(status.success(), "{script} failed ({status})");
}

#[test]
fn console_in_chromium_and_openapi_conformance() {
    assert!(
        Path::new(&std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()))
            .exists(),
        "the console test needs Chromium (apt-get install chromium) or CHROMIUM=/path/to/chrome"
    );
    // `reservoir demo` collects the demo home and then serves it: the README's main job.
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("demo");
    let server = start(&[
        "demo".as_ref(),
        "--bind".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--pg-bind".as_ref(),
        "127.0.0.1:0".as_ref(),
        home.as_os_str(),
    ]);
    let shots: PathBuf = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    let password = server
        .admin_password
        .clone()
        .expect("reservoir demo prints the first operator's password");
    python(
        "console.py",
        &[&server.url, shots.to_str().unwrap(), &password],
    );
    for page in [
        "01-home",
        "03-catalog-search",
        "04-dataset",
        "05-sql",
        "06-upload",
        "07-quarantine",
        "08-report",
        "09-request",
        "10-approve",
        "11-masked",
        "12-audit",
        "13-portal",
        "14-portal-dataset",
        "15-portal-apply",
        "16-portal-public-apply",
    ] {
        assert!(
            shots.join(format!("{page}.png")).exists(),
            "screenshot {page} missing"
        );
    }
    // The CKAN-compatible API through the real ckanapi client.
    python("ckan.py", &[&server.url]);

    // Delta Sharing through the real delta-sharing client: a consumer with an unmasked and a
    // masked, filtered grant, set up from the CLI on the home the server serves.
    let cli = |args: &[&str], stdin: Option<&str>| -> String {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_reservoir"))
            .args(["--home".as_ref(), home.as_os_str()])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run reservoir");
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
        drop(input);
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "reservoir {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let token_of = |out: String| -> String {
        out.lines()
            .map(str::trim)
            .find(|l| l.starts_with("rsv_"))
            .expect("the token in the output")
            .to_string()
    };
    let operator = token_of(cli(
        &[
            "token", "create", "--user", "admin", "--days", "1", "--name", "e2e",
        ],
        None,
    ));
    cli(
        &[
            "user",
            "add",
            "ds-reader",
            "--role",
            "consumer",
            "--unit",
            "tongji",
            "--password-stdin",
        ],
        Some("Reader-pass-2026\n"),
    );
    for args in [
        &[
            "--dataset",
            "minzheng.villages",
            "--columns",
            "code,name,streetCode",
        ][..],
        &[
            "--dataset",
            "minzheng.streets",
            "--columns",
            "code,name:keep:1/0",
            "--row-filter",
            "name LIKE '%镇'",
        ][..],
    ] {
        let mut all = vec!["grant", "create", "--user", "ds-reader"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--purpose", "跨部门共享测试", "--until", "2099-12-31"]);
        cli(&all, None);
    }
    let consumer = token_of(cli(
        &["token", "create", "--user", "ds-reader", "--days", "1"],
        None,
    ));
    let expiring = token_of(cli(
        &["token", "create", "--user", "ds-reader", "--days", "1"],
        None,
    ));
    let catalog_db = home.join("catalog.db");
    python(
        "sharing.py",
        &[
            &server.url,
            &consumer,
            &operator,
            &expiring,
            catalog_db.to_str().unwrap(),
        ],
    );

    // The PostgreSQL protocol through the real psql and psycopg, as the operator (its token as
    // the password) and as the consumer with the masked, filtered grant.
    let pg = server
        .pg
        .expect("reservoir demo prints the PostgreSQL address");
    python(
        "pg.py",
        &[&pg.ip().to_string(), &pg.port().to_string(), &operator],
    );
    // pgJDBC, the driver of DBeaver, Metabase and most Java BI tools: its metadata calls.
    let jdbc = std::env::var("PGJDBC").unwrap_or_else(|_| "/usr/share/java/postgresql.jar".into());
    assert!(
        Path::new(&jdbc).exists(),
        "the PostgreSQL protocol test needs pgJDBC (apt-get install libpostgresql-jdbc-java) or PGJDBC=/path/to/postgresql.jar"
    );
    let status = Command::new("java")
        .args(["-cp", &jdbc])
        .arg(workspace_root().join("tests/e2e/Jdbc.java"))
        .args([&pg.ip().to_string(), &pg.port().to_string()])
        .args(["ds-reader", "Reader-pass-2026"])
        .status()
        .unwrap_or_else(|e| {
            panic!("cannot run java ({e}); the pgJDBC test needs a JDK 11 or later")
        });
    assert!(status.success(), "Jdbc.java failed ({status})");

    // Schemathesis calls every operation as an operator, with a token from the CLI.
    python("openapi.py", &[&server.url, &operator]);
}
