//! report.html in a real browser: a real run (quick mode against a tiny HTTP server) writes the
//! results folder, then headless Chromium renders report.html. Checks: the SVG plots render,
//! the page makes no network request (Chromium's net log) and logs no console error, text is
//! escaped; a screenshot is saved to tests/artifacts/report.png. A canary page proves the
//! network and console detectors fire. Without Chromium: skipped, or failed when `CI` is set.

use crate::support::http_server;
use crate::support::runs::quick_args;
use crate::support::tools::{required, which};

use novaload::report::Verdict;
use novaload::session::{self, Stops};
use std::path::{Path, PathBuf};
use std::process::Command;

/// `$NOVALOAD_CHROMIUM`, else the first of chromium, chromium-browser, google-chrome on PATH.
fn chromium() -> Option<PathBuf> {
    let found = std::env::var_os("NOVALOAD_CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| {
            ["chromium", "chromium-browser", "google-chrome"]
                .into_iter()
                .find_map(which)
        });
    required(found, "chromium", "apt-get install -y chromium")
}

struct Browser {
    stdout: String,
    stderr: String,
    /// URLs the page (not the browser itself) asked for, from the net log.
    page_requests: Vec<String>,
}

/// Runs headless Chromium on `page` with `mode` (`--dump-dom` or `--screenshot=...`).
fn browse(bin: &Path, page: &Path, mode: &str) -> Browser {
    let profile = tempfile::tempdir().unwrap();
    let netlog = profile.path().join("netlog.json");
    let out = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            "--log-level=0",
            "--window-size=1280,2400",
        ])
        .arg(format!(
            "--user-data-dir={}",
            profile.path().join("p").display()
        ))
        .arg(format!("--log-net-log={}", netlog.display()))
        .arg(mode)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Browser {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        page_requests: page_requests(&netlog),
    }
}

/// URL requests in a Chromium net log that a page started. The browser's own background
/// requests (update checks and the like) carry the initiator "not an origin"; a page's
/// subresources carry the page's origin (`null` for file://).
fn page_requests(netlog: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(netlog).expect("net log written");
    let v: serde_json::Value = serde_json::from_str(&text)
        .or_else(|_| serde_json::from_str(&format!("{}]}}", text.trim_end().trim_end_matches(','))))
        .expect("net log is JSON");
    let types = &v["constants"]["logEventTypes"];
    let start_job = types["URL_REQUEST_START_JOB"].as_i64().expect("event type");
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"].as_i64() == Some(start_job))
        .filter(|e| e["params"]["initiator"].as_str() != Some("not an origin"))
        .filter_map(|e| e["params"]["url"].as_str().map(str::to_string))
        .filter(|u| !u.starts_with("file://") && !u.starts_with("data:"))
        .collect()
}

fn console_errors(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_html_renders_in_chromium_without_network() {
    let srv = http_server::start(None).await;
    let dir = tempfile::tempdir().unwrap();
    let mut a = quick_args(&format!("http://{}/slow/20", srv.addr), dir.path());
    a.vus = Some(3);
    a.duration = Some("3s".into());
    a.thresholds = vec![
        "http_req_failed=rate<0.01".into(),
        "http_req_duration=p(95)<60".into(),
        // missed on purpose (warning severity): a WARNING banner and a red threshold line
        "http_req_duration=p(99)<10".into(),
    ];
    let o = session::run(a, Stops::default()).await.unwrap();
    assert_eq!(o.verdict, Verdict::Warning);
    let html_path = o.results_dir.join("report.html");
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(o.results_dir.join("junit.xml").exists());

    // self-contained: nothing the browser would fetch
    for bad in [
        "src=",
        "<link",
        "<script",
        "url(",
        "@import",
        "href=\"http",
        "href='http",
    ] {
        assert!(!html.contains(bad), "report.html contains {bad}");
    }
    assert!(html.contains("data-verdict=\"WARNING\""));
    assert!(
        html.contains("class=\"threshold\""),
        "a threshold line in range is drawn"
    );

    let Some(bin) = chromium() else { return };
    // the screenshot: a test artifact (git-ignored)
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let png = artifacts.join("report.png");
    let _ = std::fs::remove_file(&png);
    let shot = browse(&bin, &html_path, &format!("--screenshot={}", png.display()));
    let png_bytes = std::fs::read(&png).expect("screenshot written");
    assert!(png_bytes.starts_with(b"\x89PNG") && png_bytes.len() > 20_000);
    assert!(shot.page_requests.is_empty(), "{:?}", shot.page_requests);

    // the rendered DOM: the plots are there and drawn
    let dom = browse(&bin, &html_path, "--dump-dom");
    let svgs = dom.stdout.matches("<svg").count();
    assert!(svgs >= 5, "{svgs} svg elements in the DOM");
    let polylines: Vec<&str> = dom.stdout.split("<polyline").skip(1).collect();
    assert!(polylines.len() >= 6, "{} polylines", polylines.len());
    let drawn = polylines
        .iter()
        .filter(|p| {
            let pts = p.split("points=\"").nth(1).unwrap_or("");
            pts.split('"').next().unwrap_or("").split(' ').count() >= 2
        })
        .count();
    assert!(drawn >= 5, "only {drawn} polylines have 2+ points");
    assert!(dom.stdout.contains("Latency percentile spectrum"));
    assert!(
        dom.page_requests.is_empty(),
        "page requests: {:?}",
        dom.page_requests
    );
    let errors = console_errors(&dom.stderr);
    assert!(errors.is_empty(), "console errors: {errors:?}");

    // regenerate from the folder: same plots
    std::fs::remove_file(&html_path).unwrap();
    assert_eq!(
        novaload::results::report_with(&o.results_dir, true).unwrap(),
        Verdict::Warning
    );
    let again = std::fs::read_to_string(&html_path).unwrap();
    assert_eq!(
        again.matches("<polyline").count(),
        html.matches("<polyline").count()
    );
}

/// The detectors above can fail: a page that loads an image from the network and throws.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_page_trips_network_and_console_detectors() {
    let Some(bin) = chromium() else { return };
    let srv = http_server::start(None).await;
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("canary.html");
    std::fs::write(
        &page,
        format!(
            "<!DOCTYPE html><html><body><img src=\"http://{}/pixel.png\"><script>notDefined();</script></body></html>",
            srv.addr
        ),
    )
    .unwrap();
    let b = tokio::task::spawn_blocking(move || browse(&bin, &page, "--dump-dom"))
        .await
        .unwrap();
    assert!(
        b.page_requests.iter().any(|u| u.contains("/pixel.png")),
        "net log missed the image: {:?}",
        b.page_requests
    );
    assert!(
        !console_errors(&b.stderr).is_empty(),
        "console error not seen"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_is_escaped_and_trace_template_is_text() {
    let srv = http_server::start(None).await;
    let dir = tempfile::tempdir().unwrap();
    let mut a = quick_args(&format!("http://{}/", srv.addr), dir.path());
    a.vus = Some(1);
    a.duration = Some("1s".into());
    a.no_html = true;
    a.no_junit = true;
    let o = session::run(a, Stops::default()).await.unwrap();
    assert!(!o.results_dir.join("report.html").exists(), "--no-html");
    assert!(!o.results_dir.join("junit.xml").exists(), "--no-junit");
    let mut s = o.summaries[0].clone();
    s.checks.push(novaload::report::summary::CheckSummary {
        name: "<script>alert('x')</script>".into(),
        passes: 1,
        fails: 2,
    });
    s.notes.push("<img src=x onerror=alert(1)>".into());
    // failure reasons are server text: escaped, listed under their kind
    s.error_reasons.add(
        novaload::error::ErrorKind::Body,
        "GET /: <img src=x onerror=alert(2)> is not JSON",
    );
    s.errors_by_kind.insert("body".into(), 1);
    let html = novaload::report::html::render_with(
        &[s],
        &[],
        Some("http://localhost:3000/explore?traceId={trace_id}&x=<b>"),
    );
    assert!(!html.contains("<script>"));
    assert!(!html.contains("<img"));
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    assert!(html.contains(
        "<li><code>body</code>: 1 failed operation\n<ul class=\"reasons\">\n\
         <li>1 × <code>GET /: &lt;img src=x onerror=alert(2)&gt; is not JSON</code></li>"
    ));
    assert!(html.contains("http://localhost:3000/explore?traceId={trace_id}&amp;x=&lt;b&gt;"));
    assert!(!html.contains("href=\"http"));
    assert!(html.contains("No per-second time series"));
}
