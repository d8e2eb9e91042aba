//! Helpers shared by the crate's own tests.

/// Reports a skipped test; under `CI=true` a skip is a failure.
pub(crate) fn skip(reason: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("test needs what CI must provide: {reason}");
    }
    eprintln!("skipped: {reason}");
}
