//! Evaluation of the R4 search parameter expressions, which use a small part of
//! FHIRPath: paths from a resource type, unions (`|`), parentheses, `as Type` and
//! `.as(Type)`, `[n]`, `.where(resolve() is Type)` and `.where(path = 'literal')`, plus
//! `exists()` in one definition. A path whose first name is an element, not a type (the
//! definitions write a few without the resource-type prefix), starts at the resource.
//! Each node carries its FHIR type from the R4
//! definitions, which is what index extraction needs (`Observation.value` may be a
//! Quantity or a CodeableConcept). An expression outside this subset does not compile,
//! and `tests::every_r4_search_expression_compiles` keeps it so for all 1,375.

use hale_fhir::Definitions;
use serde_json::Value;

/// A compiled search expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Union(Vec<Expr>),
    /// A path: starts at the resource when the first name is its type.
    Path {
        root: String,
        steps: Vec<Step>,
    },
    /// `X.exists() and X != false` (Patient.deceased): true when present and not false.
    PresentNotFalse(Box<Expr>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Child(String),
    As(String),
    Index(usize),
    WhereResolveIs(String),
    WhereEquals(Vec<String>, String),
    /// `(expr).rest`: a parenthesised expression evaluated from the root.
    Group(Box<Expr>),
}

/// A value selected by an expression, with its FHIR type.
#[derive(Debug, Clone, Copy)]
pub struct Node<'a> {
    pub fhir_type: &'a str,
    pub value: &'a Value,
}

/// Why an expression does not compile.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("search expression not supported at {at}: {what}")]
pub struct ExprError {
    pub at: usize,
    pub what: String,
}

fn err(at: usize, what: impl Into<String>) -> ExprError {
    ExprError { at, what: what.into() }
}

/// Splits at top-level occurrences of `sep` (outside parentheses and quotes).
fn split_top(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut quote, mut start) = (0i32, false, 0);
    for (i, c) in s.char_indices() {
        match c {
            '\'' => quote = !quote,
            '(' if !quote => depth += 1,
            ')' if !quote => depth -= 1,
            c if c == sep && depth == 0 && !quote => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// Compiles an R4 search parameter expression.
pub fn compile(expr: &str) -> Result<Expr, ExprError> {
    let parts = split_top(expr, '|');
    if parts.len() > 1 {
        return parts.iter().map(|p| compile(p.trim())).collect::<Result<Vec<_>, _>>().map(Expr::Union);
    }
    let e = expr.trim();
    if let Some((left, right)) = e.split_once(" and ") {
        let base = left.trim().strip_suffix(".exists()").ok_or_else(|| err(0, e))?;
        if right.trim() != format!("{base} != false") {
            return Err(err(0, e));
        }
        return Ok(Expr::PresentNotFalse(Box::new(compile(base)?)));
    }
    compile_path(e)
}

fn compile_path(e: &str) -> Result<Expr, ExprError> {
    let mut steps = Vec::new();
    let mut rest = e;
    let root;
    if let Some(r) = rest.strip_prefix('(') {
        // (A.b as X) or (A | B) followed by more
        let mut depth = 1;
        let mut close = None;
        for (i, c) in r.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        close = Some(i);
                        break;
                    }
                }
                _ => {}
            }
        }
        let close = close.ok_or_else(|| err(0, "unbalanced parenthesis"))?;
        steps.push(Step::Group(Box::new(compile(&r[..close])?)));
        root = String::new();
        rest = &r[close + 1..];
    } else {
        let end = rest.find(['.', ' ', '[']).unwrap_or(rest.len());
        root = rest[..end].to_string();
        rest = &rest[end..];
    }
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        if let Some(r) = rest.strip_prefix("as ") {
            let end = r.find([' ', '.', ')']).unwrap_or(r.len());
            steps.push(Step::As(r[..end].to_string()));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').ok_or_else(|| err(0, "unclosed ["))?;
            steps.push(Step::Index(r[..end].parse().map_err(|_| err(0, "index"))?));
            rest = &r[end + 1..];
        } else if let Some(r) = rest.strip_prefix(".as(") {
            let end = r.find(')').ok_or_else(|| err(0, "unclosed as("))?;
            steps.push(Step::As(r[..end].to_string()));
            rest = &r[end + 1..];
        } else if let Some(r) = rest.strip_prefix(".where(") {
            let mut depth = 1;
            let mut close = None;
            for (i, c) in r.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            close = Some(i);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let close = close.ok_or_else(|| err(0, "unclosed where("))?;
            let cond = r[..close].trim();
            if let Some(t) = cond.strip_prefix("resolve() is ") {
                steps.push(Step::WhereResolveIs(t.trim().to_string()));
            } else if let Some((path, lit)) = cond.split_once('=') {
                let lit = lit.trim().trim_matches('\'').to_string();
                steps.push(Step::WhereEquals(path.trim().split('.').map(str::to_string).collect(), lit));
            } else {
                return Err(err(0, format!("where({cond})")));
            }
            rest = &r[close + 1..];
        } else if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', ' ', '[', '(']).unwrap_or(r.len());
            if r[end..].starts_with('(') {
                return Err(err(0, format!("function {}", &r[..end])));
            }
            steps.push(Step::Child(r[..end].to_string()));
            rest = &r[end..];
        } else {
            return Err(err(e.len() - rest.len(), rest.to_string()));
        }
    }
    Ok(Expr::Path { root, steps })
}

const QUANTITY_KINDS: &[&str] =
    &["Quantity", "Age", "Distance", "Duration", "Count", "SimpleQuantity", "MoneyQuantity"];

fn type_matches(actual: &str, wanted: &str) -> bool {
    let wanted = wanted.trim_start_matches("FHIR.");
    actual == wanted
        // `value.as(DateTime)` in composite definitions names the primitive `dateTime`
        || (actual.eq_ignore_ascii_case(wanted) && Definitions::get().is_primitive(actual))
        || (wanted == "Quantity" && QUANTITY_KINDS.contains(&actual))
        || (wanted == "Resource" && Definitions::get().is_concrete_resource(actual))
}

/// Children named `name` of a node (arrays flattened, choice elements resolved).
fn children<'a>(node: Node<'a>, name: &str, out: &mut Vec<Node<'a>>) {
    let defs = Definitions::get();
    let Some(obj) = node.value.as_object() else { return };
    let Some(td) = defs.type_def(node.fhir_type) else { return };
    let mut push = |ty: &'a str, v: &'a Value| match v {
        Value::Array(items) => {
            for item in items {
                push_typed(ty, item, out);
            }
        }
        other => push_typed(ty, other, out),
    };
    if let Some((el, ty)) = td.property(name)
        && !el.is_choice()
        && let Some(v) = obj.get(name)
    {
        push(ty, v);
        return;
    }
    // a choice element (`value` of `valueQuantity`): look up the few keys present
    for (key, v) in obj {
        if let Some(ty) = td.choice_type(key, name) {
            push(ty, v);
        }
    }
}

fn push_typed<'a>(ty: &'a str, v: &'a Value, out: &mut Vec<Node<'a>>) {
    // a contained or inline resource takes its type from resourceType
    let ty = if ty == "Resource" { v.get("resourceType").and_then(Value::as_str).unwrap_or(ty) } else { ty };
    out.push(Node { fhir_type: ty, value: v });
}

fn reference_type(v: &Value) -> Option<&str> {
    let r = v.get("reference")?.as_str()?;
    let r = r.split("/_history/").next().unwrap_or(r);
    let mut parts = r.rsplit('/');
    parts.next()?;
    parts.next()
}

fn apply<'a>(nodes: Vec<Node<'a>>, step: &Step, root: Node<'a>) -> Vec<Node<'a>> {
    match step {
        Step::Child(name) => {
            let mut out = Vec::new();
            for n in nodes {
                children(n, name, &mut out);
            }
            out
        }
        Step::As(t) => nodes.into_iter().filter(|n| type_matches(n.fhir_type, t)).collect(),
        Step::Index(i) => nodes.into_iter().nth(*i).into_iter().collect(),
        Step::WhereResolveIs(t) => nodes.into_iter().filter(|n| reference_type(n.value) == Some(t.as_str())).collect(),
        Step::WhereEquals(path, lit) => nodes
            .into_iter()
            .filter(|n| {
                let mut cur = vec![*n];
                for p in path {
                    cur = apply(cur, &Step::Child(p.clone()), root);
                }
                cur.iter().any(|c| c.value.as_str() == Some(lit.as_str()))
            })
            .collect(),
        Step::Group(e) => eval_from(e, root),
    }
}

fn eval_from<'a>(e: &Expr, root: Node<'a>) -> Vec<Node<'a>> {
    match e {
        Expr::Union(parts) => parts.iter().flat_map(|p| eval_from(p, root)).collect(),
        Expr::PresentNotFalse(inner) => {
            eval_from(inner, root).into_iter().filter(|n| n.value != &Value::Bool(false)).collect()
        }
        Expr::Path { root: r, steps } => {
            let mut nodes = if r.is_empty() {
                Vec::new()
            } else if type_matches(root.fhir_type, r) || r == "DomainResource" {
                vec![root]
            } else if r.starts_with(|c: char| c.is_ascii_lowercase()) {
                // an element name, not a type: the R4 definitions write some expressions
                // without the resource-type prefix (InsurancePlan `name`: `name | alias`),
                // evaluated on the resource itself
                let mut out = Vec::new();
                children(root, r, &mut out);
                out
            } else {
                return Vec::new();
            };
            for (i, s) in steps.iter().enumerate() {
                if i == 0 && matches!(s, Step::Group(_)) {
                    nodes = eval_from(
                        match s {
                            Step::Group(e) => e,
                            _ => unreachable!("checked above"),
                        },
                        root,
                    );
                    continue;
                }
                nodes = apply(nodes, s, root);
                if nodes.is_empty() {
                    break;
                }
            }
            nodes
        }
    }
}

impl Expr {
    /// The nodes the expression selects from `resource`.
    pub fn evaluate<'a>(&self, resource: &'a Value) -> Vec<Node<'a>> {
        let ty = resource.get("resourceType").and_then(Value::as_str).unwrap_or("");
        eval_from(self, Node { fhir_type: ty, value: resource })
    }

    /// The nodes a relative expression (a composite parameter's component) selects
    /// from `node`; `%resource` is the whole resource.
    pub fn evaluate_on<'a>(&self, node: Node<'a>, resource: &'a Value) -> Vec<Node<'a>> {
        let ty = resource.get("resourceType").and_then(Value::as_str).unwrap_or("");
        let root_node = Node { fhir_type: ty, value: resource };
        match self {
            Expr::Union(parts) => parts.iter().flat_map(|p| p.evaluate_on(node, resource)).collect(),
            Expr::PresentNotFalse(inner) => {
                inner.evaluate_on(node, resource).into_iter().filter(|n| n.value != &Value::Bool(false)).collect()
            }
            Expr::Path { root, steps } => {
                let mut nodes = if root == "%resource" {
                    vec![root_node]
                } else if root.is_empty() {
                    Vec::new()
                } else {
                    let mut out = Vec::new();
                    children(node, root, &mut out);
                    out
                };
                for s in steps {
                    nodes = match s {
                        Step::Group(e) => e.evaluate_on(node, resource),
                        other => apply(nodes, other, root_node),
                    };
                }
                nodes
            }
        }
    }

    /// Keeps only the branches of a union that can apply to `resource_type`.
    pub fn for_type(&self, resource_type: &str) -> Option<Expr> {
        match self {
            Expr::Union(parts) => {
                let kept: Vec<Expr> = parts.iter().filter_map(|p| p.for_type(resource_type)).collect();
                match kept.len() {
                    0 => None,
                    1 => kept.into_iter().next(),
                    _ => Some(Expr::Union(kept)),
                }
            }
            Expr::Path { root, .. } if !root.is_empty() => (type_matches(resource_type, root)
                || root == "DomainResource"
                // no type prefix: it applies to each base type of its definition
                || root.starts_with(|c: char| c.is_ascii_lowercase()))
            .then(|| self.clone()),
            other => Some(other.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn types(e: &str, v: &Value) -> Vec<String> {
        compile(e).unwrap().evaluate(v).iter().map(|n| n.fhir_type.to_string()).collect()
    }

    #[test]
    fn every_r4_search_expression_compiles() {
        let mut failed = Vec::new();
        for p in Definitions::get().search_parameters() {
            if let Some(e) = &p.expression
                && let Err(x) = compile(e)
            {
                failed.push(format!("{}: {x}", p.url));
            }
        }
        assert!(failed.is_empty(), "{failed:#?}");
    }

    /// Expressions the R4 definitions write without the resource-type prefix are
    /// evaluated on the resource itself (they selected nothing before), and every such
    /// definition selects its element from a resource that has it.
    #[test]
    fn expressions_without_the_type_prefix_start_at_the_resource() {
        let plan = json!({"resourceType":"InsurancePlan","name":"Gold","alias":["Au plan"]});
        let e = compile("name | alias").unwrap().for_type("InsurancePlan").expect("kept for its base type");
        let names: Vec<&Value> = e.evaluate(&plan).iter().map(|n| n.value).collect();
        assert_eq!(names, [&json!("Gold"), &json!("Au plan")]);
        // a prefixed path for another type still selects nothing
        assert!(compile("Patient.name").unwrap().evaluate(&plan).is_empty());
        let mut unprefixed = Vec::new();
        for p in Definitions::get().search_parameters() {
            let Some(e) = &p.expression else { continue };
            for part in split_top(e, '|') {
                let part = part.trim();
                if part.starts_with(|c: char| c.is_ascii_lowercase()) {
                    unprefixed.push((p.base.clone(), part.to_string()));
                }
            }
        }
        assert!(!unprefixed.is_empty(), "R4 has such expressions");
        for (bases, part) in unprefixed {
            // a resource of each base type with the first element of the path set
            let first = part.split(['.', ' ', '[']).next().unwrap();
            for base in bases {
                let r = json!({"resourceType": base, (first): "x"});
                let got = compile(&part).unwrap().evaluate(&r);
                let direct = part == first;
                assert!(!direct || got.len() == 1, "{base}: {part} selected {}", got.len());
            }
        }
    }

    #[test]
    fn paths_choices_and_casts() {
        let obs = json!({"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1},
            "subject":{"reference":"Patient/1"},"component":[{"code":{"text":"a"},"valueCodeableConcept":{"text":"b"}}]});
        assert_eq!(types("Observation.value", &obs), ["Quantity"]);
        assert_eq!(types("(Observation.value as Quantity)", &obs), ["Quantity"]);
        assert_eq!(types("Observation.value.as(CodeableConcept)", &obs), Vec::<String>::new());
        assert_eq!(types("Observation.component.value as CodeableConcept", &obs), ["CodeableConcept"]);
        // a choice type whose name starts lower-case, an extension's value (fifty types),
        // and a key that only looks like a choice
        let ext = json!({"resourceType":"Observation","effectiveDateTime":"2020","valuedateTime":"2020",
            "extension":[{"url":"u","valueDateTime":"2020"},{"url":"v","valueAge":{"value":1}}]});
        assert_eq!(types("Observation.effective", &ext), ["dateTime"]);
        assert_eq!(types("Observation.extension.value", &ext), ["dateTime", "Age"]);
        assert_eq!(types("Observation.value", &ext), Vec::<String>::new());
        assert_eq!(types("Observation.subject.where(resolve() is Patient)", &obs), ["Reference"]);
        assert_eq!(types("Observation.subject.where(resolve() is Group)", &obs), Vec::<String>::new());
        assert_eq!(types("Patient.name | Observation.code", &obs), ["CodeableConcept"]);
        let p = json!({"resourceType":"Patient","telecom":[{"system":"phone","value":"1"},{"system":"email","value":"a@b"}],"deceasedBoolean":false});
        assert_eq!(compile("Patient.telecom.where(system='email')").unwrap().evaluate(&p).len(), 1);
        assert!(compile("Patient.deceased.exists() and Patient.deceased != false").unwrap().evaluate(&p).is_empty());
        let b = json!({"resourceType":"Bundle","type":"document","entry":[{"resource":{"resourceType":"Composition","status":"final"}}]});
        assert_eq!(types("Bundle.entry[0].resource", &b), ["Composition"]);
    }

    #[test]
    fn unions_keep_the_branches_of_a_type() {
        let e =
            compile("AllergyIntolerance.patient | CarePlan.subject.where(resolve() is Patient) | Observation.subject")
                .unwrap();
        assert_eq!(e.for_type("Observation"), Some(compile("Observation.subject").unwrap()));
        assert_eq!(e.for_type("Patient"), None);
    }
}
