//! The exposition format's two lexical rules, shared by the writer and by
//! series creation (which pre-renders label strings): how a label value is
//! escaped and how a float is spelled.

/// Appends `v` escaped for a label value (`\` → `\\`, `"` → `\"`, newline → `\n`).
pub fn push_escaped_label_value(out: &mut String, v: &str) {
    let mut rest = v;
    while let Some(i) = rest.find(['\\', '"', '\n']) {
        out.push_str(&rest[..i]);
        out.push_str(match rest.as_bytes()[i] {
            b'\\' => "\\\\",
            b'"' => "\\\"",
            _ => "\\n",
        });
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
}

/// Largest magnitude printed as a plain integer (beyond it `ryu` is used).
const INT_LIMIT: f64 = 1e15;

/// Appends `v` the way Prometheus parses it: `+Inf`, `-Inf`, `NaN`, whole
/// numbers without fraction or exponent, other values as shortest round-trip.
pub fn push_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < INT_LIMIT {
        out.push_str(itoa::Buffer::new().format(v as i64));
    } else {
        out.push_str(ryu::Buffer::new().format_finite(v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(v: f64) -> String {
        let mut s = String::new();
        push_float(&mut s, v);
        s
    }

    #[test]
    fn floats() {
        assert_eq!(f(0.0), "0");
        assert_eq!(f(-0.0), "0");
        assert_eq!(f(1.0), "1");
        assert_eq!(f(-3.0), "-3");
        assert_eq!(f(1e6), "1000000");
        assert_eq!(f(0.0005), "0.0005");
        assert_eq!(f(2.5), "2.5");
        assert_eq!(f(0.1), "0.1");
        assert_eq!(f(f64::INFINITY), "+Inf");
        assert_eq!(f(f64::NEG_INFINITY), "-Inf");
        assert_eq!(f(f64::NAN), "NaN");
        assert_eq!(f(1e20).parse::<f64>().unwrap(), 1e20);
        assert_eq!(f(1.5e-7).parse::<f64>().unwrap(), 1.5e-7);
    }

    #[test]
    fn escaping() {
        let mut s = String::new();
        push_escaped_label_value(&mut s, "a\\b\"c\nd");
        assert_eq!(s, "a\\\\b\\\"c\\nd");
    }
}
