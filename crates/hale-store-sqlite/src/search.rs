//! Type search as SQL over the index tables. Every value is bound; table and column
//! names come from this file and parameter codes are bound too, so nothing from the
//! query string reaches the SQL text. Paging uses a keyset cursor over the sort keys
//! and the resource id, so pages stay correct while data changes.

use hale_search::parse::{Clause, Include, Modifier, ParamType, SearchRequest, SearchValue, SortKey};
use hale_search::values::{DateRange, NumberRange, Prefix};
use hale_store::{Error, EverythingQuery, Result, SearchPage, StoredResource};
use rusqlite::types::Value as Sql;
use rusqlite::{Connection, params_from_iter};

use crate::{VERSION_COLUMNS, backend, row_to_stored};

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
fn date_cond(lo: &str, hi: &str, prefix: Prefix, r: &DateRange, args: &mut Vec<Sql>) -> String {
    let eq = |args: &mut Vec<Sql>| {
        args.push(Sql::Integer(r.lo));
        args.push(Sql::Integer(r.hi));
        format!("({lo} >= ? AND {hi} <= ?)")
    };
    match prefix {
        Prefix::Eq => eq(args),
        Prefix::Ne => format!("NOT {}", eq(args)),
        Prefix::Gt => {
            args.push(Sql::Integer(r.hi));
            format!("{hi} > ?")
        }
        Prefix::Lt => {
            args.push(Sql::Integer(r.lo));
            format!("{lo} < ?")
        }
        Prefix::Ge => {
            args.push(Sql::Integer(r.hi));
            let e = eq(args);
            format!("({hi} > ? OR {e})")
        }
        Prefix::Le => {
            args.push(Sql::Integer(r.lo));
            let e = eq(args);
            format!("({lo} < ? OR {e})")
        }
        Prefix::Sa => {
            args.push(Sql::Integer(r.hi));
            format!("{lo} > ?")
        }
        Prefix::Eb => {
            args.push(Sql::Integer(r.lo));
            format!("{hi} < ?")
        }
        Prefix::Ap => {
            let (alo, ahi) = r.approximate();
            args.push(Sql::Integer(alo));
            args.push(Sql::Integer(ahi));
            format!("({hi} >= ? AND {lo} <= ?)")
        }
    }
}

fn number_cond(col: &str, prefix: Prefix, n: &NumberRange, args: &mut Vec<Sql>) -> String {
    let one = |args: &mut Vec<Sql>, v: f64, op: &str| {
        args.push(Sql::Real(v));
        format!("{col} {op} ?")
    };
    match prefix {
        Prefix::Eq | Prefix::Ne => {
            args.push(Sql::Real(n.lo));
            args.push(Sql::Real(n.hi));
            let c = format!("({col} >= ? AND {col} < ?)");
            if prefix == Prefix::Ne { format!("NOT {c}") } else { c }
        }
        Prefix::Gt | Prefix::Sa => one(args, n.value, ">"),
        Prefix::Lt | Prefix::Eb => one(args, n.value, "<"),
        Prefix::Ge => one(args, n.value, ">="),
        Prefix::Le => one(args, n.value, "<="),
        Prefix::Ap => {
            let gap = (n.value * 0.1).abs();
            args.push(Sql::Real(n.value - gap));
            args.push(Sql::Real(n.value + gap));
            format!("({col} >= ? AND {col} <= ?)")
        }
    }
}

/// The condition one value puts on a row `i` of the parameter's index table.
fn value_cond(c: &Clause, v: &SearchValue, args: &mut Vec<Sql>) -> String {
    match v {
        SearchValue::String(s) => match c.modifier {
            Modifier::Exact => {
                args.push(Sql::Text(s.clone()));
                "i.exact = ?".into()
            }
            Modifier::Contains => {
                args.push(Sql::Text(format!("%{}%", like_escape(s))));
                "i.norm LIKE ? ESCAPE '\\'".into()
            }
            _ => {
                args.push(Sql::Text(s.clone()));
                args.push(Sql::Text(format!("{s}{TEXT_MAX}")));
                "(i.norm >= ? AND i.norm < ?)".into()
            }
        },
        SearchValue::Token { system, code } => {
            let mut parts = Vec::new();
            if let Some(code) = code {
                args.push(Sql::Text(code.clone()));
                parts.push("i.code = ?");
            }
            match system {
                None => {}
                Some(None) => parts.push("i.system IS NULL"),
                Some(Some(s)) => {
                    args.push(Sql::Text(s.clone()));
                    parts.push("i.system = ?");
                }
            }
            format!("({})", parts.join(" AND "))
        }
        SearchValue::TokenText(t) => {
            args.push(Sql::Text(format!("%{}%", like_escape(t))));
            "i.text LIKE ? ESCAPE '\\'".into()
        }
        SearchValue::OfType { system, code, value } => {
            args.push(Sql::Text(system.clone()));
            args.push(Sql::Text(format!("{code}|{value}")));
            "(i.system = ? AND i.code = ?)".into()
        }
        SearchValue::Date { prefix, range } => date_cond("i.lo", "i.hi", *prefix, range, args),
        SearchValue::Number { prefix, range } => number_cond("i.value", *prefix, range, args),
        SearchValue::Quantity { prefix, range, system, code } => {
            let mut s = number_cond("i.value", *prefix, range, args);
            if let Some(sys) = system {
                args.push(Sql::Text(sys.clone()));
                s.push_str(" AND i.system = ?");
            }
            if let Some(code) = code {
                args.push(Sql::Text(code.clone()));
                args.push(Sql::Text(code.clone()));
                s.push_str(" AND (i.code = ? OR i.unit = ?)");
            }
            format!("({s})")
        }
        SearchValue::Reference { target_type, id } => {
            args.push(Sql::Text(id.clone()));
            match target_type {
                Some(t) => {
                    args.push(Sql::Text(t.clone()));
                    "(i.target_id = ? AND i.target_type = ?)".into()
                }
                None => "(i.target_id = ?)".into(),
            }
        }
        SearchValue::Url(u) => match (c.param_type, &c.modifier) {
            (ParamType::Uri, Modifier::Below) => {
                args.push(Sql::Text(u.clone()));
                args.push(Sql::Text(format!("{u}{TEXT_MAX}")));
                "(i.uri >= ? AND i.uri < ?)".into()
            }
            (ParamType::Uri, Modifier::Above) => {
                args.push(Sql::Text(u.clone()));
                "(substr(?, 1, length(i.uri)) = i.uri)".into()
            }
            (ParamType::Uri, Modifier::Contains) => {
                args.push(Sql::Text(format!("%{}%", like_escape(u))));
                "i.uri LIKE ? ESCAPE '\\'".into()
            }
            (ParamType::Uri, _) => {
                args.push(Sql::Text(u.clone()));
                "i.uri = ?".into()
            }
            _ => {
                args.push(Sql::Text(u.clone()));
                "i.url = ?".into()
            }
        },
        SearchValue::Identifier { system, value } => {
            args.push(Sql::Text(value.clone()));
            match system {
                Some(s) => {
                    args.push(Sql::Text(s.clone()));
                    "(i.code = ? AND i.system = ?)".into()
                }
                None => "(i.code = ?)".into(),
            }
        }
        SearchValue::Missing(_) => "1".into(),
        SearchValue::Composite(parts) => {
            let conds: Vec<String> =
                parts.iter().enumerate().map(|(k, v)| composite_part_cond(k + 1, v, args)).collect();
            format!("({})", conds.join(" AND "))
        }
    }
}

/// The condition on component `k` (1-based columns `s{k}`, `c{k}`, `n{k}`, `lo{k}`, `hi{k}`)
/// of a `search_composite` row.
fn composite_part_cond(k: usize, v: &SearchValue, args: &mut Vec<Sql>) -> String {
    let (s, c, n) = (format!("i.s{k}"), format!("i.c{k}"), format!("i.n{k}"));
    match v {
        SearchValue::Token { system, code } => {
            let mut parts = Vec::new();
            if let Some(code) = code {
                args.push(Sql::Text(code.clone()));
                parts.push(format!("{c} = ?"));
            }
            match system {
                None => {}
                Some(None) => parts.push(format!("{s} IS NULL")),
                Some(Some(sys)) => {
                    args.push(Sql::Text(sys.clone()));
                    parts.push(format!("{s} = ?"));
                }
            }
            format!("({})", parts.join(" AND "))
        }
        SearchValue::String(text) => {
            args.push(Sql::Text(text.clone()));
            args.push(Sql::Text(format!("{text}{TEXT_MAX}")));
            format!("({c} >= ? AND {c} < ?)")
        }
        SearchValue::Date { prefix, range } => {
            date_cond(&format!("i.lo{k}"), &format!("i.hi{k}"), *prefix, range, args)
        }
        SearchValue::Number { prefix, range } => number_cond(&n, *prefix, range, args),
        SearchValue::Quantity { prefix, range, system, code } => {
            let mut q = number_cond(&n, *prefix, range, args);
            if let Some(sys) = system {
                args.push(Sql::Text(sys.clone()));
                q.push_str(&format!(" AND {s} = ?"));
            }
            if let Some(code) = code {
                args.push(Sql::Text(code.clone()));
                q.push_str(&format!(" AND {c} = ?"));
            }
            format!("({q})")
        }
        SearchValue::Reference { target_type: Some(t), id } => {
            args.push(Sql::Text(format!("{t}/{id}")));
            format!("{c} = ?")
        }
        SearchValue::Reference { target_type: None, id } => {
            args.push(Sql::Text(id.clone()));
            args.push(Sql::Text(format!("%/{}", like_escape(id))));
            format!("({c} = ? OR {c} LIKE ? ESCAPE '\\')")
        }
        SearchValue::Url(u) => {
            args.push(Sql::Text(u.clone()));
            format!("{c} = ?")
        }
        // the parser makes no other value for a component
        _ => "0".into(),
    }
}

/// How selective a clause is likely to be (lower first): the most selective clause of a
/// search drives it (`res_id IN (...)` over its lookup index), the others are checked
/// per candidate with `EXISTS` over the owner index `(res_type, res_id, param)`.
fn selectivity(c: &Clause) -> u8 {
    if c.chain.is_some() || c.has.is_some() {
        return 4;
    }
    if c.code == "_id" {
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

/// The SQL condition on resource alias `r` (at nesting `depth`; the top level also
/// has `v`, its current version) for a clause of a search on type `ty`. A `correlated`
/// clause is checked for the row at hand instead of listing every match.
fn clause_sql(ty: &str, c: &Clause, args: &mut Vec<Sql>, r: &str, depth: usize, correlated: bool) -> String {
    if let Some(chain) = &c.chain {
        let inner_alias = format!("r{}", depth + 1);
        let mut ors = Vec::new();
        for target in &chain.target_types {
            args.push(Sql::Text(ty.to_string()));
            args.push(Sql::Text(c.code.clone()));
            args.push(Sql::Text(target.clone()));
            args.push(Sql::Text(target.clone()));
            let inner = clause_sql(target, &chain.inner, args, &inner_alias, depth + 1, false);
            ors.push(format!(
                "{r}.res_id IN (SELECT i.res_id FROM search_reference i WHERE i.res_type = ? AND i.param = ? \
                 AND i.target_type = ? AND i.target_id IN (SELECT {inner_alias}.res_id FROM resources {inner_alias} \
                 WHERE {inner_alias}.res_type = ? AND {inner_alias}.deleted = 0 AND {inner}))"
            ));
        }
        return format!("({})", ors.join(" OR "));
    }
    if let Some(has) = &c.has {
        let inner_alias = format!("r{}", depth + 1);
        args.push(Sql::Text(has.source_type.clone()));
        args.push(Sql::Text(has.param.clone()));
        args.push(Sql::Text(ty.to_string()));
        args.push(Sql::Text(has.source_type.clone()));
        let inner = clause_sql(&has.source_type, &has.inner, args, &inner_alias, depth + 1, false);
        return format!(
            "{r}.res_id IN (SELECT i.target_id FROM search_reference i WHERE i.res_type = ? AND i.param = ? \
             AND i.target_type = ? AND i.res_id IN (SELECT {inner_alias}.res_id FROM resources {inner_alias} \
             WHERE {inner_alias}.res_type = ? AND {inner_alias}.deleted = 0 AND {inner}))"
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
            args.push(Sql::Text(id.clone()));
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
        args.push(Sql::Text(param));
        let mut inner = format!(
            "SELECT 1 FROM {table} i INDEXED BY {table}_owner WHERE i.res_type = {r}.res_type AND i.res_id = {r}.res_id AND i.param = ?"
        );
        let negate = match c.modifier {
            Modifier::Missing => matches!(c.values.first(), Some(SearchValue::Missing(true))),
            _ => {
                let ors: Vec<String> = c.values.iter().map(|v| value_cond(c, v, args)).collect();
                inner.push_str(&format!(" AND ({})", ors.join(" OR ")));
                c.modifier == Modifier::Not
            }
        };
        return if negate { format!("NOT EXISTS ({inner})") } else { format!("EXISTS ({inner})") };
    }
    if c.modifier == Modifier::Missing {
        args.push(Sql::Text(ty.to_string()));
        args.push(Sql::Text(param));
        let inner = format!("SELECT i.res_id FROM {table} i WHERE i.res_type = ? AND i.param = ?");
        let missing = matches!(c.values.first(), Some(SearchValue::Missing(true)));
        return if missing { format!("{r}.res_id NOT IN ({inner})") } else { format!("{r}.res_id IN ({inner})") };
    }
    args.push(Sql::Text(ty.to_string()));
    args.push(Sql::Text(param));
    let ors: Vec<String> = c.values.iter().map(|v| value_cond(c, v, args)).collect();
    let inner =
        format!("SELECT i.res_id FROM {table} i WHERE i.res_type = ? AND i.param = ? AND ({})", ors.join(" OR "));
    if c.modifier == Modifier::Not {
        format!("{r}.res_id NOT IN ({inner})")
    } else {
        format!("{r}.res_id IN ({inner})")
    }
}

/// The SQL expression of a sort key (never NULL: missing values sort last).
fn sort_expr(key: &SortKey, args: &mut Vec<Sql>) -> (String, bool) {
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
            args.push(Sql::Text(code.to_string()));
            (
                format!(
                    "(SELECT {agg}(s.{col}) FROM {} s WHERE s.res_type = r.res_type AND s.res_id = r.res_id AND s.param = ?)",
                    table(t)
                )
                .replace("s.COALESCE(target_id, url)", "COALESCE(s.target_id, s.url)"),
                numeric,
            )
        }
    };
    let sentinel = match (numeric, key.descending) {
        (true, false) => "9000000000000000000",
        (true, true) => "-9000000000000000000",
        (false, false) => "char(1114111)",
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
fn encode_cursor(fp: &str, keys: &[Sql], id: &str, before: bool) -> String {
    let vals: Vec<serde_json::Value> = keys
        .iter()
        .map(|k| match k {
            Sql::Integer(i) => serde_json::json!(i),
            Sql::Real(f) => serde_json::json!(f.to_string()),
            Sql::Text(t) => serde_json::json!({"t": t}),
            _ => serde_json::Value::Null,
        })
        .collect();
    let text = serde_json::json!([fp, vals, id, if before { "b" } else { "a" }]).to_string();
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_cursor(fp: &str, cursor: &str) -> Result<(Vec<Sql>, String, bool)> {
    let bad = || Error::BadCursor("The paging cursor is not valid for this search".into());
    if !cursor.len().is_multiple_of(2) || cursor.len() > 8192 {
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
                Ok(Sql::Integer(i))
            } else if let Some(s) = k.as_str() {
                s.parse::<f64>().map(Sql::Real).map_err(|_| bad())
            } else if let Some(t) = k.get("t").and_then(|t| t.as_str()) {
                Ok(Sql::Text(t.to_string()))
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

pub(crate) fn search(c: &Connection, req: &SearchRequest, page_size: usize, want_total: bool) -> Result<SearchPage> {
    let ty = req.resource_type.as_str();
    let mut where_args: Vec<Sql> = vec![Sql::Text(ty.to_string())];
    let mut conds = vec!["r.res_type = ?".to_string(), "r.deleted = 0".to_string()];
    let driver = match &req.compartment {
        Some(_) => None,
        None => (0..req.clauses.len()).min_by_key(|&k| selectivity(&req.clauses[k])),
    };
    for (k, clause) in req.clauses.iter().enumerate() {
        let correlated = Some(k) != driver && clause.chain.is_none() && clause.has.is_none();
        conds.push(clause_sql(ty, clause, &mut where_args, "r", 0, correlated));
    }
    if let Some(comp) = &req.compartment {
        if comp.owner_type == ty {
            conds.push("r.res_id = ?".into());
            where_args.push(Sql::Text(comp.owner_id.clone()));
        } else {
            where_args.push(Sql::Text(ty.to_string()));
            where_args.extend(comp.params.iter().map(|p| Sql::Text(p.clone())));
            where_args.push(Sql::Text(comp.owner_type.clone()));
            where_args.push(Sql::Text(comp.owner_id.clone()));
            conds.push(format!(
                "r.res_id IN (SELECT i.res_id FROM search_reference i WHERE i.res_type = ? AND i.param IN ({}) \
                 AND i.target_type = ? AND i.target_id = ?)",
                vec!["?"; comp.params.len().max(1)].join(", ")
            ));
            if comp.params.is_empty() {
                where_args.insert(where_args.len() - 2, Sql::Null);
            }
        }
    }
    let from = "FROM resources r JOIN resource_versions v ON v.seq = r.seq";
    let total = if want_total {
        // the version row (and its body) is needed only to test _lastUpdated
        let count_from = if conds.iter().any(|c| c.contains("v.last_updated")) { from } else { "FROM resources r" };
        let sql = format!("SELECT COUNT(*) {count_from} WHERE {}", conds.join(" AND "));
        Some(c.query_row(&sql, params_from_iter(where_args.iter()), |r| r.get::<_, i64>(0)).map_err(backend)? as u64)
    } else {
        None
    };
    if page_size == 0 {
        return Ok(SearchPage { entries: Vec::new(), included: Vec::new(), next: None, previous: None, total });
    }
    // sort keys, then the id as the tie-breaker
    let mut keys: Vec<(String, bool, Vec<Sql>)> = Vec::new();
    for k in &req.sort {
        let mut a = Vec::new();
        let (expr, _) = sort_expr(k, &mut a);
        keys.push((expr, k.descending, a));
    }
    let fp = fingerprint(req);
    let mut select_args: Vec<Sql> = Vec::new();
    // the page is chosen over keys alone; bodies are read for its rows only
    let mut select = "SELECT r.seq, r.res_id".to_string();
    for (i, (expr, _, a)) in keys.iter().enumerate() {
        select.push_str(&format!(", {expr} AS k{i}"));
        select_args.extend(a.iter().cloned());
    }
    let mut all_args = select_args;
    all_args.extend(where_args);
    let mut backward = false;
    if let Some(cursor) = &req.cursor {
        let (values, last_id, before) = decode_cursor(&fp, cursor)?;
        backward = before;
        if values.len() != keys.len() {
            return Err(Error::BadCursor("The paging cursor is not valid for this search".into()));
        }
        let mut ors = Vec::new();
        for j in 0..=keys.len() {
            let mut ands = Vec::new();
            for (i, (expr, _, a)) in keys.iter().enumerate().take(j) {
                ands.push(format!("{expr} = ?"));
                all_args.extend(a.iter().cloned());
                all_args.push(values[i].clone());
            }
            if j < keys.len() {
                let (expr, desc, a) = &keys[j];
                ands.push(format!("{expr} {} ?", if *desc != backward { "<" } else { ">" }));
                all_args.extend(a.iter().cloned());
                all_args.push(values[j].clone());
            } else {
                ands.push(format!("r.res_id {} ?", if backward { "<" } else { ">" }));
                all_args.push(Sql::Text(last_id.clone()));
            }
            ors.push(format!("({})", ands.join(" AND ")));
        }
        conds.push(format!("({})", ors.join(" OR ")));
    }
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
    let mut stmt = c.prepare_cached(&sql).map_err(backend)?;
    let nkeys = keys.len();
    let rows = stmt
        .query_map(params_from_iter(all_args.iter()), |row| {
            let seq: i64 = row.get(0)?;
            let id: String = row.get(1)?;
            let mut ks = Vec::with_capacity(nkeys);
            for i in 0..nkeys {
                ks.push(row.get::<_, Sql>(2 + i)?);
            }
            Ok((seq, id, ks))
        })
        .map_err(backend)?;
    let mut seqs = Vec::new();
    let mut positions: Vec<(Vec<Sql>, String)> = Vec::new();
    let mut more = false;
    for r in rows {
        let (seq, id, ks) = r.map_err(backend)?;
        if seqs.len() == page_size {
            more = true;
            break;
        }
        positions.push((ks, id));
        seqs.push(seq);
    }
    if backward {
        seqs.reverse();
        positions.reverse();
    }
    let entries = versions_by_seq(c, &seqs)?;
    // rows exist after the page when the query found more (forward) or came from a later
    // page (backward), and before it when it came from an earlier page or found more
    let (after, before) = if backward { (true, more) } else { (more, req.cursor.is_some()) };
    let next = match positions.last() {
        Some((ks, id)) if after => Some(encode_cursor(&fp, ks, id, false)),
        _ => None,
    };
    let previous = match positions.first() {
        Some((ks, id)) if before => Some(encode_cursor(&fp, ks, id, true)),
        _ => None,
    };
    let included = includes(c, req, &entries)?;
    Ok(SearchPage { entries, included, next, previous, total })
}

/// The versions with these sequence numbers, in the order given.
pub(crate) fn versions_by_seq(c: &Connection, seqs: &[i64]) -> Result<Vec<StoredResource>> {
    let mut found: std::collections::HashMap<i64, StoredResource> =
        std::collections::HashMap::with_capacity(seqs.len());
    for chunk in seqs.chunks(500) {
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM resource_versions v WHERE v.seq IN ({})",
            vec!["?"; chunk.len()].join(", ")
        );
        let mut stmt = c.prepare_cached(&sql).map_err(backend)?;
        let rows = stmt.query_map(params_from_iter(chunk.iter()), row_to_stored).map_err(backend)?;
        for r in rows {
            let (seq, stored) = r.map_err(backend)?;
            found.insert(seq, stored);
        }
    }
    Ok(seqs.iter().filter_map(|s| found.remove(s)).collect())
}

/// Most resources one page may add through `_include` and `_revinclude`.
const MAX_INCLUDED: usize = 5000;

/// `_include` and `_revinclude`, with `:iterate` followed up to
/// [`hale_search::parse::MAX_INCLUDE_ITERATIONS`] rounds.
fn includes(c: &Connection, req: &SearchRequest, matches: &[StoredResource]) -> Result<Vec<StoredResource>> {
    use std::collections::HashSet;
    if req.includes.is_empty() && req.revincludes.is_empty() {
        return Ok(Vec::new());
    }
    let mut seen: HashSet<(String, String)> =
        matches.iter().map(|m| (m.resource_type.to_string(), m.id.to_string())).collect();
    let mut out: Vec<StoredResource> = Vec::new();
    let mut frontier: Vec<StoredResource> = matches.to_vec();
    for round in 0..=hale_search::parse::MAX_INCLUDE_ITERATIONS {
        if frontier.is_empty() || out.len() >= MAX_INCLUDED {
            break;
        }
        let mut found = Vec::new();
        for (inc, rev) in req.includes.iter().map(|i| (i, false)).chain(req.revincludes.iter().map(|i| (i, true))) {
            if round > 0 && !inc.iterate {
                continue;
            }
            for chunk in frontier.chunks(500) {
                found.extend(include_one(c, inc, rev, chunk)?);
            }
        }
        frontier = Vec::new();
        for f in found {
            if seen.insert((f.resource_type.to_string(), f.id.to_string())) && out.len() < MAX_INCLUDED {
                frontier.push(f.clone());
                out.push(f);
            }
        }
    }
    Ok(out)
}

fn include_one(c: &Connection, inc: &Include, rev: bool, sources: &[StoredResource]) -> Result<Vec<StoredResource>> {
    let mut out = Vec::new();
    let mut by_type: std::collections::BTreeMap<&str, Vec<&str>> = std::collections::BTreeMap::new();
    for s in sources {
        by_type.entry(s.resource_type.as_str()).or_default().push(s.id.as_str());
    }
    for (ty, ids) in by_type {
        let mut args: Vec<Sql> = Vec::new();
        let marks = vec!["?"; ids.len()].join(", ");
        let sql = if !rev {
            if inc.source_type != ty {
                continue;
            }
            args.push(Sql::Text(ty.to_string()));
            args.extend(ids.iter().map(|i| Sql::Text(i.to_string())));
            let mut sql = format!(
                "SELECT {VERSION_COLUMNS} FROM search_reference i \
                 JOIN resources r ON r.res_type = i.target_type AND r.res_id = i.target_id \
                 JOIN resource_versions v ON v.seq = r.seq \
                 WHERE i.res_type = ? AND i.res_id IN ({marks}) AND r.deleted = 0"
            );
            if let Some(p) = &inc.param {
                sql.push_str(" AND i.param = ?");
                args.push(Sql::Text(p.clone()));
            }
            if let Some(t) = &inc.target_type {
                sql.push_str(" AND i.target_type = ?");
                args.push(Sql::Text(t.clone()));
            }
            sql
        } else {
            if inc.target_type.as_deref().is_some_and(|t| t != ty) {
                continue;
            }
            args.push(Sql::Text(inc.source_type.clone()));
            args.push(Sql::Text(ty.to_string()));
            args.extend(ids.iter().map(|i| Sql::Text(i.to_string())));
            let mut sql = format!(
                "SELECT {VERSION_COLUMNS} FROM search_reference i \
                 JOIN resources r ON r.res_type = i.res_type AND r.res_id = i.res_id \
                 JOIN resource_versions v ON v.seq = r.seq \
                 WHERE i.res_type = ? AND i.target_type = ? AND i.target_id IN ({marks}) AND r.deleted = 0"
            );
            if let Some(p) = &inc.param {
                sql.push_str(" AND i.param = ?");
                args.push(Sql::Text(p.clone()));
            }
            sql
        };
        let mut stmt = c.prepare(&sql).map_err(backend)?;
        let rows = stmt.query_map(params_from_iter(args.iter()), row_to_stored).map_err(backend)?;
        for r in rows {
            out.push(r.map_err(backend)?.1);
        }
    }
    Ok(out)
}

/// Types that `$everything` adds when a compartment resource refers to them.
const EVERYTHING_REFERENCED: &[&str] = &[
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

pub(crate) fn everything(c: &Connection, patient: &str, q: &EverythingQuery) -> Result<SearchPage> {
    use std::collections::{BTreeMap, BTreeSet, HashSet};
    let defs = hale_fhir::Definitions::get();
    let pairs: HashSet<(&str, &str)> = defs
        .patient_compartment()
        .iter()
        .flat_map(|(ty, params)| params.iter().map(move |p| (ty.as_str(), p.as_str())))
        .collect();
    // 1. the compartment: resources whose compartment parameters point at the patient
    let mut members: BTreeSet<(String, String)> = BTreeSet::new();
    members.insert(("Patient".to_string(), patient.to_string()));
    {
        let mut stmt = c
            .prepare_cached(
                "SELECT i.res_type, i.res_id, i.param FROM search_reference i INDEXED BY search_reference_target \
                 WHERE i.target_type = 'Patient' AND i.target_id = ?1",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map([patient], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
            .map_err(backend)?;
        for r in rows {
            let (ty, id, param) = r.map_err(backend)?;
            if pairs.contains(&(ty.as_str(), param.as_str())) {
                members.insert((ty, id));
            }
        }
    }
    // 2. what they reference among practitioners, organizations, medications...
    let mut by_type: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (ty, id) in &members {
        by_type.entry(ty.as_str()).or_default().push(id.as_str());
    }
    let mut referenced: BTreeSet<(String, String)> = BTreeSet::new();
    let kinds = vec!["?"; EVERYTHING_REFERENCED.len()].join(", ");
    for (ty, ids) in &by_type {
        for chunk in ids.chunks(500) {
            let sql = format!(
                "SELECT DISTINCT j.target_type, j.target_id FROM search_reference j INDEXED BY search_reference_owner \
                 WHERE j.res_type = ? AND j.res_id IN ({}) AND j.target_type IN ({kinds}) AND j.target_id IS NOT NULL",
                vec!["?"; chunk.len()].join(", ")
            );
            let mut args: Vec<Sql> = vec![Sql::Text(ty.to_string())];
            args.extend(chunk.iter().map(|i| Sql::Text(i.to_string())));
            args.extend(EVERYTHING_REFERENCED.iter().map(|t| Sql::Text(t.to_string())));
            let mut stmt = c.prepare_cached(&sql).map_err(backend)?;
            let rows = stmt
                .query_map(params_from_iter(args.iter()), |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .map_err(backend)?;
            for r in rows {
                referenced.insert(r.map_err(backend)?);
            }
        }
    }
    members.extend(referenced);
    // 3. the page: in (type, id) order after the cursor, of the types asked for
    let fp = format!("everything:{patient}");
    let after: Option<(String, String)> = match &q.cursor {
        None => None,
        Some(cursor) => {
            let (keys, id, before) = decode_cursor(&fp, cursor)?;
            let (Some(Sql::Text(ty)), false) = (keys.first(), before) else {
                return Err(Error::BadCursor("The paging cursor is not valid for this request".into()));
            };
            Some((ty.clone(), id))
        }
    };
    let wanted = |ty: &str| q.types.as_ref().is_none_or(|t| t.iter().any(|x| x == ty));
    let mut keys: Vec<(i64, String, String)> = Vec::new();
    let mut more = false;
    let candidates: Vec<&(String, String)> =
        members.iter().filter(|m| wanted(&m.0) && after.as_ref().is_none_or(|a| *m > a)).collect();
    'chunks: for chunk in candidates.chunks(200) {
        // the current, non-deleted version of each, in the same order
        let mut found: std::collections::HashMap<(String, String), (i64, i64)> = std::collections::HashMap::new();
        let mut chunk_types: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (ty, id) in chunk.iter().map(|m| (m.0.as_str(), m.1.as_str())) {
            chunk_types.entry(ty).or_default().push(id);
        }
        for (ty, ids) in chunk_types {
            let sql = format!(
                "SELECT r.res_id, r.seq, v.last_updated FROM resources r JOIN resource_versions v ON v.seq = r.seq \
                 WHERE r.res_type = ? AND r.res_id IN ({}) AND r.deleted = 0",
                vec!["?"; ids.len()].join(", ")
            );
            let mut args: Vec<Sql> = vec![Sql::Text(ty.to_string())];
            args.extend(ids.iter().map(|i| Sql::Text(i.to_string())));
            let mut stmt = c.prepare_cached(&sql).map_err(backend)?;
            let rows = stmt
                .query_map(params_from_iter(args.iter()), |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                })
                .map_err(backend)?;
            for r in rows {
                let (id, seq, at) = r.map_err(backend)?;
                found.insert((ty.to_string(), id), (seq, at));
            }
        }
        for m in chunk {
            let Some((seq, at)) = found.get(*m) else { continue };
            if q.since.is_some_and(|s| *at < s.millis()) {
                continue;
            }
            if keys.len() == q.count {
                more = true;
                break 'chunks;
            }
            keys.push((*seq, m.0.clone(), m.1.clone()));
        }
    }
    let seqs: Vec<i64> = keys.iter().map(|k| k.0).collect();
    let entries = versions_by_seq(c, &seqs)?;
    let next = match (more, keys.last()) {
        (true, Some((_, ty, id))) => Some(encode_cursor(&fp, &[Sql::Text(ty.clone())], id, false)),
        _ => None,
    };
    Ok(SearchPage { entries, included: Vec::new(), next, previous: None, total: None })
}
