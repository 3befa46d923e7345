//! Conversion between Sentry event JSON and [`ErrorEvent`].
//!
//! Why: SDKs in the wild send many shapes (tags as an object or as pairs,
//! breadcrumbs as an array or `{values: […]}`, timestamps as float seconds or
//! RFC 3339, `logentry` or legacy `message` objects). This module accepts all
//! of them leniently — a wrong-typed field is ignored, never fatal — and
//! writes back the canonical shape for forwarding.
//!
//! Mapping of our own fields on ingest: `plugin` is the `plugin` tag, else
//! `sentry:{project_id}`; `plugin_version` the `plugin_version` tag;
//! `service_or_topic` the `transaction`, else the `culprit`; `host_version`
//! the `host_version` tag.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::event::{
    new_event_id, Breadcrumb, ErrorEvent, EventSource, ExceptionInfo, Frame, Level, SdkInfo,
    UserInfo,
};
use crate::time::{format_rfc3339, from_float_seconds, now_ms, parse_rfc3339};

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn timestamp(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => from_float_seconds(n.as_f64()?),
        Value::String(s) => parse_rfc3339(s).or_else(|| from_float_seconds(s.parse().ok()?)),
        _ => None,
    }
}

fn event_id(v: Option<&Value>) -> String {
    let raw: String = v
        .and_then(Value::as_str)
        .unwrap_or("")
        .chars()
        .filter(|c| *c != '-')
        .collect::<String>()
        .to_ascii_lowercase();
    if raw.len() == 32 && raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        raw
    } else {
        new_event_id()
    }
}

fn frame(v: &Value) -> Option<Frame> {
    let o = v.as_object()?;
    Some(Frame {
        function: text(o.get("function")),
        module: text(o.get("module")),
        filename: text(o.get("filename")),
        abs_path: text(o.get("abs_path")),
        lineno: o
            .get("lineno")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok()),
        in_app: o.get("in_app").and_then(Value::as_bool),
        instruction_addr: text(o.get("instruction_addr")),
    })
}

fn exception(v: &Value) -> Option<ExceptionInfo> {
    let o = v.as_object()?;
    let stack = o.get("stacktrace").or_else(|| o.get("raw_stacktrace"));
    let frames = stack
        .and_then(|s| s.get("frames"))
        .and_then(Value::as_array)
        .map(|fs| fs.iter().filter_map(frame).collect())
        .unwrap_or_default();
    let ty = text(o.get("type")).unwrap_or_default();
    let value = text(o.get("value"));
    if ty.is_empty() && value.is_none() {
        return None;
    }
    Some(ExceptionInfo {
        ty,
        value,
        module: text(o.get("module")),
        frames,
    })
}

fn message(o: &Map<String, Value>) -> Option<String> {
    let from_obj = |v: &Value| -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Object(m) => text(m.get("formatted")).or_else(|| text(m.get("message"))),
            _ => None,
        }
    };
    o.get("logentry")
        .and_then(from_obj)
        .or_else(|| o.get("message").and_then(from_obj))
        .filter(|m| !m.is_empty())
}

fn tags(v: Option<&Value>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    match v {
        Some(Value::Object(m)) => {
            for (k, v) in m {
                if let Some(t) = text(Some(v)) {
                    out.insert(k.clone(), t);
                }
            }
        }
        Some(Value::Array(pairs)) => {
            for p in pairs {
                if let Some([k, v]) = p.as_array().map(Vec::as_slice) {
                    if let (Some(k), Some(v)) = (text(Some(k)), text(Some(v))) {
                        out.insert(k, v);
                    }
                }
            }
        }
        _ => {}
    }
    out
}

fn breadcrumb(v: &Value, fallback_ts: u64) -> Option<Breadcrumb> {
    let o = v.as_object()?;
    Some(Breadcrumb {
        timestamp: timestamp(o.get("timestamp")).unwrap_or(fallback_ts),
        category: text(o.get("category"))
            .or_else(|| text(o.get("type")))
            .unwrap_or_else(|| "default".into()),
        message: text(o.get("message")),
        level: o
            .get("level")
            .and_then(Value::as_str)
            .map_or(Level::Info, Level::parse_lenient),
        data: o
            .get("data")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
    })
}

fn list(v: Option<&Value>) -> &[Value] {
    match v {
        Some(Value::Array(a)) => a,
        Some(Value::Object(o)) => o
            .get("values")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice),
        _ => &[],
    }
}

/// Converts one Sentry event payload. Fails only when it is not a JSON
/// object; every other oddity is skipped.
pub fn from_sentry_event(payload: &Value, project_id: &str) -> Result<ErrorEvent, String> {
    let o = payload
        .as_object()
        .ok_or("event payload is not a JSON object")?;
    let received = now_ms();
    let ts = timestamp(o.get("timestamp")).unwrap_or(received);
    let tags = tags(o.get("tags"));
    let user = o.get("user").and_then(Value::as_object).map(|u| UserInfo {
        id: text(u.get("id")),
        username: text(u.get("username")),
        email: text(u.get("email")),
        ip_address: text(u.get("ip_address")),
    });
    let sdk = o.get("sdk").and_then(Value::as_object).map(|s| SdkInfo {
        name: text(s.get("name")).unwrap_or_default(),
        version: text(s.get("version")).unwrap_or_default(),
    });
    let fingerprint = o
        .get("fingerprint")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| text(Some(v))).collect::<Vec<_>>());
    let mut event = ErrorEvent {
        event_id: event_id(o.get("event_id")),
        timestamp: ts,
        level: o
            .get("level")
            .and_then(Value::as_str)
            .map_or(Level::Error, Level::parse_lenient),
        message: message(o),
        exception: list(o.get("exception"))
            .iter()
            .filter_map(exception)
            .collect(),
        plugin: tags
            .get("plugin")
            .cloned()
            .unwrap_or_else(|| format!("sentry:{project_id}")),
        plugin_version: tags.get("plugin_version").cloned(),
        service_or_topic: text(o.get("transaction")).or_else(|| text(o.get("culprit"))),
        host_version: tags.get("host_version").cloned(),
        environment: text(o.get("environment")),
        release: text(o.get("release")),
        trace_id: o
            .get("contexts")
            .and_then(|c| c.get("trace"))
            .and_then(|t| t.get("trace_id"))
            .and_then(Value::as_str)
            .map(str::to_string),
        tags,
        extra: o
            .get("extra")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        breadcrumbs: list(o.get("breadcrumbs"))
            .iter()
            .filter_map(|b| breadcrumb(b, ts))
            .collect(),
        fingerprint: fingerprint.filter(|f| !f.is_empty()),
        source: EventSource::SentryIngest,
        user: user.filter(|u| *u != UserInfo::default()),
        sdk,
    };
    event.enforce_limits();
    Ok(event)
}

fn opt(map: &mut Map<String, Value>, key: &str, v: &Option<String>) {
    if let Some(v) = v {
        map.insert(key.into(), Value::from(v.clone()));
    }
}

/// Writes an event as a Sentry event payload (for forwarding). Our own
/// fields travel as tags (`plugin`, `plugin_version`, `host_version`,
/// `source`) and `transaction` (service or topic).
pub fn to_sentry_event(event: &ErrorEvent) -> Value {
    let mut o = Map::new();
    o.insert("event_id".into(), Value::from(event.event_id.clone()));
    o.insert(
        "timestamp".into(),
        Value::from(format_rfc3339(event.timestamp)),
    );
    o.insert("platform".into(), Value::from("native"));
    o.insert("level".into(), Value::from(event.level.as_str()));
    if let Some(m) = &event.message {
        o.insert("logentry".into(), json!({ "formatted": m }));
    }
    if !event.exception.is_empty() {
        let values: Vec<Value> = event
            .exception
            .iter()
            .map(|e| {
                let frames: Vec<Value> = e
                    .frames
                    .iter()
                    .map(|f| {
                        let mut m = Map::new();
                        opt(&mut m, "function", &f.function);
                        opt(&mut m, "module", &f.module);
                        opt(&mut m, "filename", &f.filename);
                        opt(&mut m, "abs_path", &f.abs_path);
                        if let Some(l) = f.lineno {
                            m.insert("lineno".into(), Value::from(l));
                        }
                        if let Some(b) = f.in_app {
                            m.insert("in_app".into(), Value::from(b));
                        }
                        opt(&mut m, "instruction_addr", &f.instruction_addr);
                        Value::Object(m)
                    })
                    .collect();
                let mut m = Map::new();
                m.insert("type".into(), Value::from(e.ty.clone()));
                opt(&mut m, "value", &e.value);
                opt(&mut m, "module", &e.module);
                if !frames.is_empty() {
                    m.insert("stacktrace".into(), json!({ "frames": frames }));
                }
                Value::Object(m)
            })
            .collect();
        o.insert("exception".into(), json!({ "values": values }));
    }
    let mut tags = event.tags.clone();
    tags.insert("plugin".into(), event.plugin.clone());
    for (k, v) in [
        ("plugin_version", &event.plugin_version),
        ("host_version", &event.host_version),
    ] {
        if let Some(v) = v {
            tags.insert(k.into(), v.clone());
        }
    }
    let source = match event.source {
        EventSource::Captured => "captured",
        EventSource::SentryIngest => "sentry_ingest",
    };
    tags.insert("source".into(), source.into());
    o.insert("tags".into(), json!(tags));
    opt(&mut o, "transaction", &event.service_or_topic);
    opt(&mut o, "environment", &event.environment);
    opt(&mut o, "release", &event.release);
    if let Some(t) = &event.trace_id {
        o.insert("contexts".into(), json!({ "trace": { "trace_id": t } }));
    }
    if !event.extra.is_empty() {
        o.insert("extra".into(), Value::Object(event.extra.clone()));
    }
    if !event.breadcrumbs.is_empty() {
        let values: Vec<Value> = event
            .breadcrumbs
            .iter()
            .map(|b| {
                let mut m = Map::new();
                m.insert("timestamp".into(), Value::from(format_rfc3339(b.timestamp)));
                m.insert("category".into(), Value::from(b.category.clone()));
                opt(&mut m, "message", &b.message);
                m.insert("level".into(), Value::from(b.level.as_str()));
                if !b.data.is_empty() {
                    m.insert("data".into(), Value::Object(b.data.clone()));
                }
                Value::Object(m)
            })
            .collect();
        o.insert("breadcrumbs".into(), json!({ "values": values }));
    }
    if let Some(fp) = &event.fingerprint {
        o.insert("fingerprint".into(), json!(fp));
    }
    if let Some(u) = &event.user {
        let mut m = Map::new();
        opt(&mut m, "id", &u.id);
        opt(&mut m, "username", &u.username);
        opt(&mut m, "email", &u.email);
        opt(&mut m, "ip_address", &u.ip_address);
        o.insert("user".into(), Value::Object(m));
    }
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_shapes() {
        let v = json!({
            "event_id": "A19CA51D-AAFE-446E-A7F9-2630A880D296",
            "timestamp": 1700000000.5,
            "level": "WARN",
            "message": {"message": "legacy %s", "formatted": "legacy x"},
            "tags": [["a", "1"], ["b", 2], ["bad"], 7],
            "breadcrumbs": [{"message": "m", "timestamp": "2024-01-01T00:00:00Z"}, 5],
            "exception": [{"type": "E", "stacktrace": {"frames": [{"function": "f", "lineno": -1}, 3]}}, {}],
            "user": {"id": 42},
            "fingerprint": ["{{ default }}", 3, null],
            "extra": "not an object",
            "contexts": {"trace": {"trace_id": 5}}
        });
        let e = from_sentry_event(&v, "7").unwrap();
        assert_eq!(e.event_id, "a19ca51daafe446ea7f92630a880d296");
        assert_eq!(e.timestamp, 1_700_000_000_500);
        assert_eq!(e.level, Level::Warning);
        assert_eq!(e.message.as_deref(), Some("legacy x"));
        assert_eq!(e.tags.len(), 2);
        assert_eq!(e.tags["b"], "2");
        assert_eq!(e.breadcrumbs.len(), 1);
        assert_eq!(e.breadcrumbs[0].timestamp, 1_704_067_200_000);
        assert_eq!(e.exception.len(), 1);
        assert_eq!(e.exception[0].frames.len(), 1);
        assert_eq!(e.exception[0].frames[0].lineno, None);
        assert_eq!(e.user.unwrap().id.as_deref(), Some("42"));
        assert_eq!(e.fingerprint.unwrap(), vec!["{{ default }}", "3"]);
        assert_eq!(e.plugin, "sentry:7");
        assert!(e.extra.is_empty() && e.trace_id.is_none());
        assert!(from_sentry_event(&json!([1]), "1").is_err());
        let bad_id = from_sentry_event(&json!({"event_id": "zz"}), "1").unwrap();
        assert_eq!(bad_id.event_id.len(), 32);
    }

    #[test]
    fn round_trip_through_sentry_json() {
        let mut e = ErrorEvent::exception(
            "weather",
            "ValueError",
            "bad",
            vec![Frame {
                function: Some("f".into()),
                lineno: Some(3),
                in_app: Some(true),
                ..Frame::default()
            }],
        );
        e.timestamp = 1_700_000_000_123;
        e.message = Some("msg".into());
        e.tags.insert("k".into(), "v".into());
        e.trace_id = Some("abc".into());
        e.release = Some("1.0".into());
        e.breadcrumbs.push(Breadcrumb {
            timestamp: 1_700_000_000_000,
            ..Breadcrumb::log(Level::Info, "x")
        });
        e.fingerprint = Some(vec!["a".into()]);
        e.user = Some(UserInfo {
            id: Some("u".into()),
            ..UserInfo::default()
        });
        let back = from_sentry_event(&to_sentry_event(&e), "1").unwrap();
        assert_eq!(back.exception, e.exception);
        assert_eq!(back.timestamp, e.timestamp);
        assert_eq!(back.plugin, "weather");
        assert_eq!(back.tags["k"], "v");
        assert_eq!(back.breadcrumbs, e.breadcrumbs);
        assert_eq!(
            (back.trace_id, back.release, back.fingerprint, back.user),
            (e.trace_id, e.release, e.fingerprint, e.user)
        );
        assert_eq!(back.message, e.message);
    }
}
