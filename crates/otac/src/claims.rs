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
    /// Custom claims attached by handlers, carried along the chain. A member named twice, at any depth, makes the
    /// code malformed (so no two readers can disagree about a claim).
    #[serde(
        default,
        skip_serializing_if = "Map::is_empty",
        deserialize_with = "strict_object"
    )]
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

/// A JSON object in which no object, at any depth, names a member twice.
fn strict_object<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Map<String, Value>, D::Error> {
    match deserializer.deserialize_map(StrictValue)? {
        Value::Object(map) => Ok(map),
        _ => Err(de::Error::custom("expected an object")),
    }
}

struct StrictValue;

impl<'de> de::DeserializeSeed<'de> for StrictValue {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON without duplicate object members")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(StrictValue)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom("duplicate member"));
            }
            let value = map.next_value_seed(StrictValue)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_claims_refuse_duplicate_members_at_any_depth() {
        let base = r#""iss":"i","aud":"a","exp":1,"iat":1,"nbf":1,"jti":"j","wf":"w","run":"r","stp":"s","rat":1"#;
        let parse =
            |ctx: &str| serde_json::from_str::<Claims>(&format!("{{{base},\"ctx\":{ctx}}}"));
        assert!(parse(r#"{"user_id":"a","n":[1,{"x":true}]}"#).is_ok());
        assert!(parse(r#"{"user_id":"victim","user_id":"real"}"#).is_err());
        assert!(parse(r#"{"a":{"b":1,"b":2}}"#).is_err());
        assert!(parse(r#"{"a":[{"b":1,"b":2}]}"#).is_err());
        assert!(parse("[]").is_err());
    }

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
