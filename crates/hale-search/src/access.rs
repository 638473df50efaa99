//! The part of the record a caller may see ([`Restriction`]), carried by every
//! [`SearchRequest`](crate::parse::SearchRequest) and history query so that the store's
//! one SQL builder adds it to every statement that returns resources: the page, its
//! total, its `_include`s and `_revinclude`s, history and `$everything`.
//!
//! Besides patients, a restriction may hold [`TypeFilter`]s: the queries of granular
//! SMART v2 scopes (`patient/Observation.rs?category=laboratory`), which keep the
//! resources of a type to those that match ([`parse_scope_query`] turns a scope's query
//! into [`TokenTest`]s, refusing what the store cannot apply).

use hale_fhir::ResourceType;

use crate::index::TokenIndex;
use crate::parse::{Modifier, ParamType, SearchValue};

/// Types that hold no one patient's information (the directory, medications and
/// substances, conformance and knowledge artifacts): any caller whose role and scopes
/// allow the type may see them, whatever their relationship to patients.
pub const SHARED_TYPES: &[&str] = &[
    "ActivityDefinition",
    "CapabilityStatement",
    "CodeSystem",
    "CompartmentDefinition",
    "ConceptMap",
    "Endpoint",
    "HealthcareService",
    "ImplementationGuide",
    "Library",
    "Location",
    "Measure",
    "Medication",
    "MedicationKnowledge",
    "NamingSystem",
    "OperationDefinition",
    "Organization",
    "PlanDefinition",
    "Practitioner",
    "PractitionerRole",
    "Questionnaire",
    "SearchParameter",
    "StructureDefinition",
    "StructureMap",
    "Substance",
    "TerminologyCapabilities",
    "ValueSet",
];

/// Whether resources of `ty` are open to every caller the policy lets read the type.
pub fn is_shared(ty: &str) -> bool {
    SHARED_TYPES.binary_search(&ty).is_ok()
}

/// The patients whose information a caller may see. A resource is visible when it is
/// of a [shared](SHARED_TYPES) type, or is one of those patients, or is in the Patient
/// compartment of one of them and of no other patient. Everything else (other patients' data, and types such as
/// `Group` that list patients without being in a compartment) is invisible, and to the
/// caller looks the same as a resource that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Restriction {
    /// Only these patients (a patient's own record, a proxy's linked patients, the
    /// patient of a SMART launch). `Some(vec![])`: no patient at all.
    pub patients: Option<Vec<String>>,
    /// Only the patients of this Organization id: whose `managingOrganization` it is,
    /// whose active Consent permits it, one of whose Encounters has it as
    /// `serviceProvider`, or one of whose CareTeams lists it as a participant; less
    /// those whose Consent denies it.
    pub organization: Option<String>,
    /// With `organization`: also the patients whose care team lists this Practitioner
    /// id (the user's own `fhirUser`) as a participant.
    pub practitioner: Option<String>,
    /// Patients visible besides (break-the-glass grants), whatever the above says.
    pub also: Vec<String>,
    /// Every patient's information (a client acting for no user): only `filters` apply.
    pub every_patient: bool,
    /// Granular scopes: a resource of a type named here is visible only when it matches
    /// one of its filter's alternatives (whatever the patients above say).
    pub filters: Vec<TypeFilter>,
}

impl Restriction {
    /// Only these patients.
    pub fn patients(ids: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Restriction { patients: Some(ids.into_iter().map(Into::into).collect()), ..Restriction::default() }
    }

    /// No patient's information at all.
    pub fn no_patients() -> Self {
        Restriction { patients: Some(Vec::new()), ..Restriction::default() }
    }

    /// The patients of one organization.
    pub fn organization(id: impl Into<String>) -> Self {
        Restriction { organization: Some(id.into()), ..Restriction::default() }
    }

    /// Every patient (a client acting for no user), held to `filters` only.
    pub fn filtered(filters: Vec<TypeFilter>) -> Self {
        Restriction { every_patient: true, filters, ..Restriction::default() }
    }

    /// The filters on resources of `ty` (every one must pass; usually none or one).
    pub fn filters_of<'a>(&'a self, ty: &'a str) -> impl Iterator<Item = &'a TypeFilter> + 'a {
        self.filters.iter().filter(move |f| f.resource_type == ty)
    }

    /// Whether a granular scope restricts resources of `ty`.
    pub fn filters_type(&self, ty: &str) -> bool {
        self.filters_of(ty).next().is_some()
    }

    /// Whether a resource of `ty` with these token index rows passes the filters (a
    /// new version being written: the same test as the store's SQL, on the rows
    /// about to be stored).
    pub fn admits(&self, ty: &str, tokens: &[TokenIndex]) -> bool {
        self.filters_of(ty).all(|f| f.any_of.iter().any(|tests| tests.iter().all(|t| t.holds(tokens))))
    }

    /// This restriction, held besides to `other`'s filters (the patients are the
    /// same for every interaction of one caller): what a conditional write finds must
    /// be both searchable and writable.
    pub fn and_filters_of(mut self, other: &Restriction) -> Restriction {
        for f in &other.filters {
            if !self.filters.contains(f) {
                self.filters.push(f.clone());
            }
        }
        self
    }

    /// The same restriction without its filters: whose record the caller reaches.
    pub fn patients_only(&self) -> Restriction {
        Restriction { filters: Vec::new(), ..self.clone() }
    }
}

/// The resources of one type a caller's granular scopes let through: those matching
/// every test of one of the alternatives (several scopes on a type are an OR; the
/// parameters of one scope's query an AND). No alternative: none of that type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TypeFilter {
    pub resource_type: String,
    pub any_of: Vec<Vec<TokenTest>>,
}

/// A token search parameter of a granular scope: the resource has a row of `param`
/// matching one of `values`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenTest {
    /// The parameter code as the definitions spell it (`category`, `code`, `_tag`).
    pub param: String,
    pub values: Vec<TokenValue>,
}

/// `system|code`, `|code` (no system), `code` (any system) or `system|` (any code).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenValue {
    /// `None`: any system; `Some(None)`: none.
    pub system: Option<Option<String>>,
    /// `None`: any code.
    pub code: Option<String>,
}

impl TokenValue {
    fn matches(&self, row: &TokenIndex) -> bool {
        self.code.as_ref().is_none_or(|c| *c == row.code)
            && match &self.system {
                None => true,
                Some(None) => row.system.is_none(),
                Some(Some(s)) => row.system.as_deref() == Some(s.as_str()),
            }
    }
}

impl TokenTest {
    /// Whether one of these index rows satisfies the test.
    pub fn holds(&self, tokens: &[TokenIndex]) -> bool {
        tokens.iter().any(|row| row.param == self.param && self.values.iter().any(|v| v.matches(row)))
    }
}

/// Types whose records are not read through the resource tables and their index (the
/// audit log is searched by its own columns): no granular scope can restrict them.
const UNFILTERABLE_TYPES: &[&str] = &["AuditEvent"];

/// Decodes `%XX` escapes (and nothing else: `+` stays a plus).
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The query of a granular scope on `ty` (`category=http://...|laboratory&status=final`)
/// as the tests the store applies: each parameter must be a token search parameter of
/// `ty` by the R4 definitions, without modifiers, chains or result parameters, with
/// token values (`system|code`, `code`, `|code`, `system|`, comma-separated for OR).
/// Anything else is refused with the reason: a restriction Hale cannot apply must not
/// grant more than it says.
pub fn parse_scope_query(ty: &str, query: &str) -> Result<Vec<TokenTest>, String> {
    if UNFILTERABLE_TYPES.contains(&ty) {
        return Err(format!("{ty} cannot be restricted by a query"));
    }
    let rt = ResourceType::parse(ty).ok_or_else(|| format!("'{ty}' is not an R4 resource type"))?;
    let mut pairs = Vec::new();
    for part in query.split('&') {
        let (name, value) = part.split_once('=').ok_or_else(|| format!("'{part}' is not name=value"))?;
        let name = percent_decode(name).ok_or_else(|| format!("'{name}' has a bad %-escape"))?;
        let value = percent_decode(value).ok_or_else(|| format!("'{value}' has a bad %-escape"))?;
        if value.is_empty() {
            return Err(format!("'{name}' has no value"));
        }
        pairs.push((name, value));
    }
    let req = crate::parse::parse(&rt, &pairs, false).map_err(|i| i.diagnostics)?;
    if req.clauses.len() != pairs.len() {
        return Err("only search parameters may restrict a scope (no _include, _sort, _count ...)".into());
    }
    let mut tests = Vec::new();
    for (c, (name, _)) in req.clauses.iter().zip(&pairs) {
        let token = c.param_type == ParamType::Token && c.code != "_id";
        if !token || c.chain.is_some() || c.has.is_some() {
            return Err(format!("'{name}' is not a token search parameter of {ty}; Hale applies only those"));
        }
        if c.modifier != Modifier::None {
            return Err(format!("'{name}': modifiers are not applied in a scope's query"));
        }
        let mut values = Vec::new();
        for v in &c.values {
            match v {
                SearchValue::Token { system, code } => {
                    values.push(TokenValue { system: system.clone(), code: code.clone() })
                }
                _ => return Err(format!("'{name}' has a value that is not a token")),
            }
        }
        tests.push(TokenTest { param: c.code.clone(), values });
    }
    if tests.is_empty() {
        return Err("the query restricts nothing".into());
    }
    Ok(tests)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(param: &str, system: Option<&str>, code: &str) -> TokenIndex {
        TokenIndex { param: param.into(), system: system.map(Into::into), code: code.into(), text: None }
    }

    #[test]
    fn a_scope_query_becomes_token_tests_or_is_refused() {
        const CAT: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
        let t = parse_scope_query("Observation", &format!("category={CAT}|laboratory")).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].param, "category");
        assert_eq!(t[0].values, [TokenValue { system: Some(Some(CAT.into())), code: Some("laboratory".into()) }]);
        let t = parse_scope_query("Observation", "category=laboratory,vital-signs&status=final").unwrap();
        assert_eq!((t.len(), t[0].values.len()), (2, 2));
        assert!(parse_scope_query("Observation", "category=%7Claboratory").unwrap()[0].values[0].system == Some(None));
        assert!(parse_scope_query("Condition", "_tag=x").is_ok());
        for (ty, q) in [
            ("Observation", "value-quantity=gt5"),
            ("Observation", "date=ge2020"),
            ("Observation", "subject=Patient/1"),
            ("Observation", "code:text=pulse"),
            ("Observation", "code:not=x"),
            ("Observation", "category"),
            ("Observation", "category="),
            ("Observation", "nonsense=1"),
            ("Observation", "_count=1"),
            ("Observation", "_include=Observation:subject"),
            ("Observation", "_id=1"),
            ("Observation", "subject:Patient.gender=male"),
            ("Observation", "category=%ZZ"),
            ("Nothing", "category=x"),
            ("AuditEvent", "type=rest"),
        ] {
            let e = parse_scope_query(ty, q).unwrap_err();
            assert!(!e.is_empty(), "{ty}?{q}");
        }
    }

    #[test]
    fn filters_admit_what_one_alternative_matches() {
        let lab = parse_scope_query("Observation", "category=laboratory").unwrap();
        let final_vitals = parse_scope_query("Observation", "category=vital-signs&status=final").unwrap();
        let r = Restriction::filtered(vec![TypeFilter {
            resource_type: "Observation".into(),
            any_of: vec![lab, final_vitals],
        }]);
        let lab_row = [row("category", Some("s"), "laboratory")];
        assert!(r.admits("Observation", &lab_row));
        assert!(r.admits("Condition", &[]), "an unfiltered type passes");
        assert!(!r.admits("Observation", &[row("category", None, "vital-signs")]));
        assert!(r.admits("Observation", &[row("category", None, "vital-signs"), row("status", None, "final")]));
        assert!(!r.admits("Observation", &[row("code", None, "laboratory")]), "the parameter counts");
        let none = Restriction::filtered(vec![TypeFilter { resource_type: "Observation".into(), any_of: vec![] }]);
        assert!(!none.admits("Observation", &lab_row));
        let both = r.clone().and_filters_of(&none);
        assert_eq!(both.filters_of("Observation").count(), 2);
        assert!(!both.admits("Observation", &lab_row), "every filter of the type must pass");
        assert!(r.filters_type("Observation") && !r.filters_type("Condition"));
        let sys = parse_scope_query("Observation", "category=s|").unwrap();
        assert!(sys[0].holds(&lab_row) && !sys[0].holds(&[row("category", Some("t"), "laboratory")]));
        let nosys = parse_scope_query("Observation", "category=|laboratory").unwrap();
        assert!(!nosys[0].holds(&lab_row) && nosys[0].holds(&[row("category", None, "laboratory")]));
    }

    #[test]
    fn the_shared_types_are_sorted_for_the_binary_search() {
        let mut sorted = super::SHARED_TYPES.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, super::SHARED_TYPES);
        assert!(super::is_shared("Practitioner"));
        assert!(!super::is_shared("Group"));
        assert!(!super::is_shared("Observation"));
    }
}
