//! The claims a code carries.

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// The claims of a one-time authorization code.
///
/// Registered claims (`iss`, `sub`, `aud`, `exp`, `iat`, `nbf`, `jti`) follow RFC 7519; the workflow claims carry the
/// run along the chain; `ctx` holds the custom claims handlers attach.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer name of the service.
    pub iss: String,
    /// Keyed hash of the caller binding; absent when the workflow binds to nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// The step (or steps) allowed to consume this code.
    pub aud: Audience,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Not before, seconds since the Unix epoch.
    pub nbf: u64,
    /// Random 128-bit id, the unit of one-time use.
    pub jti: String,
    /// Workflow name.
    pub wf: String,
    /// Id of this workflow run, the same on every code of one chain.
    pub run: String,
    /// The step whose success issued this code.
    pub stp: String,
    /// When the run started (seconds since the Unix epoch); bounds the chain's total lifetime.
    pub rat: u64,
    /// Custom claims attached by handlers, carried along the chain.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub ctx: Map<String, Value>,
    /// Keyed hash of the server-state fingerprint the issuing handler named (state-bound codes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sfp: Option<String>,
}

/// The `aud` claim: one or more step names. Serialised as a JSON string for one step, an array otherwise; any other
/// JSON type is malformed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Audience(pub Vec<String>);

impl Audience {
    /// Whether `step` is named.
    pub fn contains(&self, step: &str) -> bool {
        self.0.iter().any(|s| s == step)
    }

    /// The step names.
    pub fn steps(&self) -> &[String] {
        &self.0
    }
}

impl Serialize for Audience {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => serializer.serialize_str(one),
            many => many.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AudVisitor;
        impl<'de> Visitor<'de> for AudVisitor {
            type Value = Audience;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Audience, E> {
                Ok(Audience(vec![v.to_owned()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Audience, A::Error> {
                let mut steps = Vec::new();
                while let Some(step) = seq.next_element::<String>()? {
                    steps.push(step);
                }
                Ok(Audience(steps))
            }
        }
        deserializer.deserialize_any(AudVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audience_accepts_string_or_array_only() {
        let one: Audience = serde_json::from_str(r#""a""#).unwrap();
        assert_eq!(one.steps(), ["a"]);
        let two: Audience = serde_json::from_str(r#"["a","b"]"#).unwrap();
        assert!(two.contains("b"));
        let empty: Audience = serde_json::from_str("[]").unwrap();
        assert!(!empty.contains("a"));
        assert!(serde_json::from_str::<Audience>("1").is_err());
        assert!(serde_json::from_str::<Audience>("{}").is_err());
        assert!(serde_json::from_str::<Audience>("[1]").is_err());
        assert_eq!(serde_json::to_string(&one).unwrap(), r#""a""#);
        assert_eq!(serde_json::to_string(&two).unwrap(), r#"["a","b"]"#);
    }
}
