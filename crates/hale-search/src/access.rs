//! The part of the record a caller may see ([`Restriction`]), carried by every
//! [`SearchRequest`](crate::parse::SearchRequest) and history query so that the store's
//! one SQL builder adds it to every statement that returns resources: the page, its
//! total, its `_include`s and `_revinclude`s, history and `$everything`.

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
    /// Only patients whose `managingOrganization` is this Organization id (or whose
    /// active Consent permits it, less those whose Consent denies it).
    pub organization: Option<String>,
    /// Patients visible besides (break-the-glass grants), whatever the above says.
    pub also: Vec<String>,
}

impl Restriction {
    /// Only these patients.
    pub fn patients(ids: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Restriction { patients: Some(ids.into_iter().map(Into::into).collect()), organization: None, also: Vec::new() }
    }

    /// No patient's information at all.
    pub fn no_patients() -> Self {
        Restriction { patients: Some(Vec::new()), organization: None, also: Vec::new() }
    }

    /// The patients of one organization.
    pub fn organization(id: impl Into<String>) -> Self {
        Restriction { patients: None, organization: Some(id.into()), also: Vec::new() }
    }
}

#[cfg(test)]
mod tests {
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
