//! The value a template works on, and how Go prints and tests it: shared by
//! the executor, the function library and `printf`, which all sit above it.

use std::collections::BTreeMap;

use super::format::go_g;

/// A template value.
#[derive(Debug, Clone, PartialEq)]
pub enum V {
    /// Go's invalid / nil value.
    Nil,
    /// A bool.
    Bool(bool),
    /// An int.
    Int(i64),
    /// A float64.
    Float(f64),
    /// A string.
    Str(String),
    /// A map (keys sorted, as Go prints them).
    Map(BTreeMap<String, V>),
    /// A list (query results).
    List(Vec<V>),
    /// The map `args` returns (`map[string]interface{}`: a missing key is nil).
    Args(BTreeMap<String, V>),
    /// A query result sample: `.Labels` and `.Value`.
    Sample(BTreeMap<String, String>, f64),
}

impl V {
    /// Go's `fmt.Sprint` of the value.
    pub fn go_string(&self) -> String {
        match self {
            V::Nil => "<no value>".into(),
            V::Bool(b) => b.to_string(),
            V::Int(i) => i.to_string(),
            V::Float(f) => go_g(*f, None),
            V::Str(s) => s.clone(),
            V::Map(m) | V::Args(m) => {
                let inner: Vec<String> = m
                    .iter()
                    .map(|(k, v)| format!("{k}:{}", v.go_nested()))
                    .collect();
                format!("map[{}]", inner.join(" "))
            }
            V::List(l) => {
                let inner: Vec<String> = l.iter().map(V::go_nested).collect();
                format!("[{}]", inner.join(" "))
            }
            V::Sample(l, v) => {
                let m: Vec<String> = l.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("{{map[{}] {}}}", m.join(" "), go_g(*v, None))
            }
        }
    }

    /// How the value prints inside a map or list (nil as `<nil>`).
    fn go_nested(&self) -> String {
        match self {
            V::Nil => "<nil>".into(),
            other => other.go_string(),
        }
    }

    /// Go's template truthiness.
    pub fn truth(&self) -> bool {
        match self {
            V::Nil => false,
            V::Bool(b) => *b,
            V::Int(i) => *i != 0,
            V::Float(f) => *f != 0.0,
            V::Str(s) => !s.is_empty(),
            V::Map(m) | V::Args(m) => !m.is_empty(),
            V::List(l) => !l.is_empty(),
            V::Sample(..) => true,
        }
    }

    /// A number, if the value is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            V::Int(i) => Some(*i as f64),
            V::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// Go's name of the value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            V::Nil => "nil",
            V::Bool(_) => "bool",
            V::Int(_) => "int",
            V::Float(_) => "float64",
            V::Str(_) => "string",
            V::Map(_) | V::Args(_) => "map",
            V::List(_) => "slice",
            V::Sample(..) => "sample",
        }
    }
}
