//! External programs the tests drive (promtool, Prometheus, rotel, chromium, ...): found on
//! PATH; a missing one fails the test under CI (`CI` set: the test command installs them all)
//! and skips it elsewhere.

use std::path::PathBuf;

/// `name` on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// `found`, or — when it is `None` — a panic under CI and a SKIP line elsewhere, naming the
/// missing `name` and how to `install` it.
pub fn required<T>(found: Option<T>, name: &str, install: &str) -> Option<T> {
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!(
                "{name} is required in CI and missing; install it with: {install} (scripts/test.sh does)"
            );
        }
        eprintln!("SKIP: {name} not found; install it with: {install} (scripts/test.sh does)");
    }
    found
}

/// `name` on PATH, [`required`].
pub fn tool(name: &str, install: &str) -> Option<PathBuf> {
    required(which(name), name, install)
}

/// The rotel OTLP receiver's agent binary: `$NOVALOAD_TEST_ROTEL`, else `rotel-agent` on PATH,
/// else inside the installed Python package (PyPI `rotel`); [`required`].
pub fn rotel() -> Option<PathBuf> {
    let found = std::env::var_os("NOVALOAD_TEST_ROTEL")
        .map(PathBuf::from)
        .or_else(|| which("rotel-agent"))
        .or_else(|| {
            let out = std::process::Command::new("python3")
                .args([
                    "-c",
                    "import rotel, os; print(os.path.dirname(rotel.__file__))",
                ])
                .output()
                .ok()?;
            let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("rotel-agent");
            p.is_file().then_some(p)
        });
    required(
        found,
        "rotel",
        "pip install rotel==0.0.1a15, or set NOVALOAD_TEST_ROTEL",
    )
}
