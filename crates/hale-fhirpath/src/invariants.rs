//! The invariants R4 states (<https://hl7.org/fhir/R4/conformance-rules.html>,
//! "Constraints"): the FHIRPath rules of severity error (and, for `$validate`, those of
//! severity warning: [`check_with_warnings`]) in the definitions of each
//! resource (`obs-6`: `dataAbsentReason.empty() or value.empty()`, `dom-3`: every
//! contained resource is referenced), of its backbone elements (`pat-1` on each
//! `Patient.contact`) and of the data types (`per-1`: a Period's start is not after its
//! end, `qty-3`, `ext-1`, `tim-*`), from `hale_fhir::definitions::R4_INVARIANTS`.
//!
//! The resource is walked with the R4 model; each element whose type has invariants is
//! checked where it is, with `%resource` the resource, and named by its path
//! (`Patient.contact[1]`, `Encounter.period`). The resources inside it (contained, in a
//! Bundle's entries, in a Parameters) are checked by the rules of their own types, with
//! `%resource` the inner resource and, for a contained one, `%rootResource` its
//! container (R4 FHIRPath, "Variables"). An
//! invariant holds unless its expression gives `false`; one that cannot be evaluated (a
//! function this engine lacks, an error, more work than [`WORK_LIMIT`]) refuses nothing:
//! a valid record is never refused for want of an evaluator. [`unevaluated`] names
//! those that never compile, and `que-7`, which R4 wrote so that it refuses what it
//! means to allow.
//!
//! The same walk holds each R4 core extension it meets to its definition's
//! `contextInvariant` (R4 StructureDefinition.contextInvariant: "A set of rules as
//! FHIRPath Invariants about when the extension can be used ... All the rules must be
//! true"), from `hale_fhir::definitions::ExtensionDef::context_invariants`: R4's comment
//! on that element says "the FHIRPath focus is the element that holds the extension, and
//! %extension refers to the extension itself", so each rule is evaluated on the element
//! whose `extension` (or `modifierExtension`) holds it, with `%extension` that extension
//! and `%resource`/`%rootResource` as for the other rules. R4 says all the rules "must be
//! true": a `false` or an empty result is a violation (unlike the other rules, where only
//! `false` is; an error still refuses nothing), named by the extension's url at the
//! extension's path (`Questionnaire.item[0].extension[1]`). Thirteen core extensions have such rules (`list-changeBase`: `mode = 'changes'`, and
//! twelve `questionnaire-*` extensions on `Questionnaire.item`: `type='reference'`...);
//! all thirteen compile and are evaluated. Their contexts are complex elements, never a
//! primitive's `_element`, and the structural validation that runs first refuses a core
//! extension outside its context: primitives' extensions are not searched for them.

use std::collections::HashMap;
use std::sync::OnceLock;

use hale_fhir::definitions::{Definitions, TypeKind};
use serde_json::Value as Json;

use crate::value::Node;
use crate::{Context, Expression, Value};

/// The work one invariant may take on one element (see [`Context::with_work_limit`]).
pub const WORK_LIMIT: usize = 200_000;

/// How deep the walk goes (deeper elements are not checked).
const MAX_DEPTH: usize = 64;

/// Invariants whose R4 expression refuses what R4 means to allow, with why; not
/// evaluated.
const MISWRITTEN: &[(&str, &str)] = &[(
    "que-7",
    "`answer is Boolean` names System.Boolean, which no FHIR boolean is in FHIRPath (R5 writes `answer is boolean`); the official example questionnaire-example-bluebook.json would be refused",
)];

/// One invariant of a type.
pub struct Invariant {
    /// `obs-6`
    pub key: String,
    /// What it says, in words.
    pub human: String,
    /// Of severity warning (a best practice such as `dom-6`, "A resource should have
    /// narrative"): reported by `$validate`, never a reason to refuse a write.
    pub warning: bool,
    rule: Expression,
}

/// An invariant a resource breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The invariant's key (`obs-6`), or for a core extension's contextInvariant the
    /// extension's url.
    pub key: String,
    /// What the invariant says; for a contextInvariant, which has no human text in R4,
    /// a sentence quoting its expression.
    pub human: String,
    /// Where: `Observation`, `Patient.contact[1]`, `Encounter.period`; for a
    /// contextInvariant the extension (`Questionnaire.item[0].extension[1]`).
    pub location: String,
    /// A warning, not an error (see [`Invariant::warning`]).
    pub warning: bool,
}

/// A contextInvariant of an R4 core extension, compiled.
struct ContextInvariant {
    /// What a violation says: the rule as R4 writes it (R4 gives it no human text).
    human: String,
    rule: Expression,
}

struct Table {
    /// By the name of the type they constrain (`Observation`, `Patient.contact`, `Period`).
    by_type: HashMap<String, Vec<Invariant>>,
    /// By the element they constrain, when its type is not its own (`Organization.telecom`,
    /// a ContactPoint: `org-3`): by type, then by element name.
    by_element: HashMap<String, HashMap<String, Vec<Invariant>>>,
    /// The contextInvariants of the core extensions that have some, by url.
    by_extension: HashMap<&'static str, Vec<ContextInvariant>>,
    unevaluated: Vec<String>,
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let rows: Vec<(String, String, String, String, String)> =
            serde_json::from_str(hale_fhir::definitions::R4_INVARIANTS).unwrap_or_default();
        let defs = Definitions::get();
        let mut t = Table {
            by_type: HashMap::new(),
            by_element: HashMap::new(),
            by_extension: HashMap::new(),
            unevaluated: Vec::new(),
        };
        for (path, key, human, expr, severity) in rows {
            let miswritten = MISWRITTEN.iter().any(|(k, _)| *k == key);
            let (false, Ok(rule)) = (miswritten, Expression::parse(&expr)) else {
                t.unevaluated.push(format!("{path} {key}"));
                continue;
            };
            let inv = Invariant { key, human, warning: severity == "warning", rule };
            if defs.type_def(&path).is_some() {
                t.by_type.entry(path).or_default().push(inv);
            } else if let Some((parent, element)) = path.rsplit_once('.')
                && defs.type_def(parent).is_some_and(|d| d.elements.iter().any(|e| e.name == element))
            {
                t.by_element.entry(parent.to_string()).or_default().entry(element.to_string()).or_default().push(inv);
            } else {
                t.unevaluated.push(format!("{path} {}", inv.key));
            }
        }
        for ext in defs.extensions() {
            for expr in &ext.context_invariants {
                // one that does not compile is left out, never a reason to refuse
                let Ok(rule) = Expression::parse(expr) else {
                    t.unevaluated.push(format!("{} contextInvariant {expr}", ext.url));
                    continue;
                };
                let human = format!(
                    "the extension is used where its contextInvariant `{expr}` does not hold (R4 states the rule \
                     without human text)"
                );
                t.by_extension.entry(ext.url.as_str()).or_default().push(ContextInvariant { human, rule });
            }
        }
        t
    })
}

/// The invariants of the type (or backbone element) `ty` that this engine evaluates.
pub fn of_type(ty: &str) -> &'static [Invariant] {
    table().by_type.get(ty).map(Vec::as_slice).unwrap_or(&[])
}

/// The invariants (`path key`) that are not evaluated: their expression does not
/// compile here, or R4 wrote it wrong (`MISWRITTEN`), or its path names nothing Hale's
/// model knows; and the core extensions' contextInvariants (`url contextInvariant
/// expression`) that do not compile (none in R4).
pub fn unevaluated() -> &'static [String] {
    &table().unevaluated
}

/// Where an element is: its parent's trail, its name and its index in an array; turned
/// into a path (`Patient.contact[1]`) only for a violation.
struct Trail<'t> {
    parent: Option<&'t Trail<'t>>,
    name: &'t str,
    index: Option<usize>,
}

impl Trail<'_> {
    fn path(&self) -> String {
        let mut parts = Vec::new();
        let mut at = Some(self);
        while let Some(t) = at {
            parts.push(match t.index {
                Some(i) => format!("{}[{i}]", t.name),
                None => t.name.to_string(),
            });
            at = t.parent;
        }
        parts.reverse();
        parts.join(".")
    }
}

/// What the walk needs at every element.
struct Walk<'a, 'c> {
    /// The resource whose elements are walked: `%resource`.
    resource: &'a Json,
    ctx: &'c Context<'a>,
    /// Whether invariants of severity warning are evaluated too.
    warnings: bool,
    out: &'c mut Vec<Violation>,
}

impl<'a> Walk<'a, '_> {
    /// Checks `invariants` on `json` (of type `ty`, at `trail`).
    fn check(&mut self, invariants: &[Invariant], json: &'a Json, ty: &'static str, trail: &Trail<'_>) {
        for inv in invariants.iter().filter(|i| self.warnings || !i.warning) {
            let node = Value::Node(Node { json: Some(json), ext: None, fhir_type: Some(ty) });
            let broken = match inv.rule.evaluate_on(self.resource, node, self.ctx) {
                Ok(values) => matches!(values.as_slice(), [v] if matches!(v.to_system(), Some(Value::Boolean(false)))),
                Err(_) => false,
            };
            if broken {
                self.out.push(Violation {
                    key: inv.key.clone(),
                    human: inv.human.clone(),
                    location: trail.path(),
                    warning: inv.warning,
                });
            }
        }
    }

    /// Holds `ext`, an extension of `holder` (of type `ty`) at `trail`, to the
    /// contextInvariants of its definition, if it is a core extension with some: each
    /// evaluated on `holder` with `%extension` the extension.
    fn context_invariants(&mut self, holder: &'a Json, ty: &'static str, ext: &'a Json, trail: &Trail<'_>) {
        let Some(url) = ext.get("url").and_then(Json::as_str) else { return };
        let Some(rules) = table().by_extension.get(url) else { return };
        let extension = Value::Node(Node { json: Some(ext), ext: None, fhir_type: Some("Extension") });
        let ctx = self.ctx.clone().with_variable("extension", vec![extension]);
        for inv in rules {
            let focus = Value::Node(Node { json: Some(holder), ext: None, fhir_type: Some(ty) });
            // R4: "All the rules must be true". A `false` refuses, and so does an empty
            // result, which is not true: in these rules it comes from an absent
            // `repeats` or `required`, which R4 reads as false ("Items are generally
            // assumed not to repeat unless explicitly specified"), as the HL7 validator
            // does (it counts only true as a pass). An error (a rule this engine cannot
            // evaluate, or one that outruns the work limit) refuses nothing, as for the
            // other rules: a valid record is never refused for want of an evaluator.
            let broken = match inv.rule.evaluate_on(self.resource, focus, &ctx) {
                Ok(values) => match values.as_slice() {
                    [] => true,
                    [v] => matches!(v.to_system(), Some(Value::Boolean(false))),
                    _ => false,
                },
                Err(_) => false,
            };
            if broken {
                self.out.push(Violation {
                    key: url.to_string(),
                    human: inv.human.clone(),
                    location: trail.path(),
                    warning: false,
                });
            }
        }
    }

    /// Checks `json` (of type `ty`, at `trail`) and every element in it that
    /// invariants constrain.
    fn element(&mut self, json: &'a Json, ty: &'static str, trail: &Trail<'_>, depth: usize) {
        let defs = Definitions::get();
        let Some(def) = defs.type_def(ty) else { return };
        let Some(obj) = json.as_object() else { return };
        self.check(of_type(ty), json, ty, trail);
        if depth >= MAX_DEPTH {
            return;
        }
        let by_element = table().by_element.get(ty);
        for (key, value) in obj {
            let Some((el, child)) = def.property(key) else { continue };
            if matches!(key.as_str(), "extension" | "modifierExtension")
                && let Json::Array(items) = value
            {
                for (i, ext) in items.iter().enumerate() {
                    self.context_invariants(json, ty, ext, &Trail { parent: Some(trail), name: key, index: Some(i) });
                }
            }
            let invs = by_element.and_then(|m| m.get(el.name.as_str()));
            // into complex types and backbone elements; not into resources (contained,
            // in a Bundle), whose rules are their own
            let complex =
                defs.type_def(child).is_some_and(|t| matches!(t.kind, TypeKind::Complex | TypeKind::Backbone));
            let inner = child == "Resource";
            if invs.is_none() && !complex && !inner {
                continue;
            }
            let mut visit = |v: &'a Json, index: Option<usize>| {
                let here = Trail { parent: Some(trail), name: key, index };
                if let Some(invs) = invs {
                    self.check(invs, v, child, &here);
                }
                if complex {
                    self.element(v, child, &here, depth + 1);
                } else if inner {
                    // a contained resource's `%rootResource` is its container; a
                    // resource in a Bundle entry or a Parameters is its own root
                    let root = (key == "contained").then_some(self.resource);
                    resource(v, root, &here, depth + 1, self.warnings, self.out);
                }
            };
            match value {
                Json::Array(items) => items.iter().enumerate().for_each(|(i, v)| visit(v, Some(i))),
                v => visit(v, None),
            }
        }
    }
}

/// The invariants of severity error `resource` breaks (empty: none), its own and those
/// of the resources in it (contained, in a Bundle's entries, in a Parameters), each
/// checked with `%resource` itself.
pub fn check(resource: &Json) -> Vec<Violation> {
    walk_resource(resource, false)
}

/// [`check`], and the invariants of severity warning too (for `$validate`).
pub fn check_with_warnings(resource: &Json) -> Vec<Violation> {
    walk_resource(resource, true)
}

fn walk_resource(resource: &Json, warnings: bool) -> Vec<Violation> {
    let Some(ty) = resource.get("resourceType").and_then(Json::as_str) else { return Vec::new() };
    let mut out = Vec::new();
    self::resource(resource, None, &Trail { parent: None, name: ty, index: None }, 0, warnings, &mut out);
    out
}

/// Checks `json`, a resource at `trail`, with `%rootResource` its container `root` (a
/// contained resource's) or itself.
fn resource<'a>(
    json: &'a Json,
    root: Option<&'a Json>,
    trail: &Trail<'_>,
    depth: usize,
    warnings: bool,
    out: &mut Vec<Violation>,
) {
    let Some(ty) = json.get("resourceType").and_then(Json::as_str) else { return };
    let Some(def) = Definitions::get().type_def(ty) else { return };
    // R4's own expressions apply as() to collections (dom-3), as engines of its time did
    let mut ctx = Context::new().with_work_limit(WORK_LIMIT).with_as_on_collections(true);
    if let Some(root) = root {
        ctx = ctx.with_variable("rootResource", vec![crate::model::root_node(root)]);
    }
    let mut walk = Walk { resource: json, ctx: &ctx, warnings, out };
    walk.element(json, def.name.as_str(), trail, depth);
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
    fn the_rules_of_data_types_and_of_elements_are_checked_where_they_are() {
        // per-1 on a Period inside a backbone element
        let e = json!({"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
            "statusHistory": [{"status": "planned", "period": {"start": "2025-01-02", "end": "2025-01-01"}}]});
        assert_eq!(keys(&e), ["per-1 Encounter.statusHistory[0].period"]);
        let fine = json!({"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
            "period": {"start": "2025-01-01T10:00:00Z", "end": "2025-01-01T10:30:00Z"}});
        assert!(keys(&fine).is_empty(), "{:?}", keys(&fine));
        // qty-3: a unit code without its system; ext-1: an extension with neither value nor extensions
        let o = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "valueQuantity": {"value": 1, "code": "mg"},
            "extension": [{"url": "http://example.org/x"}]});
        assert_eq!(keys(&o), ["qty-3 Observation.valueQuantity", "ext-1 Observation.extension[0]"]);
        // org-3 constrains the element Organization.telecom (a ContactPoint): never 'home'
        let org = json!({"resourceType": "Organization", "name": "O",
            "telecom": [{"system": "phone", "value": "1", "use": "work"}, {"system": "phone", "value": "2", "use": "home"}]});
        assert_eq!(keys(&org), ["org-3 Organization.telecom[1]"]);
        // nested items of a Questionnaire are checked too (their type is Questionnaire.item)
        let q = json!({"resourceType": "Questionnaire", "status": "draft", "item": [{"linkId": "1", "type": "group",
            "item": [{"linkId": "1.1", "type": "display", "required": true}]}]});
        assert!(keys(&q).iter().any(|k| k.ends_with("Questionnaire.item[0].item[0]")), "{:?}", keys(&q));
    }

    #[test]
    fn the_resources_inside_a_resource_are_held_to_their_own_rules() {
        // a contained Patient whose contact has nothing (pat-1), referred to by its container
        let c = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": "#p"},
            "contained": [{"resourceType": "Patient", "id": "p", "contact": [{"gender": "male"}]}]});
        assert_eq!(keys(&c), ["pat-1 Observation.contained[0].contact[0]"]);
        // ref-1 in a contained resource reads its container's contained (%rootResource):
        // a contained Patient may refer to a contained Organization beside it
        let siblings = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": "#p"},
            "contained": [{"resourceType": "Patient", "id": "p", "managingOrganization": {"reference": "#o"}},
                          {"resourceType": "Organization", "id": "o", "name": "O"}]});
        assert!(keys(&siblings).is_empty(), "{:?}", keys(&siblings));
        let dangling = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": "#p"},
            "contained": [{"resourceType": "Patient", "id": "p", "managingOrganization": {"reference": "#nobody"}}]});
        assert_eq!(keys(&dangling), ["ref-1 Observation.contained[0].managingOrganization"]);
        // a resource in a Bundle entry, and one in a Parameters
        let b = json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"fullUrl": "urn:uuid:4f1e9a52-1b1c-4bd4-9d0f-1f0b0a6e9d11", "resource": {"resourceType": "Observation",
             "status": "final", "code": {"text": "x"}, "valueString": "a", "dataAbsentReason": {"text": "b"}}}]});
        assert_eq!(keys(&b), ["obs-6 Bundle.entry[0].resource"]);
        let p = json!({"resourceType": "Parameters", "parameter": [{"name": "r", "resource":
            {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
             "period": {"start": "2025-01-02", "end": "2025-01-01"}}}]});
        assert_eq!(keys(&p), ["per-1 Parameters.parameter[0].resource.period"]);
    }

    #[test]
    fn warnings_are_found_only_when_asked_for() {
        // dom-6: a resource should have a narrative (a warning)
        let p = json!({"resourceType": "Patient", "active": true});
        assert!(check(&p).is_empty());
        let found = check_with_warnings(&p);
        assert!(found.iter().any(|v| v.key == "dom-6" && v.warning && v.location == "Patient"), "{found:?}");
        assert!(found.iter().all(|v| v.warning), "{found:?}");
        let mut with_text = p.clone();
        with_text["text"] =
            json!({"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"});
        assert!(check_with_warnings(&with_text).iter().all(|v| v.key != "dom-6"));
        // errors are errors either way
        let both = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "valueString": "a", "dataAbsentReason": {"text": "b"}});
        assert!(check_with_warnings(&both).iter().any(|v| v.key == "obs-6" && !v.warning));
    }

    const SD: &str = "http://hl7.org/fhir/StructureDefinition";

    /// A Questionnaire with one item of `ty` (and `more` of its elements) holding `ext`.
    fn questionnaire(ty: &str, more: Json, ext: Json) -> Json {
        let mut item = json!({"linkId": "1", "text": "Q", "type": ty, "extension": [ext]});
        if let (Some(item), Json::Object(more)) = (item.as_object_mut(), more) {
            item.extend(more);
        }
        json!({"resourceType": "Questionnaire", "status": "draft", "item": [item]})
    }

    #[test]
    fn each_core_extension_is_held_to_its_context_invariants() {
        let coding = json!({"system": "http://unitsofmeasure.org", "code": "kg"});
        // (extension, its value, an item it may be on, the same item breaking exactly the
        // extension's one rule)
        let cases = [
            (
                "questionnaire-choiceOrientation",
                json!({"valueCode": "horizontal"}),
                ("choice", json!({})),
                ("string", json!({})),
            ),
            (
                "questionnaire-choiceOrientation",
                json!({"valueCode": "vertical"}),
                ("open-choice", json!({})),
                ("boolean", json!({})),
            ),
            (
                "questionnaire-displayCategory",
                json!({"valueCodeableConcept": {"text": "help"}}),
                ("string", json!({})),
                ("display", json!({})),
            ),
            (
                "questionnaire-fhirType",
                json!({"valueString": "Patient.name"}),
                ("string", json!({})),
                ("display", json!({})),
            ),
            (
                "questionnaire-maxOccurs",
                json!({"valueInteger": 3}),
                ("string", json!({"repeats": true})),
                ("string", json!({"repeats": false})),
            ),
            // %extension: a maxOccurs of 1 needs no repeats
            (
                "questionnaire-maxOccurs",
                json!({"valueInteger": 1}),
                ("string", json!({"repeats": false})),
                ("display", json!({})),
            ),
            (
                "questionnaire-minOccurs",
                json!({"valueInteger": 2}),
                ("string", json!({"required": true})),
                ("string", json!({"required": false})),
            ),
            (
                "questionnaire-minOccurs",
                json!({"valueInteger": 0}),
                ("string", json!({"required": false})),
                ("display", json!({})),
            ),
            (
                "questionnaire-referenceFilter",
                json!({"valueString": "active=true"}),
                ("reference", json!({})),
                ("string", json!({})),
            ),
            (
                "questionnaire-referenceProfile",
                json!({"valueCanonical": "http://hl7.org/fhir/StructureDefinition/Patient"}),
                ("reference", json!({})),
                ("url", json!({})),
            ),
            (
                "questionnaire-referenceResource",
                json!({"valueCode": "Patient"}),
                ("reference", json!({})),
                ("choice", json!({})),
            ),
            (
                "questionnaire-sliderStepValue",
                json!({"valueInteger": 5}),
                ("integer", json!({})),
                ("decimal", json!({})),
            ),
            ("questionnaire-unit", json!({"valueCoding": coding}), ("integer", json!({})), ("quantity", json!({}))),
            ("questionnaire-unit", json!({"valueCoding": coding}), ("decimal", json!({})), ("string", json!({}))),
            (
                "questionnaire-unitOption",
                json!({"valueCoding": coding}),
                ("quantity", json!({})),
                ("decimal", json!({})),
            ),
            (
                "questionnaire-unitValueSet",
                json!({"valueCanonical": "http://hl7.org/fhir/ValueSet/ucum-units"}),
                ("quantity", json!({})),
                ("integer", json!({})),
            ),
        ];
        let mut covered: std::collections::BTreeSet<&str> = cases.iter().map(|c| c.0).collect();
        for (name, value, (ok_ty, ok_more), (bad_ty, bad_more)) in cases {
            let url = format!("{SD}/{name}");
            let mut ext = json!({"url": url});
            if let (Some(e), Json::Object(v)) = (ext.as_object_mut(), value) {
                e.extend(v);
            }
            let ok = questionnaire(ok_ty, ok_more, ext.clone());
            assert!(keys(&ok).is_empty(), "{name}: {:?}", keys(&ok));
            let bad = questionnaire(bad_ty, bad_more, ext);
            assert_eq!(keys(&bad), [format!("{url} Questionnaire.item[0].extension[0]")], "{name}");
            let v = &check(&bad)[0];
            assert!(
                !v.warning && v.human.contains("contextInvariant `") && v.human.contains("without human text"),
                "{v:?}"
            );
        }
        // List: a changeBase belongs to a list of changes
        let list = |mode: &str| {
            json!({"resourceType": "List", "status": "current", "mode": mode,
                "extension": [{"url": format!("{SD}/list-changeBase"), "valueReference": {"reference": "List/base"}}]})
        };
        assert!(keys(&list("changes")).is_empty(), "{:?}", keys(&list("changes")));
        assert_eq!(keys(&list("snapshot")), [format!("{SD}/list-changeBase List.extension[0]")]);
        let v = &check(&list("working"))[0];
        assert!(v.human.contains("`mode = 'changes'`"), "{v:?}");
        // every core extension with a rule is covered above, and every rule compiled
        covered.insert("list-changeBase");
        let with_rules: std::collections::BTreeSet<&str> = table()
            .by_extension
            .keys()
            .map(|u| u.trim_start_matches("http://hl7.org/fhir/StructureDefinition/"))
            .collect();
        assert_eq!(covered, with_rules);
        assert_eq!(table().by_extension.values().map(Vec::len).sum::<usize>(), 13);
        assert!(unevaluated().iter().all(|u| !u.contains("contextInvariant")), "{:?}", unevaluated());
    }

    #[test]
    fn context_invariants_are_evaluated_on_the_element_holding_the_extension() {
        let unit = json!({"url": format!("{SD}/questionnaire-unit"), "valueCoding": {"code": "kg"}});
        // a nested item: the focus is that item, not its group, not the resource
        let nested = |ty: &str| {
            json!({"resourceType": "Questionnaire", "status": "draft", "item": [{"linkId": "g", "type": "group", "text": "G",
                "item": [{"linkId": "a", "type": "string", "text": "A"}, {"linkId": "b", "type": ty, "text": "B", "extension": [unit]}]}]})
        };
        assert!(keys(&nested("decimal")).is_empty(), "{:?}", keys(&nested("decimal")));
        assert_eq!(
            keys(&nested("string")),
            [format!("{SD}/questionnaire-unit Questionnaire.item[0].item[1].extension[0]")]
        );
        // the extension itself is %extension: minOccurs 0 holds without `required`, 3 does not
        let min = |n: i64| {
            questionnaire(
                "string",
                json!({"required": false}),
                json!({"url": format!("{SD}/questionnaire-minOccurs"), "valueInteger": n}),
            )
        };
        assert!(keys(&min(0)).is_empty());
        assert_eq!(keys(&min(3)).len(), 1);
        // "All the rules must be true": an absent `repeats` (or `required`), which R4 reads
        // as false, makes the rule empty, not true: refused; 1 (or 0) needs neither
        let occurs = |name: &str, n: i64| {
            questionnaire("string", json!({}), json!({"url": format!("{SD}/questionnaire-{name}"), "valueInteger": n}))
        };
        assert_eq!(
            keys(&occurs("maxOccurs", 3)),
            [format!("{SD}/questionnaire-maxOccurs Questionnaire.item[0].extension[0]")]
        );
        assert_eq!(
            keys(&occurs("minOccurs", 2)),
            [format!("{SD}/questionnaire-minOccurs Questionnaire.item[0].extension[0]")]
        );
        assert!(keys(&occurs("maxOccurs", 1)).is_empty() && keys(&occurs("minOccurs", 0)).is_empty());
        // in a contained resource and in a Bundle entry, where they are
        let contained = json!({"resourceType": "QuestionnaireResponse", "status": "completed", "questionnaire": "#q",
            "contained": [{"id": "q", "resourceType": "Questionnaire", "status": "draft",
                "item": [{"linkId": "1", "type": "string", "text": "Q", "extension": [unit]}]}]});
        assert_eq!(
            keys(&contained),
            [format!("{SD}/questionnaire-unit QuestionnaireResponse.contained[0].item[0].extension[0]")]
        );
        let b = json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"fullUrl": "urn:uuid:4f1e9a52-1b1c-4bd4-9d0f-1f0b0a6e9d12", "resource": nested("string")}]});
        assert_eq!(
            keys(&b),
            [format!("{SD}/questionnaire-unit Bundle.entry[0].resource.item[0].item[1].extension[0]")]
        );
        // an extension that is not a core one, or a core one without rules, asks nothing;
        // several rules' breaks are each reported
        let other = questionnaire("display", json!({}), json!({"url": "http://example.org/unit", "valueString": "kg"}));
        assert!(keys(&other).is_empty());
        let two = json!({"resourceType": "Questionnaire", "status": "draft", "item": [{"linkId": "1", "type": "display", "text": "D",
            "extension": [{"url": format!("{SD}/questionnaire-fhirType"), "valueString": "string"},
                          {"url": format!("{SD}/questionnaire-hidden"), "valueBoolean": true},
                          {"url": format!("{SD}/questionnaire-displayCategory"), "valueCodeableConcept": {"text": "x"}}]}]});
        assert_eq!(
            keys(&two),
            [
                format!("{SD}/questionnaire-fhirType Questionnaire.item[0].extension[0]"),
                format!("{SD}/questionnaire-displayCategory Questionnaire.item[0].extension[2]"),
            ]
        );
        // the warnings walk finds them as errors too
        assert!(check_with_warnings(&two).iter().filter(|v| v.key.ends_with("fhirType")).all(|v| !v.warning));
    }

    #[test]
    fn nearly_every_invariant_is_evaluated() {
        let t = table();
        let total: usize = t.by_type.values().map(Vec::len).sum::<usize>()
            + t.by_element.values().flat_map(|m| m.values()).map(Vec::len).sum::<usize>();
        assert!(total > 770, "{total}");
        assert!(unevaluated().len() < 10, "{:?}", unevaluated());
    }
}
