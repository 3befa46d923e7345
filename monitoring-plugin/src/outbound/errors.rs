//! The last delivery error of one outbound client, kept for `/status` and
//! logged once per distinct message (so a peer that is down for an hour
//! gives one log line, not one per retry).

use std::sync::Arc;

use parking_lot::Mutex;

/// Where a client's error lines go (the host log, in the plugin).
pub type LogSink = Arc<dyn Fn(&str) + Send + Sync>;

/// The last error of one client, shared between its thread and `/status`.
#[derive(Clone, Default)]
pub struct LastError {
    inner: Arc<Mutex<Option<String>>>,
    log: Option<LogSink>,
}

impl std::fmt::Debug for LastError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("LastError").field(&self.get()).finish()
    }
}

/// Two handles are equal when they share one slot.
impl PartialEq for LastError {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl LastError {
    /// A slot whose new messages are also passed to `log`.
    pub fn logging_to(log: LogSink) -> Self {
        LastError {
            inner: Arc::default(),
            log: Some(log),
        }
    }

    /// Records `message`; logs it when it differs from the previous one.
    pub fn note(&self, message: String) {
        let mut slot = self.inner.lock();
        if slot.as_deref() != Some(message.as_str()) {
            if let Some(log) = &self.log {
                log(&message);
            }
            *slot = Some(message);
        }
    }

    /// The last error, if any.
    pub fn get(&self) -> Option<String> {
        self.inner.lock().clone()
    }
}

/// Describes a transport error with its cause chain (the TLS or I/O reason
/// ureq wraps), so that "certificate unknown" is not lost behind "io error".
pub fn describe(e: &ureq::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_each_distinct_message_once() {
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = lines.clone();
        let e = LastError::logging_to(Arc::new(move |m| sink.lock().push(m.to_owned())));
        e.note("a".into());
        e.note("a".into());
        e.note("b".into());
        assert_eq!(*lines.lock(), vec!["a".to_owned(), "b".to_owned()]);
        assert_eq!(e.get().as_deref(), Some("b"));
    }
}
