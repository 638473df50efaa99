//! Sets of items under FHIRPath equality, for `|`, `distinct()`, `intersect()`...:
//! items are bucketed by a key that equal items share (numbers by their normalized
//! value, strings, booleans, nodes by an order-independent hash of their JSON), and
//! compared with `=` only within a bucket, so large collections stay near-linear.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use rust_decimal::Decimal;
use serde_json::Value as Json;

use crate::eval::item_equal;
use crate::value::Value;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Num(String),
    Str(String),
    Bool(bool),
    /// Dates and times compare across precisions and zones: one bucket.
    Temporal,
    /// Quantities compare across units: one bucket.
    Quantity,
    Json(u64),
    Type(String),
}

fn key(v: &Value<'_>) -> Key {
    match v.to_system() {
        Some(Value::Integer(i)) => Key::Num(Decimal::from(i).to_string()),
        Some(Value::Decimal(d)) => Key::Num(d.normalize().to_string()),
        Some(Value::String(s)) => Key::Str(s),
        Some(Value::Boolean(b)) => Key::Bool(b),
        Some(Value::Date(_) | Value::DateTime(_) | Value::Time(_)) => Key::Temporal,
        Some(Value::Quantity { .. }) => Key::Quantity,
        Some(Value::Node(_) | Value::Type { .. }) | None => match v {
            Value::Node(n) => Key::Json(match n.json {
                Some(j) => json_hash(j),
                None => n.ext.map(json_hash).unwrap_or(0),
            }),
            Value::Type { namespace, name } => Key::Type(format!("{namespace}.{name}")),
            _ => Key::Type(String::new()),
        },
    }
}

fn hash_of(x: impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    x.hash(&mut h);
    h.finish()
}

/// A hash of JSON that, like JSON equality, ignores the order of object members.
fn json_hash(j: &Json) -> u64 {
    match j {
        Json::Null => 1,
        Json::Bool(b) => hash_of((2u8, b)),
        Json::Number(n) => hash_of((3u8, n.to_string())),
        Json::String(s) => hash_of((4u8, s)),
        Json::Array(a) => a.iter().fold(5u64, |h, x| h.wrapping_mul(31).wrapping_add(json_hash(x))),
        Json::Object(m) => m.iter().fold(6u64, |h, (k, v)| h.wrapping_add(hash_of((k, json_hash(v))))),
    }
}

/// Distinct items, in insertion order.
pub(crate) struct Distinct<'a> {
    items: Vec<Value<'a>>,
    buckets: HashMap<Key, Vec<usize>>,
    /// Equality tests made so far (for the work limit).
    pub comparisons: usize,
    /// Most equality tests allowed; beyond, the set stops comparing and is `exceeded`.
    budget: usize,
    pub exceeded: bool,
}

impl<'a> Distinct<'a> {
    pub(crate) fn new(budget: usize) -> Distinct<'a> {
        Distinct { items: Vec::new(), buckets: HashMap::new(), comparisons: 0, budget, exceeded: false }
    }

    pub(crate) fn from_items(items: impl IntoIterator<Item = Value<'a>>, budget: usize) -> Distinct<'a> {
        let mut d = Distinct::new(budget);
        for v in items {
            d.insert(v);
        }
        d
    }

    fn find(&mut self, k: &Key, v: &Value<'_>) -> bool {
        let Some(bucket) = self.buckets.get(k) else { return false };
        for &i in bucket {
            self.comparisons += 1;
            if self.comparisons > self.budget {
                self.exceeded = true;
                return false;
            }
            if item_equal(&self.items[i], v) == Some(true) {
                return true;
            }
        }
        false
    }

    /// Adds `v` unless an equal item is there; true if added.
    pub(crate) fn insert(&mut self, v: Value<'a>) -> bool {
        let k = key(&v);
        if self.find(&k, &v) {
            return false;
        }
        self.buckets.entry(k).or_default().push(self.items.len());
        self.items.push(v);
        true
    }

    pub(crate) fn contains(&mut self, v: &Value<'_>) -> bool {
        let k = key(v);
        self.find(&k, v)
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    pub(crate) fn into_vec(self) -> Vec<Value<'a>> {
        self.items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedupes_by_fhirpath_equality() {
        let a = serde_json::json!({"x": 1, "y": [1, 2]});
        let b = serde_json::json!({"y": [1, 2], "x": 1});
        let node = |j| Value::Node(crate::value::Node { json: Some(j), ext: None, fhir_type: None });
        let mut d = Distinct::new(1000);
        assert!(d.insert(Value::Integer(1)));
        assert!(!d.insert(Value::Decimal("1.00".parse().unwrap())));
        assert!(d.insert(Value::String("1".into())));
        assert!(d.insert(node(&a)));
        assert!(!d.insert(node(&b)));
        assert!(d.insert(Value::Quantity { value: "1".parse().unwrap(), unit: "g".into() }));
        assert!(!d.insert(Value::Quantity { value: "1000".parse().unwrap(), unit: "mg".into() }));
        assert_eq!(d.len(), 4);
        assert!(d.contains(&Value::Integer(1)) && !d.contains(&Value::Integer(2)));
    }
}
