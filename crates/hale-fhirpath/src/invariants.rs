//! The invariants R4 states on resources (<https://hl7.org/fhir/R4/conformance-rules.html>,
//! "Constraints"): the FHIRPath rules of severity error in each resource's definition,
//! on the resource (`obs-6`: `dataAbsentReason.empty() or value.empty()`, `dom-3`: every
//! contained resource is referenced) and on its backbone elements (`obs-7` on each
//! `Observation.component`), from `hale_fhir::definitions::R4_INVARIANTS`.
//!
//! An invariant holds unless its expression gives `false` for the resource or one of
//! the elements its path names. One that cannot be evaluated (a function this engine
//! lacks, an error, more work than [`WORK_LIMIT`]) refuses nothing: a valid record is
//! never refused for want of an evaluator; [`unevaluated`] names those that never
//! compile. Invariants of data types (`per-1` on every Period...) are not checked yet.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value as Json;

use crate::{Context, Expression};

/// The work one invariant may take on one resource (see [`Context::with_work_limit`]).
pub const WORK_LIMIT: usize = 200_000;

/// One invariant of a resource type.
pub struct Invariant {
    /// `obs-6`
    pub key: String,
    /// The element it constrains: `Observation`, `Observation.component`.
    pub path: String,
    /// What it says, in words.
    pub human: String,
    /// The elements of the path (`None` for the resource itself).
    elements: Option<Expression>,
    rule: Expression,
}

/// An invariant a resource breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub key: String,
    pub human: String,
    /// Where: `Observation` or `Observation.component[1]`.
    pub location: String,
}

struct Table {
    by_type: HashMap<String, Vec<Invariant>>,
    unevaluated: Vec<String>,
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let rows: Vec<(String, String, String, String, String)> =
            serde_json::from_str(hale_fhir::definitions::R4_INVARIANTS).unwrap_or_default();
        let mut by_type: HashMap<String, Vec<Invariant>> = HashMap::new();
        let mut unevaluated = Vec::new();
        for (ty, path, key, human, expr) in rows {
            let elements = match path == ty {
                true => Ok(None),
                // a choice element's path names no element FHIRPath can navigate
                false if path.contains("[x]") => Err(()),
                false => Expression::parse(&path).map(Some).map_err(|_| ()),
            };
            match (elements, Expression::parse(&expr)) {
                (Ok(elements), Ok(rule)) => {
                    by_type.entry(ty).or_default().push(Invariant { key, path, human, elements, rule })
                }
                _ => unevaluated.push(format!("{ty} {key}")),
            }
        }
        Table { by_type, unevaluated }
    })
}

/// The invariants of resource type `ty` that this engine evaluates.
pub fn of_type(ty: &str) -> &'static [Invariant] {
    table().by_type.get(ty).map(Vec::as_slice).unwrap_or(&[])
}

/// The invariants (`Type key`) whose expression or path does not compile here.
pub fn unevaluated() -> &'static [String] {
    &table().unevaluated
}

/// The invariants `resource` breaks (empty: none).
pub fn check(resource: &Json) -> Vec<Violation> {
    let Some(ty) = resource.get("resourceType").and_then(Json::as_str) else { return Vec::new() };
    // R4's own expressions apply as() to collections (dom-3), as engines of its time did
    let ctx = Context::new().with_work_limit(WORK_LIMIT).with_as_on_collections(true);
    let mut out = Vec::new();
    for inv in of_type(ty) {
        let focus = match &inv.elements {
            None => vec![crate::model::root_node(resource)],
            Some(path) => match path.evaluate(resource, &ctx) {
                Ok(nodes) => nodes,
                Err(_) => continue,
            },
        };
        let many = focus.len() > 1;
        for (i, node) in focus.into_iter().enumerate() {
            let broken = match inv.rule.evaluate_on(resource, node, &ctx) {
                Ok(values) => {
                    matches!(values.as_slice(), [v] if matches!(v.to_system(), Some(crate::Value::Boolean(false))))
                }
                Err(_) => false,
            };
            if broken {
                let location = if many { format!("{}[{i}]", inv.path) } else { inv.path.clone() };
                out.push(Violation { key: inv.key.clone(), human: inv.human.clone(), location });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys(r: &Json) -> Vec<String> {
        check(r).into_iter().map(|v| format!("{} {}", v.key, v.location)).collect()
    }

    #[test]
    fn the_rules_of_resources_and_their_elements_are_checked() {
        let ok = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "valueQuantity": {"value": 1}});
        assert!(keys(&ok).is_empty(), "{:?}", keys(&ok));
        // obs-6: a value and a reason for its absence
        let both = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "valueQuantity": {"value": 1}, "dataAbsentReason": {"text": "lost"}});
        assert_eq!(keys(&both), ["obs-6 Observation"]);
        // obs-7: a value of its own, and a component whose code is the observation's
        let coded = |c: &str| json!({"coding": [{"system": "http://loinc.org", "code": c}]});
        let comp = json!({"resourceType": "Observation", "status": "final", "code": coded("85354-9"),
            "valueString": "120/80",
            "component": [{"code": coded("8480-6"), "valueQuantity": {"value": 120}},
                          {"code": coded("85354-9"), "valueQuantity": {"value": 80}}]});
        assert_eq!(keys(&comp), ["obs-7 Observation"]);
        // pat-1 on a contact: a name, telecom, address or organization
        let p = json!({"resourceType": "Patient", "contact": [{"gender": "female"}, {"name": {"family": "X"}}]});
        assert_eq!(keys(&p), ["pat-1 Patient.contact[0]"]);
        // dom-3: a contained resource nobody refers to; dom-2: contained in contained
        let c = json!({"resourceType": "Patient", "contained": [{"resourceType": "Organization", "id": "o1", "name": "Org"}]});
        assert_eq!(keys(&c), ["dom-3 Patient"]);
        let referred = json!({"resourceType": "Patient", "contained": [{"resourceType": "Organization", "id": "o1", "name": "Org"}],
            "managingOrganization": {"reference": "#o1"}});
        assert!(keys(&referred).is_empty(), "{:?}", keys(&referred));
    }

    #[test]
    fn nearly_every_invariant_is_evaluated() {
        let total: usize = table().by_type.values().map(Vec::len).sum();
        assert!(total > 700, "{total}");
        assert!(unevaluated().len() < 10, "{:?}", unevaluated());
    }
}
