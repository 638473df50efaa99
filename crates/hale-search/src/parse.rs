//! A search request parsed into a typed IR
//! (<https://hl7.org/fhir/R4/search.html>). Every parameter name is resolved against
//! the R4 definitions, so nothing from the query reaches SQL as text except bound
//! values.

use hale_fhir::definitions::SearchParamDef;
use hale_fhir::{Definitions, Issue, IssueType, ResourceId, ResourceType};

use crate::values::{DateRange, NumberRange, Prefix, normalize, split_unescaped, unescape};

/// The type of a search parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    Number,
    Date,
    String,
    Token,
    Reference,
    Composite,
    Quantity,
    Uri,
    Special,
}

impl ParamType {
    pub fn of(def: &SearchParamDef) -> ParamType {
        match def.kind.as_str() {
            "number" => ParamType::Number,
            "date" => ParamType::Date,
            "string" => ParamType::String,
            "token" => ParamType::Token,
            "reference" => ParamType::Reference,
            "composite" => ParamType::Composite,
            "quantity" => ParamType::Quantity,
            "uri" => ParamType::Uri,
            _ => ParamType::Special,
        }
    }
}

/// A search value, ready to compare against the index.
#[derive(Debug, Clone, PartialEq)]
pub enum SearchValue {
    /// Normalised for the default and `:contains`, verbatim for `:exact`.
    String(String),
    /// `system|code`, `|code`, `code`, `system|`.
    Token {
        system: Option<Option<String>>,
        code: Option<String>,
    },
    /// `:text`: normalised text to find at the start of display/text.
    TokenText(String),
    /// `:of-type`: identifier type `system|code` and value.
    OfType {
        system: String,
        code: String,
        value: String,
    },
    Date {
        prefix: Prefix,
        range: DateRange,
    },
    Number {
        prefix: Prefix,
        range: NumberRange,
    },
    Quantity {
        prefix: Prefix,
        range: NumberRange,
        system: Option<String>,
        code: Option<String>,
    },
    /// A reference by type (if known) and id.
    Reference {
        target_type: Option<String>,
        id: String,
    },
    /// A reference or uri by its full text.
    Url(String),
    /// `:identifier` on a reference.
    Identifier {
        system: Option<String>,
        value: String,
    },
    Missing(bool),
    /// A composite value (`code$value`): one value per component, in order.
    Composite(Vec<SearchValue>),
}

/// Modifiers (<https://hl7.org/fhir/R4/search.html#modifiers>).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modifier {
    None,
    Missing,
    Exact,
    Contains,
    Text,
    Not,
    Above,
    Below,
    OfType,
    Identifier,
    /// `subject:Patient=...`
    Type(String),
}

/// One parameter of the query; its values are ORed, clauses are ANDed.
#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    /// The parameter name as the definitions spell it (`patient`, `_lastUpdated`).
    pub code: String,
    pub param_type: ParamType,
    pub modifier: Modifier,
    pub values: Vec<SearchValue>,
    /// `subject:Patient.name=x`: the clause applies to the resources the reference
    /// points at.
    pub chain: Option<Box<Chain>>,
    /// `_has:Observation:patient:code=x`: resources referenced by matching others.
    pub has: Option<Box<Has>>,
}

/// A chained parameter: the reference `Clause::code` must point at a resource of one
/// of `target_types` that matches `inner`.
#[derive(Debug, Clone, PartialEq)]
pub struct Chain {
    pub target_types: Vec<String>,
    pub inner: Clause,
}

/// Reverse chaining: some `source_type` resource whose reference parameter `param`
/// points at the resource matches `inner`.
#[derive(Debug, Clone, PartialEq)]
pub struct Has {
    pub source_type: String,
    pub param: String,
    pub inner: Clause,
}

/// `_include` / `_revinclude`: `source_type:param[:target_type]`, `*` for every
/// reference parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Include {
    pub source_type: String,
    /// `None` for `*`.
    pub param: Option<String>,
    pub target_type: Option<String>,
    pub iterate: bool,
}

/// A compartment search (`Patient/123/Observation`): the resource must refer to the
/// owner through one of `params`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compartment {
    pub owner_type: String,
    pub owner_id: String,
    pub params: Vec<String>,
}

/// Most rounds of `:iterate` followed.
pub const MAX_INCLUDE_ITERATIONS: usize = 3;

/// Deepest chain or `_has` nesting accepted.
pub const MAX_CHAIN_DEPTH: usize = 4;

/// `_sort` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    pub code: String,
    pub param_type: ParamType,
    pub descending: bool,
}

/// `_summary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Summary {
    True,
    Text,
    Data,
    Count,
    False,
}

/// `_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Total {
    None,
    Estimate,
    Accurate,
}

/// A parsed search.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchRequest {
    pub resource_type: ResourceType,
    pub clauses: Vec<Clause>,
    pub sort: Vec<SortKey>,
    pub count: Option<usize>,
    pub summary: Option<Summary>,
    pub elements: Option<Vec<String>>,
    pub total: Option<Total>,
    pub includes: Vec<Include>,
    pub revincludes: Vec<Include>,
    pub compartment: Option<Compartment>,
    /// Opaque paging cursor from a previous page.
    pub cursor: Option<String>,
    /// Parameters ignored by a lenient search (left out of the self link).
    pub ignored: Vec<String>,
    /// The parameters understood, in order, for building links.
    pub canonical: Vec<(String, String)>,
    /// What the caller may see: set by the gate, never by the client's query.
    pub restriction: Option<crate::access::Restriction>,
}

fn bad(param: &str, msg: impl Into<String>) -> Issue {
    Issue::error(IssueType::Invalid, msg.into()).at(param.to_string())
}

fn not_supported(param: &str, msg: impl Into<String>) -> Issue {
    Issue::error(IssueType::NotSupported, msg.into()).at(param.to_string())
}

/// The definition of parameter `code` on `ty` (its own or one inherited from Resource).
pub fn find_param(ty: &str, code: &str) -> Option<&'static SearchParamDef> {
    let defs = Definitions::get();
    defs.search_parameters().iter().find(|p| p.code == code && p.base.iter().any(|b| b == ty)).or_else(|| {
        defs.search_parameters()
            .iter()
            .find(|p| p.code == code && p.base.iter().any(|b| b == "Resource" || b == "DomainResource"))
    })
}

const RESULT_PARAMS: &[&str] = &["_sort", "_count", "_summary", "_elements", "_total", "_cursor", "_format", "_pretty"];

/// Parses the query pairs of a type search. Parameters unknown for `ty` are errors
/// unless `lenient` (then listed in `ignored`); an unsupported modifier or chain of a
/// known parameter is an error either way.
pub fn parse(ty: &ResourceType, pairs: &[(String, String)], lenient: bool) -> Result<SearchRequest, Issue> {
    let mut req = SearchRequest {
        resource_type: ty.clone(),
        clauses: Vec::new(),
        sort: Vec::new(),
        count: None,
        summary: None,
        elements: None,
        total: None,
        includes: Vec::new(),
        revincludes: Vec::new(),
        compartment: None,
        cursor: None,
        ignored: Vec::new(),
        canonical: Vec::new(),
        restriction: None,
    };
    for (name, value) in pairs {
        if name.starts_with("_include") || name.starts_with("_revinclude") {
            let inc = parse_include(ty, name, value)?;
            if name.starts_with("_include") {
                req.includes.push(inc);
            } else {
                req.revincludes.push(inc);
            }
            continue;
        }
        if RESULT_PARAMS.contains(&name.as_str()) {
            parse_result_param(ty, &mut req, name, value)?;
            continue;
        }
        match parse_clause(ty, name, value) {
            Ok(c) => {
                req.clauses.push(c);
                req.canonical.push((name.clone(), value.clone()));
            }
            // only a parameter unknown here is ignored: an unsupported modifier or chain
            // on a known one is refused (ignoring it would widen the answer)
            Err(e) if lenient && e.code == IssueType::NotSupported && unknown_parameter(ty, name) => {
                req.ignored.push(name.clone())
            }
            Err(e) => return Err(e),
        }
    }
    Ok(req)
}

/// Whether `name` (with its modifier or chain) names no search parameter of `ty`.
fn unknown_parameter(ty: &ResourceType, name: &str) -> bool {
    let code = name.split([':', '.']).next().unwrap_or(name);
    !matches!(code, "_id" | "_lastUpdated" | "_has") && find_param(ty.as_str(), code).is_none()
}

fn parse_include(ty: &ResourceType, name: &str, value: &str) -> Result<Include, Issue> {
    let iterate = match name.split_once(':') {
        None => false,
        Some((_, "iterate" | "recurse")) => true,
        Some(_) => return Err(bad(name, format!("'{name}' is not _include, _include:iterate or _revinclude"))),
    };
    let rev = name.starts_with("_revinclude");
    if value == "*" {
        return Ok(Include { source_type: ty.to_string(), param: None, target_type: None, iterate });
    }
    let mut parts = value.split(':');
    let (Some(source), Some(param)) = (parts.next(), parts.next()) else {
        return Err(bad(name, format!("'{value}' is not Type:parameter[:targetType]")));
    };
    let target = parts.next();
    if parts.next().is_some() {
        return Err(bad(name, format!("'{value}' is not Type:parameter[:targetType]")));
    }
    if ResourceType::parse(source).is_none() {
        return Err(bad(name, format!("'{source}' is not a resource type")));
    }
    if !rev && !iterate && source != ty.as_str() {
        return Err(bad(name, format!("_include must start with the searched type {ty}")));
    }
    let def = if param == "*" {
        None
    } else {
        Some(
            find_param(source, param)
                .filter(|d| d.kind == "reference")
                .ok_or_else(|| bad(name, format!("'{param}' is not a reference parameter of {source}")))?,
        )
    };
    if let Some(t) = target
        && (ResourceType::parse(t).is_none()
            || def.is_some_and(|d| !d.target.is_empty() && !d.target.iter().any(|x| x == t || x == "Resource")))
    {
        return Err(bad(name, format!("'{t}' is not a target of {source}:{param}")));
    }
    Ok(Include {
        source_type: source.to_string(),
        param: def.map(|_| param.to_string()),
        target_type: target.map(str::to_string),
        iterate,
    })
}

fn parse_result_param(ty: &ResourceType, req: &mut SearchRequest, name: &str, value: &str) -> Result<(), Issue> {
    match name {
        "_count" => {
            req.count = Some(value.parse().map_err(|_| bad("_count", "_count must be a non-negative integer"))?);
        }
        "_sort" => {
            for key in value.split(',').filter(|k| !k.is_empty()) {
                let (desc, code) = match key.strip_prefix('-') {
                    Some(c) => (true, c),
                    None => (false, key),
                };
                let param_type = match code {
                    "_id" | "_lastUpdated" => ParamType::Special,
                    _ => {
                        let def = find_param(ty.as_str(), code)
                            .ok_or_else(|| bad("_sort", format!("Cannot sort by unknown parameter '{code}'")))?;
                        let t = ParamType::of(def);
                        if matches!(t, ParamType::Composite | ParamType::Special) {
                            return Err(not_supported("_sort", format!("Cannot sort by '{code}'")));
                        }
                        t
                    }
                };
                req.sort.push(SortKey { code: code.to_string(), param_type, descending: desc });
            }
        }
        "_summary" => {
            req.summary = Some(match value {
                "true" => Summary::True,
                "text" => Summary::Text,
                "data" => Summary::Data,
                "count" => Summary::Count,
                "false" => Summary::False,
                _ => {
                    return Err(bad("_summary", "_summary must be true, text, data, count or false"));
                }
            })
        }
        "_elements" => {
            req.elements = Some(value.split(',').map(|e| e.trim().to_string()).filter(|e| !e.is_empty()).collect());
        }
        "_total" => {
            req.total = Some(match value {
                "none" => Total::None,
                "estimate" => Total::Estimate,
                "accurate" => Total::Accurate,
                _ => return Err(bad("_total", "_total must be none, estimate or accurate")),
            })
        }
        "_cursor" => req.cursor = Some(value.to_string()),
        _ => {}
    }
    Ok(())
}

fn parse_clause(ty: &ResourceType, name: &str, raw: &str) -> Result<Clause, Issue> {
    parse_clause_at(ty, name, raw, 0, name)
}

fn parse_clause_at(ty: &ResourceType, name: &str, raw: &str, depth: usize, full: &str) -> Result<Clause, Issue> {
    if depth > MAX_CHAIN_DEPTH {
        return Err(bad(full, format!("Chains and _has nest at most {MAX_CHAIN_DEPTH} levels")));
    }
    if let Some(rest) = name.strip_prefix("_has:") {
        let mut parts = rest.splitn(3, ':');
        let (Some(source), Some(param), Some(inner)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad(full, "_has takes _has:Type:reference:parameter"));
        };
        let source_type =
            ResourceType::parse(source).ok_or_else(|| bad(full, format!("'{source}' is not a resource type")))?;
        let def = find_param(source, param)
            .filter(|d| d.kind == "reference")
            .ok_or_else(|| bad(full, format!("'{param}' is not a reference parameter of {source}")))?;
        if !def.target.is_empty() && !def.target.iter().any(|t| t == ty.as_str() || t == "Resource") {
            return Err(bad(full, format!("{source}.{param} does not refer to {ty}")));
        }
        let inner = parse_clause_at(&source_type, inner, raw, depth + 1, full)?;
        return Ok(Clause {
            code: "_has".into(),
            param_type: ParamType::Special,
            modifier: Modifier::None,
            values: Vec::new(),
            chain: None,
            has: Some(Box::new(Has { source_type: source.to_string(), param: param.to_string(), inner })),
        });
    }
    if let Some((head, tail)) = name.split_once('.') {
        let (code, type_mod) = match head.split_once(':') {
            Some((c, t)) => (c, Some(t)),
            None => (head, None),
        };
        let def = find_param(ty.as_str(), code).filter(|d| d.kind == "reference").ok_or_else(|| {
            bad(full, format!("'{code}' is not a reference parameter of {ty}, so it cannot be chained"))
        })?;
        let inner_code = tail.split([':', '.']).next().unwrap_or(tail);
        let candidates: Vec<String> = match type_mod {
            Some(t) => {
                if ResourceType::parse(t).is_none()
                    || (!def.target.is_empty() && !def.target.iter().any(|x| x == t || x == "Resource"))
                {
                    return Err(bad(full, format!("'{t}' is not a target of '{code}'")));
                }
                vec![t.to_string()]
            }
            None => def
                .target
                .iter()
                .filter(|t| find_param(t, inner_code).is_some() || inner_code.starts_with('_'))
                .cloned()
                .collect(),
        };
        if candidates.is_empty() {
            return Err(bad(full, format!("No target of '{code}' has a parameter '{inner_code}'")));
        }
        if candidates.len() > 1 {
            // the same parameter name must mean the same kind of value on every target
            let kinds: Vec<&str> =
                candidates.iter().filter_map(|t| find_param(t, inner_code)).map(|d| d.kind.as_str()).collect();
            if kinds.windows(2).any(|w| w[0] != w[1]) {
                return Err(bad(
                    full,
                    format!("'{code}' is ambiguous here: name the target type ({code}:Type.{tail})"),
                ));
            }
        }
        let first = ResourceType::parse(&candidates[0]).ok_or_else(|| bad(full, "bad chain target"))?;
        let inner = parse_clause_at(&first, tail, raw, depth + 1, full)?;
        return Ok(Clause {
            code: code.to_string(),
            param_type: ParamType::Reference,
            modifier: Modifier::None,
            values: Vec::new(),
            chain: Some(Box::new(Chain { target_types: candidates, inner })),
            has: None,
        });
    }
    let name_for_errors = full;
    let (code, modifier_text) = match name.split_once(':') {
        Some((c, m)) => (c, Some(m)),
        None => (name, None),
    };
    let name = name_for_errors;
    let (param_type, target, components) = match code {
        "_id" => (ParamType::Special, Vec::new(), Vec::new()),
        "_lastUpdated" => (ParamType::Date, Vec::new(), Vec::new()),
        _ => {
            let def = find_param(ty.as_str(), code)
                .ok_or_else(|| not_supported(name, format!("Unknown search parameter '{code}' for {ty}")))?;
            if def.expression.is_none() {
                return Err(not_supported(name, format!("Parameter '{code}' is not searchable here")));
            }
            let components = component_types(def).ok_or_else(|| {
                not_supported(name, format!("Composite parameter '{code}' has a component Hale cannot search"))
            })?;
            (ParamType::of(def), def.target.clone(), components)
        }
    };
    let modifier = match modifier_text {
        None => Modifier::None,
        Some("missing") => Modifier::Missing,
        Some("exact") if param_type == ParamType::String => Modifier::Exact,
        Some("contains") if matches!(param_type, ParamType::String | ParamType::Uri) => Modifier::Contains,
        Some("text") if param_type == ParamType::Token => Modifier::Text,
        Some("not") if param_type == ParamType::Token => Modifier::Not,
        Some("above") if param_type == ParamType::Uri => Modifier::Above,
        Some("below") if param_type == ParamType::Uri => Modifier::Below,
        Some("of-type") if param_type == ParamType::Token && code == "identifier" => Modifier::OfType,
        Some("identifier") if param_type == ParamType::Reference => Modifier::Identifier,
        Some(t) if param_type == ParamType::Reference && ResourceType::parse(t).is_some() => {
            if !target.is_empty() && !target.iter().any(|x| x == t || x == "Resource") {
                return Err(bad(name, format!("'{t}' is not a target of '{code}'")));
            }
            Modifier::Type(t.to_string())
        }
        Some(m) => {
            return Err(not_supported(name, format!("Modifier ':{m}' is not supported on '{code}'")));
        }
    };
    let mut values = Vec::new();
    for part in split_unescaped(raw, ',') {
        if part.is_empty() {
            return Err(bad(name, format!("Parameter '{name}' has an empty value")));
        }
        if param_type == ParamType::Composite && modifier != Modifier::Missing {
            let pieces = split_unescaped(part, '$');
            if pieces.len() != components.len() {
                let shown: String = part.chars().take(64).collect();
                return Err(bad(
                    name,
                    format!("'{shown}' is not a value of '{code}': it takes {} parts joined by '$'", components.len()),
                ));
            }
            let parts = pieces
                .iter()
                .zip(&components)
                .map(|(piece, t)| {
                    if piece.is_empty() {
                        return Err(bad(name, format!("Parameter '{name}' has an empty component")));
                    }
                    parse_value(name, *t, &Modifier::None, &[], piece)
                })
                .collect::<Result<Vec<_>, _>>()?;
            values.push(SearchValue::Composite(parts));
            continue;
        }
        values.push(parse_value(name, param_type, &modifier, &target, part)?);
    }
    Ok(Clause { code: code.to_string(), param_type, modifier, values, chain: None, has: None })
}

fn parse_value(name: &str, t: ParamType, m: &Modifier, target: &[String], raw: &str) -> Result<SearchValue, Issue> {
    if *m == Modifier::Missing {
        return match raw {
            "true" => Ok(SearchValue::Missing(true)),
            "false" => Ok(SearchValue::Missing(false)),
            _ => Err(bad(name, ":missing takes true or false")),
        };
    }
    let shown: String = raw.chars().take(64).collect();
    match t {
        ParamType::String => {
            Ok(SearchValue::String(if *m == Modifier::Exact { unescape(raw) } else { normalize(&unescape(raw)) }))
        }
        ParamType::Special => {
            let id = unescape(raw);
            ResourceId::parse(&id).ok_or_else(|| bad(name, format!("'{shown}' is not a valid id")))?;
            Ok(SearchValue::Token { system: None, code: Some(id) })
        }
        ParamType::Token => {
            if *m == Modifier::Text {
                return Ok(SearchValue::TokenText(normalize(&unescape(raw))));
            }
            let parts = split_unescaped(raw, '|');
            if *m == Modifier::OfType {
                return match parts.as_slice() {
                    [s, c, v] if !c.is_empty() && !v.is_empty() => {
                        Ok(SearchValue::OfType { system: unescape(s), code: unescape(c), value: unescape(v) })
                    }
                    _ => Err(bad(name, ":of-type takes system|code|value")),
                };
            }
            match parts.as_slice() {
                [code] => Ok(SearchValue::Token { system: None, code: Some(unescape(code)) }),
                [s, c] if s.is_empty() && c.is_empty() => Err(bad(name, format!("'{shown}' is not a token"))),
                ["", c] => Ok(SearchValue::Token { system: Some(None), code: Some(unescape(c)) }),
                [s, ""] => Ok(SearchValue::Token { system: Some(Some(unescape(s))), code: None }),
                [s, c] => Ok(SearchValue::Token { system: Some(Some(unescape(s))), code: Some(unescape(c)) }),
                _ => Err(bad(name, format!("'{shown}' is not a token (system|code)"))),
            }
        }
        ParamType::Date => {
            let (prefix, v) = Prefix::split(raw);
            let range = DateRange::parse(v)
                .ok_or_else(|| bad(name, format!("'{shown}' is not a date, dateTime or instant")))?;
            Ok(SearchValue::Date { prefix, range })
        }
        ParamType::Number => {
            let (prefix, v) = Prefix::split(raw);
            let range = NumberRange::parse(v).ok_or_else(|| bad(name, format!("'{shown}' is not a number")))?;
            Ok(SearchValue::Number { prefix, range })
        }
        ParamType::Quantity => {
            let parts = split_unescaped(raw, '|');
            let (prefix, v) = Prefix::split(parts[0]);
            let range = NumberRange::parse(v)
                .ok_or_else(|| bad(name, format!("'{shown}' is not a quantity (number|system|code)")))?;
            let (system, code) = match parts.as_slice() {
                [_] => (None, None),
                [_, s, c] => ((!s.is_empty()).then(|| unescape(s)), (!c.is_empty()).then(|| unescape(c))),
                _ => {
                    return Err(bad(name, format!("'{shown}' is not a quantity (number|system|code)")));
                }
            };
            Ok(SearchValue::Quantity { prefix, range, system, code })
        }
        ParamType::Reference => {
            let v = unescape(raw);
            if *m == Modifier::Identifier {
                let parts = split_unescaped(raw, '|');
                return match parts.as_slice() {
                    [v] => Ok(SearchValue::Identifier { system: None, value: unescape(v) }),
                    [s, v] if !v.is_empty() => {
                        Ok(SearchValue::Identifier { system: Some(unescape(s)), value: unescape(v) })
                    }
                    _ => Err(bad(name, ":identifier takes system|value")),
                };
            }
            if v.contains("://") || v.starts_with("urn:") {
                // absolute: a local-looking tail also matches relative references
                return Ok(SearchValue::Url(v));
            }
            let (ty, id) = match v.split_once('/') {
                Some((t, rest)) => {
                    let id = rest.split("/_history/").next().unwrap_or(rest);
                    (Some(t.to_string()), id.to_string())
                }
                None => (None, v.clone()),
            };
            if let Some(t) = &ty
                && ResourceType::parse(t).is_none()
            {
                return Err(bad(name, format!("'{t}' is not a resource type")));
            }
            ResourceId::parse(&id).ok_or_else(|| bad(name, format!("'{shown}' is not a reference (Type/id or id)")))?;
            let ty = match (ty, m) {
                (Some(t), _) => Some(t),
                (None, Modifier::Type(t)) => Some(t.clone()),
                (None, _) if target.len() == 1 && target[0] != "Resource" => Some(target[0].clone()),
                (None, _) => None,
            };
            Ok(SearchValue::Reference { target_type: ty, id })
        }
        ParamType::Uri => Ok(SearchValue::Url(unescape(raw))),
        ParamType::Composite => Err(not_supported(name, "A composite parameter cannot be a component")),
    }
}

/// The types of a composite parameter's components (empty for other parameters);
/// `None` when a component is unknown or itself composite.
pub fn component_types(def: &hale_fhir::definitions::SearchParamDef) -> Option<Vec<ParamType>> {
    if ParamType::of(def) != ParamType::Composite {
        return Some(Vec::new());
    }
    let defs = hale_fhir::Definitions::get();
    let types = def
        .component
        .iter()
        .map(|(url, _)| {
            let c = defs.search_parameters().iter().find(|p| &p.url == url)?;
            let t = ParamType::of(c);
            (!matches!(t, ParamType::Composite | ParamType::Special)).then_some(t)
        })
        .collect::<Option<Vec<_>>>()?;
    (!types.is_empty()).then_some(types)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(ty: &str, q: &[(&str, &str)]) -> Result<SearchRequest, Issue> {
        let pairs: Vec<(String, String)> = q.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        parse(&ResourceType::parse(ty).unwrap(), &pairs, false)
    }

    #[test]
    fn parses_each_type() {
        let r = p(
            "Patient",
            &[
                ("name", "Émile"),
                ("birthdate", "ge1960"),
                ("gender", "http://hl7.org/fhir/administrative-gender|female"),
            ],
        )
        .unwrap();
        assert_eq!(r.clauses[0].values, vec![SearchValue::String("emile".into())]);
        assert!(matches!(r.clauses[1].values[0], SearchValue::Date { prefix: Prefix::Ge, .. }));
        assert_eq!(
            r.clauses[2].values[0],
            SearchValue::Token {
                system: Some(Some("http://hl7.org/fhir/administrative-gender".into())),
                code: Some("female".into())
            }
        );
        let r = p(
            "Observation",
            &[("subject", "Patient/1"), ("patient", "2"), ("value-quantity", "lt5.4|http://unitsofmeasure.org|mg")],
        )
        .unwrap();
        assert_eq!(
            r.clauses[0].values[0],
            SearchValue::Reference { target_type: Some("Patient".into()), id: "1".into() }
        );
        assert_eq!(
            r.clauses[1].values[0],
            SearchValue::Reference { target_type: None, id: "2".into() },
            "patient targets Patient and Group"
        );
        assert!(
            matches!(&r.clauses[2].values[0], SearchValue::Quantity { prefix: Prefix::Lt, code: Some(c), .. } if c == "mg")
        );
    }

    #[test]
    fn or_values_and_escapes() {
        let r = p("Patient", &[("identifier", r"a\,b,|c,s|")]).unwrap();
        assert_eq!(
            r.clauses[0].values,
            vec![
                SearchValue::Token { system: None, code: Some("a,b".into()) },
                SearchValue::Token { system: Some(None), code: Some("c".into()) },
                SearchValue::Token { system: Some(Some("s".into())), code: None },
            ]
        );
    }

    #[test]
    fn modifiers() {
        let r = p("Patient", &[("name:exact", "Émile"), ("gender:missing", "true"), ("gender:not", "male")]).unwrap();
        assert_eq!(r.clauses[0].values[0], SearchValue::String("Émile".into()));
        assert_eq!(r.clauses[1].values[0], SearchValue::Missing(true));
        assert_eq!(r.clauses[2].modifier, Modifier::Not);
        let r = p("Observation", &[("subject:Patient", "1")]).unwrap();
        assert_eq!(
            r.clauses[0].values[0],
            SearchValue::Reference { target_type: Some("Patient".into()), id: "1".into() }
        );
        assert!(p("Patient", &[("name:below", "x")]).is_err());
        assert!(p("Observation", &[("subject:Medication", "1")]).is_err());
    }

    #[test]
    fn errors_name_the_parameter() {
        let e = p("Patient", &[("nonsense", "1")]).unwrap_err();
        assert_eq!(e.expression.as_deref(), Some("nonsense"));
        assert_eq!(p("Patient", &[("birthdate", "yesterday")]).unwrap_err().expression.as_deref(), Some("birthdate"));
        assert!(p("Patient", &[("_count", "x")]).is_err());
        assert!(p("Patient", &[("_sort", "nonsense")]).is_err());
        assert!(p("Patient", &[("name", "")]).is_err());
        let lenient =
            parse(&ResourceType::parse("Patient").unwrap(), &[("nonsense".into(), "1".into())], true).unwrap();
        assert_eq!(lenient.ignored, vec!["nonsense".to_string()]);
    }

    #[test]
    fn result_parameters() {
        let r = p(
            "Observation",
            &[("_sort", "-date,code"), ("_count", "10"), ("_summary", "count"), ("_total", "accurate")],
        )
        .unwrap();
        assert_eq!(r.sort.len(), 2);
        assert!(r.sort[0].descending);
        assert_eq!(r.count, Some(10));
        assert_eq!(r.summary, Some(Summary::Count));
        assert_eq!(r.total, Some(Total::Accurate));
    }
}
