//! The evaluator: operators, equality, comparison, arithmetic.

use std::cmp::Ordering;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use crate::model::{self, TypeRef};
use crate::parser::{BinOp, Node as PNode, TypeSpec};
use crate::set::Distinct;
use crate::temporal::{Temporal, TemporalKind};
use crate::units;
use crate::value::Value;
use crate::{Context, Error, functions};

pub(crate) type Coll<'a> = Vec<Value<'a>>;

/// Most work an evaluation may do before it is stopped (items produced, comparisons
/// made), unless the context says otherwise.
pub(crate) const WORK_LIMIT: usize = 10_000_000;

/// What `$this`, `$index` and `$total` refer to.
#[derive(Clone, Copy)]
pub(crate) struct Scope<'s, 'a> {
    pub focus: &'s [Value<'a>],
    pub index: Option<i64>,
    pub total: Option<&'s [Value<'a>]>,
}

pub(crate) struct Evaluator<'a, 'c> {
    pub ctx: &'c Context<'a>,
    pub root: Value<'a>,
    /// `%context`: what the expression was evaluated on.
    pub context: Value<'a>,
    now: Option<chrono::DateTime<chrono::FixedOffset>>,
    work: usize,
    cache: Vec<Option<Coll<'a>>>,
}

pub(crate) fn err_multi(pos: usize, what: &str) -> Error {
    Error::execution(pos, format!("{what} needs a single item, found a collection"))
}

/// The only item of a collection; an error for more than one.
pub(crate) fn single<'v, 'a>(c: &'v [Value<'a>], pos: usize, what: &str) -> Result<Option<&'v Value<'a>>, Error> {
    match c {
        [] => Ok(None),
        [v] => Ok(Some(v)),
        _ => Err(err_multi(pos, what)),
    }
}

/// The System value of the only item (`None` when empty or without a value).
pub(crate) fn single_sys<'a>(c: &[Value<'a>], pos: usize, what: &str) -> Result<Option<Value<'a>>, Error> {
    Ok(single(c, pos, what)?.and_then(Value::to_system))
}

/// A collection as a boolean (singleton evaluation): empty is unknown, a boolean is
/// itself, any other single item is true.
pub(crate) fn to_bool3(c: &[Value<'_>], pos: usize) -> Result<Option<bool>, Error> {
    match single(c, pos, "a boolean operand")? {
        None => Ok(None),
        Some(v) => match v.to_system() {
            Some(Value::Boolean(b)) => Ok(Some(b)),
            _ => Ok(Some(true)),
        },
    }
}

impl<'a, 'c> Evaluator<'a, 'c> {
    pub(crate) fn new(ctx: &'c Context<'a>, root: Value<'a>, context: Value<'a>, slots: usize) -> Evaluator<'a, 'c> {
        Evaluator { ctx, root, context, now: ctx.now, work: 0, cache: vec![None; slots] }
    }

    pub(crate) fn now(&mut self) -> chrono::DateTime<chrono::FixedOffset> {
        *self.now.get_or_insert_with(|| chrono::Local::now().fixed_offset())
    }

    /// Work left before the limit.
    pub(crate) fn remaining(&self) -> usize {
        self.ctx.work_limit.unwrap_or(WORK_LIMIT).saturating_sub(self.work)
    }

    /// Accounts for the work of a set operation; an error when it ran out of budget.
    pub(crate) fn settle(&mut self, d: &Distinct<'_>, items: usize, pos: usize) -> Result<(), Error> {
        if d.exceeded {
            return Err(Error::execution(pos, "evaluation too large"));
        }
        self.tick(d.comparisons.saturating_add(items), pos)
    }

    /// Counts work; stops runaway evaluations.
    pub(crate) fn tick(&mut self, n: usize, pos: usize) -> Result<(), Error> {
        self.work = self.work.saturating_add(n.max(1));
        if self.work > self.ctx.work_limit.unwrap_or(WORK_LIMIT) {
            return Err(Error::execution(pos, "evaluation too large"));
        }
        Ok(())
    }

    /// Evaluates a node. Kept small: it recurses, and each arm's work is in its own
    /// function so that deep expressions use little stack (in debug builds too).
    pub(crate) fn eval(&mut self, n: &PNode, sc: Scope<'_, 'a>) -> Result<Coll<'a>, Error> {
        self.tick(1, 0)?;
        match n {
            PNode::Ident(name, _) => self.ident(name, sc.focus),
            PNode::This => Ok(sc.focus.to_vec()),
            PNode::Index => Ok(sc.index.map(Value::Integer).into_iter().collect()),
            PNode::Total => Ok(sc.total.map(<[Value<'a>]>::to_vec).unwrap_or_default()),
            PNode::Env(name) => self.env(name),
            PNode::Member(base, name, _) => {
                let b = self.eval(base, sc)?;
                self.members(&b, name)
            }
            PNode::Func(target, name, args, pos) => {
                let input = match target {
                    Some(t) => self.eval(t, sc)?,
                    None => sc.focus.to_vec(),
                };
                functions::call(self, name, input, args, sc, *pos, target.is_some())
            }
            PNode::Indexer(base, idx) => {
                let b = self.eval(base, sc)?;
                let i = self.eval(idx, sc)?;
                index(b, &i)
            }
            PNode::Neg(inner) => {
                let v = self.eval(inner, sc)?;
                negate(&v)
            }
            PNode::Binary(op, l, r, pos) => self.binary(*op, l, r, sc, *pos),
            PNode::Is(e, ts) => {
                let v = self.eval(e, sc)?;
                is_type(&v, ts)
            }
            PNode::As(e, ts) => {
                let v = self.eval(e, sc)?;
                as_type(v, ts)
            }
            PNode::Cached(inner, slot) => {
                if let Some(Some(v)) = self.cache.get(*slot).cloned() {
                    self.tick(v.len(), 0)?;
                    return Ok(v);
                }
                let v = self.eval(inner, sc)?;
                if let Some(c) = self.cache.get_mut(*slot) {
                    *c = Some(v.clone());
                }
                Ok(v)
            }
            literal => Ok(literal_value(literal)),
        }
    }

    fn ident(&mut self, name: &str, focus: &[Value<'a>]) -> Result<Coll<'a>, Error> {
        let mut out = Vec::new();
        for item in focus {
            if let Value::Node(n) = item
                && name.starts_with(|c: char| c.is_ascii_uppercase())
                && n.fhir_type.is_some_and(|t| model::derives_from(t, name))
            {
                out.push(item.clone());
                continue;
            }
            navigate_item(item, name, &mut out);
        }
        self.tick(out.len(), 0)?;
        Ok(out)
    }

    fn members(&mut self, base: &[Value<'a>], name: &str) -> Result<Coll<'a>, Error> {
        let mut out = Vec::new();
        for item in base {
            navigate_item(item, name, &mut out);
        }
        self.tick(out.len(), 0)?;
        Ok(out)
    }

    fn env(&mut self, name: &str) -> Result<Coll<'a>, Error> {
        if let Some(v) = self.ctx.variables.get(name) {
            return Ok(v.clone());
        }
        let s = |s: &str| Ok(vec![Value::String(s.to_string())]);
        match name {
            "resource" | "rootResource" => Ok(vec![self.root.clone()]),
            "context" => Ok(vec![self.context.clone()]),
            "ucum" => s("http://unitsofmeasure.org"),
            "sct" => s("http://snomed.info/sct"),
            "loinc" => s("http://loinc.org"),
            _ => {
                if let Some(vs) = name.strip_prefix("vs-") {
                    s(&format!("http://hl7.org/fhir/ValueSet/{vs}"))
                } else if let Some(ext) = name.strip_prefix("ext-") {
                    s(&format!("http://hl7.org/fhir/StructureDefinition/{ext}"))
                } else {
                    Err(Error::execution(0, format!("unknown variable %{name}")))
                }
            }
        }
    }

    fn binary(&mut self, op: BinOp, l: &PNode, r: &PNode, sc: Scope<'_, 'a>, pos: usize) -> Result<Coll<'a>, Error> {
        let boolean = |b: Option<bool>| b.map(Value::Boolean).into_iter().collect::<Coll<'a>>();
        match op {
            BinOp::And | BinOp::Or | BinOp::Xor | BinOp::Implies => {
                let a = to_bool3(&self.eval(l, sc)?, pos)?;
                // short-circuit where the answer is known
                match (op, a) {
                    (BinOp::And, Some(false)) => return Ok(boolean(Some(false))),
                    (BinOp::Or, Some(true)) => return Ok(boolean(Some(true))),
                    (BinOp::Implies, Some(false)) => return Ok(boolean(Some(true))),
                    _ => {}
                }
                let b = to_bool3(&self.eval(r, sc)?, pos)?;
                return Ok(boolean(logic(op, a, b)));
            }
            _ => {}
        }
        let a = self.eval(l, sc)?;
        let b = self.eval(r, sc)?;
        self.combine(op, a, b, pos)
    }

    /// A binary operator on its evaluated operands.
    fn combine(&mut self, op: BinOp, a: Coll<'a>, b: Coll<'a>, pos: usize) -> Result<Coll<'a>, Error> {
        let boolean = |b: Option<bool>| b.map(Value::Boolean).into_iter().collect::<Coll<'a>>();
        Ok(match op {
            BinOp::Union => {
                let n = a.len() + b.len();
                let d = Distinct::from_items(a.into_iter().chain(b), self.remaining());
                self.settle(&d, n, pos)?;
                d.into_vec()
            }
            BinOp::Eq => boolean(coll_equal(&a, &b)),
            BinOp::Ne => boolean(coll_equal(&a, &b).map(|x| !x)),
            BinOp::Equiv => boolean(Some(coll_equivalent(&a, &b))),
            BinOp::NotEquiv => boolean(Some(!coll_equivalent(&a, &b))),
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                let (Some(x), Some(y)) = (single_sys(&a, pos, "a comparison")?, single_sys(&b, pos, "a comparison")?)
                else {
                    return Ok(vec![]);
                };
                boolean(compare(&x, &y, pos)?.map(|o| match op {
                    BinOp::Lt => o == Ordering::Less,
                    BinOp::Le => o != Ordering::Greater,
                    BinOp::Gt => o == Ordering::Greater,
                    _ => o != Ordering::Less,
                }))
            }
            BinOp::In | BinOp::Contains => {
                let (item, coll) = if op == BinOp::In { (&a, &b) } else { (&b, &a) };
                match single(item, pos, "membership")? {
                    None => vec![],
                    Some(x) => boolean(Some(coll.iter().any(|y| item_equal(x, y) == Some(true)))),
                }
            }
            BinOp::Concat => {
                let s = |c: &[Value<'a>]| -> Result<String, Error> {
                    Ok(match single_sys(c, pos, "'&'")? {
                        None => String::new(),
                        Some(Value::String(s)) => s,
                        Some(other) => other.to_string(),
                    })
                };
                vec![Value::String(s(&a)? + &s(&b)?)]
            }
            _ => {
                let (Some(x), Some(y)) = (single_sys(&a, pos, "arithmetic")?, single_sys(&b, pos, "arithmetic")?)
                else {
                    return Ok(vec![]);
                };
                arith(op, &x, &y, pos)?.into_iter().collect()
            }
        })
    }
}

/// Three-valued `and`, `or`, `xor`, `implies`.
fn logic(op: BinOp, a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match op {
        BinOp::And => match (a, b) {
            (Some(true), Some(true)) => Some(true),
            (_, Some(false)) | (Some(false), _) => Some(false),
            _ => None,
        },
        BinOp::Or => match (a, b) {
            (Some(false), Some(false)) => Some(false),
            (_, Some(true)) | (Some(true), _) => Some(true),
            _ => None,
        },
        BinOp::Xor => match (a, b) {
            (Some(x), Some(y)) => Some(x != y),
            _ => None,
        },
        _ => match (a, b) {
            (Some(true), x) => x,
            (None, Some(true)) => Some(true),
            _ => None,
        },
    }
}

fn literal_value<'a>(n: &PNode) -> Coll<'a> {
    match n {
        PNode::Bool(b) => vec![Value::Boolean(*b)],
        PNode::Str(s) => vec![Value::String(s.clone())],
        PNode::Int(i) => vec![Value::Integer(*i)],
        PNode::Dec(d) => vec![Value::Decimal(*d)],
        PNode::Temporal(t) => vec![Value::temporal(t.clone())],
        PNode::Quantity(v, u) => vec![Value::Quantity { value: *v, unit: u.clone() }],
        _ => vec![],
    }
}

fn index<'a>(base: Coll<'a>, i: &[Value<'a>]) -> Result<Coll<'a>, Error> {
    Ok(match single_sys(i, 0, "an index")? {
        None => vec![],
        Some(Value::Integer(i)) => usize::try_from(i).ok().and_then(|i| base.into_iter().nth(i)).into_iter().collect(),
        Some(_) => return Err(Error::execution(0, "an index must be an integer")),
    })
}

fn negate<'a>(v: &[Value<'a>]) -> Result<Coll<'a>, Error> {
    Ok(match single_sys(v, 0, "unary minus")? {
        None => vec![],
        Some(Value::Integer(i)) => i.checked_neg().map(Value::Integer).into_iter().collect(),
        Some(Value::Decimal(d)) => vec![Value::Decimal(if d.is_zero() { d } else { -d })],
        Some(Value::Quantity { value, unit }) => {
            vec![Value::Quantity { value: if value.is_zero() { value } else { -value }, unit }]
        }
        Some(other) => return Err(Error::execution(0, format!("cannot negate {}", other.type_name().1))),
    })
}

fn is_type<'a>(v: &[Value<'a>], ts: &TypeSpec) -> Result<Coll<'a>, Error> {
    Ok(match single(v, 0, "'is'")? {
        None => vec![],
        Some(item) => vec![Value::Boolean(match type_ref(ts, 0)? {
            Some(t) => model::value_is(item, t, false),
            None => false,
        })],
    })
}

/// `x as T`: the items of exactly type T (the operator filters; the function `as()`
/// insists on a single item).
fn as_type<'a>(v: Coll<'a>, ts: &TypeSpec) -> Result<Coll<'a>, Error> {
    Ok(match type_ref(ts, 0)? {
        Some(t) => v.into_iter().filter(|item| model::value_is(item, t, true)).collect(),
        None => vec![],
    })
}

/// The type `is`/`as`/`ofType` name: `None` for a namespaced name no model has (always
/// false), an error for an unknown plain name.
pub(crate) fn type_ref(ts: &TypeSpec, pos: usize) -> Result<Option<TypeRef>, Error> {
    match model::resolve_type(ts.namespace.as_deref(), &ts.name) {
        Some(t) => Ok(Some(t)),
        None if ts.namespace.is_some() => Ok(None),
        None => Err(Error::execution(pos, format!("unknown type '{}'", ts.name))),
    }
}

pub(crate) fn navigate_item<'a>(item: &Value<'a>, name: &str, out: &mut Vec<Value<'a>>) {
    match item {
        Value::Node(n) => model::navigate(n, name, out),
        Value::Type { namespace, name: tn } => match name {
            "namespace" => out.push(Value::String((*namespace).to_string())),
            "name" => out.push(Value::String(tn.clone())),
            _ => {}
        },
        _ => {}
    }
}

/// `=` on collections.
pub(crate) fn coll_equal(a: &[Value<'_>], b: &[Value<'_>]) -> Option<bool> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    if a.len() != b.len() {
        return Some(false);
    }
    let mut unknown = false;
    for (x, y) in a.iter().zip(b) {
        match item_equal(x, y) {
            Some(false) => return Some(false),
            None => unknown = true,
            Some(true) => {}
        }
    }
    if unknown { None } else { Some(true) }
}

/// `~` on collections: same size, each item with an equivalent in the other, any order.
pub(crate) fn coll_equivalent(a: &[Value<'_>], b: &[Value<'_>]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut used = vec![false; b.len()];
    for x in a {
        let Some(i) = b.iter().enumerate().position(|(i, y)| !used[i] && item_equivalent(x, y)) else {
            return false;
        };
        used[i] = true;
    }
    true
}

/// `=` on items: `None` when unknown (dates of different precision).
pub(crate) fn item_equal(a: &Value<'_>, b: &Value<'_>) -> Option<bool> {
    match (a, b) {
        (Value::Node(_), _) | (_, Value::Node(_)) | (Value::Type { .. }, _) | (_, Value::Type { .. }) => {}
        _ => return sys_equal(a, b),
    }
    match (a.to_system(), b.to_system()) {
        (Some(x), Some(y)) => sys_equal(&x, &y),
        (None, None) => Some(match (a, b) {
            (Value::Node(x), Value::Node(y)) => x.json == y.json && (x.json.is_some() || x.ext == y.ext),
            (Value::Type { namespace: n1, name: a }, Value::Type { namespace: n2, name: b }) => n1 == n2 && a == b,
            _ => false,
        }),
        _ => Some(false),
    }
}

fn as_decimal(v: &Value<'_>) -> Option<Decimal> {
    match v {
        Value::Integer(i) => Some(Decimal::from(*i)),
        Value::Decimal(d) => Some(*d),
        _ => None,
    }
}

fn temporal_of<'v>(v: &'v Value<'_>) -> Option<&'v Temporal> {
    match v {
        Value::Date(t) | Value::DateTime(t) | Value::Time(t) => Some(t),
        _ => None,
    }
}

fn sys_equal(a: &Value<'_>, b: &Value<'_>) -> Option<bool> {
    if let (Some(x), Some(y)) = (as_decimal(a), as_decimal(b)) {
        return Some(x == y);
    }
    if let (Some(x), Some(y)) = (temporal_of(a), temporal_of(b)) {
        if !x.comparable_kind(y) {
            return Some(false);
        }
        return x.compare(y).map(|o| o == Ordering::Equal);
    }
    match (a, b) {
        (Value::Boolean(x), Value::Boolean(y)) => Some(x == y),
        (Value::String(x), Value::String(y)) => Some(x == y),
        (Value::Quantity { value: v1, unit: u1 }, Value::Quantity { value: v2, unit: u2 }) => {
            if calendar_mismatch(u1, u2) {
                return None;
            }
            match units::convert(*v2, u2, u1) {
                Some(v2) => Some(*v1 == v2),
                None => Some(false),
            }
        }
        _ => Some(false),
    }
}

/// A calendar year or month against a UCUM `a`/`mo`: not comparable for equality.
fn calendar_mismatch(u1: &str, u2: &str) -> bool {
    let nominal = |u: &str| matches!(u, "a" | "mo");
    let word = |u: &str| matches!(u, "year" | "years" | "month" | "months");
    (word(u1) && nominal(u2)) || (nominal(u1) && word(u2))
}

fn normalize_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

fn dec_equivalent(x: Decimal, y: Decimal) -> bool {
    let scale = x.scale().min(y.scale());
    x.round_dp(scale) == y.round_dp(scale)
}

/// `~` on items.
pub(crate) fn item_equivalent(a: &Value<'_>, b: &Value<'_>) -> bool {
    let (x, y) = match (a.to_system(), b.to_system()) {
        (Some(x), Some(y)) => (x, y),
        (None, None) => return item_equal(a, b) == Some(true),
        _ => return false,
    };
    if let (Some(p), Some(q)) = (as_decimal(&x), as_decimal(&y)) {
        return dec_equivalent(p, q);
    }
    if let (Some(p), Some(q)) = (temporal_of(&x), temporal_of(&y)) {
        return p.comparable_kind(q) && p.same_precision(q) && p.compare(q) == Some(Ordering::Equal);
    }
    match (&x, &y) {
        (Value::String(p), Value::String(q)) => normalize_ws(p) == normalize_ws(q),
        (Value::Quantity { value: v1, unit: u1 }, Value::Quantity { value: v2, unit: u2 }) => {
            if calendar_mismatch(u1, u2) {
                return false;
            }
            units::convert(*v2, u2, u1).is_some_and(|v2| dec_equivalent(*v1, v2))
        }
        _ => sys_equal(&x, &y) == Some(true),
    }
}

/// Orders two System values; `None` when unknown (precision), an error for mismatched types.
pub(crate) fn compare(a: &Value<'_>, b: &Value<'_>, pos: usize) -> Result<Option<Ordering>, Error> {
    if let (Some(x), Some(y)) = (as_decimal(a), as_decimal(b)) {
        return Ok(Some(x.cmp(&y)));
    }
    if let (Some(x), Some(y)) = (temporal_of(a), temporal_of(b))
        && x.comparable_kind(y)
    {
        return Ok(x.compare(y));
    }
    match (a, b) {
        (Value::String(x), Value::String(y)) => Ok(Some(x.cmp(y))),
        (Value::Quantity { value: v1, unit: u1 }, Value::Quantity { value: v2, unit: u2 }) => {
            Ok(units::convert(*v2, u2, u1).map(|v2| v1.cmp(&v2)))
        }
        _ => Err(Error::execution(pos, format!("cannot compare {} with {}", a.type_name().1, b.type_name().1))),
    }
}

fn dec(d: Option<Decimal>) -> Option<Value<'static>> {
    d.map(Value::Decimal)
}

/// Arithmetic on two System values (`+ - * / div mod`); `None` is an empty result.
pub(crate) fn arith<'a>(op: BinOp, a: &Value<'a>, b: &Value<'a>, pos: usize) -> Result<Option<Value<'a>>, Error> {
    use Value::{Integer, Quantity};
    let mismatch =
        || Error::execution(pos, format!("cannot apply {op:?} to {} and {}", a.type_name().1, b.type_name().1));
    if let (Integer(x), Integer(y)) = (a, b) {
        return Ok(match op {
            BinOp::Add => x.checked_add(*y).map(Integer),
            BinOp::Sub => x.checked_sub(*y).map(Integer),
            BinOp::Mul => x.checked_mul(*y).map(Integer),
            BinOp::Div => {
                if *y == 0 {
                    None
                } else {
                    dec(Decimal::from(*x).checked_div(Decimal::from(*y)))
                }
            }
            BinOp::IntDiv => x.checked_div(*y).map(Integer),
            BinOp::Mod => x.checked_rem(*y).map(Integer),
            _ => return Err(mismatch()),
        });
    }
    if let (Some(x), Some(y)) = (as_decimal(a), as_decimal(b)) {
        return Ok(match op {
            BinOp::Add => dec(x.checked_add(y)),
            BinOp::Sub => dec(x.checked_sub(y)),
            BinOp::Mul => dec(x.checked_mul(y)),
            BinOp::Div => dec(x.checked_div(y)),
            BinOp::IntDiv => x.checked_div(y).and_then(|q| q.trunc().to_i64()).map(Integer),
            BinOp::Mod => dec(x.checked_rem(y)),
            _ => return Err(mismatch()),
        });
    }
    if let (BinOp::Add | BinOp::Sub, Some(t), Quantity { value, unit }) = (op, temporal_of(a), b) {
        return temporal_add(t, *value, unit, op == BinOp::Sub, pos);
    }
    match (op, a, b) {
        (BinOp::Add, Value::String(x), Value::String(y)) => Ok(Some(Value::String(format!("{x}{y}")))),
        (BinOp::Add | BinOp::Sub, Quantity { value: v1, unit: u1 }, Quantity { value: v2, unit: u2 }) => {
            let Some(v2) = units::convert(*v2, u2, u1) else {
                return Err(Error::execution(pos, format!("cannot add '{u1}' and '{u2}'")));
            };
            let v = if op == BinOp::Add { v1.checked_add(v2) } else { v1.checked_sub(v2) };
            Ok(v.map(|value| Quantity { value, unit: u1.clone() }))
        }
        (BinOp::Mul, Quantity { value, unit }, n) | (BinOp::Mul, n, Quantity { value, unit })
            if as_decimal(n).is_some() =>
        {
            let n = as_decimal(n).unwrap_or_default();
            Ok(value.checked_mul(n).map(|value| Quantity { value, unit: unit.clone() }))
        }
        (BinOp::Div, Quantity { value, unit }, n) if as_decimal(n).is_some() => {
            let n = as_decimal(n).unwrap_or_default();
            Ok(value.checked_div(n).map(|value| Quantity { value, unit: unit.clone() }))
        }
        (BinOp::Mul | BinOp::Div, Quantity { value: v1, unit: u1 }, Quantity { value: v2, unit: u2 }) => {
            let (Some(c1), Some(c2)) = (units::canonical(u1), units::canonical(u2)) else {
                return Err(Error::execution(pos, format!("unsupported units '{u1}', '{u2}'")));
            };
            let x = v1.checked_mul(c1.factor);
            let y = v2.checked_mul(c2.factor);
            let (Some(x), Some(y)) = (x, y) else { return Ok(None) };
            let mut dims = c1.dims.clone();
            for (d, e) in c2.dims {
                *dims.entry(d).or_insert(0) += if op == BinOp::Mul { e } else { -e };
            }
            dims.retain(|_, e| *e != 0);
            let v = if op == BinOp::Mul { x.checked_mul(y) } else { x.checked_div(y) };
            Ok(v.map(|value| Quantity { value, unit: units::unit_string(&dims) }))
        }
        _ => Err(mismatch()),
    }
}

/// Date/time plus or minus a calendar duration (or a UCUM unit of fixed length).
fn temporal_add<'a>(
    t: &Temporal,
    value: Decimal,
    unit: &str,
    minus: bool,
    pos: usize,
) -> Result<Option<Value<'a>>, Error> {
    let word = match unit {
        "year" | "years" => "year",
        "month" | "months" => "month",
        "week" | "weeks" | "wk" => "week",
        "day" | "days" | "d" => "day",
        "hour" | "hours" | "h" => "hour",
        "minute" | "minutes" | "min" => "minute",
        "second" | "seconds" | "s" => "second",
        "millisecond" | "milliseconds" | "ms" => "millisecond",
        _ => return Err(Error::execution(pos, format!("cannot add '{unit}' to a date or time"))),
    };
    let Some(mut amount) = value.trunc().to_i64() else {
        return Ok(None);
    };
    if minus {
        amount = -amount;
    }
    if t.kind == TemporalKind::Time && matches!(word, "year" | "month" | "week" | "day") {
        return Err(Error::execution(pos, format!("cannot add '{unit}' to a time")));
    }
    Ok(t.add(amount, word).map(Value::temporal))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(v: &str, u: &str) -> Value<'static> {
        Value::Quantity { value: v.parse().unwrap(), unit: u.into() }
    }

    #[test]
    fn equality_rules() {
        assert_eq!(item_equal(&Value::Integer(1), &Value::Decimal("1.0".parse().unwrap())), Some(true));
        assert_eq!(item_equal(&q("4.0000", "g"), &q("4000.0", "mg")), Some(true));
        assert_eq!(item_equal(&q("1", "year"), &q("1", "a")), None);
        assert!(item_equivalent(&q("4", "g"), &q("4040", "mg")));
        assert!(item_equivalent(&Value::String("a  B".into()), &Value::String(" A b".into())));
        let d1 = Value::temporal(Temporal::parse_literal("2012-04-15").unwrap());
        let d2 = Value::temporal(Temporal::parse_literal("2012-04-15T10:00:00").unwrap());
        assert_eq!(item_equal(&d1, &d2), None);
        assert!(!item_equivalent(&d1, &d2));
        assert_eq!(coll_equal(&[], &[Value::Integer(1)]), None);
    }

    #[test]
    fn arithmetic_rules() {
        let r = arith(BinOp::Div, &Value::Integer(1), &Value::Integer(0), 0).unwrap();
        assert!(r.is_none());
        let r = arith(BinOp::Mul, &q("2.0", "cm"), &q("2.0", "m"), 0).unwrap().unwrap();
        assert_eq!(item_equal(&r, &q("0.040", "m2")), Some(true));
        assert!(arith(BinOp::Sub, &Value::String("a".into()), &Value::String("b".into()), 0).is_err());
        let d = Value::temporal(Temporal::parse_literal("1973-12-25").unwrap());
        assert!(arith(BinOp::Add, &d, &q("1", "mo"), 0).is_err());
        let r = arith(BinOp::Add, &d, &q("1", "wk"), 0).unwrap().unwrap();
        assert_eq!(r.to_string(), "1974-01-01");
    }
}
