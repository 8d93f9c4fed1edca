//! junit.xml from a real run, read back with a real XML parser (roxmltree): well-formed,
//! counts consistent with the test cases, a missed threshold and a failed check are
//! `<failure>`s carrying the measured value, the limit and the top failure reason; a run that
//! measured nothing fails its `run` case.

use crate::support::http_server;

use novaload::cli::RunArgs;
use novaload::report::Verdict;
use novaload::session::{self, Stops};

fn failure<'a, 'i>(n: roxmltree::Node<'a, 'i>) -> Option<roxmltree::Node<'a, 'i>> {
    n.children().find(|c| c.has_tag_name("failure"))
}

fn attr_n(n: roxmltree::Node, a: &str) -> usize {
    n.attribute(a)
        .unwrap_or_else(|| panic!("<{}> has no {a}", n.tag_name().name()))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junit_xml_is_well_formed_and_counts_add_up() {
    let srv = http_server::start(None).await;
    let dir = tempfile::tempdir().unwrap();
    let a = RunArgs {
        // every request answers 500: http_req_failed's critical threshold is missed
        url: Some(format!("http://{}/status/500", srv.addr)),
        method: "GET".into(),
        out: dir.path().to_path_buf(),
        quiet: true,
        timeout: "10s".into(),
        otlp_protocol: "grpc".into(),
        service_name: "novaload".into(),
        vus: Some(2),
        duration: Some("1s".into()),
        thresholds: vec![
            "http_req_failed=rate<0.01".into(),
            "http_req_duration=p(95)<5000".into(),
            // warning severity, missed: still a <failure type="warning">
            "http_req_duration=max<0.001".into(),
        ],
        ..RunArgs::default()
    };
    let o = session::run(a, Stops::default()).await.unwrap();
    assert_eq!(o.verdict, Verdict::Fail);
    let text = std::fs::read_to_string(o.results_dir.join("junit.xml")).unwrap();
    let doc = roxmltree::Document::parse(&text).expect("junit.xml is well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    let suites: Vec<_> = root
        .children()
        .filter(|n| n.has_tag_name("testsuite"))
        .collect();
    assert_eq!(suites.len(), 1);
    let suite = suites[0];
    assert_eq!(suite.attribute("name"), Some("novaload.url"));
    let cases: Vec<_> = suite
        .children()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    let failed: Vec<_> = cases
        .iter()
        .filter(|c| c.children().any(|n| n.has_tag_name("failure")))
        .collect();
    // counts consistent at both levels
    assert_eq!(attr_n(suite, "tests"), cases.len());
    assert_eq!(attr_n(suite, "failures"), failed.len());
    assert_eq!(attr_n(root, "tests"), cases.len());
    assert_eq!(attr_n(root, "failures"), failed.len());
    let time: f64 = suite.attribute("time").unwrap().parse().unwrap();
    assert!((time - o.summaries[0].duration_s).abs() < 0.01);
    // one case per threshold, per check, plus the run case
    let s = &o.summaries[0];
    assert_eq!(cases.len(), s.thresholds.len() + s.checks.len() + 1);

    let case = |name: &str| {
        *cases
            .iter()
            .find(|c| c.attribute("name") == Some(name))
            .unwrap_or_else(|| panic!("no testcase {name}"))
    };
    let crit = case("http_req_failed: rate<0.01");
    assert_eq!(crit.attribute("classname"), Some("thresholds"));
    let f = failure(crit).expect("missed threshold is a failure");
    assert_eq!(f.attribute("type"), Some("critical"));
    let msg = f.attribute("message").unwrap();
    assert!(
        msg.contains("measured 100.00%") && msg.contains("limit 1.00%"),
        "{msg}"
    );
    // why: the run's most frequent failure message, and the console's reason lines in the body
    assert!(msg.contains("; top reason: status ×"), "{msg}");
    assert!(msg.contains("500"), "{msg}");
    let body = f.text().unwrap_or("");
    assert!(body.contains("reasons:\n  status ×"), "{body}");
    let warn = failure(case("http_req_duration: max<0.001")).expect("warning miss is a failure");
    assert_eq!(warn.attribute("type"), Some("warning"));
    assert!(failure(case("http_req_duration: p(95)<5000")).is_none());
    let run = case("run completed without errors");
    assert_eq!(run.attribute("classname"), Some("run"));
    assert!(
        failure(run).is_none(),
        "requests were made: the run case passes"
    );

    // a run that measured nothing fails its run case with the reason
    let mut empty = o.summaries[0].clone();
    empty.series.clear();
    empty.error_reasons = Default::default();
    let declared: Vec<_> = empty
        .metrics
        .iter()
        .map(|(n, m)| (n.clone(), m.kind, m.contains))
        .collect();
    empty.derive(&declared);
    assert_eq!(empty.verdict, Verdict::Fail);
    let text = novaload::report::junit::render(&[empty]);
    let doc = roxmltree::Document::parse(&text).unwrap();
    let run = doc
        .descendants()
        .find(|n| n.attribute("name") == Some("run completed without errors"))
        .unwrap();
    let f = failure(run).expect("measured nothing fails the run case");
    assert!(
        f.attribute("message")
            .unwrap()
            .starts_with(novaload::report::summary::MEASURED_NOTHING),
        "{:?}",
        f.attribute("message")
    );
    // properties carry the run metadata
    let props: Vec<_> = suite
        .descendants()
        .filter(|n| n.has_tag_name("property"))
        .map(|n| (n.attribute("name").unwrap(), n.attribute("value").unwrap()))
        .collect();
    assert!(props.contains(&("verdict", "FAIL")));
    assert!(props.contains(&("run_id", s.run_id.as_str())));

    // a failing check whose name needs escaping round-trips through a real parser
    let mut s2 = s.clone();
    s2.checks.push(novaload::report::summary::CheckSummary {
        name: "body has <id> & \"name\"\u{7}".into(),
        passes: 1,
        fails: 2,
    });
    let text = novaload::report::junit::render(&[s2]);
    let doc = roxmltree::Document::parse(&text).expect("escaped output is well-formed");
    let c = doc
        .descendants()
        .find(|n| n.attribute("name") == Some("body has <id> & \"name\""))
        .expect("check case with the unescaped name");
    assert_eq!(c.attribute("classname"), Some("checks"));
    let f = failure(c).expect("failed check is a failure");
    assert!(f.attribute("message").unwrap().contains("2 of 3"));
}
