//! The search SQL both stores run: conditions over the index tables, sort keys, keyset
//! cursors, `_include`. The SQL is written once for both databases; the few places they
//! differ are a [`Dialect`]. Every value is bound ([`Bind`], which each store converts
//! to its driver's type), table and column names come from this file and parameter codes
//! are bound too, so nothing from the query string reaches the SQL text. Paging uses a
//! keyset cursor over the sort keys and the resource id, so pages stay correct while
//! data changes.
//!
//! Statements use `?` marks; the PostgreSQL store numbers them before sending.

use std::collections::HashSet;

use hale_search::access::{Restriction, SHARED_TYPES, TypeFilter};
use hale_search::index::PATIENT_PARAM;
use hale_search::parse::{Clause, Include, Modifier, ParamType, SearchRequest, SearchValue, SortKey};
use hale_search::values::{DateRange, NumberRange, Prefix};

use crate::{Error, EverythingQuery, HistoryPage, HistoryQuery, HistoryScope, Result, SearchPage, StoredResource};

/// A bound value, or a sort key read back.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
}

/// What differs between the SQL of the two stores.
#[derive(Debug, Clone, Copy)]
pub struct Dialect {
    /// case-insensitive `LIKE`
    pub ilike: &'static str,
    pub true_sql: &'static str,
    pub false_sql: &'static str,
    /// the character U+10FFFF as an expression (above every indexed string)
    pub max_char: &'static str,
    /// `INDEXED BY` hints for per-candidate checks (SQLite, whose plans are chosen by
    /// query shape rather than statistics)
    pub index_hints: bool,
}

pub const SQLITE: Dialect =
    Dialect { ilike: "LIKE", true_sql: "1", false_sql: "0", max_char: "char(1114111)", index_hints: true };
pub const POSTGRES: Dialect =
    Dialect { ilike: "ILIKE", true_sql: "TRUE", false_sql: "FALSE", max_char: "chr(1114111)", index_hints: false };

/// One statement and its bound values.
#[derive(Debug, Clone)]
pub struct Stmt {
    pub sql: String,
    pub args: Vec<Bind>,
}

/// The columns of a version row, in the order stores read them: seq, type, id, version,
/// last updated, method, body.
pub const VERSION_COLUMNS: &str = "v.seq, v.res_type, v.res_id, v.version, v.last_updated, v.method, v.body";

/// What `hale check` counts to find a store inconsistent, the same SQL on both stores:
/// each query counts rows that should not exist, with the words for a non-zero count
/// (`{}` is the count). The search index tables' orphans are [`index_orphans`].
pub const CONSISTENCY: &[(&str, &str)] = &[
    (
        "SELECT COUNT(*) FROM resources r LEFT JOIN resource_versions v ON v.seq = r.seq \
         WHERE v.seq IS NULL OR v.res_type <> r.res_type OR v.res_id <> r.res_id OR v.version <> r.version \
         OR (v.body IS NULL) <> (r.deleted <> 0)",
        "{} resources point at a version that is not theirs",
    ),
    (
        "SELECT COUNT(*) FROM (SELECT res_type, res_id, MAX(version) AS m FROM resource_versions GROUP BY res_type, res_id) x \
         LEFT JOIN resources r ON r.res_type = x.res_type AND r.res_id = x.res_id WHERE r.version IS NULL OR r.version <> x.m",
        "{} resources whose newest version is not their current one",
    ),
];

/// The [`CONSISTENCY`] queries of Binary content kept apart, run where its table
/// (`binary_content`) exists: a store not yet migrated (checked before an upgrade) has
/// none.
pub const CONTENT_CONSISTENCY: &[(&str, &str)] = &[
    (
        "SELECT COUNT(*) FROM binary_content c WHERE NOT EXISTS (SELECT 1 FROM resource_versions v \
         WHERE v.res_type = 'Binary' AND v.res_id = c.res_id AND v.version = c.version AND v.body IS NOT NULL)",
        "{} parts of Binary content belong to no stored Binary",
    ),
    (
        "SELECT COUNT(*) FROM binary_content c WHERE c.at > 0 AND NOT EXISTS (SELECT 1 FROM binary_content p \
         WHERE p.res_id = c.res_id AND p.version = c.version AND p.at + length(p.bytes) = c.at)",
        "{} parts of Binary content do not follow the part before them",
    ),
];

/// The length of the content of one version of a Binary kept apart from its JSON
/// (`NULL` when it has none): binds the id and the version.
pub const CONTENT_LEN: &str = "SELECT SUM(length(bytes)) FROM binary_content WHERE res_id = ? AND version = ?";

/// The part of such content holding a byte: binds the id, the version and the offset;
/// reads the part's offset and bytes.
pub const CONTENT_PART: &str = "SELECT at, bytes FROM binary_content WHERE res_id = ? AND version = ? AND at <= ? \
     ORDER BY at DESC LIMIT 1";

/// Stores one part: binds the id, the version, the part's offset and its bytes.
pub const CONTENT_INSERT: &str = "INSERT INTO binary_content (res_id, version, at, bytes) VALUES (?, ?, ?, ?)";

/// Counts the rows of index table `table` that belong to a deleted or unknown resource.
pub fn index_orphans(table: &str) -> String {
    format!(
        "SELECT COUNT(*) FROM {table} i WHERE NOT EXISTS (SELECT 1 FROM resources r \
         WHERE r.res_type = i.res_type AND r.res_id = i.res_id AND r.deleted = 0)"
    )
}

/// Every search index table (both stores' schemas name them alike); the rows of a
/// resource in each are replaced on every write.
pub const INDEX_TABLES: &[&str] = &[
    "search_token",
    "search_string",
    "search_date",
    "search_number",
    "search_quantity",
    "search_reference",
    "search_uri",
    "search_composite",
];

/// Above every indexed string.
const TEXT_MAX: &str = "\u{10FFFF}";

fn table(t: ParamType) -> &'static str {
    match t {
        ParamType::String => "search_string",
        ParamType::Token => "search_token",
        ParamType::Date => "search_date",
        ParamType::Number => "search_number",
        ParamType::Quantity => "search_quantity",
        ParamType::Reference => "search_reference",
        ParamType::Uri => "search_uri",
        ParamType::Composite => "search_composite",
        ParamType::Special => "search_token",
    }
}

fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// Date condition over columns `lo`/`hi` for a target range.
fn date_cond(lo: &str, hi: &str, prefix: Prefix, r: &DateRange, args: &mut Vec<Bind>) -> String {
    let eq = |args: &mut Vec<Bind>| {
        args.push(Bind::Integer(r.lo));
        args.push(Bind::Integer(r.hi));
        format!("({lo} >= ? AND {hi} <= ?)")
    };
    match prefix {
        Prefix::Eq => eq(args),
        Prefix::Ne => format!("NOT {}", eq(args)),
        Prefix::Gt => {
            args.push(Bind::Integer(r.hi));
            format!("{hi} > ?")
        }
        Prefix::Lt => {
            args.push(Bind::Integer(r.lo));
            format!("{lo} < ?")
        }
        Prefix::Ge => {
            args.push(Bind::Integer(r.hi));
            let e = eq(args);
            format!("({hi} > ? OR {e})")
        }
        Prefix::Le => {
            args.push(Bind::Integer(r.lo));
            let e = eq(args);
            format!("({lo} < ? OR {e})")
        }
        Prefix::Sa => {
            args.push(Bind::Integer(r.hi));
            format!("{lo} > ?")
        }
        Prefix::Eb => {
            args.push(Bind::Integer(r.lo));
            format!("{hi} < ?")
        }
        Prefix::Ap => {
            let (alo, ahi) = r.approximate();
            args.push(Bind::Integer(alo));
            args.push(Bind::Integer(ahi));
            format!("({hi} >= ? AND {lo} <= ?)")
        }
    }
}

fn number_cond(col: &str, prefix: Prefix, n: &NumberRange, args: &mut Vec<Bind>) -> String {
    let one = |args: &mut Vec<Bind>, v: f64, op: &str| {
        args.push(Bind::Real(v));
        format!("{col} {op} ?")
    };
    match prefix {
        Prefix::Eq | Prefix::Ne => {
            args.push(Bind::Real(n.lo));
            args.push(Bind::Real(n.hi));
            let c = format!("({col} >= ? AND {col} < ?)");
            if prefix == Prefix::Ne { format!("NOT {c}") } else { c }
        }
        Prefix::Gt | Prefix::Sa => one(args, n.value, ">"),
        Prefix::Lt | Prefix::Eb => one(args, n.value, "<"),
        Prefix::Ge => one(args, n.value, ">="),
        Prefix::Le => one(args, n.value, "<="),
        Prefix::Ap => {
            let gap = (n.value * 0.1).abs();
            args.push(Bind::Real(n.value - gap));
            args.push(Bind::Real(n.value + gap));
            format!("({col} >= ? AND {col} <= ?)")
        }
    }
}

/// The condition one value puts on a row `i` of the parameter's index table.
fn value_cond(d: &Dialect, c: &Clause, v: &SearchValue, args: &mut Vec<Bind>) -> String {
    match v {
        SearchValue::String(s) => match c.modifier {
            Modifier::Exact => {
                args.push(Bind::Text(s.clone()));
                "i.exact = ?".into()
            }
            Modifier::Contains => {
                args.push(Bind::Text(format!("%{}%", like_escape(s))));
                format!("i.norm {} ? ESCAPE '\\'", d.ilike)
            }
            _ => {
                args.push(Bind::Text(s.clone()));
                args.push(Bind::Text(format!("{s}{TEXT_MAX}")));
                "(i.norm >= ? AND i.norm < ?)".into()
            }
        },
        SearchValue::Token { system, code } => token_cond("i", system, code, args),
        SearchValue::TokenText(t) => {
            args.push(Bind::Text(format!("%{}%", like_escape(t))));
            format!("i.text {} ? ESCAPE '\\'", d.ilike)
        }
        SearchValue::OfType { system, code, value } => {
            args.push(Bind::Text(system.clone()));
            args.push(Bind::Text(format!("{code}|{value}")));
            "(i.system = ? AND i.code = ?)".into()
        }
        SearchValue::Date { prefix, range } => date_cond("i.lo", "i.hi", *prefix, range, args),
        SearchValue::Number { prefix, range } => number_cond("i.value", *prefix, range, args),
        SearchValue::Quantity { prefix, range, system, code } => {
            let mut s = number_cond("i.value", *prefix, range, args);
            if let Some(sys) = system {
                args.push(Bind::Text(sys.clone()));
                s.push_str(" AND i.system = ?");
            }
            if let Some(code) = code {
                args.push(Bind::Text(code.clone()));
                args.push(Bind::Text(code.clone()));
                s.push_str(" AND (i.code = ? OR i.unit = ?)");
            }
            format!("({s})")
        }
        SearchValue::Reference { target_type, id } => {
            args.push(Bind::Text(id.clone()));
            match target_type {
                Some(t) => {
                    args.push(Bind::Text(t.clone()));
                    "(i.target_id = ? AND i.target_type = ?)".into()
                }
                None => "(i.target_id = ?)".into(),
            }
        }
        SearchValue::Url(u) => match (c.param_type, &c.modifier) {
            (ParamType::Uri, Modifier::Below) => {
                args.push(Bind::Text(u.clone()));
                args.push(Bind::Text(format!("{u}{TEXT_MAX}")));
                "(i.uri >= ? AND i.uri < ?)".into()
            }
            (ParamType::Uri, Modifier::Above) => {
                args.push(Bind::Text(u.clone()));
                "(substr(?, 1, length(i.uri)) = i.uri)".into()
            }
            (ParamType::Uri, Modifier::Contains) => {
                args.push(Bind::Text(format!("%{}%", like_escape(u))));
                format!("i.uri {} ? ESCAPE '\\'", d.ilike)
            }
            (ParamType::Uri, _) => {
                args.push(Bind::Text(u.clone()));
                "i.uri = ?".into()
            }
            _ => {
                args.push(Bind::Text(u.clone()));
                "i.url = ?".into()
            }
        },
        SearchValue::Identifier { system, value } => {
            args.push(Bind::Text(value.clone()));
            match system {
                Some(s) => {
                    args.push(Bind::Text(s.clone()));
                    "(i.code = ? AND i.system = ?)".into()
                }
                None => "(i.code = ?)".into(),
            }
        }
        SearchValue::Missing(_) => d.true_sql.into(),
        SearchValue::Composite(parts) => {
            let conds: Vec<String> =
                parts.iter().enumerate().map(|(k, v)| composite_part_cond(d, k + 1, v, args)).collect();
            format!("({})", conds.join(" AND "))
        }
    }
}

/// The condition on component `k` (1-based columns `s{k}`, `c{k}`, `n{k}`, `lo{k}`, `hi{k}`)
/// of a `search_composite` row.
/// A token value's condition on the `search_token` row `t`: `system|code`, `|code`,
/// `code`, `system|`.
fn token_cond(t: &str, system: &Option<Option<String>>, code: &Option<String>, args: &mut Vec<Bind>) -> String {
    let mut parts = Vec::new();
    if let Some(code) = code {
        args.push(Bind::Text(code.clone()));
        parts.push(format!("{t}.code = ?"));
    }
    match system {
        None => {}
        Some(None) => parts.push(format!("{t}.system IS NULL")),
        Some(Some(s)) => {
            args.push(Bind::Text(s.clone()));
            parts.push(format!("{t}.system = ?"));
        }
    }
    if parts.is_empty() {
        return "1 = 1".into();
    }
    format!("({})", parts.join(" AND "))
}

fn composite_part_cond(d: &Dialect, k: usize, v: &SearchValue, args: &mut Vec<Bind>) -> String {
    let (s, c, n) = (format!("i.s{k}"), format!("i.c{k}"), format!("i.n{k}"));
    match v {
        SearchValue::Token { system, code } => {
            let mut parts = Vec::new();
            if let Some(code) = code {
                args.push(Bind::Text(code.clone()));
                parts.push(format!("{c} = ?"));
            }
            match system {
                None => {}
                Some(None) => parts.push(format!("{s} IS NULL")),
                Some(Some(sys)) => {
                    args.push(Bind::Text(sys.clone()));
                    parts.push(format!("{s} = ?"));
                }
            }
            format!("({})", parts.join(" AND "))
        }
        SearchValue::String(text) => {
            args.push(Bind::Text(text.clone()));
            args.push(Bind::Text(format!("{text}{TEXT_MAX}")));
            format!("({c} >= ? AND {c} < ?)")
        }
        SearchValue::Date { prefix, range } => {
            date_cond(&format!("i.lo{k}"), &format!("i.hi{k}"), *prefix, range, args)
        }
        SearchValue::Number { prefix, range } => number_cond(&n, *prefix, range, args),
        SearchValue::Quantity { prefix, range, system, code } => {
            let mut q = number_cond(&n, *prefix, range, args);
            if let Some(sys) = system {
                args.push(Bind::Text(sys.clone()));
                q.push_str(&format!(" AND {s} = ?"));
            }
            if let Some(code) = code {
                args.push(Bind::Text(code.clone()));
                q.push_str(&format!(" AND {c} = ?"));
            }
            format!("({q})")
        }
        SearchValue::Reference { target_type: Some(t), id } => {
            args.push(Bind::Text(format!("{t}/{id}")));
            format!("{c} = ?")
        }
        SearchValue::Reference { target_type: None, id } => {
            args.push(Bind::Text(id.clone()));
            args.push(Bind::Text(format!("%/{}", like_escape(id))));
            format!("({c} = ? OR {c} {} ? ESCAPE '\\')", d.ilike)
        }
        SearchValue::Url(u) => {
            args.push(Bind::Text(u.clone()));
            format!("{c} = ?")
        }
        // the parser makes no other value for a component
        _ => d.false_sql.into(),
    }
}

/// ` INDEXED BY {table}_owner` where the dialect takes hints: for looking up the rows of
/// known resources, which SQLite's planner would otherwise do by scanning a covering
/// lookup index of every resource of the type.
fn owner_hint(d: &Dialect, table: &str) -> String {
    if d.index_hints { format!(" INDEXED BY {table}_owner") } else { String::new() }
}

/// ` INDEXED BY search_date_lookup` for listing the matches of a date clause where the
/// dialect takes hints: the date owner index covers every column such a listing reads,
/// and SQLite would scan it whole rather than use the lookup index by parameter.
fn lookup_hint(d: &Dialect, table: &str) -> &'static str {
    if d.index_hints && table == "search_date" { " INDEXED BY search_date_lookup" } else { "" }
}

/// How selective a clause is likely to be (lower first): the most selective clause of a
/// search drives it (`res_id IN (...)` over its lookup index), the others are checked
/// per candidate with `EXISTS` over the owner index `(res_type, res_id, param)`.
fn selectivity(c: &Clause, pinned: bool) -> u8 {
    if c.chain.is_some() || c.has.is_some() {
        return 4;
    }
    if c.code == "_id" || (pinned && patient_keyed(c)) {
        return 0;
    }
    if matches!(c.modifier, Modifier::Missing | Modifier::Not) {
        return 9;
    }
    match c.param_type {
        ParamType::Reference => 1,
        ParamType::Token | ParamType::String | ParamType::Uri | ParamType::Composite => 3,
        _ => 5,
    }
}

/// The patient a search is pinned to by a clause `patient=[Patient/]X` of one value:
/// its token clauses can list their matches by the patient key of the token rows
/// (`search_token_patient`: the resources whose `patient` parameter points at id X),
/// and the clause itself is still checked for each of them.
///
/// `subject=Patient/X` pins it too on the types whose `patient` parameter is their
/// `subject` restricted to Patients (Observation, Condition, Encounter ...): there a
/// subject of Patient X makes X a patient key. An untyped `subject=X` does not (a Group
/// X is no key).
fn pinned_patient(req: &SearchRequest) -> Option<&str> {
    let ty = req.resource_type.as_str();
    req.clauses.iter().find_map(|c| {
        let plain = c.chain.is_none()
            && c.has.is_none()
            && c.param_type == ParamType::Reference
            && match &c.modifier {
                Modifier::None => true,
                Modifier::Type(t) => t == "Patient",
                _ => false,
            };
        if !plain {
            return None;
        }
        match (c.code.as_str(), c.values.as_slice()) {
            (PATIENT_PARAM, [SearchValue::Reference { target_type: None, id }]) => Some(id.as_str()),
            (PATIENT_PARAM, [SearchValue::Reference { target_type: Some(t), id }]) if t == "Patient" => {
                Some(id.as_str())
            }
            ("subject", [SearchValue::Reference { target_type: Some(t), id }])
                if t == "Patient" && subject_is_patient(ty) =>
            {
                Some(id.as_str())
            }
            _ => None,
        }
    })
}

/// Whether, by the definitions, type `ty`'s `patient` parameter is
/// `ty.subject.where(resolve() is Patient)` and its `subject` parameter `ty.subject`
/// (worked out once for every type).
fn subject_is_patient(ty: &str) -> bool {
    static TYPES: std::sync::OnceLock<HashSet<String>> = std::sync::OnceLock::new();
    TYPES
        .get_or_init(|| {
            let defs = hale_fhir::definitions::Definitions::get();
            let branch = |ty: &str, code: &str| -> Option<String> {
                let p = defs.search_parameters_for(ty).find(|p| p.code == code)?;
                p.expression
                    .as_deref()?
                    .split(" | ")
                    .find_map(|e| e.strip_prefix(ty)?.strip_prefix('.'))
                    .map(String::from)
            };
            defs.resource_types()
                .into_iter()
                .filter(|ty| {
                    branch(ty, PATIENT_PARAM).as_deref() == Some("subject.where(resolve() is Patient)")
                        && branch(ty, "subject").as_deref() == Some("subject")
                })
                .map(String::from)
                .collect()
        })
        .contains(ty)
}

/// Whether a clause's matches can be listed by the patient key: a plain token clause
/// (codes, `system|code`, `system|`), whose rows carry the key.
fn patient_keyed(c: &Clause) -> bool {
    c.chain.is_none()
        && c.has.is_none()
        && c.param_type == ParamType::Token
        && c.modifier == Modifier::None
        && c.code != "_id"
        && !c.values.is_empty()
        && c.values.iter().all(|v| matches!(v, SearchValue::Token { .. }))
}

/// The SQL condition on resource alias `r` (at nesting `depth`; the top level also
/// has `v`, its current version) for a clause of a search on type `ty`. A `correlated`
/// clause is checked for the row at hand instead of listing every match; a clause that
/// lists them does so within one `patient` when given (see [`patient_keyed`]). The
/// resources a chain or `_has` reaches are held to `filters`' granular scopes (so a
/// clause cannot tell whether a resource the caller may not see exists).
#[allow(clippy::too_many_arguments)]
fn clause_sql(
    d: &Dialect,
    ty: &str,
    c: &Clause,
    args: &mut Vec<Bind>,
    r: &str,
    depth: usize,
    correlated: bool,
    patient: Option<&str>,
    filters: Option<&Restriction>,
) -> String {
    let filter = |target: &str, alias: &str, args: &mut Vec<Bind>| {
        filters.and_then(|f| filter_sql(Some(target), alias, f, args)).map(|f| format!(" AND {f}")).unwrap_or_default()
    };
    if let Some(chain) = &c.chain {
        let inner_alias = format!("r{}", depth + 1);
        let mut ors = Vec::new();
        for target in &chain.target_types {
            args.push(Bind::Text(ty.to_string()));
            args.push(Bind::Text(c.code.clone()));
            args.push(Bind::Text(target.clone()));
            args.push(Bind::Text(target.clone()));
            let inner = clause_sql(d, target, &chain.inner, args, &inner_alias, depth + 1, false, None, filters);
            let held = filter(target, &inner_alias, args);
            ors.push(format!(
                "{r}.res_id IN (SELECT i.res_id FROM search_reference i WHERE i.res_type = ? AND i.param = ? \
                 AND i.target_type = ? AND i.target_id IN (SELECT {inner_alias}.res_id FROM resources {inner_alias} \
                 WHERE {inner_alias}.res_type = ? AND {inner_alias}.deleted = 0 AND {inner}{held}))"
            ));
        }
        return format!("({})", ors.join(" OR "));
    }
    if let Some(has) = &c.has {
        let inner_alias = format!("r{}", depth + 1);
        args.push(Bind::Text(has.source_type.clone()));
        args.push(Bind::Text(has.param.clone()));
        args.push(Bind::Text(ty.to_string()));
        args.push(Bind::Text(has.source_type.clone()));
        let inner = clause_sql(d, &has.source_type, &has.inner, args, &inner_alias, depth + 1, false, None, filters);
        let held = filter(&has.source_type, &inner_alias, args);
        return format!(
            "{r}.res_id IN (SELECT i.target_id FROM search_reference i{} WHERE i.res_type = ? AND i.param = ? \
             AND i.target_type = ? AND i.res_id IN (SELECT {inner_alias}.res_id FROM resources {inner_alias} \
             WHERE {inner_alias}.res_type = ? AND {inner_alias}.deleted = 0 AND {inner}{held}))",
            owner_hint(d, "search_reference")
        );
    }
    if c.code == "_id" {
        let ids: Vec<String> = c
            .values
            .iter()
            .filter_map(|v| match v {
                SearchValue::Token { code: Some(id), .. } => Some(id.clone()),
                _ => None,
            })
            .collect();
        for id in &ids {
            args.push(Bind::Text(id.clone()));
        }
        return format!("{r}.res_id IN ({})", vec!["?"; ids.len().max(1)].join(", "));
    }
    if c.code == "_lastUpdated" {
        let col = if depth == 0 {
            "v.last_updated".to_string()
        } else {
            format!("(SELECT vv.last_updated FROM resource_versions vv WHERE vv.seq = {r}.seq)")
        };
        let ors: Vec<String> = c
            .values
            .iter()
            .filter_map(|v| match v {
                SearchValue::Date { prefix, range } => Some(date_cond(&col, &col, *prefix, range, args)),
                _ => None,
            })
            .collect();
        return format!("({})", ors.join(" OR "));
    }
    let (table, param) = match (&c.modifier, c.param_type) {
        (Modifier::Identifier, ParamType::Reference) => ("search_token", format!("{}:identifier", c.code)),
        (Modifier::OfType, _) => ("search_token", format!("{}:of-type", c.code)),
        (_, t) => (table(t), c.code.clone()),
    };
    if correlated {
        args.push(Bind::Text(param));
        // one code: the lookup index (res_type, param, code, res_id, system) answers the
        // check with one probe and no table row; anything else goes by the owner index
        let one_code = table == "search_token"
            && matches!(c.modifier, Modifier::None | Modifier::Not)
            && matches!(c.values.as_slice(), [SearchValue::Token { code: Some(_), .. }]);
        // likewise one typed reference: (res_type, param, target_id, target_type, res_id)
        let one_reference = table == "search_reference"
            && matches!(c.modifier, Modifier::None | Modifier::Not | Modifier::Type(_))
            && matches!(c.values.as_slice(), [SearchValue::Reference { target_type: Some(_), .. }]);
        let hint = if one_code && d.index_hints {
            " INDEXED BY search_token_lookup".to_string()
        } else if one_reference && d.index_hints {
            " INDEXED BY search_reference_lookup".to_string()
        } else {
            owner_hint(d, table)
        };
        let mut inner = format!(
            "SELECT 1 FROM {table} i{hint} WHERE i.res_type = {r}.res_type AND i.res_id = {r}.res_id AND i.param = ?"
        );
        let negate = match c.modifier {
            Modifier::Missing => matches!(c.values.first(), Some(SearchValue::Missing(true))),
            _ => {
                let ors: Vec<String> = c.values.iter().map(|v| value_cond(d, c, v, args)).collect();
                inner.push_str(&format!(" AND ({})", ors.join(" OR ")));
                c.modifier == Modifier::Not
            }
        };
        return if negate { format!("NOT EXISTS ({inner})") } else { format!("EXISTS ({inner})") };
    }
    if c.modifier == Modifier::Missing {
        args.push(Bind::Text(ty.to_string()));
        args.push(Bind::Text(param));
        let hint = lookup_hint(d, table);
        let inner = format!("SELECT i.res_id FROM {table} i{hint} WHERE i.res_type = ? AND i.param = ?");
        let missing = matches!(c.values.first(), Some(SearchValue::Missing(true)));
        return if missing { format!("{r}.res_id NOT IN ({inner})") } else { format!("{r}.res_id IN ({inner})") };
    }
    if let Some(p) = patient {
        args.push(Bind::Text(p.to_string()));
    }
    args.push(Bind::Text(ty.to_string()));
    args.push(Bind::Text(param));
    let ors: Vec<String> = c.values.iter().map(|v| value_cond(d, c, v, args)).collect();
    let hint = lookup_hint(d, table);
    let keyed = if patient.is_some() { "i.patient = ? AND " } else { "" };
    let inner = format!(
        "SELECT i.res_id FROM {table} i{hint} WHERE {keyed}i.res_type = ? AND i.param = ? AND ({})",
        ors.join(" OR ")
    );
    if c.modifier == Modifier::Not {
        format!("{r}.res_id NOT IN ({inner})")
    } else {
        format!("{r}.res_id IN ({inner})")
    }
}

/// The SQL expression of a sort key (never NULL: missing values sort last).
fn sort_expr(d: &Dialect, key: &SortKey, args: &mut Vec<Bind>) -> (String, bool) {
    let (expr, numeric) = match (key.code.as_str(), key.param_type) {
        ("_id", _) => ("r.res_id".to_string(), false),
        ("_lastUpdated", _) => ("v.last_updated".to_string(), true),
        (code, t) => {
            let agg = if key.descending { "MAX" } else { "MIN" };
            let (col, numeric) = match t {
                ParamType::String => ("norm", false),
                ParamType::Token => ("code", false),
                ParamType::Date => (if key.descending { "hi" } else { "lo" }, true),
                ParamType::Number | ParamType::Quantity => ("value", true),
                ParamType::Reference => ("COALESCE(target_id, url)", false),
                ParamType::Uri => ("uri", false),
                _ => ("code", false),
            };
            args.push(Bind::Text(code.to_string()));
            // a string sorts by its whole values, not by the later parts of a name or
            // address indexed beside them (rows with an empty `exact`)
            let whole = if t == ParamType::String { " AND s.exact <> ''" } else { "" };
            (
                format!(
                    "(SELECT {agg}(s.{col}) FROM {} s{} WHERE s.res_type = r.res_type AND s.res_id = r.res_id AND s.param = ?{whole})",
                    table(t),
                    owner_hint(d, table(t))
                )
                .replace("s.COALESCE(target_id, url)", "COALESCE(s.target_id, s.url)"),
                numeric,
            )
        }
    };
    let sentinel = match (numeric, key.descending) {
        (true, false) => "9000000000000000000",
        (true, true) => "-9000000000000000000",
        (false, false) => d.max_char,
        (false, true) => "''",
    };
    (format!("COALESCE({expr}, {sentinel})"), numeric)
}

fn fingerprint(req: &SearchRequest) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let text = format!("{}|{:?}|{:?}", req.resource_type, req.canonical, req.sort);
    for b in text.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// A cursor: the sort keys and id of a row, and whether the page it asks for lies after
/// that row (`next`) or before it (`previous`).
fn encode_cursor(fp: &str, keys: &[Bind], id: &str, before: bool) -> String {
    let vals: Vec<serde_json::Value> = keys
        .iter()
        .map(|k| match k {
            Bind::Integer(i) => serde_json::json!(i),
            Bind::Real(f) => serde_json::json!(f.to_string()),
            Bind::Text(t) => serde_json::json!({"t": t}),
            _ => serde_json::Value::Null,
        })
        .collect();
    let text = serde_json::json!([fp, vals, id, if before { "b" } else { "a" }]).to_string();
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_cursor(fp: &str, cursor: &str) -> Result<(Vec<Bind>, String, bool)> {
    let bad = || Error::BadCursor("The paging cursor is not valid for this search".into());
    if !cursor.is_ascii() || !cursor.len().is_multiple_of(2) || cursor.len() > 8192 {
        return Err(bad());
    }
    let bytes: Vec<u8> = (0..cursor.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&cursor[i..i + 2], 16))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| bad())?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if v[0].as_str() != Some(fp) {
        return Err(bad());
    }
    let keys = v[1]
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|k| {
            if let Some(i) = k.as_i64() {
                Ok(Bind::Integer(i))
            } else if let Some(s) = k.as_str() {
                s.parse::<f64>().map(Bind::Real).map_err(|_| bad())
            } else if let Some(t) = k.get("t").and_then(|t| t.as_str()) {
                Ok(Bind::Text(t.to_string()))
            } else {
                Err(bad())
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let id = v[2].as_str().ok_or_else(bad)?.to_string();
    let before = match v[3].as_str() {
        Some("a") => false,
        Some("b") => true,
        _ => return Err(bad()),
    };
    Ok((keys, id, before))
}

/// The statements of one page of a type search, and what turns their rows into links.
#[derive(Debug)]
pub struct SearchSql {
    /// `SELECT COUNT(*)`, when the total was asked for
    pub count: Option<Stmt>,
    /// the page's keys: `seq`, `res_id`, then one column per sort key; `None` when the
    /// page is empty by request (`_count=0`). One row more than the page is asked for.
    pub page: Option<Stmt>,
    /// how many sort-key columns follow `seq` and `res_id`
    pub nkeys: usize,
    page_size: usize,
    backward: bool,
    has_cursor: bool,
    fp: String,
}

/// The rows of one page, in display order, with its links.
#[derive(Debug)]
pub struct PageKeys {
    pub seqs: Vec<i64>,
    pub next: Option<String>,
    pub previous: Option<String>,
}

impl SearchSql {
    pub fn build(d: &Dialect, req: &SearchRequest, page_size: usize, want_total: bool) -> Result<SearchSql> {
        let ty = req.resource_type.as_str();
        let mut where_args: Vec<Bind> = vec![Bind::Text(ty.to_string())];
        let mut conds = vec!["r.res_type = ?".to_string(), "r.deleted = 0".to_string()];
        // the most selective clause lists its matches; the others are checked per candidate
        let pinned = pinned_patient(req);
        let driver = match &req.compartment {
            Some(_) => None,
            None => (0..req.clauses.len()).min_by_key(|&k| selectivity(&req.clauses[k], pinned.is_some())),
        };
        for (k, clause) in req.clauses.iter().enumerate() {
            let correlated = Some(k) != driver && clause.chain.is_none() && clause.has.is_none();
            let patient = pinned.filter(|_| patient_keyed(clause));
            let filters = req.restriction.as_ref().filter(|r| !r.filters.is_empty());
            conds.push(clause_sql(d, ty, clause, &mut where_args, "r", 0, correlated, patient, filters));
        }
        if let Some(comp) = &req.compartment {
            if comp.owner_type == ty {
                conds.push("r.res_id = ?".into());
                where_args.push(Bind::Text(comp.owner_id.clone()));
            } else {
                where_args.push(Bind::Text(ty.to_string()));
                where_args.extend(comp.params.iter().map(|p| Bind::Text(p.clone())));
                if comp.params.is_empty() {
                    where_args.push(Bind::Null);
                }
                where_args.push(Bind::Text(comp.owner_type.clone()));
                where_args.push(Bind::Text(comp.owner_id.clone()));
                conds.push(format!(
                    "r.res_id IN (SELECT i.res_id FROM search_reference i WHERE i.res_type = ? AND i.param IN ({}) \
                     AND i.target_type = ? AND i.target_id = ?)",
                    vec!["?"; comp.params.len().max(1)].join(", ")
                ));
            }
        }
        if let Some(r) = &req.restriction {
            conds.push(restriction_sql(d, Some(ty), "r", r, &mut where_args));
        }
        let from = "FROM resources r JOIN resource_versions v ON v.seq = r.seq";
        // the version row (and its body) is needed only to test or sort by _lastUpdated
        let count = want_total.then(|| {
            let count_from = if conds.iter().any(|c| c.contains("v.last_updated")) { from } else { "FROM resources r" };
            Stmt {
                sql: format!("SELECT COUNT(*) {count_from} WHERE {}", conds.join(" AND ")),
                args: where_args.clone(),
            }
        });
        let fp = fingerprint(req);
        let mut out =
            SearchSql { count, page: None, nkeys: req.sort.len(), page_size, backward: false, has_cursor: false, fp };
        if page_size == 0 {
            return Ok(out);
        }
        // sort keys, then the id as the tie-breaker
        let mut keys: Vec<(String, bool, Vec<Bind>)> = Vec::new();
        for k in &req.sort {
            let mut a = Vec::new();
            let (expr, _) = sort_expr(d, k, &mut a);
            keys.push((expr, k.descending, a));
        }
        // the page is chosen over keys alone; bodies are read for its rows only
        let mut select = "SELECT r.seq, r.res_id".to_string();
        let mut args: Vec<Bind> = Vec::new();
        for (i, (expr, _, a)) in keys.iter().enumerate() {
            select.push_str(&format!(", {expr} AS k{i}"));
            args.extend(a.iter().cloned());
        }
        args.extend(where_args);
        if let Some(cursor) = &req.cursor {
            let (values, last_id, before) = decode_cursor(&out.fp, cursor)?;
            out.backward = before;
            out.has_cursor = true;
            if values.len() != keys.len() {
                return Err(Error::BadCursor("The paging cursor is not valid for this search".into()));
            }
            let mut ors = Vec::new();
            for j in 0..=keys.len() {
                let mut ands = Vec::new();
                for (i, (expr, _, a)) in keys.iter().enumerate().take(j) {
                    ands.push(format!("{expr} = ?"));
                    args.extend(a.iter().cloned());
                    args.push(values[i].clone());
                }
                if j < keys.len() {
                    let (expr, desc, a) = &keys[j];
                    ands.push(format!("{expr} {} ?", if *desc != before { "<" } else { ">" }));
                    args.extend(a.iter().cloned());
                    args.push(values[j].clone());
                } else {
                    ands.push(format!("r.res_id {} ?", if before { "<" } else { ">" }));
                    args.push(Bind::Text(last_id.clone()));
                }
                ors.push(format!("({})", ands.join(" AND ")));
            }
            conds.push(format!("({})", ors.join(" OR ")));
        }
        let backward = out.backward;
        let mut order: Vec<String> = keys
            .iter()
            .enumerate()
            .map(|(i, (_, desc, _))| format!("k{i} {}", if *desc != backward { "DESC" } else { "ASC" }))
            .collect();
        order.push(format!("r.res_id {}", if backward { "DESC" } else { "ASC" }));
        let needs_version = conds.iter().chain(keys.iter().map(|k| &k.0)).any(|c| c.contains("v.last_updated"));
        let page_from = if needs_version { from } else { "FROM resources r" };
        let sql = format!(
            "{select} {page_from} WHERE {} ORDER BY {} LIMIT {}",
            conds.join(" AND "),
            order.join(", "),
            page_size + 1
        );
        out.page = Some(Stmt { sql, args });
        Ok(out)
    }

    /// The page from the rows of [`SearchSql::page`] (seq, id, sort keys), as the query
    /// returned them.
    pub fn page_keys(&self, rows: Vec<(i64, String, Vec<Bind>)>) -> PageKeys {
        let mut seqs = Vec::new();
        let mut positions: Vec<(Vec<Bind>, String)> = Vec::new();
        let mut more = false;
        for (seq, id, ks) in rows {
            if seqs.len() == self.page_size {
                more = true;
                break;
            }
            positions.push((ks, id));
            seqs.push(seq);
        }
        if self.backward {
            seqs.reverse();
            positions.reverse();
        }
        // rows exist after the page when the query found more (forward) or came from a
        // later page (backward), and before it when it came from an earlier page or found more
        let (after, before) = if self.backward { (true, more) } else { (more, self.has_cursor) };
        let next = match positions.last() {
            Some((ks, id)) if after => Some(encode_cursor(&self.fp, ks, id, false)),
            _ => None,
        };
        let previous = match positions.first() {
            Some((ks, id)) if before => Some(encode_cursor(&self.fp, ks, id, true)),
            _ => None,
        };
        PageKeys { seqs, next, previous }
    }
}

/// Most resources one page may add through `_include` and `_revinclude`.
const MAX_INCLUDED: usize = 5000;

/// `_include` and `_revinclude` of one page, round by round (`:iterate` is followed up
/// to [`hale_search::parse::MAX_INCLUDE_ITERATIONS`] rounds): the store runs the
/// statements of each round and hands back the version rows they found.
pub struct IncludeWalk<'a> {
    d: Dialect,
    req: &'a SearchRequest,
    seen: HashSet<(String, String)>,
    out: Vec<StoredResource>,
    frontier: Vec<StoredResource>,
    round: usize,
}

impl<'a> IncludeWalk<'a> {
    pub fn new(d: &Dialect, req: &'a SearchRequest, matches: &[StoredResource]) -> Self {
        let seen = matches.iter().map(|m| (m.resource_type.to_string(), m.id.to_string())).collect();
        let frontier =
            if req.includes.is_empty() && req.revincludes.is_empty() { Vec::new() } else { matches.to_vec() };
        IncludeWalk { d: *d, req, seen, out: Vec::new(), frontier, round: 0 }
    }

    /// The statements of the next round (each selects [`VERSION_COLUMNS`]); empty when
    /// the walk is over.
    pub fn next_round(&mut self) -> Vec<Stmt> {
        if self.frontier.is_empty()
            || self.out.len() >= MAX_INCLUDED
            || self.round > hale_search::parse::MAX_INCLUDE_ITERATIONS
        {
            return Vec::new();
        }
        let req = self.req;
        let mut stmts = Vec::new();
        for (inc, rev) in req.includes.iter().map(|i| (i, false)).chain(req.revincludes.iter().map(|i| (i, true))) {
            if self.round > 0 && !inc.iterate {
                continue;
            }
            for chunk in self.frontier.chunks(500) {
                stmts.extend(include_sql(&self.d, inc, rev, chunk, req.restriction.as_ref()));
            }
        }
        self.round += 1;
        self.frontier.clear();
        stmts
    }

    /// What the statements of the round found.
    pub fn found(&mut self, found: Vec<StoredResource>) {
        for f in found {
            if self.out.len() < MAX_INCLUDED && self.seen.insert((f.resource_type.to_string(), f.id.to_string())) {
                self.frontier.push(f.clone());
                self.out.push(f);
            }
        }
    }

    pub fn finish(self) -> Vec<StoredResource> {
        self.out
    }
}

/// The statements that follow one `_include` (or `_revinclude` when `rev`) from these
/// resources.
fn include_sql(
    d: &Dialect,
    inc: &Include,
    rev: bool,
    sources: &[StoredResource],
    restriction: Option<&Restriction>,
) -> Vec<Stmt> {
    let mut out = Vec::new();
    let mut by_type: std::collections::BTreeMap<&str, Vec<&str>> = std::collections::BTreeMap::new();
    for s in sources {
        by_type.entry(s.resource_type.as_str()).or_default().push(s.id.as_str());
    }
    for (ty, ids) in by_type {
        let mut args: Vec<Bind> = Vec::new();
        let marks = vec!["?"; ids.len()].join(", ");
        let sql = if !rev {
            if inc.source_type != ty {
                continue;
            }
            args.push(Bind::Text(ty.to_string()));
            args.extend(ids.iter().map(|i| Bind::Text(i.to_string())));
            let hint = owner_hint(d, "search_reference");
            let mut sql = format!(
                "SELECT {VERSION_COLUMNS} FROM search_reference i{hint} \
                 JOIN resources r ON r.res_type = i.target_type AND r.res_id = i.target_id \
                 JOIN resource_versions v ON v.seq = r.seq \
                 WHERE i.res_type = ? AND i.res_id IN ({marks}) AND r.deleted = 0"
            );
            if let Some(p) = &inc.param {
                sql.push_str(" AND i.param = ?");
                args.push(Bind::Text(p.clone()));
            }
            if let Some(t) = &inc.target_type {
                sql.push_str(" AND i.target_type = ?");
                args.push(Bind::Text(t.clone()));
            }
            sql
        } else {
            if inc.target_type.as_deref().is_some_and(|t| t != ty) {
                continue;
            }
            args.push(Bind::Text(inc.source_type.clone()));
            args.push(Bind::Text(ty.to_string()));
            args.extend(ids.iter().map(|i| Bind::Text(i.to_string())));
            let mut sql = format!(
                "SELECT {VERSION_COLUMNS} FROM search_reference i \
                 JOIN resources r ON r.res_type = i.res_type AND r.res_id = i.res_id \
                 JOIN resource_versions v ON v.seq = r.seq \
                 WHERE i.res_type = ? AND i.target_type = ? AND i.target_id IN ({marks}) AND r.deleted = 0"
            );
            if let Some(p) = &inc.param {
                sql.push_str(" AND i.param = ?");
                args.push(Bind::Text(p.clone()));
            }
            sql
        };
        let mut sql = sql;
        if let Some(r) = restriction {
            let included = if rev { Some(inc.source_type.as_str()) } else { inc.target_type.as_deref() };
            let cond = restriction_sql(d, included, "r", r, &mut args);
            sql.push_str(&format!(" AND {cond}"));
        }
        out.push(Stmt { sql, args });
    }
    out
}

/// The condition that keeps the rows of `alias` (a table with `res_type` and `res_id`)
/// to what `r` lets the caller see; `ty` when every row is of that type. A resource in
/// Patient compartments is visible when it is in a visible patient's compartment and
/// in no other patient's (a Group listing other patients, an Observation whose
/// performer is another patient, concern them too); and a resource of a type that
/// granular scopes filter when it matches one of their queries (`filter_sql`).
/// Written once: the page, its total, its includes, history and `$everything` all use
/// it.
pub fn restriction_sql(d: &Dialect, ty: Option<&str>, alias: &str, r: &Restriction, args: &mut Vec<Bind>) -> String {
    let patients = patients_sql(d, ty, alias, r, args);
    match filter_sql(ty, alias, r, args) {
        Some(filter) => format!("({patients} AND {filter})"),
        None => patients,
    }
}

/// The granular scopes' part of [`restriction_sql`] (`None`: no filter concerns these
/// rows): a row of a filtered type passes when, for one alternative of its
/// [`TypeFilter`], each token test finds a `search_token` row of the resource (one
/// probe of the owner index each, per candidate, like the search's own clauses).
/// Index rows are those of the current version, so [`history`] shows only the current
/// version of a filtered type.
fn filter_sql(ty: Option<&str>, alias: &str, r: &Restriction, args: &mut Vec<Bind>) -> Option<String> {
    let one = |f: &TypeFilter, args: &mut Vec<Bind>| -> String {
        if f.any_of.is_empty() {
            return "1 = 0".into();
        }
        let mut ors = Vec::new();
        for tests in &f.any_of {
            let mut ands = Vec::new();
            for t in tests {
                args.push(Bind::Text(t.param.clone()));
                let values: Vec<String> = t.values.iter().map(|v| token_cond("g", &v.system, &v.code, args)).collect();
                ands.push(format!(
                    "EXISTS (SELECT 1 FROM search_token g WHERE g.res_type = {alias}.res_type \
                     AND g.res_id = {alias}.res_id AND g.param = ? AND ({}))",
                    values.join(" OR ")
                ));
            }
            ors.push(format!("({})", ands.join(" AND ")));
        }
        format!("({})", ors.join(" OR "))
    };
    match ty {
        Some(t) => {
            let ands: Vec<String> = r.filters_of(t).map(|f| one(f, args)).collect();
            (!ands.is_empty()).then(|| ands.join(" AND "))
        }
        None if r.filters.is_empty() => None,
        None => {
            let mut ands = Vec::new();
            for f in &r.filters {
                args.push(Bind::Text(f.resource_type.clone()));
                let cond = one(f, args);
                ands.push(format!("({alias}.res_type <> ? OR {cond})"));
            }
            Some(format!("({})", ands.join(" AND ")))
        }
    }
}

/// The patients' part of [`restriction_sql`].
fn patients_sql(d: &Dialect, ty: Option<&str>, alias: &str, r: &Restriction, args: &mut Vec<Bind>) -> String {
    if r.every_patient || ty.is_some_and(hale_search::access::is_shared) {
        return "1 = 1".into();
    }
    if r.patients.as_ref().is_some_and(Vec::is_empty) && r.also.is_empty() {
        return match ty {
            Some(_) => "1 = 0".into(),
            None => format!("{alias}.res_type IN ({})", shared_list()),
        };
    }
    let defs = hale_fhir::Definitions::get();
    // each candidate's own reference rows: the owner index, never a scan of every
    // reference of the type (SQLite's planner, given statistics, may choose the lookup
    // index, which covers the columns but is keyed by parameter and target first)
    let hint = owner_hint(d, "search_reference");
    match ty {
        Some("Patient") => visible_patient(&format!("{alias}.res_id"), r, args),
        Some(t) => {
            let Some(params) = defs.access_compartment().get(t).filter(|p| !p.is_empty()) else {
                return "1 = 0".into();
            };
            let marks = vec!["?"; params.len()].join(", ");
            let clause = |args: &mut Vec<Bind>, negated: bool| {
                args.push(Bind::Text(t.to_string()));
                args.extend(params.iter().map(|p| Bind::Text(p.clone())));
                let visible = visible_patient("c.target_id", r, args);
                format!(
                    "{}EXISTS (SELECT 1 FROM search_reference c{hint} WHERE c.res_type = ? AND c.res_id = {alias}.res_id \
                     AND c.param IN ({marks}) AND c.target_type = 'Patient' AND {}({visible}))",
                    if negated { "NOT " } else { "" },
                    if negated { "NOT " } else { "" },
                )
            };
            // in the compartment of a visible patient, and of no other patient
            let inside = clause(args, false);
            let outside = clause(args, true);
            format!("({inside} AND {outside})")
        }
        None => {
            let mut pairs: Vec<String> = Vec::new();
            for (t, params) in defs.access_compartment() {
                pairs.extend(params.iter().map(|p| format!("{t}.{p}")));
            }
            pairs.sort();
            let own = visible_patient(&format!("{alias}.res_id"), r, args);
            let marks = vec!["?"; pairs.len()].join(", ");
            let clause = |args: &mut Vec<Bind>, negated: bool| {
                args.extend(pairs.iter().map(|p| Bind::Text(p.clone())));
                let visible = visible_patient("c.target_id", r, args);
                format!(
                    "{}EXISTS (SELECT 1 FROM search_reference c{hint} WHERE c.res_type = {alias}.res_type \
                     AND c.res_id = {alias}.res_id AND (c.res_type || '.' || c.param) IN ({marks}) \
                     AND c.target_type = 'Patient' AND {}({visible}))",
                    if negated { "NOT " } else { "" },
                    if negated { "NOT " } else { "" },
                )
            };
            let inside = clause(args, false);
            let outside = clause(args, true);
            format!(
                "({alias}.res_type IN ({}) OR ({alias}.res_type = 'Patient' AND {own}) \
                 OR ({inside} AND {outside}))",
                shared_list()
            )
        }
    }
}

/// The condition that the Patient id `id` (an SQL expression) is one `r` lets the caller
/// see, checked for that one patient (index probes, never a list of every patient of
/// an organization): one of `r.patients`; or, for an organization, a patient it
/// manages, whose active Consent permits it, one of whose Encounters has it as service
/// provider, or one of whose CareTeams lists it (or `r.practitioner`) as a
/// participant, unless a Consent denies it (a denial wins); or a break-the-glass
/// patient, whatever the rest says. The encounter and care team checks read Hale's own
/// token rows under [`hale_search::extract::RELATED`], keyed by the patient: one probe
/// each, however many encounters the patient has (a cancelled Encounter, or one entered
/// in error, has none).
fn visible_patient(id: &str, r: &Restriction, args: &mut Vec<Bind>) -> String {
    let mut cond = match &r.organization {
        Some(org) => {
            let consent = |param: &str, args: &mut Vec<Bind>| {
                args.push(Bind::Text(org.clone()));
                format!(
                    "EXISTS (SELECT 1 FROM search_reference cp JOIN search_reference ca \
                     ON ca.res_type = 'Consent' AND ca.res_id = cp.res_id AND ca.param = '{param}' \
                     AND ca.target_type = 'Organization' AND ca.target_id = ? \
                     WHERE cp.target_type = 'Patient' AND cp.target_id = {id} AND cp.res_type = 'Consent' \
                     AND cp.param = 'patient')"
                )
            };
            args.push(Bind::Text(org.clone()));
            let managed = format!(
                "EXISTS (SELECT 1 FROM search_reference o WHERE o.res_type = 'Patient' AND o.res_id = {id} \
                 AND o.param = 'organization' AND o.target_type = 'Organization' AND o.target_id = ?)"
            );
            let permit = consent(hale_search::extract::CONSENT_PERMIT, args);
            // an Encounter or CareTeam of the patient relating them to `target`: Hale's own
            // token row, keyed by the patient, one probe of search_token_patient
            let related = |ty: &str, target_type: &str, target_id: &str, args: &mut Vec<Bind>| {
                args.push(Bind::Text(target_id.to_string()));
                format!(
                    "EXISTS (SELECT 1 FROM search_token rt WHERE rt.patient = {id} AND rt.res_type = '{ty}' \
                     AND rt.param = '{}' AND rt.code = ? AND rt.system = '{target_type}')",
                    hale_search::extract::RELATED
                )
            };
            let mut related_to =
                vec![related("Encounter", "Organization", org, args), related("CareTeam", "Organization", org, args)];
            if let Some(p) = &r.practitioner {
                related_to.push(related("CareTeam", "Practitioner", p, args));
            }
            let related_to = related_to.join(" OR ");
            let deny = consent(hale_search::extract::CONSENT_DENY, args);
            let mut c = format!("(({managed} OR {permit} OR {related_to}) AND NOT {deny})");
            if let Some(ps) = &r.patients {
                c = format!("({c} AND {id} IN ({}))", vec!["?"; ps.len().max(1)].join(", "));
                if ps.is_empty() {
                    args.push(Bind::Null);
                }
                args.extend(ps.iter().map(|p| Bind::Text(p.clone())));
            }
            c
        }
        None => {
            let ps: Vec<&String> = r.patients.iter().flatten().collect();
            if ps.is_empty() {
                "1 = 0".to_string()
            } else {
                args.extend(ps.iter().map(|p| Bind::Text((*p).clone())));
                format!("{id} IN ({})", vec!["?"; ps.len()].join(", "))
            }
        }
    };
    if !r.also.is_empty() {
        args.extend(r.also.iter().map(|p| Bind::Text(p.clone())));
        cond = format!("({cond} OR {id} IN ({}))", vec!["?"; r.also.len()].join(", "));
    }
    cond
}

/// [`SHARED_TYPES`] as SQL literals (constants of Hale, not input).
fn shared_list() -> String {
    SHARED_TYPES.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ")
}

/// Types that `$everything` adds when a compartment resource refers to them.
pub const EVERYTHING_REFERENCED: &[&str] = &[
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "Location",
    "Medication",
    "Device",
    "Substance",
    "HealthcareService",
    "Endpoint",
];

/// `$everything` pages in (type, id) order; the cursor holds the last of a page.
pub fn everything_cursor(patient: &str, last: (&str, &str)) -> String {
    encode_cursor(&format!("everything:{patient}"), &[Bind::Text(last.0.to_string())], last.1, false)
}

/// The (type, id) after which a `$everything` page starts.
pub fn everything_after(patient: &str, cursor: &str) -> Result<(String, String)> {
    let (keys, id, before) = decode_cursor(&format!("everything:{patient}"), cursor)?;
    match (keys.first(), before) {
        (Some(Bind::Text(ty)), false) => Ok((ty.clone(), id)),
        _ => Err(Error::BadCursor("The paging cursor is not valid for this request".into())),
    }
}

/// The statements of one history page ([`history`]).
#[derive(Debug, Clone)]
pub struct HistorySql {
    /// The number of versions (instance history, first page only).
    pub count: Option<Stmt>,
    /// Up to `count + 1` versions ([`VERSION_COLUMNS`]), newest first; the extra row
    /// says there is another page.
    pub page: Stmt,
}

/// History at any level, newest first, paged by `seq`: written once for both stores.
pub fn history(d: &Dialect, scope: &HistoryScope, query: &HistoryQuery) -> HistorySql {
    let mut sql = format!("SELECT {VERSION_COLUMNS} FROM resource_versions v WHERE 1 = 1");
    let mut args = Vec::new();
    match scope {
        HistoryScope::System => {}
        HistoryScope::Type(t) => {
            sql.push_str(" AND v.res_type = ?");
            args.push(Bind::Text(t.to_string()));
        }
        HistoryScope::Instance(t, id) => {
            sql.push_str(" AND v.res_type = ? AND v.res_id = ?");
            args.push(Bind::Text(t.to_string()));
            args.push(Bind::Text(id.to_string()));
        }
    }
    if let Some(since) = query.since {
        sql.push_str(" AND v.last_updated >= ?");
        args.push(Bind::Integer(since.millis()));
    }
    if let Some(r) = &query.restriction {
        let ty = match scope {
            HistoryScope::System => None,
            HistoryScope::Type(t) | HistoryScope::Instance(t, _) => Some(t.as_str()),
        };
        let cond = restriction_sql(d, ty, "v", r, &mut args);
        sql.push_str(&format!(" AND {cond}"));
        // a granular scope's query is matched on the current version's index rows: of a
        // filtered type, only that version is shown (an older one may not match it)
        let mut filtered: Vec<&str> = r.filters.iter().map(|f| f.resource_type.as_str()).collect();
        filtered.sort_unstable();
        filtered.dedup();
        filtered.retain(|f| ty.is_none_or(|t| t == *f));
        if !filtered.is_empty() {
            args.extend(filtered.iter().map(|f| Bind::Text(f.to_string())));
            sql.push_str(&format!(
                " AND (v.res_type NOT IN ({}) OR EXISTS (SELECT 1 FROM resources cur \
                 WHERE cur.res_type = v.res_type AND cur.res_id = v.res_id AND cur.seq = v.seq))",
                vec!["?"; filtered.len()].join(", ")
            ));
        }
    }
    let count = (matches!(scope, HistoryScope::Instance(..)) && query.cursor.is_none()).then(|| Stmt {
        sql: sql.replacen(&format!("SELECT {VERSION_COLUMNS}"), "SELECT COUNT(*)", 1),
        args: args.clone(),
    });
    if let Some(cursor) = query.cursor {
        sql.push_str(" AND v.seq < ?");
        args.push(Bind::Integer(cursor));
    }
    sql.push_str(&format!(" ORDER BY v.seq DESC LIMIT {}", query.count + 1));
    HistorySql { count, page: Stmt { sql, args } }
}

/// The page of [`history`]'s rows (`(seq, version)`, as read) for a page of `count`.
pub fn history_page(rows: Vec<(i64, StoredResource)>, count: usize, total: Option<u64>) -> HistoryPage {
    let more = rows.len() > count;
    let mut entries = Vec::with_capacity(rows.len().min(count));
    let mut last_seq = None;
    for (seq, s) in rows.into_iter().take(count) {
        last_seq = Some(seq);
        entries.push(s);
    }
    HistoryPage { entries, next: if more { last_seq } else { None }, total }
}

/// `Patient/[id]/$everything` as one statement for both stores: the patient, the
/// resources whose Patient-compartment parameters point at it, and what those refer to
/// among [`EVERYTHING_REFERENCED`]; current versions only, in (type, id) order after the
/// cursor, up to `count + 1` rows ([`VERSION_COLUMNS`]). The joins are written as
/// `CROSS JOIN`, which SQLite takes in the order written: left to choose, its planner
/// scans every reference row and every resource (1-2 s on 276,000 resources) instead of
/// starting from the patient's compartment (a few ms).
pub fn everything(d: &Dialect, patient: &str, q: &EverythingQuery) -> Result<Stmt> {
    let defs = hale_fhir::Definitions::get();
    let mut pairs: Vec<String> = Vec::new();
    for (ty, params) in defs.patient_compartment() {
        for p in params {
            pairs.push(format!("{ty}.{p}"));
        }
    }
    pairs.sort();
    let (target_hint, owner_hint) = if d.index_hints {
        (" INDEXED BY search_reference_target", " INDEXED BY search_reference_owner")
    } else {
        ("", "")
    };
    let mut args = vec![Bind::Text(patient.to_string())];
    args.extend(pairs.iter().map(|p| Bind::Text(p.clone())));
    args.push(Bind::Text(patient.to_string()));
    args.extend(EVERYTHING_REFERENCED.iter().map(|t| Bind::Text(t.to_string())));
    let pair_marks = vec!["?"; pairs.len()].join(", ");
    let ref_marks = vec!["?"; EVERYTHING_REFERENCED.len()].join(", ");
    let mut sql = format!(
        "WITH comp(t, id) AS ( \
           SELECT i.res_type, i.res_id FROM search_reference i{target_hint} \
           WHERE i.target_type = 'Patient' AND i.target_id = ? AND (i.res_type || '.' || i.param) IN ({pair_marks}) \
           UNION SELECT 'Patient', CAST(? AS TEXT)), \
         refd(t, id) AS ( \
           SELECT j.target_type, j.target_id FROM comp CROSS JOIN search_reference j{owner_hint} \
           WHERE j.res_type = comp.t AND j.res_id = comp.id \
             AND j.target_type IN ({ref_marks}) AND j.target_id IS NOT NULL), \
         everything(t, id) AS (SELECT t, id FROM comp UNION SELECT t, id FROM refd), \
         page(t, id, seq) AS ( \
           SELECT r.res_type, r.res_id, r.seq FROM everything e CROSS JOIN resources r{versions} \
           WHERE r.res_type = e.t AND r.res_id = e.id AND r.deleted = 0",
        versions = if q.since.is_some() { " CROSS JOIN resource_versions v" } else { "" }
    );
    if let Some(since) = q.since {
        sql.push_str(" AND v.seq = r.seq AND v.last_updated >= ?");
        args.push(Bind::Integer(since.millis()));
    }
    if let Some(r) = &q.restriction {
        let cond = restriction_sql(d, None, "r", r, &mut args);
        sql.push_str(&format!(" AND {cond}"));
    }
    if let Some(types) = &q.types {
        sql.push_str(&format!(" AND r.res_type IN ({})", vec!["?"; types.len().max(1)].join(", ")));
        if types.is_empty() {
            args.push(Bind::Null);
        }
        args.extend(types.iter().map(|t| Bind::Text(t.clone())));
    }
    if let Some(cursor) = &q.cursor {
        let (ty, id) = everything_after(patient, cursor)?;
        sql.push_str(" AND (r.res_type > ? OR (r.res_type = ? AND r.res_id > ?))");
        args.push(Bind::Text(ty.clone()));
        args.push(Bind::Text(ty));
        args.push(Bind::Text(id));
    }
    // the page's keys are chosen and sorted first, then its versions read: sorting the
    // rows with their bodies made a large compartment's page twice as slow
    sql.push_str(&format!(
        " ORDER BY r.res_type, r.res_id LIMIT {}) \
         SELECT {VERSION_COLUMNS} FROM page p CROSS JOIN resource_versions v WHERE v.seq = p.seq",
        q.count + 1
    ));
    Ok(Stmt { sql, args })
}

/// The page of [`everything`]'s rows for a page of `count`.
pub fn everything_page(patient: &str, mut rows: Vec<StoredResource>, count: usize) -> SearchPage {
    // in (type, id) order, as the statement chose them
    rows.sort_by(|a, b| (a.resource_type.as_str(), a.id.as_str()).cmp(&(b.resource_type.as_str(), b.id.as_str())));
    let more = rows.len() > count;
    let entries: Vec<StoredResource> = rows.into_iter().take(count).collect();
    let next = match (more, entries.last()) {
        (true, Some(last)) => Some(everything_cursor(patient, (last.resource_type.as_str(), last.id.as_str()))),
        _ => None,
    };
    SearchPage { entries, included: Vec::new(), next, previous: None, total: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hale_fhir::ResourceType;

    fn request(ty: &str, q: &[(&str, &str)]) -> SearchRequest {
        let pairs: Vec<(String, String)> = q.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        hale_search::parse::parse(&ResourceType::parse(ty).unwrap(), &pairs, false).unwrap()
    }

    #[test]
    fn values_are_bound_never_written_into_the_sql() {
        let req = request("Patient", &[("name", "o'brien"), ("family:contains", "x%y")]);
        for d in [SQLITE, POSTGRES] {
            let q = SearchSql::build(&d, &req, 10, true).unwrap();
            let page = q.page.unwrap();
            assert!(!page.sql.contains("brien") && !page.sql.contains("x%y") && !page.sql.contains("name"));
            assert_eq!(page.sql.matches('?').count(), page.args.len());
            assert!(page.args.contains(&Bind::Text("%x\\%y%".into())));
            let count = q.count.unwrap();
            assert_eq!(count.sql.matches('?').count(), count.args.len());
        }
    }

    #[test]
    fn a_search_pinned_to_one_patient_lists_its_token_matches_by_the_patient_key() {
        let keyed = |q: &[(&str, &str)]| {
            let page = SearchSql::build(&SQLITE, &request("Observation", q), 10, false).unwrap().page.unwrap();
            assert_eq!(page.sql.matches('?').count(), page.args.len());
            page.sql.contains("i.patient = ?").then(|| {
                // the patient comes first in its listing, before type and parameter
                let want = [Bind::Text("x".into()), Bind::Text("Observation".into()), Bind::Text("category".into())];
                assert!(page.args.windows(3).any(|w| w == want), "{:?}", page.args);
            })
        };
        assert!(keyed(&[("patient", "x"), ("category", "vital-signs")]).is_some());
        assert!(keyed(&[("category", "vital-signs"), ("patient", "Patient/x")]).is_some());
        assert!(keyed(&[("patient:Patient", "x"), ("category", "vital-signs")]).is_some());
        // a subject of type Patient pins it on Observation, whose patient is its subject
        assert!(keyed(&[("subject", "Patient/x"), ("category", "vital-signs")]).is_some());
        assert!(keyed(&[("subject:Patient", "x"), ("category", "vital-signs")]).is_some());
        // not pinned: two patients, no patient, an untyped or Group subject, no token clause
        assert!(keyed(&[("patient", "x,y"), ("category", "vital-signs")]).is_none());
        assert!(keyed(&[("category", "vital-signs")]).is_none());
        assert!(keyed(&[("subject", "x"), ("category", "vital-signs")]).is_none());
        assert!(keyed(&[("subject", "Group/x"), ("category", "vital-signs")]).is_none());
        assert!(keyed(&[("patient", "x"), ("date", "ge2020")]).is_none());
        // a negated token clause is checked per candidate, never listed
        assert!(keyed(&[("patient", "x"), ("category:not", "vital-signs")]).is_none());
    }

    #[test]
    fn the_restriction_binds_every_value_and_filters_granted_types_only() {
        let tests = hale_search::access::parse_scope_query("Observation", "category=s|laboratory,vital-signs").unwrap();
        let mut r = Restriction::organization("org-1");
        r.practitioner = Some("prac-1".into());
        r.filters = vec![TypeFilter { resource_type: "Observation".into(), any_of: vec![tests] }];
        for ty in [Some("Observation"), Some("Condition"), Some("Patient"), Some("Medication"), None] {
            let mut args = Vec::new();
            let sql = restriction_sql(&POSTGRES, ty, "r", &r, &mut args);
            assert_eq!(sql.matches('?').count(), args.len(), "{ty:?}: {sql}");
            let filtered = sql.contains("FROM search_token g");
            assert_eq!(filtered, matches!(ty, Some("Observation") | None), "{ty:?}: {sql}");
            let related = sql.contains("'Encounter'") && sql.contains("'CareTeam'") && sql.contains("_hale-related");
            assert_eq!(related, ty != Some("Medication"), "{ty:?}: {sql}");
            assert!(!sql.contains("laboratory") && !sql.contains("org-1") && !sql.contains("prac-1"), "{sql}");
        }
        // a client's filters alone: every patient
        let mut args = Vec::new();
        let sql =
            restriction_sql(&POSTGRES, Some("Observation"), "r", &Restriction::filtered(r.filters.clone()), &mut args);
        assert!(sql.starts_with("(1 = 1 AND EXISTS") || sql.starts_with("(1 = 1 AND ((EXISTS"), "{sql}");
        assert!(!sql.contains("search_reference"), "{sql}");
        // a type no scope grants: nothing of it
        let none = Restriction::filtered(vec![TypeFilter { resource_type: "Observation".into(), any_of: vec![] }]);
        assert_eq!(restriction_sql(&POSTGRES, Some("Observation"), "r", &none, &mut Vec::new()), "(1 = 1 AND 1 = 0)");
        let everything = everything(
            &POSTGRES,
            "p1",
            &EverythingQuery { since: None, types: None, count: 10, cursor: None, restriction: Some(r.clone()) },
        )
        .unwrap();
        assert_eq!(everything.sql.matches('?').count(), everything.args.len());
        let h = history(
            &POSTGRES,
            &HistoryScope::System,
            &HistoryQuery { since: None, count: 5, cursor: None, restriction: Some(r) },
        );
        assert_eq!(h.page.sql.matches('?').count(), h.page.args.len());
        assert!(h.page.sql.contains("v.res_type <> ?"), "{}", h.page.sql);
        assert!(h.page.sql.contains("cur.seq = v.seq"), "only current versions of a filtered type");
    }

    #[test]
    fn subject_pins_the_patient_where_the_patient_parameter_is_the_subject() {
        for ty in ["Observation", "Condition", "Encounter", "MedicationRequest", "DiagnosticReport", "Procedure"] {
            assert!(subject_is_patient(ty), "{ty}");
        }
        // Patient's own, Device (no patient-restricted subject), Immunization (patient only)
        for ty in ["Patient", "Device", "Immunization", "AllergyIntolerance", "Group"] {
            assert!(!subject_is_patient(ty), "{ty}");
        }
    }

    #[test]
    fn dialects_differ_only_where_the_databases_do() {
        let req = request("Patient", &[("family:contains", "ab"), ("gender", "female")]);
        let lite = SearchSql::build(&SQLITE, &req, 10, false).unwrap().page.unwrap().sql;
        let pg = SearchSql::build(&POSTGRES, &req, 10, false).unwrap().page.unwrap().sql;
        assert!(lite.contains(" LIKE ") && lite.contains("INDEXED BY"));
        assert!(pg.contains(" ILIKE ") && !pg.contains("INDEXED BY"));
        assert!(lite.contains("INDEXED BY search_token_lookup"), "{lite}");
        assert_eq!(lite.replace(" LIKE ", " ILIKE ").replace(" INDEXED BY search_token_lookup", ""), pg);
    }

    #[test]
    fn cursors_round_trip_and_belong_to_their_search() {
        let req = request("Observation", &[("code", "8867-4"), ("_sort", "-date")]);
        let q = SearchSql::build(&SQLITE, &req, 2, false).unwrap();
        let rows = vec![
            (1, "a".to_string(), vec![Bind::Integer(30)]),
            (2, "b".to_string(), vec![Bind::Integer(20)]),
            (3, "c".to_string(), vec![Bind::Integer(10)]),
        ];
        let keys = q.page_keys(rows);
        assert_eq!(keys.seqs, vec![1, 2]);
        assert!(keys.previous.is_none());
        let next = keys.next.unwrap();
        let (values, id, before) = decode_cursor(&fingerprint(&req), &next).unwrap();
        assert_eq!((values, id.as_str(), before), (vec![Bind::Integer(20)], "b", false));
        // a cursor is refused by another search, and garbage is refused
        let other = request("Observation", &[("code", "8867-4")]);
        assert!(decode_cursor(&fingerprint(&other), &next).is_err());
        assert!(decode_cursor(&fingerprint(&req), "zz").is_err());
        // a multi-byte character where two hex digits were expected
        assert!(decode_cursor(&fingerprint(&req), "a\u{e9}b").is_err());
        // the next page continues after (20, b)
        let mut req2 = req.clone();
        req2.cursor = Some(next);
        let page = SearchSql::build(&SQLITE, &req2, 2, false).unwrap().page.unwrap();
        assert!(page.args.contains(&Bind::Integer(20)) && page.args.contains(&Bind::Text("b".into())));
    }

    #[test]
    fn everything_cursors_round_trip() {
        let c = everything_cursor("p1", ("Observation", "o9"));
        assert_eq!(everything_after("p1", &c).unwrap(), ("Observation".to_string(), "o9".to_string()));
        assert!(everything_after("p2", &c).is_err());
    }
}
