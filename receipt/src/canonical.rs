//! The bytes the receipt key signs.
//!
//! The body is flattened into its leaves: a scalar, `null`, or an empty array or object,
//! each named by its path from `body` (`body.job.id`, `body.datasets[0].history[1].q`).
//! Each leaf's digest is the SHA-256 of its compact JSON text as `serde_json` writes it
//! (strings with JSON escapes, integers as integers, `f64` as the shortest text that parses
//! back to the same value, as `ryu` writes it: `0.5`, `3.0`, `0.00001`, `1e-7`). The signed message is
//!
//! ```text
//! "bastion-ai/receipt/v1\n" || for each leaf, by path in byte order: path || " " || hex(digest) || "\n"
//! ```
//!
//! and the receipt carries the table of digests (`signed_fields`) beside the body. A
//! verifier checks the signature over the table, then recomputes each leaf's digest from the
//! body: a changed field fails on its own path, not as an anonymous bad signature, and a
//! field added or removed is named too. Paths are unambiguous because every object key is
//! `[a-z0-9_]+` (checked both ways), so `.`, `[` and the separator cannot occur in a key.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::ReceiptError;
use crate::FORMAT;

/// The digest of every leaf of `body`, by path.
pub fn field_digests(body: &Value) -> Result<BTreeMap<String, String>, ReceiptError> {
    let mut out = BTreeMap::new();
    leaves("body", body, &mut out)?;
    Ok(out)
}

fn leaves(
    path: &str,
    value: &Value,
    out: &mut BTreeMap<String, String>,
) -> Result<(), ReceiptError> {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, v) in map {
                if key.is_empty()
                    || !key
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                {
                    return Err(ReceiptError::malformed(
                        format!("{path}.{key}"),
                        "a body key must be lower-case letters, digits and underscores",
                    ));
                }
                leaves(&format!("{path}.{key}"), v, out)?;
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                leaves(&format!("{path}[{i}]"), v, out)?;
            }
        }
        leaf => {
            let text = serde_json::to_vec(leaf).expect("a JSON value serializes");
            out.insert(path.to_string(), crate::sha256_hex(&text));
        }
    }
    Ok(())
}

/// The message the receipt key signs: the format line, then one line per field digest.
pub fn signed_message(fields: &BTreeMap<String, String>) -> Vec<u8> {
    let mut out = Vec::with_capacity(FORMAT.len() + 1 + fields.len() * 100);
    out.extend_from_slice(FORMAT.as_bytes());
    out.push(b'\n');
    for (path, digest) in fields {
        out.extend_from_slice(path.as_bytes());
        out.push(b' ');
        out.extend_from_slice(digest.as_bytes());
        out.push(b'\n');
    }
    out
}

/// Checks the signed table's shape before anything is hashed against it: paths under
/// `body`, without separators, and 64-digit lower-case hex digests.
pub(crate) fn check_table(fields: &BTreeMap<String, String>) -> Result<(), ReceiptError> {
    for (path, digest) in fields {
        if !path.starts_with("body") || path.contains([' ', '\n']) {
            return Err(ReceiptError::malformed(
                "signed_fields",
                format!("{path:?} is not a body field's path"),
            ));
        }
        if digest.len() != 64
            || !digest
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(ReceiptError::malformed(
                "signed_fields",
                format!("the digest of {path} is not 64 lower-case hex digits"),
            ));
        }
    }
    Ok(())
}

/// Compares the body's digests with the signed ones, naming the first field that differs
/// (in path order), was removed, or was added.
pub(crate) fn compare(
    signed: &BTreeMap<String, String>,
    found: &BTreeMap<String, String>,
) -> Result<(), ReceiptError> {
    for (path, digest) in signed {
        match found.get(path) {
            None => {
                return Err(ReceiptError::Removed {
                    field: path.clone(),
                })
            }
            Some(d) if d != digest => {
                return Err(ReceiptError::Tampered {
                    field: path.clone(),
                    signed: digest.clone(),
                    found: d.clone(),
                })
            }
            Some(_) => {}
        }
    }
    if let Some(path) = found.keys().find(|p| !signed.contains_key(*p)) {
        return Err(ReceiptError::Unsigned {
            field: path.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn leaves_are_named_by_path_and_hash_their_json_text() {
        let body =
            json!({"a": {"b": 1, "c": [0.5, "x"], "e": []}, "d": null, "f": 1e-5, "g": 1e-7});
        let d = field_digests(&body).unwrap();
        let paths: Vec<&str> = d.keys().map(String::as_str).collect();
        assert_eq!(
            paths,
            [
                "body.a.b",
                "body.a.c[0]",
                "body.a.c[1]",
                "body.a.e",
                "body.d",
                "body.f",
                "body.g"
            ]
        );
        assert_eq!(d["body.a.b"], crate::sha256_hex(b"1"));
        assert_eq!(d["body.a.c[0]"], crate::sha256_hex(b"0.5"));
        assert_eq!(d["body.a.c[1]"], crate::sha256_hex(b"\"x\""));
        assert_eq!(d["body.a.e"], crate::sha256_hex(b"[]"));
        assert_eq!(d["body.d"], crate::sha256_hex(b"null"));
        // ryu's shortest text, in decimal down to 1e-5 and in exponent form below.
        assert_eq!(d["body.f"], crate::sha256_hex(b"0.00001"));
        assert_eq!(d["body.g"], crate::sha256_hex(b"1e-7"));
        // 1 and 1.0 are different leaves: an integer is not silently a float.
        assert_ne!(
            field_digests(&json!({"x": 1})).unwrap()["body.x"],
            field_digests(&json!({"x": 1.0})).unwrap()["body.x"]
        );
    }

    #[test]
    fn keys_that_could_forge_a_path_are_refused() {
        for key in ["a.b", "a[0]", "A", "", "a b"] {
            let err = field_digests(&json!({ key: 1 })).unwrap_err();
            assert!(
                matches!(err, ReceiptError::Malformed { .. }),
                "{key}: {err}"
            );
        }
    }

    #[test]
    fn the_message_is_the_format_line_and_sorted_lines() {
        let mut t = BTreeMap::new();
        t.insert("body.b".to_string(), "22".to_string());
        t.insert("body.a".to_string(), "11".to_string());
        assert_eq!(
            signed_message(&t),
            b"bastion-ai/receipt/v1\nbody.a 11\nbody.b 22\n".to_vec()
        );
    }

    #[test]
    fn floats_round_trip_exactly_through_the_file() {
        // Values whose shortest text the default (non-round-trip) parser can misread.
        for x in [
            0.1f64 + 0.2,
            2.225073858507201e-308,
            9007199254740993.0,
            0.006_988_523_851_231_516,
            1.7976931348623157e308,
            5e-324,
            0.30000000000000004,
            123.456e-10,
        ] {
            let text = serde_json::to_string(&json!({ "x": x })).unwrap();
            let back: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(back["x"].as_f64().unwrap().to_bits(), x.to_bits(), "{text}");
            assert_eq!(
                field_digests(&back).unwrap(),
                field_digests(&json!({ "x": x })).unwrap()
            );
        }
    }
}
