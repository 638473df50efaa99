//! Index rows: the values of a resource's search parameters, as the store keeps them.

/// A row of the token index: `(parameter, system, code)` of one resource, with the
/// normalised display or text for `:text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenIndex {
    pub param: String,
    pub system: Option<String>,
    pub code: String,
    pub text: Option<String>,
}

/// A string value: normalised (lower case, no accents) and as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StringIndex {
    pub param: String,
    pub norm: String,
    pub exact: String,
}

/// A date value as a closed range of Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateIndex {
    pub param: String,
    pub lo: i64,
    pub hi: i64,
}

/// A number or quantity value (system, code and unit for quantities).
#[derive(Debug, Clone, PartialEq)]
pub struct NumberIndex {
    pub param: String,
    pub value: f64,
    pub system: Option<String>,
    pub code: Option<String>,
    pub unit: Option<String>,
}

/// A reference: `Type/id` split when it is one, the full text in `url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceIndex {
    pub param: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub url: Option<String>,
}

/// A uri or canonical value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriIndex {
    pub param: String,
    pub uri: String,
}

/// One component of a composite value: the columns its type uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompositePart {
    /// Token system or quantity system.
    pub system: Option<String>,
    /// Token code, quantity code, normalised string, `Type/id` reference or uri.
    pub code: Option<String>,
    /// Number or quantity value.
    pub number: Option<f64>,
    /// Date range.
    pub lo: Option<i64>,
    pub hi: Option<i64>,
}

/// A composite parameter's value (`code-value-quantity`): one part per component.
#[derive(Debug, Clone, PartialEq)]
pub struct CompositeIndex {
    pub param: String,
    pub parts: Vec<CompositePart>,
}

/// Index rows of one resource version, written in the same transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IndexRows {
    pub tokens: Vec<TokenIndex>,
    pub strings: Vec<StringIndex>,
    pub dates: Vec<DateIndex>,
    pub numbers: Vec<NumberIndex>,
    pub quantities: Vec<NumberIndex>,
    pub references: Vec<ReferenceIndex>,
    pub uris: Vec<UriIndex>,
    pub composites: Vec<CompositeIndex>,
}

/// The search parameter whose references give a resource its patient keys.
pub const PATIENT_PARAM: &str = "patient";

impl IndexRows {
    /// The number of rows, over every index table.
    pub fn row_count(&self) -> usize {
        self.tokens.len()
            + self.strings.len()
            + self.dates.len()
            + self.numbers.len()
            + self.quantities.len()
            + self.references.len()
            + self.uris.len()
            + self.composites.len()
    }

    /// The patient keys the resource's token rows are written under, one row per key:
    /// the distinct target ids of its `patient` search parameter (a Patient, or a Group
    /// where the element allows one), or a single `None` when it has none. A search
    /// pinned to one patient (`patient=X`) lists that patient's matches of a token clause
    /// from one index range; the reference itself is still checked, so a Group of the
    /// same id never matches `patient=Patient/X`.
    pub fn patient_keys(&self) -> Vec<Option<&str>> {
        let mut out: Vec<Option<&str>> = Vec::new();
        for r in &self.references {
            if r.param == PATIENT_PARAM
                && let Some(id) = r.target_id.as_deref()
                && !out.contains(&Some(id))
            {
                out.push(Some(id));
            }
        }
        if out.is_empty() {
            out.push(None);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(param: &str, ty: Option<&str>, id: &str) -> ReferenceIndex {
        ReferenceIndex { param: param.into(), target_type: ty.map(Into::into), target_id: Some(id.into()), url: None }
    }

    #[test]
    fn patient_keys_are_the_distinct_target_ids_of_the_patient_parameter() {
        let rows = IndexRows {
            references: vec![
                reference("patient", Some("Patient"), "a"),
                reference("subject", Some("Patient"), "b"),
                reference("patient", Some("Group"), "c"),
                reference("patient", Some("Patient"), "d"),
                reference("patient", Some("Patient"), "a"),
                ReferenceIndex { param: "patient".into(), target_type: None, target_id: None, url: Some("#c".into()) },
            ],
            ..Default::default()
        };
        assert_eq!(rows.patient_keys(), vec![Some("a"), Some("c"), Some("d")]);
        assert_eq!(IndexRows::default().patient_keys(), vec![None]);
    }
}
