//! The README's promises that code can check: the metric reference is the generated one.

#[test]
fn readme_metric_reference_is_generated_from_the_names_module() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = "<!-- metrics-reference:start -->\n";
    let end = "<!-- metrics-reference:end -->";
    let a = readme.find(start).expect("start marker") + start.len();
    let b = readme.find(end).expect("end marker");
    let expected = novaload::telemetry::metrics_reference_markdown();
    assert!(
        readme[a..b] == expected,
        "README metric reference is stale: run `cargo run -- metrics-reference` and paste it between the markers"
    );
}

#[test]
fn readme_starts_with_the_two_commands() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let first_block: Vec<&str> = readme
        .split("```")
        .nth(1)
        .unwrap()
        .lines()
        .skip(1)
        .collect();
    assert!(first_block[0].starts_with("cargo run --release -- run all --profile smoke"));
    assert!(first_block[1].starts_with("./scripts/test.sh"));
}
