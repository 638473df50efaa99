//! The items of FHIRPath collections.

use std::fmt;

use rust_decimal::Decimal;
use serde_json::Value as Json;

use crate::model;
use crate::temporal::{Temporal, TemporalKind};

/// One item of a collection: a System value or a node of the resource.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Boolean(bool),
    String(String),
    Integer(i64),
    Decimal(Decimal),
    Date(Temporal),
    DateTime(Temporal),
    Time(Temporal),
    /// A UCUM unit (`mg`, `'1'` for none) or a calendar duration word (`day`, `years`).
    Quantity {
        value: Decimal,
        unit: String,
    },
    /// An element or resource of the input, with its FHIR type.
    Node(Node<'a>),
    /// What `type()` returns: `System.Integer`, `FHIR.Patient`.
    Type {
        namespace: &'static str,
        name: String,
    },
}

/// A node of the FHIR JSON input. Primitive elements carry their value in `json` and their
/// `id`/`extension` (the `_name` sibling) in `ext`; either may be absent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Node<'a> {
    pub json: Option<&'a Json>,
    pub ext: Option<&'a Json>,
    /// The FHIR type name (`date`, `HumanName`, `Patient.contact`, `Observation`), when known.
    pub fhir_type: Option<&'static str>,
}

impl<'a> Node<'a> {
    /// The object holding this node's children (`ext` for primitives).
    pub(crate) fn object(&self) -> Option<&'a serde_json::Map<String, Json>> {
        match self.json {
            Some(Json::Object(m)) => Some(m),
            _ => self.ext.and_then(Json::as_object),
        }
    }

    /// Is this node a FHIR primitive (a value, not an object)?
    pub fn is_primitive(&self) -> bool {
        match self.fhir_type {
            Some(t) => model::is_primitive(t),
            None => !matches!(self.json, Some(Json::Object(_)) | Some(Json::Array(_))),
        }
    }
}

impl<'a> Value<'a> {
    pub(crate) fn temporal(t: Temporal) -> Value<'a> {
        match t.kind {
            TemporalKind::Date => Value::Date(t),
            TemporalKind::DateTime => Value::DateTime(t),
            TemporalKind::Time => Value::Time(t),
        }
    }

    /// The System value of an item: itself for System values; for nodes, the value of a
    /// primitive (`Patient.birthDate` -> a Date) or a Quantity for the Quantity types.
    /// `None` for other nodes and primitives without a value.
    pub fn to_system(&self) -> Option<Value<'a>> {
        match self {
            Value::Node(n) => model::node_to_system(n),
            Value::Type { .. } => None,
            other => Some(other.clone()),
        }
    }

    /// The string of a String item or of a string-like primitive node.
    pub fn as_string(&self) -> Option<String> {
        match self.to_system()? {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The JSON node of a Node item.
    pub fn as_json(&self) -> Option<&'a Json> {
        match self {
            Value::Node(n) => n.json,
            _ => None,
        }
    }

    /// The type as `(namespace, name)`: `("System", "Integer")`, `("FHIR", "date")`.
    pub fn type_name(&self) -> (&'static str, String) {
        let sys = |n: &str| ("System", n.to_string());
        match self {
            Value::Boolean(_) => sys("Boolean"),
            Value::String(_) => sys("String"),
            Value::Integer(_) => sys("Integer"),
            Value::Decimal(_) => sys("Decimal"),
            Value::Date(_) => sys("Date"),
            Value::DateTime(_) => sys("DateTime"),
            Value::Time(_) => sys("Time"),
            Value::Quantity { .. } => sys("Quantity"),
            Value::Type { .. } => sys("TypeInfo"),
            Value::Node(n) => ("FHIR", n.fhir_type.unwrap_or("Element").to_string()),
        }
    }
}

/// Quantity text as FHIRPath writes it: `4.5 'mg'`, `3 days`.
pub(crate) fn quantity_string(value: &Decimal, unit: &str) -> String {
    if crate::units::is_calendar_word(unit) { format!("{value} {unit}") } else { format!("{value} '{unit}'") }
}

impl fmt::Display for Value<'_> {
    /// The `toString()` form; nodes print their System value or their JSON.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Boolean(b) => write!(f, "{b}"),
            Value::String(s) => f.write_str(s),
            Value::Integer(i) => write!(f, "{i}"),
            Value::Decimal(d) => write!(f, "{d}"),
            Value::Date(t) | Value::DateTime(t) | Value::Time(t) => write!(f, "{t}"),
            Value::Quantity { value, unit } => f.write_str(&quantity_string(value, unit)),
            Value::Type { namespace, name } => write!(f, "{namespace}.{name}"),
            Value::Node(n) => match model::node_to_system(n) {
                Some(v) => write!(f, "{v}"),
                None => match n.json {
                    Some(j) => write!(f, "{j}"),
                    None => Ok(()),
                },
            },
        }
    }
}
