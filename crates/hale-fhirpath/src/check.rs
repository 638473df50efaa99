//! Static checks: function names and arity (at parse time) and, given the type of the
//! root resource, a light type inference over the R4 model that reports what can never
//! work (`Patient.name.given1`, `Observation.valueQuantity`, `startsWith` on an Identifier).
//! Whatever the model cannot type (abstract resources, primitives' members, results of
//! `resolve()`...) is left unchecked rather than guessed.

use hale_fhir::definitions::TypeKind;

use crate::model;
use crate::parser::{BinOp, Node, TypeSpec};
use crate::temporal::TemporalKind;
use crate::{Error, functions};

/// Walks the tree: every function must be known and called with a valid number of arguments.
pub(crate) fn check_functions(n: &Node) -> Result<(), Error> {
    match n {
        Node::Member(b, _, _) | Node::Neg(b) | Node::Is(b, _) | Node::As(b, _) | Node::Cached(b, _) => {
            check_functions(b)
        }
        Node::Indexer(a, b) | Node::Binary(_, a, b, _) => {
            check_functions(a)?;
            check_functions(b)
        }
        Node::Func(target, name, args, pos) => {
            let Some((min, max)) = functions::arity(name) else {
                return Err(Error::semantic(*pos, format!("unknown function {name}()")));
            };
            if args.len() < min || args.len() > max {
                return Err(Error::semantic(*pos, format!("wrong number of arguments for {name}()")));
            }
            if let Some(t) = target {
                check_functions(t)?;
            }
            if matches!(name.as_str(), "is" | "as" | "ofType") {
                return match &args[0] {
                    Node::Ident(..) => Ok(()),
                    Node::Member(b, _, _) if matches!(b.as_ref(), Node::Ident(..)) => Ok(()),
                    _ => Err(Error::semantic(*pos, format!("{name}() needs a type name"))),
                };
            }
            args.iter().try_for_each(check_functions)
        }
        _ => Ok(()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum T {
    System(&'static str),
    Fhir(&'static str),
}

/// The possible types of a collection (`None`: unknown) and whether its order is undefined.
#[derive(Debug, Clone)]
struct Info {
    types: Option<Vec<T>>,
    unordered: bool,
}

impl Info {
    fn unknown() -> Info {
        Info { types: None, unordered: false }
    }
    fn of(t: T) -> Info {
        Info { types: Some(vec![t]), unordered: false }
    }
    fn sys(name: &'static str) -> Info {
        Info::of(T::System(name))
    }
}

struct Checker {
    root: Option<&'static str>,
    context: Option<&'static str>,
    ordered: bool,
}

fn info_of(t: Option<&'static str>) -> Info {
    t.map(|t| Info::of(T::Fhir(t))).unwrap_or_else(Info::unknown)
}

/// Checks the expression evaluated on a node of type `context` in a resource of type
/// `root` (either unknown: unchecked).
pub(crate) fn check_types(
    n: &Node,
    root: Option<&'static str>,
    context: Option<&'static str>,
    check_ordered: bool,
) -> Result<(), Error> {
    let c = Checker { root, context, ordered: check_ordered };
    c.check(n, &info_of(context)).map(|_| ())
}

fn is_stringish(t: &T) -> bool {
    match t {
        T::System(s) => *s == "String",
        T::Fhir(f) => model::is_primitive(f),
    }
}

fn is_booleanish(t: &T) -> bool {
    matches!(t, T::System("Boolean") | T::Fhir("boolean"))
}

const STRING_FUNCTIONS: [&str; 18] = [
    "indexOf",
    "substring",
    "startsWith",
    "endsWith",
    "contains",
    "upper",
    "lower",
    "replace",
    "matches",
    "matchesFull",
    "replaceMatches",
    "length",
    "toChars",
    "split",
    "trim",
    "encode",
    "decode",
    "escape",
];

const ORDERED_FUNCTIONS: [&str; 5] = ["first", "last", "tail", "skip", "take"];

impl Checker {
    fn member(&self, base: &Info, name: &str, pos: usize) -> Result<Info, Error> {
        let Some(types) = &base.types else {
            return Ok(Info::unknown());
        };
        let mut out = Vec::new();
        let mut checked_any = false;
        for t in types {
            let T::Fhir(tn) = t else { continue };
            if model::is_primitive(tn) {
                return Ok(Info::unknown());
            }
            let Some(td) = model::type_def(tn) else {
                return Ok(Info::unknown());
            };
            if td.is_abstract && td.kind == TypeKind::Resource {
                return Ok(Info::unknown());
            }
            checked_any = true;
            if let Some(el) = td.elements.iter().find(|e| e.base_name() == name) {
                for et in &el.types {
                    match model::fhir_type(et) {
                        Some(s) => out.push(T::Fhir(s)),
                        None => {
                            return Ok(Info { types: None, unordered: base.unordered });
                        }
                    }
                }
            }
        }
        if checked_any && out.is_empty() {
            let names: Vec<&str> = types
                .iter()
                .filter_map(|t| match t {
                    T::Fhir(f) => Some(*f),
                    T::System(_) => None,
                })
                .collect();
            return Err(Error::semantic(pos, format!("'{name}' is not an element of {}", names.join(" | "))));
        }
        if !checked_any {
            return Ok(Info::unknown());
        }
        Ok(Info { types: Some(out), unordered: base.unordered })
    }

    fn type_of(ts: &TypeSpec) -> Option<T> {
        match model::resolve_type(ts.namespace.as_deref(), &ts.name)? {
            model::TypeRef::System(s) => Some(T::System(s)),
            model::TypeRef::Fhir(f) | model::TypeRef::Either(_, f) => Some(T::Fhir(f)),
        }
    }

    fn check(&self, n: &Node, focus: &Info) -> Result<Info, Error> {
        Ok(match n {
            Node::Empty => Info { types: Some(vec![]), unordered: false },
            Node::Bool(_) => Info::sys("Boolean"),
            Node::Str(_) => Info::sys("String"),
            Node::Int(_) => Info::sys("Integer"),
            Node::Dec(_) => Info::sys("Decimal"),
            Node::Quantity(..) => Info::sys("Quantity"),
            Node::Temporal(t) => Info::sys(match t.kind {
                TemporalKind::Date => "Date",
                TemporalKind::DateTime => "DateTime",
                TemporalKind::Time => "Time",
            }),
            Node::Ident(name, pos) => {
                if name.starts_with(|c: char| c.is_ascii_uppercase())
                    && let Some(t) = model::fhir_type(name)
                    && model::is_resource_type(t)
                {
                    return Ok(Info::of(T::Fhir(t)));
                }
                self.member(focus, name, *pos)?
            }
            Node::This => focus.clone(),
            Node::Cached(inner, _) => self.check(inner, focus)?,
            Node::Index => Info::sys("Integer"),
            Node::Total => Info::unknown(),
            Node::Env(name) => match name.as_str() {
                "resource" | "rootResource" => info_of(self.root),
                "context" => info_of(self.context),
                "ucum" | "sct" | "loinc" => Info::sys("String"),
                _ => Info::unknown(),
            },
            Node::Member(base, name, pos) => {
                let b = self.check(base, focus)?;
                self.member(&b, name, *pos)?
            }
            Node::Indexer(base, idx) => {
                let b = self.check(base, focus)?;
                self.check(idx, focus)?;
                if self.ordered && b.unordered {
                    return Err(Error::semantic(0, "indexing an unordered collection"));
                }
                b
            }
            Node::Neg(inner) => self.check(inner, focus)?,
            Node::Is(e, _) => {
                self.check(e, focus)?;
                Info::sys("Boolean")
            }
            Node::As(e, ts) => {
                let b = self.check(e, focus)?;
                match Checker::type_of(ts) {
                    Some(t) => Info { types: Some(vec![t]), unordered: b.unordered },
                    None => Info::unknown(),
                }
            }
            Node::Binary(op, l, r, _) => {
                let a = self.check(l, focus)?;
                let b = self.check(r, focus)?;
                match op {
                    BinOp::Union => match (a.types, b.types) {
                        (Some(mut x), Some(y)) => {
                            for t in y {
                                if !x.contains(&t) {
                                    x.push(t);
                                }
                            }
                            Info { types: Some(x), unordered: a.unordered || b.unordered }
                        }
                        _ => Info::unknown(),
                    },
                    BinOp::Concat => Info::sys("String"),
                    BinOp::Eq
                    | BinOp::Ne
                    | BinOp::Equiv
                    | BinOp::NotEquiv
                    | BinOp::Lt
                    | BinOp::Le
                    | BinOp::Gt
                    | BinOp::Ge
                    | BinOp::In
                    | BinOp::Contains
                    | BinOp::And
                    | BinOp::Or
                    | BinOp::Xor
                    | BinOp::Implies => Info::sys("Boolean"),
                    _ => Info::unknown(),
                }
            }
            Node::Func(target, name, args, pos) => {
                let pos = *pos;
                let input = match target {
                    Some(t) => self.check(t, focus)?,
                    None => focus.clone(),
                };
                // `x.iif(...)` evaluates its arguments on x
                let lambda = matches!(
                    name.as_str(),
                    "where" | "select" | "exists" | "all" | "repeat" | "aggregate" | "sort" | "trace"
                ) || (name == "iif" && target.is_some());
                let item_focus = Info { types: input.types.clone(), unordered: false };
                let mut arg_infos = Vec::with_capacity(args.len());
                if !matches!(name.as_str(), "is" | "as" | "ofType") {
                    for a in args {
                        arg_infos.push(if lambda { self.check(a, &item_focus)? } else { self.check(a, focus)? });
                    }
                }
                if self.ordered && input.unordered && ORDERED_FUNCTIONS.contains(&name.as_str()) {
                    return Err(Error::semantic(pos, format!("{name}() on an unordered collection")));
                }
                if STRING_FUNCTIONS.contains(&name.as_str())
                    && let Some(types) = &input.types
                    && !types.is_empty()
                    && !types.iter().any(is_stringish)
                {
                    return Err(Error::semantic(pos, format!("{name}() needs a string")));
                }
                match name.as_str() {
                    "iif" => {
                        if let Some(types) = &arg_infos[0].types
                            && types.iter().any(|t| !is_booleanish(t))
                        {
                            return Err(Error::semantic(pos, "iif() criterion must be a boolean"));
                        }
                        Info::unknown()
                    }
                    "where" | "first" | "last" | "tail" | "skip" | "take" | "single" | "distinct" | "trace"
                    | "intersect" | "exclude" => input,
                    "select" => {
                        let mut r = arg_infos.swap_remove(0);
                        r.unordered |= input.unordered;
                        r
                    }
                    "ofType" | "as" => match &args[0] {
                        Node::Ident(tn, _) => match Checker::type_of(&TypeSpec { namespace: None, name: tn.clone() }) {
                            Some(t) => Info { types: Some(vec![t]), unordered: input.unordered },
                            None => Info::unknown(),
                        },
                        Node::Member(b, tn, _) => match b.as_ref() {
                            Node::Ident(ns, _) => {
                                match Checker::type_of(&TypeSpec { namespace: Some(ns.clone()), name: tn.clone() }) {
                                    Some(t) => Info { types: Some(vec![t]), unordered: input.unordered },
                                    None => Info::unknown(),
                                }
                            }
                            _ => Info::unknown(),
                        },
                        _ => Info::unknown(),
                    },
                    "children" | "descendants" => Info { types: None, unordered: true },
                    "extension" => Info { types: Some(vec![T::Fhir("Extension")]), unordered: false },
                    "exists" | "empty" | "all" | "allTrue" | "anyTrue" | "allFalse" | "anyFalse" | "not"
                    | "subsetOf" | "supersetOf" | "isDistinct" | "hasValue" | "is" | "startsWith" | "endsWith"
                    | "contains" | "matches" | "matchesFull" => Info::sys("Boolean"),
                    "count" | "length" | "indexOf" => Info::sys("Integer"),
                    "toString" | "upper" | "lower" | "substring" | "replace" | "replaceMatches" | "trim" | "join" => {
                        Info::sys("String")
                    }
                    _ => Info::unknown(),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::parse;

    fn check(src: &str, root: &'static str) -> Result<(), Error> {
        let n = parse(src)?;
        check_functions(&n)?;
        check_types(&n, Some(root), Some(root), false)
    }

    #[test]
    fn finds_model_errors() {
        assert!(check("name.given1", "Patient").is_err());
        assert_eq!(check("name.where(given1 = 'x')", "Patient").unwrap_err().position, 11);
        assert_eq!(check("Patient.name.given1", "Patient").unwrap_err().position, 13);
        assert!(check("Encounter.name.given", "Patient").is_err());
        assert!(check("Observation.valueQuantity.unit", "Observation").is_err());
        assert!(check("(Observation.value as Period).unit", "Observation").is_err());
        assert!(check("iif('x', 1, 2)", "Patient").is_err());
        assert!(check("Patient.identifier.startsWith('x')", "Patient").is_err());
        assert!(check("Patient.foo()", "Patient").is_err());
        assert!(check("Patient.name.given", "Patient").is_ok());
        assert!(check("Observation.value.unit", "Observation").is_ok());
        assert!(check("Bundle.entry.resource.name", "Bundle").is_ok());
        assert!(check("Patient.contact.name.family", "Patient").is_ok());
        assert!(check("Patient.id.extension.value", "Patient").is_ok());
        assert!(check("Patient.name.first().iif(given.exists(), 'y', 'n')", "Patient").is_ok());
        assert!(check("Patient.name.iif(given.exists(), 'y', 'n')", "Patient").is_ok());
        assert!(check("Patient.name.where(given1.exists())", "Patient").is_err());
    }

    #[test]
    fn r4_search_parameters_pass_the_checks() {
        let mut failures = Vec::new();
        for sp in model::defs().search_parameters() {
            let Some(expr) = &sp.expression else { continue };
            let n = match parse(expr) {
                Ok(n) => n,
                Err(e) => {
                    failures.push(format!("{}: {expr}: {e}", sp.code));
                    continue;
                }
            };
            for base in &sp.base {
                let Some(t) = model::fhir_type(base) else { continue };
                if let Err(e) = check_functions(&n).and_then(|_| check_types(&n, Some(t), Some(t), false)) {
                    failures.push(format!("{base}.{}: {expr}: {e}", sp.code));
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}
