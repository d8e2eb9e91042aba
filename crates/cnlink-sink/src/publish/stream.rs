//! Making sure the stream exists, and saying clearly when it differs from the configuration.

use async_nats::jetstream::{self, stream};

use super::options::StreamConfig;

/// Gets the stream, or creates it (file storage, subjects `PREFIX.>`, the configured limits). An existing
/// stream with other limits is kept as it is, with one warning per difference; one whose subjects do not take
/// `PREFIX.>` is refused (publishes would not be stored), and the caller tries again later.
pub(crate) async fn ensure_stream(js: &jetstream::Context, config: &StreamConfig) -> Result<Vec<String>, String> {
    let wanted = stream::Config {
        name: config.name.clone(),
        subjects: vec![config.subjects()],
        storage: stream::StorageType::File,
        max_bytes: config.max_bytes,
        max_messages: config.max_msgs,
        max_age: config.max_age,
        duplicate_window: config.duplicate_window,
        num_replicas: config.replicas,
        ..Default::default()
    };
    let stream = js
        .get_or_create_stream(wanted.clone())
        .await
        .map_err(|e| format!("stream {}: cannot get or create it: {e}", config.name))?;
    let have = &stream.cached_info().config;
    if !have.subjects.iter().any(|s| covers(s, &config.subjects())) {
        return Err(format!(
            "stream {} exists with subjects {:?}, which do not take {}: refusing to publish (change the \
             stream or the subject prefix)",
            config.name,
            have.subjects,
            config.subjects()
        ));
    }
    let mut warnings = Vec::new();
    let mut differs = |what: &str, have: String, want: String| {
        if have != want {
            warnings
                .push(format!("stream {} exists with {what} {have} (configured {want}): kept as it is", config.name));
        }
    };
    differs("storage", format!("{:?}", have.storage), format!("{:?}", wanted.storage));
    differs("max_bytes", have.max_bytes.to_string(), wanted.max_bytes.to_string());
    differs("max_msgs", have.max_messages.to_string(), wanted.max_messages.to_string());
    differs("max_age", format!("{:?}", have.max_age), format!("{:?}", wanted.max_age));
    differs("duplicate_window", format!("{:?}", have.duplicate_window), format!("{:?}", wanted.duplicate_window));
    differs("replicas", have.num_replicas.to_string(), wanted.num_replicas.to_string());
    Ok(warnings)
}

/// True when subject filter `filter` matches every subject `pattern` matches (NATS wildcards: `*` one
/// token, `>` the rest).
pub(crate) fn covers(filter: &str, pattern: &str) -> bool {
    let mut f = filter.split('.');
    let mut p = pattern.split('.');
    loop {
        match (f.next(), p.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(t)) if t != ">" => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::covers;

    #[test]
    fn subject_filters_cover_patterns() {
        assert!(covers("cnlink.>", "cnlink.>"));
        assert!(covers(">", "cnlink.>"));
        assert!(covers("cnlink.>", "cnlink.a.>"));
        assert!(!covers("cnlink.*", "cnlink.>"));
        assert!(!covers("cnlink.a.>", "cnlink.>"));
        assert!(!covers("other.>", "cnlink.>"));
        assert!(covers("*.x", "a.x"));
    }
}
