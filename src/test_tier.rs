//! The crate's own tests that need root (owners, device nodes) ask [`privileged`] first, by the
//! same rule as the integration tests (`tests/common::privileged`).

/// True as root. Otherwise the test is skipped and says so on the terminal (past the test
/// harness's capture) — unless `HOIST_PRIV_TESTS=1` (`make test` and CI set it), where not being
/// root fails the test instead.
pub fn privileged(test: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var("HOIST_PRIV_TESTS").as_deref() != Ok("1"),
        "{test} needs root, and HOIST_PRIV_TESTS=1 says the privileged tests must run"
    );
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: needs root (`make test` runs it as root)");
    false
}
