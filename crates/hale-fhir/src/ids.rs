//! Identifier newtypes: never bare strings across crates.

use std::fmt;

use crate::definitions::Definitions;

/// A concrete (non-abstract) R4 resource type name such as `Patient`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceType(String);

impl ResourceType {
    /// Accepts only the name of a concrete R4 resource type.
    pub fn parse(name: &str) -> Option<Self> {
        Definitions::get().is_concrete_resource(name).then(|| ResourceType(name.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A logical resource id: `[A-Za-z0-9\-\.]{1,64}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceId(String);

/// Whether `id` is a logical id: `[A-Za-z0-9\-\.]{1,64}`.
fn is_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Splits `Type/id` (optionally followed by `/_history/n`) when it is one: a type-like
/// name (a capital, then letters and digits) and a logical id.
pub fn split_reference(r: &str) -> Option<(&str, &str)> {
    let r = r.split("/_history/").next().unwrap_or(r);
    let (t, id) = r.split_once('/')?;
    let type_ok =
        t.chars().next().is_some_and(|c| c.is_ascii_uppercase()) && t.chars().all(|c| c.is_ascii_alphanumeric());
    (type_ok && is_id(id)).then_some((t, id))
}

impl ResourceId {
    pub fn parse(id: &str) -> Option<Self> {
        is_id(id).then(|| ResourceId(id.to_string()))
    }
    /// A fresh server-assigned id (UUID v7: time-ordered, valid as a FHIR id).
    pub fn generate() -> Self {
        ResourceId(uuid::Uuid::now_v7().to_string())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A version of a resource: 1, 2, 3... (`meta.versionId` holds it as text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VersionId(u64);

impl VersionId {
    pub const FIRST: VersionId = VersionId(1);
    pub fn new(n: u64) -> Self {
        VersionId(n)
    }
    pub fn parse(s: &str) -> Option<Self> {
        if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok().filter(|n| *n > 0).map(VersionId)
    }
    pub fn get(self) -> u64 {
        self.0
    }
    pub fn next(self) -> Self {
        VersionId(self.0 + 1)
    }
}

impl fmt::Display for VersionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_r4_rule() {
        assert!(ResourceId::parse("abc-1.2").is_some());
        assert!(ResourceId::parse("").is_none());
        assert!(ResourceId::parse("a b").is_none());
        assert!(ResourceId::parse(&"a".repeat(65)).is_none());
        assert!(ResourceId::parse(ResourceId::generate().as_str()).is_some());
    }

    #[test]
    fn versions_are_positive_integers() {
        assert_eq!(VersionId::parse("3"), Some(VersionId::new(3)));
        assert_eq!(VersionId::parse("0"), None);
        assert_eq!(VersionId::parse("x"), None);
        assert_eq!(VersionId::parse("-1"), None);
    }

    #[test]
    fn only_concrete_resource_types_parse() {
        assert!(ResourceType::parse("Patient").is_some());
        assert!(ResourceType::parse("DomainResource").is_none());
        assert!(ResourceType::parse("HumanName").is_none());
        assert!(ResourceType::parse("patient").is_none());
    }
}
