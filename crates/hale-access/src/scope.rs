//! SMART on FHIR scopes (<https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html>),
//! v1 (`patient/Observation.read`) and v2 (`patient/Observation.rs`), parsed and
//! checked. Granular v2 scopes (`patient/Observation.rs?category=laboratory`, SMART App
//! Launch 2 "finer-grained resource constraints using search parameters") grant their
//! permissions on the resources of their type that match their query: the query is
//! parsed against the R4 search parameters into token tests
//! ([`hale_search::access::parse_scope_query`]) that the store applies in SQL
//! ([`Scopes::filters`]); a query Hale cannot apply that way (not a token parameter, a
//! modifier, a chain, a wildcard type) makes the scope invalid, so it never grants more
//! than it says.

use std::fmt;

use hale_search::access::{TokenTest, TypeFilter, parse_scope_query};

/// The level of a resource scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// `patient/`: the patient in context only.
    Patient,
    /// `user/`: what the signed-in user may see.
    User,
    /// `system/`: a backend service with no user.
    System,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Patient => "patient",
            Level::User => "user",
            Level::System => "system",
        }
    }
}

/// One of the SMART v2 permissions, in the order they are written (`cruds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Perm {
    Create,
    Read,
    Update,
    Delete,
    Search,
}

impl Perm {
    pub const ALL: [Perm; 5] = [Perm::Create, Perm::Read, Perm::Update, Perm::Delete, Perm::Search];

    fn bit(self) -> u8 {
        match self {
            Perm::Create => 1,
            Perm::Read => 2,
            Perm::Update => 4,
            Perm::Delete => 8,
            Perm::Search => 16,
        }
    }

    fn letter(self) -> char {
        match self {
            Perm::Create => 'c',
            Perm::Read => 'r',
            Perm::Update => 'u',
            Perm::Delete => 'd',
            Perm::Search => 's',
        }
    }
}

/// A set of [`Perm`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Perms(u8);

impl Perms {
    pub fn contains(self, p: Perm) -> bool {
        self.0 & p.bit() != 0
    }
    pub fn with(self, p: Perm) -> Perms {
        Perms(self.0 | p.bit())
    }
    pub fn all() -> Perms {
        Perm::ALL.iter().fold(Perms::default(), |s, p| s.with(*p))
    }
}

/// One resource scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceScope {
    pub level: Level,
    /// `None` for `*`.
    pub resource_type: Option<String>,
    pub perms: Perms,
    /// The granular restriction of a v2 scope (`category=laboratory`), as written.
    pub query: Option<String>,
    /// `query` as the tests a resource must pass (every one), empty without a query.
    pub filter: Vec<TokenTest>,
}

impl ResourceScope {
    /// Whether this scope grants `perm` on `ty` (`None`: every type, as for a system-wide
    /// search). A granular scope grants it on the matching resources of its type only:
    /// the restriction's filters ([`Scopes::filters`]) hold it to them.
    pub fn grants(&self, perm: Perm, ty: Option<&str>) -> bool {
        self.perms.contains(perm)
            && match (&self.resource_type, ty) {
                (None, _) => true,
                (Some(mine), Some(t)) => mine == t,
                (Some(_), None) => false,
            }
    }
}

impl fmt::Display for ResourceScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}.", self.level.as_str(), self.resource_type.as_deref().unwrap_or("*"))?;
        for p in Perm::ALL {
            if self.perms.contains(p) {
                write!(f, "{}", p.letter())?;
            }
        }
        if let Some(q) = &self.query {
            write!(f, "?{q}")?;
        }
        Ok(())
    }
}

/// The scopes outside resource access that Hale knows.
pub const OTHER_SCOPES: &[&str] = &[
    "openid",
    "fhirUser",
    "profile",
    "launch",
    "launch/patient",
    "launch/encounter",
    "offline_access",
    "online_access",
];

/// A parsed scope string.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scopes {
    pub resources: Vec<ResourceScope>,
    /// `openid`, `fhirUser`, `launch/patient`, `offline_access`...
    pub other: Vec<String>,
}

/// Why a scope string was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeError(pub String);

impl fmt::Display for ScopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ScopeError {}

fn is_type_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase()) && chars.all(|c| c.is_ascii_alphanumeric())
}

/// Parses one resource scope (`user/Patient.rs`, `patient/*.read`).
pub fn parse_resource_scope(s: &str) -> Result<ResourceScope, ScopeError> {
    let bad = |why: &str| ScopeError(format!("'{s}' is not a valid SMART scope: {why}"));
    let (level, rest) = s.split_once('/').ok_or_else(|| bad("no level"))?;
    let level = match level {
        "patient" => Level::Patient,
        "user" => Level::User,
        "system" => Level::System,
        _ => return Err(bad("the level must be patient, user or system")),
    };
    let (ty, rest) = rest.split_once('.').ok_or_else(|| bad("no '.' between the type and the permissions"))?;
    let resource_type = match ty {
        "*" => None,
        t if is_type_name(t) => Some(t.to_string()),
        _ => return Err(bad("the resource type is not a FHIR type name or '*'")),
    };
    let (perm_text, query) = match rest.split_once('?') {
        Some((p, q)) if !q.is_empty() => (p, Some(q.to_string())),
        Some(_) => return Err(bad("the query after '?' is empty")),
        None => (rest, None),
    };
    let perms = match perm_text {
        "read" => Perms::default().with(Perm::Read).with(Perm::Search),
        "write" => Perms::default().with(Perm::Create).with(Perm::Update).with(Perm::Delete),
        "*" => Perms::all(),
        letters => {
            // v2: a non-empty subsequence of "cruds", in that order
            let mut perms = Perms::default();
            let mut next = 0;
            for ch in letters.chars() {
                let at = Perm::ALL[next..]
                    .iter()
                    .position(|p| p.letter() == ch)
                    .ok_or_else(|| bad("the permissions must be read, write, * or letters of 'cruds' in that order"))?;
                perms = perms.with(Perm::ALL[next + at]);
                next += at + 1;
            }
            if perms == Perms::default() {
                return Err(bad("no permissions"));
            }
            perms
        }
    };
    if query.is_some() && matches!(perm_text, "read" | "write" | "*") {
        return Err(bad("a granular '?' restriction needs v2 permissions"));
    }
    let filter = match (&query, &resource_type) {
        (None, _) => Vec::new(),
        (Some(_), None) => {
            return Err(bad("Hale cannot apply a granular '?' restriction to '*': name a resource type"));
        }
        (Some(q), Some(t)) => {
            parse_scope_query(t, q).map_err(|why| bad(&format!("Hale cannot apply its query: {why}")))?
        }
    };
    Ok(ResourceScope { level, resource_type, perms, query, filter })
}

impl Scopes {
    /// Parses a space-separated scope string. A malformed resource scope is an error;
    /// an unknown scope of another kind is an error too when `strict`, else dropped (as a
    /// server may when granting fewer scopes than asked).
    pub fn parse(s: &str, strict: bool) -> Result<Scopes, ScopeError> {
        let mut out = Scopes::default();
        for part in s.split(' ').filter(|p| !p.is_empty()) {
            if part.starts_with("patient/") || part.starts_with("user/") || part.starts_with("system/") {
                let r = parse_resource_scope(part)?;
                if !out.resources.contains(&r) {
                    out.resources.push(r);
                }
            } else if OTHER_SCOPES.contains(&part) {
                if !out.other.iter().any(|o| o == part) {
                    out.other.push(part.to_string());
                }
            } else if strict {
                return Err(ScopeError(format!("'{part}' is not a scope Hale knows")));
            }
        }
        Ok(out)
    }

    /// The broadest level at which these scopes grant `perm` on `ty`, if any.
    pub fn grants(&self, perm: Perm, ty: Option<&str>) -> Option<Level> {
        self.resources.iter().filter(|r| r.grants(perm, ty)).map(|r| r.level).max()
    }

    /// The granular filters for `perm` among the scopes of `levels`: for each type some
    /// granular scope names, the queries of those granting `perm` on it (an OR), unless a
    /// scope without a query grants it (then nothing filters that type). A type the
    /// granular scopes name but none grants `perm` on gets a filter with no
    /// alternative: none of its resources.
    pub fn filters(&self, perm: Perm, levels: &[Level]) -> Vec<TypeFilter> {
        let mine = || self.resources.iter().filter(|r| levels.contains(&r.level));
        let mut types: Vec<&str> =
            mine().filter(|r| r.query.is_some()).filter_map(|r| r.resource_type.as_deref()).collect();
        types.sort_unstable();
        types.dedup();
        let mut out = Vec::new();
        for t in types {
            let granting: Vec<&ResourceScope> = mine().filter(|r| r.grants(perm, Some(t))).collect();
            if granting.iter().any(|r| r.query.is_none()) {
                continue;
            }
            let mut any_of: Vec<Vec<TokenTest>> = Vec::new();
            for r in granting {
                if !any_of.contains(&r.filter) {
                    any_of.push(r.filter.clone());
                }
            }
            out.push(TypeFilter { resource_type: t.to_string(), any_of });
        }
        out
    }

    /// Whether any resource scope is patient-level: then the whole token is held to the
    /// patient in context (the stricter reading of a token that mixes levels).
    pub fn is_patient_level(&self) -> bool {
        self.resources.iter().any(|r| r.level == Level::Patient)
    }

    pub fn has(&self, other: &str) -> bool {
        self.other.iter().any(|o| o == other)
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in self.other.iter().map(|o| o.to_string()).chain(self.resources.iter().map(|r| r.to_string())) {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            f.write_str(&s)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2_scopes_mean_the_same_permissions() {
        let v1 = parse_resource_scope("patient/Observation.read").unwrap();
        let v2 = parse_resource_scope("patient/Observation.rs").unwrap();
        assert_eq!(v1.perms, v2.perms);
        assert_eq!(v2.to_string(), "patient/Observation.rs");
        let w = parse_resource_scope("user/*.write").unwrap();
        assert_eq!(w.to_string(), "user/*.cud");
        assert_eq!(parse_resource_scope("system/*.*").unwrap().to_string(), "system/*.cruds");
    }

    #[test]
    fn malformed_scopes_are_refused() {
        for bad in [
            "patient/Observation",
            "patient/observation.read",
            "patient/Observation.sr",
            "patient/Observation.x",
            "patient/Observation.",
            "doctor/Observation.read",
            "patient/Observation.read?category=x",
            "patient/Observation.rs?",
            "patient/Obs-ervation.rs",
            "patient/*.rs?category=laboratory",
            "patient/Observation.rs?value-quantity=gt5",
            "patient/Observation.rs?code:text=pulse",
            "patient/Observation.rs?subject=Patient/1",
            "patient/Observation.rs?category=laboratory&_count=5",
            "patient/Observation.rs?nonsense=1",
            "patient/Observation.rs?category",
            "patient/Nothing.rs?category=x",
            "user/AuditEvent.rs?type=rest",
        ] {
            assert!(parse_resource_scope(bad).is_err(), "{bad}");
        }
        assert!(Scopes::parse("openid nonsense", true).is_err());
        assert_eq!(Scopes::parse("openid nonsense fhirUser", false).unwrap().other, ["openid", "fhirUser"]);
    }

    #[test]
    fn grants_follow_type_permission_and_level() {
        let s = Scopes::parse("patient/Observation.rs user/Patient.r launch/patient", true).unwrap();
        assert_eq!(s.grants(Perm::Read, Some("Observation")), Some(Level::Patient));
        assert_eq!(s.grants(Perm::Search, Some("Patient")), None);
        assert_eq!(s.grants(Perm::Read, Some("Patient")), Some(Level::User));
        assert_eq!(s.grants(Perm::Create, Some("Observation")), None);
        assert_eq!(s.grants(Perm::Read, None), None);
        assert!(s.is_patient_level());
        assert!(s.has("launch/patient"));
        let all = Scopes::parse("system/*.rs", true).unwrap();
        assert_eq!(all.grants(Perm::Search, None), Some(Level::System));
        // a granular scope grants its permissions; its filter holds them to what matches
        let g = Scopes::parse("patient/Observation.rs?category=laboratory", true).unwrap();
        assert_eq!(g.grants(Perm::Read, Some("Observation")), Some(Level::Patient));
        assert_eq!(g.grants(Perm::Create, Some("Observation")), None);
        assert_eq!(g.to_string(), "patient/Observation.rs?category=laboratory");
    }

    #[test]
    fn granular_scopes_filter_their_type_and_several_are_an_or() {
        let levels = [Level::User, Level::Patient];
        let lab = "patient/Observation.rs?category=laboratory";
        let g = Scopes::parse(lab, true).unwrap();
        let f = g.filters(Perm::Search, &levels);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].resource_type, "Observation");
        assert_eq!(f[0].any_of.len(), 1);
        assert_eq!(f[0].any_of[0][0].param, "category");
        // a permission no scope grants on the type: nothing of it
        let f = g.filters(Perm::Create, &levels);
        assert_eq!((f.len(), f[0].any_of.len()), (1, 0));
        // two granular scopes: either query
        let two = Scopes::parse(&format!("{lab} patient/Observation.rs?category=vital-signs"), true).unwrap();
        assert_eq!(two.filters(Perm::Read, &levels)[0].any_of.len(), 2);
        // a plain scope besides: everything of the type
        let plain = Scopes::parse(&format!("{lab} patient/Observation.rs"), true).unwrap();
        assert!(plain.filters(Perm::Read, &levels).is_empty());
        // ...but only for the permissions it grants
        let partial = Scopes::parse(&format!("{lab} patient/Observation.s"), true).unwrap();
        assert!(partial.filters(Perm::Search, &levels).is_empty());
        assert_eq!(partial.filters(Perm::Read, &levels)[0].any_of.len(), 1);
        // other levels do not count
        assert!(g.filters(Perm::Read, &[Level::System]).is_empty());
        let mixed = Scopes::parse(&format!("{lab} system/Observation.rs"), true).unwrap();
        assert_eq!(mixed.filters(Perm::Read, &levels)[0].any_of.len(), 1);
        // a query in several parameters: all of them
        let and = Scopes::parse("user/Observation.rs?category=laboratory&status=final", true).unwrap();
        assert_eq!(and.filters(Perm::Read, &levels)[0].any_of[0].len(), 2);
        assert!(Scopes::parse("user/Condition.rs patient/*.rs", true).unwrap().filters(Perm::Read, &levels).is_empty());
    }
}
