//! The function library.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use regex::Regex;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, MathematicalOps};
use serde_json::Value as Json;

use crate::eval::{Coll, Evaluator, Scope, compare, err_multi, single, single_sys, to_bool3};
use crate::model;
use crate::parser::{Node as PNode, TypeSpec};
use crate::set::Distinct;
use crate::temporal::{Precision, Temporal, TemporalKind};
use crate::units;
use crate::value::Value;
use crate::{Error, eval};

/// (min, max) arguments of each function.
pub(crate) fn arity(name: &str) -> Option<(usize, usize)> {
    Some(match name {
        "empty" | "allTrue" | "anyTrue" | "allFalse" | "anyFalse" | "count" | "distinct" | "isDistinct" | "single"
        | "first" | "last" | "tail" | "not" | "toBoolean" | "convertsToBoolean" | "toInteger" | "convertsToInteger"
        | "toDecimal" | "convertsToDecimal" | "toString" | "convertsToString" | "toDate" | "convertsToDate"
        | "toDateTime" | "convertsToDateTime" | "toTime" | "convertsToTime" | "upper" | "lower" | "length"
        | "toChars" | "trim" | "abs" | "ceiling" | "exp" | "floor" | "ln" | "sqrt" | "truncate" | "children"
        | "descendants" | "now" | "today" | "timeOfDay" | "type" | "hasValue" | "getValue" | "resolve"
        | "precision" | "htmlChecks" | "hasTemplateIdOf" => (0, 0),
        "exists" | "round" | "join" | "toQuantity" | "convertsToQuantity" | "lowBoundary" | "highBoundary" => (0, 1),
        "where" | "select" | "repeat" | "all" | "subsetOf" | "supersetOf" | "skip" | "take" | "intersect"
        | "exclude" | "union" | "combine" | "ofType" | "is" | "as" | "indexOf" | "startsWith" | "endsWith"
        | "contains" | "matches" | "matchesFull" | "split" | "log" | "power" | "extension" | "conformsTo"
        | "memberOf" | "encode" | "decode" | "escape" | "unescape" | "comparable" => (1, 1),
        "substring" | "aggregate" | "trace" => (1, 2),
        "replace" | "replaceMatches" => (2, 2),
        "iif" => (2, 3),
        "sort" => (0, 8),
        _ => return None,
    })
}

fn boolean<'a>(b: bool) -> Coll<'a> {
    vec![Value::Boolean(b)]
}

fn opt<'a>(v: Option<Value<'a>>) -> Coll<'a> {
    v.into_iter().collect()
}

/// The type named by a function argument (`ofType(FHIR.Patient)`).
fn type_arg(arg: &PNode, pos: usize) -> Result<TypeSpec, Error> {
    match arg {
        PNode::Ident(name, _) => Ok(TypeSpec { namespace: None, name: name.clone() }),
        PNode::Member(base, name, _) => match base.as_ref() {
            PNode::Ident(ns, _) => Ok(TypeSpec { namespace: Some(ns.clone()), name: name.clone() }),
            _ => Err(Error::semantic(pos, "expected a type name")),
        },
        _ => Err(Error::semantic(pos, "expected a type name")),
    }
}

fn string_of(v: Option<Value<'_>>, pos: usize, fname: &str) -> Result<Option<String>, Error> {
    match v {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(Error::execution(pos, format!("{fname}() needs a string, found {}", other.type_name().1))),
    }
}

/// Compiles (or takes from a process-wide cache) a regular expression, in the
/// single-line mode FHIRPath uses.
fn regex(pat: &str, pos: usize) -> Result<Regex, Error> {
    static CACHE: OnceLock<Mutex<HashMap<String, Regex>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(r) = cache.lock().ok().and_then(|c| c.get(pat).cloned()) {
        return Ok(r);
    }
    let r = regex::RegexBuilder::new(pat)
        .dot_matches_new_line(true)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| Error::execution(pos, format!("bad regular expression: {e}")))?;
    if let Ok(mut c) = cache.lock() {
        if c.len() >= 512 {
            c.clear();
        }
        c.insert(pat.to_string(), r.clone());
    }
    Ok(r)
}

pub(crate) fn call<'a>(
    ev: &mut Evaluator<'a, '_>,
    name: &str,
    input: Coll<'a>,
    args: &[PNode],
    sc: Scope<'_, 'a>,
    pos: usize,
    has_target: bool,
) -> Result<Coll<'a>, Error> {
    let Some((min, max)) = arity(name) else {
        return Err(Error::semantic(pos, format!("unknown function {name}()")));
    };
    if args.len() < min || args.len() > max {
        return Err(Error::semantic(pos, format!("wrong number of arguments for {name}()")));
    }
    ev.tick(input.len(), pos)?;
    if matches!(
        name,
        "exists"
            | "all"
            | "where"
            | "select"
            | "repeat"
            | "ofType"
            | "is"
            | "as"
            | "iif"
            | "trace"
            | "aggregate"
            | "sort"
    ) {
        return with_expressions(ev, name, input, args, sc, pos, has_target);
    }
    // the other functions take values, evaluated in the enclosing scope
    let mut vals = Vec::with_capacity(args.len());
    for a in args {
        vals.push(ev.eval(a, sc)?);
    }
    with_values(ev, name, input, &vals, pos)
}

/// Functions whose arguments are expressions evaluated per item (or type names).
fn with_expressions<'a>(
    ev: &mut Evaluator<'a, '_>,
    name: &str,
    input: Coll<'a>,
    args: &[PNode],
    sc: Scope<'_, 'a>,
    pos: usize,
    has_target: bool,
) -> Result<Coll<'a>, Error> {
    macro_rules! arg {
        ($i:expr) => {
            ev.eval(&args[$i], sc)?
        };
    }
    macro_rules! lambda {
        ($k:expr, $item:expr, $i:expr) => {
            ev.eval(&args[$k], Scope { focus: std::slice::from_ref($item), index: Some($i as i64), total: sc.total })?
        };
    }

    Ok(match name {
        "exists" => {
            if args.is_empty() {
                boolean(!input.is_empty())
            } else {
                let mut found = false;
                for (i, item) in input.iter().enumerate() {
                    if to_bool3(&lambda!(0, item, i), pos)? == Some(true) {
                        found = true;
                        break;
                    }
                }
                boolean(found)
            }
        }
        "all" => {
            let mut all = true;
            for (i, item) in input.iter().enumerate() {
                if to_bool3(&lambda!(0, item, i), pos)? != Some(true) {
                    all = false;
                    break;
                }
            }
            boolean(all)
        }
        "where" => {
            let mut out = Vec::new();
            for (i, item) in input.iter().enumerate() {
                if to_bool3(&lambda!(0, item, i), pos)? == Some(true) {
                    out.push(item.clone());
                }
            }
            out
        }
        "select" => {
            let mut out = Vec::new();
            for (i, item) in input.iter().enumerate() {
                out.extend(lambda!(0, item, i));
            }
            out
        }
        "repeat" => {
            // a node is new unless it is the same node of the input; System values by `=`
            let mut nodes = std::collections::HashSet::new();
            let mut values = Distinct::new(ev.remaining());
            let mut settled = 0;
            let mut out: Coll<'a> = Vec::new();
            let mut frontier = input;
            let mut rounds = 0;
            while !frontier.is_empty() {
                rounds += 1;
                if rounds > 10_000 {
                    return Err(Error::execution(pos, "repeat() does not end"));
                }
                let mut next = Vec::new();
                for (i, item) in frontier.iter().enumerate() {
                    for v in lambda!(0, item, i) {
                        let new = match &v {
                            Value::Node(n) => nodes.insert((address(n.json), address(n.ext))),
                            other => values.insert(other.clone()),
                        };
                        if new {
                            next.push(v);
                        }
                    }
                }
                if values.exceeded {
                    return Err(Error::execution(pos, "evaluation too large"));
                }
                ev.tick(values.comparisons - settled + next.len(), pos)?;
                settled = values.comparisons;
                out.extend(next.iter().cloned());
                frontier = next;
            }
            out
        }
        "ofType" => {
            let ts = type_arg(&args[0], pos)?;
            match eval::type_ref(&ts, pos)? {
                Some(t) => input.into_iter().filter(|v| model::value_is(v, t, true)).collect(),
                None => vec![],
            }
        }
        "as" if ev.ctx.as_on_collections => {
            let ts = type_arg(&args[0], pos)?;
            match eval::type_ref(&ts, pos)? {
                Some(t) => input.into_iter().filter(|v| model::value_is(v, t, true)).collect(),
                None => vec![],
            }
        }
        "is" | "as" => {
            let ts = type_arg(&args[0], pos)?;
            let t = eval::type_ref(&ts, pos)?;
            match single(&input, pos, name)? {
                None => vec![],
                Some(v) => match (name, t) {
                    ("is", Some(t)) => boolean(model::value_is(v, t, false)),
                    ("is", None) => boolean(false),
                    (_, Some(t)) if model::value_is(v, t, true) => vec![v.clone()],
                    _ => vec![],
                },
            }
        }
        "iif" => {
            if input.len() > 1 {
                return Err(err_multi(pos, "iif()"));
            }
            let focus: &[Value<'a>] = if has_target { &input } else { sc.focus };
            let isc = Scope { focus, index: sc.index, total: sc.total };
            let c = ev.eval(&args[0], isc)?;
            let cond = match single(&c, pos, "iif() criterion")? {
                None => false,
                Some(v) => match v.to_system() {
                    Some(Value::Boolean(b)) => b,
                    _ => return Err(Error::semantic(pos, "iif() criterion must be a boolean")),
                },
            };
            if cond {
                ev.eval(&args[1], isc)?
            } else if args.len() > 2 {
                ev.eval(&args[2], isc)?
            } else {
                vec![]
            }
        }
        "trace" => {
            if let Some(trace) = ev.ctx.trace {
                let label = arg!(0).first().and_then(Value::as_string).unwrap_or_default();
                if args.len() > 1 {
                    let mut projected = Vec::new();
                    for (i, item) in input.iter().enumerate() {
                        projected.extend(lambda!(1, item, i));
                    }
                    trace(&label, &projected);
                } else {
                    trace(&label, &input);
                }
            }
            input
        }
        "aggregate" => {
            let mut total = if args.len() > 1 { arg!(1) } else { vec![] };
            for (i, item) in input.iter().enumerate() {
                total = ev.eval(
                    &args[0],
                    Scope { focus: std::slice::from_ref(item), index: Some(i as i64), total: Some(&total) },
                )?;
            }
            total
        }
        "sort" => sort(ev, input, args, sc, pos)?,
        _ => return Err(Error::semantic(pos, format!("unknown function {name}()"))),
    })
}

/// Functions of values.
fn with_values<'a>(
    ev: &mut Evaluator<'a, '_>,
    name: &str,
    input: Coll<'a>,
    vals: &[Coll<'a>],
    pos: usize,
) -> Result<Coll<'a>, Error> {
    macro_rules! arg {
        ($i:expr) => {
            vals[$i].clone()
        };
    }
    macro_rules! input_sys {
        () => {
            single_sys(&input, pos, name)?
        };
    }
    macro_rules! input_str {
        () => {
            match string_of(single_sys(&input, pos, name)?, pos, name)? {
                Some(s) => s,
                None => return Ok(vec![]),
            }
        };
    }
    macro_rules! arg_str {
        ($i:expr) => {{
            let a = arg!($i);
            match string_of(single_sys(&a, pos, name)?, pos, name)? {
                Some(s) => s,
                None => return Ok(vec![]),
            }
        }};
    }
    macro_rules! arg_int {
        ($i:expr) => {{
            let a = arg!($i);
            match single_sys(&a, pos, name)? {
                Some(Value::Integer(i)) => i,
                None => return Ok(vec![]),
                Some(_) => return Err(Error::execution(pos, format!("{name}() needs an integer argument"))),
            }
        }};
    }

    Ok(match name {
        "empty" => boolean(input.is_empty()),
        "allTrue" | "anyTrue" | "allFalse" | "anyFalse" => {
            let mut bools = Vec::with_capacity(input.len());
            for v in &input {
                match v.to_system() {
                    Some(Value::Boolean(b)) => bools.push(b),
                    _ => return Err(Error::execution(pos, format!("{name}() needs booleans"))),
                }
            }
            boolean(match name {
                "allTrue" => bools.iter().all(|b| *b),
                "anyTrue" => bools.iter().any(|b| *b),
                "allFalse" => bools.iter().all(|b| !*b),
                _ => bools.iter().any(|b| !*b),
            })
        }
        "subsetOf" | "supersetOf" => {
            let other = arg!(0);
            let (sub, sup) = if name == "subsetOf" { (input, other) } else { (other, input) };
            let n = sub.len() + sup.len();
            let mut set = Distinct::from_items(sup, ev.remaining());
            let all = sub.iter().all(|x| set.contains(x));
            ev.settle(&set, n, pos)?;
            boolean(all)
        }
        "count" => vec![Value::Integer(input.len() as i64)],
        "distinct" | "isDistinct" => {
            let n = input.len();
            let set = Distinct::from_items(input, ev.remaining());
            ev.settle(&set, n, pos)?;
            if name == "distinct" { set.into_vec() } else { boolean(set.len() == n) }
        }
        "single" => match single(&input, pos, name)? {
            Some(v) => vec![v.clone()],
            None => vec![],
        },
        "first" => input.into_iter().take(1).collect(),
        "last" => input.last().cloned().into_iter().collect(),
        "tail" => input.into_iter().skip(1).collect(),
        "skip" => {
            let n = arg_int!(0);
            input.into_iter().skip(usize::try_from(n.max(0)).unwrap_or(usize::MAX)).collect()
        }
        "take" => {
            let n = arg_int!(0);
            input.into_iter().take(usize::try_from(n.max(0)).unwrap_or(usize::MAX)).collect()
        }
        "intersect" => {
            let other = arg!(0);
            let n = input.len() + other.len();
            let mut theirs = Distinct::from_items(other, ev.remaining());
            let mut out = Distinct::new(ev.remaining());
            for v in input {
                if theirs.contains(&v) {
                    out.insert(v);
                }
            }
            ev.settle(&theirs, n, pos)?;
            ev.settle(&out, 0, pos)?;
            out.into_vec()
        }
        "exclude" => {
            let other = arg!(0);
            let n = input.len() + other.len();
            let mut theirs = Distinct::from_items(other, ev.remaining());
            let out = input.into_iter().filter(|v| !theirs.contains(v)).collect();
            ev.settle(&theirs, n, pos)?;
            out
        }
        "union" => {
            let other = arg!(0);
            let n = input.len() + other.len();
            let set = Distinct::from_items(input.into_iter().chain(other), ev.remaining());
            ev.settle(&set, n, pos)?;
            set.into_vec()
        }
        "combine" => {
            let mut out = input;
            out.extend(arg!(0));
            out
        }
        "not" => match to_bool3(&input, pos)? {
            None => vec![],
            Some(b) => boolean(!b),
        },
        "now" => {
            let now = ev.now();
            vec![Value::DateTime(datetime_from_chrono(&now))]
        }
        "today" => {
            let mut t = datetime_from_chrono(&ev.now());
            t.kind = TemporalKind::Date;
            t.precision = Precision::Day;
            t.tz = None;
            vec![Value::Date(t)]
        }
        "timeOfDay" => {
            let mut t = datetime_from_chrono(&ev.now());
            t.kind = TemporalKind::Time;
            t.tz = None;
            vec![Value::Time(t)]
        }
        "type" => input
            .iter()
            .map(|v| {
                let (namespace, name) = v.type_name();
                Value::Type { namespace, name }
            })
            .collect(),
        "children" => {
            let mut out = Vec::new();
            for v in &input {
                if let Value::Node(n) = v {
                    model::children(n, &mut out);
                }
            }
            out
        }
        "descendants" => {
            let mut out = Vec::new();
            let mut frontier = input;
            let mut depth = 0;
            while !frontier.is_empty() && depth < 200 {
                depth += 1;
                let mut next = Vec::new();
                for v in &frontier {
                    if let Value::Node(n) = v {
                        model::children(n, &mut next);
                    }
                }
                ev.tick(next.len(), pos)?;
                out.extend(next.iter().cloned());
                frontier = next;
            }
            out
        }
        "toBoolean" => opt(input_sys!().and_then(|v| to_boolean(&v)).map(Value::Boolean)),
        "convertsToBoolean" => opt(input_sys!().map(|v| Value::Boolean(to_boolean(&v).is_some()))),
        "toInteger" => opt(input_sys!().and_then(|v| to_integer(&v)).map(Value::Integer)),
        "convertsToInteger" => opt(input_sys!().map(|v| Value::Boolean(to_integer(&v).is_some()))),
        "toDecimal" => opt(input_sys!().and_then(|v| to_decimal(&v)).map(Value::Decimal)),
        "convertsToDecimal" => opt(input_sys!().map(|v| Value::Boolean(to_decimal(&v).is_some()))),
        "toString" => opt(input_sys!().and_then(|v| to_string(&v)).map(Value::String)),
        "convertsToString" => opt(input_sys!().map(|v| Value::Boolean(to_string(&v).is_some()))),
        "toDate" => opt(input_sys!().and_then(|v| to_temporal(&v, TemporalKind::Date)).map(Value::temporal)),
        "convertsToDate" => opt(input_sys!().map(|v| Value::Boolean(to_temporal(&v, TemporalKind::Date).is_some()))),
        "toDateTime" => opt(input_sys!().and_then(|v| to_temporal(&v, TemporalKind::DateTime)).map(Value::temporal)),
        "convertsToDateTime" => {
            opt(input_sys!().map(|v| Value::Boolean(to_temporal(&v, TemporalKind::DateTime).is_some())))
        }
        "toTime" => opt(input_sys!().and_then(|v| to_temporal(&v, TemporalKind::Time)).map(Value::temporal)),
        "convertsToTime" => opt(input_sys!().map(|v| Value::Boolean(to_temporal(&v, TemporalKind::Time).is_some()))),
        "toQuantity" | "convertsToQuantity" => {
            let Some(v) = input_sys!() else { return Ok(vec![]) };
            let mut q = to_quantity(&v);
            if !vals.is_empty() {
                let unit = arg_str!(0);
                q = q.and_then(|(value, u)| {
                    if u == unit {
                        return Some((value, u));
                    }
                    units::convert(value, &u, &unit).map(|v| (v, unit))
                });
            }
            if name == "toQuantity" {
                opt(q.map(|(value, unit)| Value::Quantity { value, unit }))
            } else {
                boolean(q.is_some())
            }
        }
        "indexOf" => {
            let s = input_str!();
            let sub = arg_str!(0);
            vec![Value::Integer(match s.find(&sub) {
                Some(b) => s[..b].chars().count() as i64,
                None => -1,
            })]
        }
        "substring" => {
            let s = input_str!();
            let start = arg_int!(0);
            let chars: Vec<char> = s.chars().collect();
            if start < 0 || start as usize >= chars.len() {
                return Ok(vec![]);
            }
            let len = if vals.len() > 1 {
                let a = arg!(1);
                match single_sys(&a, pos, name)? {
                    Some(Value::Integer(i)) => i,
                    None => i64::MAX,
                    Some(_) => return Err(Error::execution(pos, "substring() needs integer arguments")),
                }
            } else {
                i64::MAX
            };
            let start = start as usize;
            let end = start.saturating_add(usize::try_from(len.max(0)).unwrap_or(usize::MAX)).min(chars.len());
            vec![Value::String(chars[start..end].iter().collect())]
        }
        "startsWith" => {
            let s = input_str!();
            boolean(s.starts_with(&arg_str!(0)))
        }
        "endsWith" => {
            let s = input_str!();
            boolean(s.ends_with(&arg_str!(0)))
        }
        "contains" => {
            let s = input_str!();
            boolean(s.contains(&arg_str!(0)))
        }
        "upper" => vec![Value::String(input_str!().to_uppercase())],
        "lower" => vec![Value::String(input_str!().to_lowercase())],
        "replace" => {
            let s = input_str!();
            let pat = arg_str!(0);
            let rep = arg_str!(1);
            if s.len().saturating_mul(rep.len() + 1) > 10_000_000 {
                return Err(Error::execution(pos, "replace() result too large"));
            }
            vec![Value::String(s.replace(&pat, &rep))]
        }
        "matches" | "matchesFull" => {
            let s = input_str!();
            let pat = arg_str!(0);
            let pat = if name == "matchesFull" { format!("^(?:{pat})$") } else { pat };
            boolean(regex(&pat, pos)?.is_match(&s))
        }
        "replaceMatches" => {
            let s = input_str!();
            let pat = arg_str!(0);
            let rep = arg_str!(1);
            if pat.is_empty() {
                return Ok(vec![Value::String(s)]);
            }
            let re = regex(&pat, pos)?;
            // `$1` in FHIRPath is `${1}` for the regex crate
            let rep = dollar_groups(&rep);
            vec![Value::String(re.replace_all(&s, rep.as_str()).into_owned())]
        }
        "length" => vec![Value::Integer(input_str!().chars().count() as i64)],
        "toChars" => input_str!().chars().map(|c| Value::String(c.to_string())).collect(),
        "split" => {
            let s = input_str!();
            let sep = arg_str!(0);
            if sep.is_empty() {
                s.chars().map(|c| Value::String(c.to_string())).collect()
            } else {
                s.split(sep.as_str()).map(|p| Value::String(p.to_string())).collect()
            }
        }
        "join" => {
            let sep = if vals.is_empty() { String::new() } else { arg_str!(0) };
            let mut parts = Vec::with_capacity(input.len());
            for v in &input {
                match v.to_system() {
                    Some(Value::String(s)) => parts.push(s),
                    Some(other) => parts.push(other.to_string()),
                    None => {}
                }
            }
            vec![Value::String(parts.join(&sep))]
        }
        "trim" => vec![Value::String(input_str!().trim().to_string())],
        "encode" | "decode" | "escape" | "unescape" => {
            let s = input_str!();
            let fmt = arg_str!(0);
            opt(codec(name, &s, &fmt).map(Value::String))
        }
        "abs" => match input_sys!() {
            None => vec![],
            Some(Value::Integer(i)) => opt(i.checked_abs().map(Value::Integer)),
            Some(Value::Decimal(d)) => vec![Value::Decimal(d.abs())],
            Some(Value::Quantity { value, unit }) => vec![Value::Quantity { value: value.abs(), unit }],
            Some(_) => return Err(Error::execution(pos, "abs() needs a number")),
        },
        "ceiling" | "floor" | "truncate" => match input_sys!() {
            None => vec![],
            Some(Value::Integer(i)) => vec![Value::Integer(i)],
            Some(Value::Decimal(d)) => {
                let r = match name {
                    "ceiling" => d.ceil(),
                    "floor" => d.floor(),
                    _ => d.trunc(),
                };
                opt(r.to_i64().map(Value::Integer))
            }
            Some(_) => return Err(Error::execution(pos, format!("{name}() needs a number"))),
        },
        "round" => {
            let Some(d) = number_of(input_sys!(), pos, name)? else {
                return Ok(vec![]);
            };
            let dp = if vals.is_empty() { 0 } else { arg_int!(0) };
            if !(0..=28).contains(&dp) {
                return Err(Error::execution(pos, "round() precision must be between 0 and 28"));
            }
            vec![Value::Decimal(
                d.round_dp_with_strategy(dp as u32, rust_decimal::RoundingStrategy::MidpointAwayFromZero),
            )]
        }
        "exp" | "ln" | "sqrt" => {
            let Some(d) = number_of(input_sys!(), pos, name)? else {
                return Ok(vec![]);
            };
            let r = match name {
                "exp" => {
                    if d > Decimal::from(60) {
                        None
                    } else {
                        d.checked_exp()
                    }
                }
                "ln" => {
                    if d <= Decimal::ZERO {
                        None
                    } else {
                        d.checked_ln()
                    }
                }
                _ => {
                    if d < Decimal::ZERO {
                        None
                    } else {
                        d.sqrt()
                    }
                }
            };
            opt(r.map(Value::Decimal))
        }
        "log" => {
            let Some(d) = number_of(input_sys!(), pos, name)? else {
                return Ok(vec![]);
            };
            let a = arg!(0);
            let Some(base) = number_of(single_sys(&a, pos, name)?, pos, name)? else {
                return Ok(vec![]);
            };
            if d <= Decimal::ZERO || base <= Decimal::ZERO || base == Decimal::ONE {
                return Ok(vec![]);
            }
            let r = match (d.checked_ln(), base.checked_ln()) {
                (Some(x), Some(y)) => x.checked_div(y).map(|r| r.round_dp(20).normalize()),
                _ => None,
            };
            opt(r.map(Value::Decimal))
        }
        "power" => {
            let base = input_sys!();
            let a = arg!(0);
            let exp = single_sys(&a, pos, name)?;
            match (base, exp) {
                (None, _) | (_, None) => vec![],
                (Some(Value::Integer(b)), Some(Value::Integer(e))) => {
                    if e < 0 {
                        opt(Decimal::from(b).checked_powi(e).map(Value::Decimal))
                    } else {
                        opt(u32::try_from(e).ok().and_then(|e| b.checked_pow(e)).map(Value::Integer))
                    }
                }
                (Some(b), Some(e)) => {
                    let b = number_of(Some(b), pos, name)?.unwrap_or_default();
                    let e = number_of(Some(e), pos, name)?.unwrap_or_default();
                    if b < Decimal::ZERO && e.fract() != Decimal::ZERO {
                        vec![]
                    } else if e.fract() == Decimal::ZERO {
                        opt(e.to_i64().and_then(|e| b.checked_powi(e)).map(Value::Decimal))
                    } else {
                        opt(b.checked_powd(e).map(Value::Decimal))
                    }
                }
            }
        }
        "precision" => match input_sys!() {
            None => vec![],
            Some(Value::Decimal(d)) => vec![Value::Integer(i64::from(d.scale()))],
            Some(Value::Integer(_)) => vec![Value::Integer(0)],
            Some(Value::Date(t) | Value::DateTime(t) | Value::Time(t)) => vec![Value::Integer(t.precision_digits())],
            Some(_) => return Err(Error::execution(pos, "precision() needs a number or a date")),
        },
        "lowBoundary" | "highBoundary" => {
            let high = name == "highBoundary";
            let digits = if vals.is_empty() { None } else { Some(arg_int!(0)) };
            match input_sys!() {
                None => vec![],
                Some(Value::Integer(i)) => opt(dec_boundary(Decimal::from(i), digits, high).map(Value::Decimal)),
                Some(Value::Decimal(d)) => opt(dec_boundary(d, digits, high).map(Value::Decimal)),
                Some(Value::Quantity { value, unit }) => {
                    opt(dec_boundary(value, digits, high).map(|value| Value::Quantity { value, unit }))
                }
                Some(Value::Date(t) | Value::DateTime(t) | Value::Time(t)) => {
                    opt(temporal_boundary(&t, digits, high).map(Value::temporal))
                }
                Some(_) => return Err(Error::execution(pos, format!("{name}() needs a number or a date"))),
            }
        }
        "comparable" => {
            let a = input_sys!();
            let o = arg!(0);
            match (a, single_sys(&o, pos, name)?) {
                (Some(Value::Quantity { unit: u1, .. }), Some(Value::Quantity { unit: u2, .. })) => {
                    boolean(units::convert(Decimal::ONE, &u1, &u2).is_some())
                }
                (None, _) | (_, None) => vec![],
                _ => return Err(Error::execution(pos, "comparable() needs quantities")),
            }
        }
        "extension" => {
            let url = arg_str!(0);
            let mut out = Vec::new();
            for v in &input {
                if let Value::Node(n) = v {
                    let mut exts = Vec::new();
                    model::navigate(n, "extension", &mut exts);
                    for e in exts {
                        if let Value::Node(en) = &e
                            && en.json.and_then(|j| j.get("url")).and_then(Json::as_str) == Some(url.as_str())
                        {
                            out.push(e);
                        }
                    }
                }
            }
            out
        }
        "hasValue" => boolean(matches!(
            input.as_slice(),
            [Value::Node(n)] if n.is_primitive() && n.json.is_some()
        )),
        "getValue" => match input.as_slice() {
            [Value::Node(n)] if n.is_primitive() => opt(n.json.and(model::node_to_system(n))),
            _ => vec![],
        },
        "htmlChecks" => boolean(true),
        "hasTemplateIdOf" => boolean(false),
        "resolve" => {
            let mut out = Vec::new();
            for v in &input {
                let reference = match v {
                    Value::Node(n) if n.fhir_type == Some("Reference") => {
                        n.json.and_then(|j| j.get("reference")).and_then(Json::as_str).map(str::to_string)
                    }
                    other => other.as_string(),
                };
                if let Some(r) = reference
                    && let Some(found) = resolve(ev, &r)
                {
                    out.push(found);
                }
            }
            out
        }
        "conformsTo" => {
            let url = arg_str!(0);
            let Some(t) = url.strip_prefix("http://hl7.org/fhir/StructureDefinition/") else {
                return Err(Error::execution(pos, format!("unknown profile '{url}'")));
            };
            if model::fhir_type(t).is_none() {
                return Err(Error::execution(pos, format!("unknown profile '{url}'")));
            }
            match single(&input, pos, name)? {
                None => vec![],
                Some(Value::Node(n)) => boolean(n.fhir_type.is_some_and(|nt| model::derives_from(nt, t))),
                Some(_) => boolean(false),
            }
        }
        "memberOf" => {
            let url = arg_str!(0);
            let Some(v) = single(&input, pos, name)? else {
                return Ok(vec![]);
            };
            let Some(vs) = model::defs().value_set(url.split('|').next().unwrap_or_default()) else {
                return Ok(vec![]);
            };
            let codes: Vec<String> = match v {
                Value::Node(n) if n.fhir_type == Some("Coding") => {
                    n.json.and_then(|j| j.get("code")).and_then(Json::as_str).map(str::to_string).into_iter().collect()
                }
                Value::Node(n) if n.fhir_type == Some("CodeableConcept") => n
                    .json
                    .and_then(|j| j.get("coding"))
                    .and_then(Json::as_array)
                    .map(|cs| cs.iter().filter_map(|c| c.get("code")?.as_str().map(str::to_string)).collect())
                    .unwrap_or_default(),
                other => other.as_string().into_iter().collect(),
            };
            boolean(codes.iter().any(|c| vs.contains(c)))
        }
        _ => return Err(Error::semantic(pos, format!("unknown function {name}()"))),
    })
}

/// Where a JSON node is, to tell nodes apart from equal copies.
fn address(j: Option<&Json>) -> usize {
    j.map_or(0, |j| std::ptr::from_ref(j) as usize)
}

fn number_of(v: Option<Value<'_>>, pos: usize, name: &str) -> Result<Option<Decimal>, Error> {
    match v {
        None => Ok(None),
        Some(Value::Integer(i)) => Ok(Some(Decimal::from(i))),
        Some(Value::Decimal(d)) => Ok(Some(d)),
        Some(other) => Err(Error::execution(pos, format!("{name}() needs a number, found {}", other.type_name().1))),
    }
}

fn dollar_groups(rep: &str) -> String {
    let mut out = String::with_capacity(rep.len());
    let mut chars = rep.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            let mut n = String::new();
            while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                n.push(d);
                chars.next();
            }
            out.push_str(&format!("${{{n}}}"));
        } else if c == '$' {
            out.push_str("$$");
        } else {
            out.push(c);
        }
    }
    out
}

fn sort<'a>(
    ev: &mut Evaluator<'a, '_>,
    input: Coll<'a>,
    args: &[PNode],
    sc: Scope<'_, 'a>,
    pos: usize,
) -> Result<Coll<'a>, Error> {
    // keys per item: (value, descending)
    let mut keyed: Vec<(Vec<Option<Value<'a>>>, Value<'a>)> = Vec::with_capacity(input.len());
    let mut desc = Vec::new();
    for a in args {
        desc.push(matches!(a, PNode::Neg(_)));
    }
    for (i, item) in input.into_iter().enumerate() {
        let mut keys = Vec::new();
        if args.is_empty() {
            keys.push(item.to_system());
        }
        for a in args {
            let expr = match a {
                PNode::Neg(inner) => inner.as_ref(),
                other => other,
            };
            let v =
                ev.eval(expr, Scope { focus: std::slice::from_ref(&item), index: Some(i as i64), total: sc.total })?;
            keys.push(single_sys(&v, pos, "sort()")?);
        }
        keyed.push((keys, item));
    }
    let mut failure = None;
    // a merge sort of our own: the comparison is not a total order (dates of different
    // precision compare as unknown), which `slice::sort_by` may reject with a panic
    let keyed = merge_sort(keyed, &mut |(ka, _), (kb, _)| {
        for (k, (x, y)) in ka.iter().zip(kb).enumerate() {
            let o = match (x, y) {
                (None, None) => Ordering::Equal,
                // empty keys sort after everything
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(x), Some(y)) => match compare(x, y, pos) {
                    Ok(o) => o.unwrap_or(Ordering::Equal),
                    Err(e) => {
                        failure = Some(e);
                        Ordering::Equal
                    }
                },
            };
            let o = if desc.get(k).copied().unwrap_or(false) { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    });
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(keyed.into_iter().map(|(_, v)| v).collect())
}

/// A stable merge sort that accepts any comparison.
fn merge_sort<T>(mut v: Vec<T>, cmp: &mut impl FnMut(&T, &T) -> Ordering) -> Vec<T> {
    if v.len() <= 1 {
        return v;
    }
    let right = v.split_off(v.len() / 2);
    let left = merge_sort(v, cmp);
    let right = merge_sort(right, cmp);
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut l = left.into_iter().peekable();
    let mut r = right.into_iter().peekable();
    loop {
        let take_left = match (l.peek(), r.peek()) {
            (Some(a), Some(b)) => cmp(b, a) != Ordering::Less,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        out.extend(if take_left { l.next() } else { r.next() });
    }
    out
}

/// `resolve()`: contained resources (`#id`, `#` for the container), Bundle entries
/// (`fullUrl` or `Type/id`), then the context's resolver. A relative or absolute
/// `Type/id` reference found nowhere resolves to a stub with only its `resourceType`, so
/// that `reference.resolve() is Patient` (as search parameters use it) works unresolved.
fn resolve<'a>(ev: &mut Evaluator<'a, '_>, reference: &str) -> Option<Value<'a>> {
    let root = ev.root.as_json();
    if let Some(id) = reference.strip_prefix('#') {
        let root = root?;
        if id.is_empty() {
            return Some(model::root_node(root));
        }
        let contained = root.get("contained")?.as_array()?;
        let found = contained.iter().find(|c| c.get("id").and_then(Json::as_str) == Some(id))?;
        return Some(model::root_node(found));
    }
    if let Some(root) = root
        && root.get("resourceType").and_then(Json::as_str) == Some("Bundle")
        && let Some(entries) = root.get("entry").and_then(Json::as_array)
    {
        for e in entries {
            let Some(res) = e.get("resource") else { continue };
            let full = e.get("fullUrl").and_then(Json::as_str);
            let local = match (res.get("resourceType").and_then(Json::as_str), res.get("id").and_then(Json::as_str)) {
                (Some(t), Some(id)) => Some(format!("{t}/{id}")),
                _ => None,
            };
            if full == Some(reference)
                || local.as_deref().is_some_and(|l| reference == l || reference.ends_with(&format!("/{l}")))
            {
                return Some(model::root_node(res));
            }
        }
    }
    if let Some(found) = ev.ctx.resolver.and_then(|r| r.resolve(reference)) {
        return Some(model::root_node(found));
    }
    model::reference_stub(reference).map(model::root_node)
}

fn datetime_from_chrono(now: &chrono::DateTime<chrono::FixedOffset>) -> Temporal {
    use chrono::{Datelike, Timelike};
    Temporal {
        kind: TemporalKind::DateTime,
        precision: Precision::Millisecond,
        year: now.year(),
        month: now.month(),
        day: now.day(),
        hour: now.hour(),
        minute: now.minute(),
        second: now.second(),
        millis: (now.nanosecond() / 1_000_000).min(999),
        tz: Some(now.offset().local_minus_utc() / 60),
    }
}

fn to_boolean(v: &Value<'_>) -> Option<bool> {
    match v {
        Value::Boolean(b) => Some(*b),
        Value::Integer(1) => Some(true),
        Value::Integer(0) => Some(false),
        Value::Decimal(d) if *d == Decimal::ONE => Some(true),
        Value::Decimal(d) if d.is_zero() => Some(false),
        Value::String(s) => match s.to_lowercase().as_str() {
            "true" | "t" | "yes" | "y" | "1" | "1.0" => Some(true),
            "false" | "f" | "no" | "n" | "0" | "0.0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn is_integer_text(s: &str) -> bool {
    let d = s.strip_prefix(['+', '-']).unwrap_or(s);
    !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())
}

fn is_decimal_text(s: &str) -> bool {
    let d = s.strip_prefix(['+', '-']).unwrap_or(s);
    match d.split_once('.') {
        Some((a, b)) => {
            is_integer_text(a) && !a.starts_with(['+', '-']) && is_integer_text(b) && !b.starts_with(['+', '-'])
        }
        None => is_integer_text(d) && !d.starts_with(['+', '-']),
    }
}

fn to_integer(v: &Value<'_>) -> Option<i64> {
    match v {
        Value::Integer(i) => Some(*i),
        Value::Boolean(b) => Some(i64::from(*b)),
        Value::String(s) if is_integer_text(s) => s.parse().ok(),
        _ => None,
    }
}

fn to_decimal(v: &Value<'_>) -> Option<Decimal> {
    match v {
        Value::Integer(i) => Some(Decimal::from(*i)),
        Value::Decimal(d) => Some(*d),
        Value::Boolean(b) => Some(if *b { Decimal::ONE } else { Decimal::ZERO }),
        Value::String(s) if is_decimal_text(s) => s.parse().ok(),
        _ => None,
    }
}

fn to_string(v: &Value<'_>) -> Option<String> {
    match v {
        Value::Node(_) | Value::Type { .. } => None,
        Value::DateTime(t) => Some(t.to_string().trim_end_matches('T').to_string()),
        other => Some(other.to_string()),
    }
}

fn to_temporal(v: &Value<'_>, kind: TemporalKind) -> Option<Temporal> {
    let t = match v {
        Value::String(s) => match kind {
            TemporalKind::Time => Temporal::parse_time(s)?,
            _ => Temporal::parse_fhir_datetime(s)?,
        },
        Value::Date(t) | Value::DateTime(t) | Value::Time(t) => t.clone(),
        _ => return None,
    };
    match (kind, t.kind) {
        (TemporalKind::Time, TemporalKind::Time) => Some(t),
        (TemporalKind::Time, _) | (_, TemporalKind::Time) => None,
        (TemporalKind::Date, _) => {
            let mut t = t;
            t.kind = TemporalKind::Date;
            t.precision = t.precision.min(Precision::Day);
            t.tz = None;
            Some(t)
        }
        (_, _) => {
            let mut t = t;
            t.kind = TemporalKind::DateTime;
            Some(t)
        }
    }
}

fn to_quantity(v: &Value<'_>) -> Option<(Decimal, String)> {
    match v {
        Value::Integer(i) => Some((Decimal::from(*i), "1".into())),
        Value::Decimal(d) => Some((*d, "1".into())),
        Value::Boolean(b) => Some((if *b { Decimal::ONE } else { Decimal::ZERO }, "1".into())),
        Value::Quantity { value, unit } => Some((*value, unit.clone())),
        Value::String(s) => {
            let s = s.trim();
            let (num, rest) = match s.find(|c: char| c.is_whitespace() || c == '\'') {
                Some(i) => (&s[..i], s[i..].trim()),
                None => (s, ""),
            };
            if !is_decimal_text(num) {
                return None;
            }
            let value: Decimal = num.parse().ok()?;
            let unit = if rest.is_empty() {
                "1".to_string()
            } else if let Some(u) = rest.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
                u.to_string()
            } else if units::is_calendar_word(rest) {
                rest.to_string()
            } else {
                return None;
            };
            Some((value, unit))
        }
        _ => None,
    }
}

/// Decimal lowBoundary/highBoundary: half a unit in the last place below/above the
/// value, at `digits` decimal places (default 8): padded when finer, otherwise the low
/// boundary is truncated and the high one rounded half up, as the reference
/// implementation does. Negative values mirror positive ones (keeping `-0.0`).
fn dec_boundary(d: Decimal, digits: Option<i64>, high: bool) -> Option<Decimal> {
    if d.is_sign_negative() && !d.is_zero() {
        let mut r = dec_boundary(-d, digits, !high)?;
        r.set_sign_negative(true);
        return Some(r);
    }
    let digits = digits.unwrap_or(8);
    if !(0..=28).contains(&digits) || d.scale() >= 28 {
        return None;
    }
    let half = Decimal::new(5, d.scale() + 1);
    let v = if high { d.checked_add(half)? } else { d.checked_sub(half)? };
    let digits = digits as u32;
    let mut r = if digits >= v.scale() {
        v
    } else if high {
        v.round_dp_with_strategy(digits, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
    } else {
        v.round_dp_with_strategy(digits, rust_decimal::RoundingStrategy::ToZero)
    };
    r.rescale(digits);
    Some(r)
}

fn temporal_boundary(t: &Temporal, digits: Option<i64>, high: bool) -> Option<Temporal> {
    let mut t = t.clone();
    if t.kind == TemporalKind::DateTime && t.precision == Precision::Hour {
        t.precision = Precision::Minute;
    }
    let mut r = t.boundary(digits, high)?;
    if r.kind == TemporalKind::DateTime && r.precision <= Precision::Day {
        r.kind = TemporalKind::Date;
        r.tz = None;
    }
    Some(r)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(data: &[u8], url: bool) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                let mut c = B64[((n >> (18 - 6 * i)) & 63) as usize] as char;
                if url {
                    c = match c {
                        '+' => '-',
                        '/' => '_',
                        c => c,
                    };
                }
                out.push(c);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut out = Vec::new();
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            b' ' | b'\n' | b'\r' | b'\t' => continue,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(v);
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            out.push(((bits >> nbits) & 0xff) as u8);
        }
    }
    Some(out)
}

fn codec(func: &str, s: &str, fmt: &str) -> Option<String> {
    match (func, fmt) {
        ("encode", "base64") => Some(base64_encode(s.as_bytes(), false)),
        ("encode", "urlbase64") => Some(base64_encode(s.as_bytes(), true)),
        ("encode", "hex") => Some(s.bytes().map(|b| format!("{b:02x}")).collect()),
        ("decode", "base64" | "urlbase64") => String::from_utf8(base64_decode(s)?).ok(),
        ("decode", "hex") => {
            if !s.len().is_multiple_of(2) || !s.is_ascii() {
                return None;
            }
            let bytes: Option<Vec<u8>> =
                (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect();
            String::from_utf8(bytes?).ok()
        }
        ("escape", "html") => Some(
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
                .replace('\'', "&#39;"),
        ),
        ("unescape", "html") => Some(
            s.replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&#39;", "'")
                .replace("&amp;", "&"),
        ),
        ("escape", "json") => {
            let j = serde_json::to_string(s).ok()?;
            Some(j[1..j.len() - 1].to_string())
        }
        ("unescape", "json") => Some(json_unescape(s)),
        _ => None,
    }
}

fn json_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) => out.push(ch),
                    None => out.push_str(&hex),
                }
            }
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codecs() {
        assert_eq!(codec("encode", "subjects?_d", "urlbase64").unwrap(), "c3ViamVjdHM_X2Q=");
        assert_eq!(codec("decode", "c3ViamVjdHM/X2Q=", "base64").unwrap(), "subjects?_d");
        assert_eq!(codec("encode", "test", "hex").unwrap(), "74657374");
        assert_eq!(codec("unescape", "&quot;1&lt;2&quot;", "html").unwrap(), "\"1<2\"");
    }

    #[test]
    fn boundaries() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        assert_eq!(dec_boundary(d("1.587"), None, false).unwrap().to_string(), "1.58650000");
        assert_eq!(dec_boundary(d("1.587"), Some(2), true).unwrap().to_string(), "1.59");
        assert_eq!(dec_boundary(d("-1.587"), Some(2), false).unwrap().to_string(), "-1.59");
        assert_eq!(dec_boundary(d("120"), Some(2), false).unwrap().to_string(), "119.50");
        assert_eq!(dec_boundary(d("-0.0034"), Some(1), false).unwrap().to_string(), "-0.0");
        assert_eq!(dec_boundary(d("0.0034"), Some(1), true).unwrap().to_string(), "0.0");
        assert!(dec_boundary(d("1.587"), Some(29), true).is_none());
        assert_eq!(dollar_groups("$1-x$"), "${1}-x$$");
    }
}
