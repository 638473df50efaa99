//! Loop-invariant subexpressions. Inside the argument of `where()`, `select()` and the
//! other functions that evaluate an expression per item, a subexpression that does not
//! depend on the item (`%resource.descendants().reference` in the R4 invariant dom-3) has
//! the same value for every item: it is wrapped in [`Node::Cached`] and evaluated once
//! per evaluation.

use crate::parser::Node;

/// Functions whose argument `i` is evaluated once per input item (with `$this`).
pub(crate) fn per_item_arg(name: &str, i: usize, has_target: bool) -> bool {
    match name {
        "where" | "select" | "exists" | "all" | "repeat" | "sort" => true,
        "aggregate" => i == 0,
        "trace" => i == 1,
        "iif" => has_target,
        _ => false,
    }
}

/// Does the value of `n` not depend on the focus, `$this`, `$index` or `$total`?
fn invariant(n: &Node) -> bool {
    match n {
        Node::Ident(..) | Node::This | Node::Index | Node::Total => false,
        Node::Empty
        | Node::Bool(_)
        | Node::Str(_)
        | Node::Int(_)
        | Node::Dec(_)
        | Node::Temporal(_)
        | Node::Quantity(..)
        | Node::Env(_) => true,
        Node::Member(b, _, _) | Node::Neg(b) | Node::Is(b, _) | Node::As(b, _) | Node::Cached(b, _) => invariant(b),
        Node::Indexer(a, b) | Node::Binary(_, a, b, _) => invariant(a) && invariant(b),
        // a function of the focus
        Node::Func(None, ..) => false,
        Node::Func(Some(t), name, args, _) => {
            invariant(t)
                && args.iter().enumerate().all(|(i, a)| {
                    per_item_arg(name, i, true) || matches!(name.as_str(), "is" | "as" | "ofType") || invariant(a)
                })
        }
    }
}

/// Worth caching: not a literal or a variable.
fn costly(n: &Node) -> bool {
    matches!(n, Node::Member(..) | Node::Func(..) | Node::Binary(..) | Node::Indexer(..) | Node::Is(..) | Node::As(..))
}

/// Wraps the loop-invariant subexpressions of per-item arguments; returns the number of
/// cache slots used.
pub(crate) fn mark(n: &mut Node) -> usize {
    let mut slots = 0;
    walk(n, false, &mut slots);
    slots
}

fn walk(n: &mut Node, per_item: bool, slots: &mut usize) {
    if per_item && costly(n) && invariant(n) {
        let inner = std::mem::replace(n, Node::Empty);
        *n = Node::Cached(Box::new(inner), *slots);
        *slots += 1;
        return;
    }
    match n {
        Node::Member(b, _, _) | Node::Neg(b) | Node::Is(b, _) | Node::As(b, _) | Node::Cached(b, _) => {
            walk(b, per_item, slots)
        }
        Node::Indexer(a, b) | Node::Binary(_, a, b, _) => {
            walk(a, per_item, slots);
            walk(b, per_item, slots);
        }
        Node::Func(target, name, args, _) => {
            let has_target = target.is_some();
            if let Some(t) = target {
                walk(t, per_item, slots);
            }
            for (i, a) in args.iter_mut().enumerate() {
                walk(a, per_item || per_item_arg(name, i, has_target), slots);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::parse;

    #[test]
    fn caches_invariant_subexpressions() {
        let mut n = parse("contained.where(id in %resource.descendants().reference)").unwrap();
        assert_eq!(mark(&mut n), 1);
        let mut n = parse("name.where(given = 'x').select(family)").unwrap();
        assert_eq!(mark(&mut n), 0);
        let mut n = parse("%resource.descendants().reference").unwrap();
        assert_eq!(mark(&mut n), 0);
        let mut n = parse("a.where(b.where(%resource.x.exists()).exists() and (1 + 2) > $index)").unwrap();
        assert_eq!(mark(&mut n), 2);
    }
}
