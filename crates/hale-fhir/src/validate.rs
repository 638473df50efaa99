//! Structural validation of a resource against the R4 definitions
//! (<https://hl7.org/fhir/R4/json.html>, <https://hl7.org/fhir/R4/datatypes.html>):
//! known resource type; no unknown elements; JSON kinds and R4 regular expressions of
//! primitives; cardinality (including arrays exactly where `max > 1`); one type per
//! choice element; required bindings to the value sets the definitions expand; no
//! empty objects, arrays or strings; no `fhir_comments`; an Attachment's `size` and
//! `hash` true to its `data`; element ids without spaces; extensions
//! (<https://hl7.org/fhir/R4/extensibility.html>): an R4 core extension only where its
//! context allows, in `modifierExtension` exactly when it is a modifier, with a value of
//! a type it allows and the sub-extensions it defines; a modifier extension Hale does not
//! know refuses the resource, an ordinary one is kept. Every issue names its element,
//! e.g. `Patient.name[0].given[1]`.

use std::collections::HashMap;
use std::sync::OnceLock;

use regex::Regex;
use serde_json::{Map, Value};

use crate::definitions::{
    Definitions, ElementDef, ExtensionContext, ExtensionShape, Max, TypeDef, TypeKind, capitalize,
};
use crate::outcome::{Issue, IssueType};

/// Stop collecting after this many issues: enough to fix, bounded for hostile input.
const MAX_ISSUES: usize = 100;

/// Validates a resource; an empty result means valid.
pub fn validate_resource(resource: &Value) -> Vec<Issue> {
    let mut v = Validator { defs: Definitions::get(), issues: Vec::new(), contained: Vec::new() };
    v.resource(resource, None);
    v.issues
}

/// The compiled regular expression of a primitive type: compiled once for all types and
/// shared, so each thread keeps its own matching cache instead of rebuilding one per value.
fn regex_for(type_name: &str) -> Option<&'static Regex> {
    static ALL: OnceLock<HashMap<String, Regex>> = OnceLock::new();
    ALL.get_or_init(|| {
        Definitions::get()
            .primitive_regexes()
            .filter_map(|(name, pattern)| Regex::new(&format!("^(?:{pattern})$")).ok().map(|r| (name.to_string(), r)))
            .collect()
    })
    .get(type_name)
}

/// Where the walk is: an element, its type, and the elements above it up to the resource
/// it belongs to (a contained or Bundle-entry resource starts a chain of its own). Built on
/// the stack as the walk descends; read only where an extension with a core url asks
/// whether it may be there.
struct Node<'a> {
    parent: Option<&'a Node<'a>>,
    /// The element's name in its parent's definition (`name`, `value[x]`); the resource
    /// type at a resource.
    name: &'a str,
    /// Its type: a resource, data type, primitive or backbone element (`Patient.contact`).
    ty: &'a str,
}

struct Validator<'d> {
    defs: &'d Definitions,
    issues: Vec<Issue>,
    /// The ids of the contained resources of each resource being validated, innermost
    /// last: a narrative's internal links may lead to them.
    contained: Vec<Vec<String>>,
}

/// `path.key`, built without the formatting machinery: every element of every
/// resource validated gets one, and it is read only when there is an issue.
fn child_path(path: &str, key: &str) -> String {
    let mut s = String::with_capacity(path.len() + 1 + key.len());
    s.push_str(path);
    s.push('.');
    s.push_str(key);
    s
}

/// An element's path without indexes (`Patient.name.family`), for messages.
fn display_path(node: &Node) -> String {
    let mut names = Vec::new();
    let mut n = Some(node);
    while let Some(x) = n {
        names.push(x.name);
        n = x.parent;
    }
    names.reverse();
    names.join(".")
}

/// `path[i]`, likewise.
fn item_path(path: &str, i: usize) -> String {
    let mut s = String::with_capacity(path.len() + 6);
    s.push_str(path);
    s.push('[');
    s.push_str(&i.to_string());
    s.push(']');
    s
}

impl Validator<'_> {
    fn push(&mut self, code: IssueType, path: &str, msg: String) {
        if self.issues.len() < MAX_ISSUES {
            self.issues.push(Issue::error(code, msg).at(path));
        }
    }

    /// A resource at `path` (None for the root, where the path starts with its type).
    fn resource(&mut self, value: &Value, path: Option<&str>) {
        let loc = path.unwrap_or("Resource").to_string();
        let Some(obj) = value.as_object() else {
            self.push(IssueType::Structure, &loc, "A resource must be a JSON object".into());
            return;
        };
        let Some(rt) = obj.get("resourceType") else {
            self.push(IssueType::Required, &loc, "The resource has no resourceType".into());
            return;
        };
        let Some(rt) = rt.as_str() else {
            self.push(IssueType::Structure, &format!("{loc}.resourceType"), "resourceType must be a string".into());
            return;
        };
        if !self.defs.is_concrete_resource(rt) {
            self.push(
                IssueType::NotSupported,
                &format!("{loc}.resourceType"),
                format!("'{rt}' is not a known FHIR R4 resource type"),
            );
            return;
        }
        let Some(td) = self.defs.type_def(rt) else {
            self.push(IssueType::NotSupported, &format!("{loc}.resourceType"), format!("'{rt}' has no definition"));
            return;
        };
        let here = match path {
            None => rt.to_string(),
            Some(p) => p.to_string(),
        };
        let ids = obj.get("contained").and_then(Value::as_array).into_iter().flatten();
        self.contained.push(ids.filter_map(|c| c.get("id")?.as_str().map(str::to_string)).collect());
        let root = Node { parent: None, name: rt, ty: rt };
        self.object(obj, td, &here, true, &root);
        self.contained.pop();
        if rt == "Bundle" {
            for issue in crate::bundle::check(obj, &here) {
                if self.issues.len() < MAX_ISSUES {
                    self.issues.push(issue);
                }
            }
        }
    }

    fn object(&mut self, obj: &Map<String, Value>, td: &TypeDef, path: &str, is_resource: bool, node: &Node) {
        if obj.is_empty() || (is_resource && obj.len() == 1) && td.kind != TypeKind::Resource {
            self.push(IssueType::Structure, path, "An element must have a value or children (ele-1)".into());
            return;
        }
        if td.name == "Attachment" {
            self.attachment(obj, path);
        }
        // element index -> JSON names present for it (choice elements may have several)
        // (element index, property name) of each element present; a handful per object,
        // so a list beats a map
        let mut present: Vec<(usize, &str)> = Vec::new();
        for (key, val) in obj {
            if key == "resourceType" && is_resource {
                continue;
            }
            if key == "fhir_comments" {
                let at = child_path(path, key);
                self.push(IssueType::Structure, &at, "fhir_comments is a DSTU2 leftover, not part of R4 JSON".into());
                continue;
            }
            let (name, underscore) = match key.strip_prefix('_') {
                Some(n) => (n, true),
                None => (key.as_str(), false),
            };
            let child = child_path(path, key);
            let Some((el, ty)) = td.property(name) else {
                self.push(IssueType::Structure, &child, format!("Unknown element '{key}' in {}", td.name));
                continue;
            };
            let idx = td.elements.iter().position(|e| std::ptr::eq(e, el)).unwrap_or(usize::MAX);
            if !present.contains(&(idx, name)) {
                present.push((idx, name));
            }
            let here = Node { parent: Some(node), name: &el.name, ty };
            if underscore {
                self.primitive_extension(val, el, ty, &child_path(path, name), obj.get(name), &here);
            } else {
                let has_ext = obj.keys().any(|k| k.strip_prefix('_') == Some(name));
                self.element_value(val, el, ty, &child, has_ext, &here);
                if ty == "Extension" && (name == "extension" || name == "modifierExtension") {
                    let owner_url = if td.name == "Extension" { obj.get("url").and_then(Value::as_str) } else { None };
                    self.extensions(val, &child, node, owner_url, name == "modifierExtension");
                } else if name == "id" && ty == "string" {
                    self.element_id(val, &child);
                }
            }
        }
        for (i, el) in td.elements.iter().enumerate() {
            let names: Vec<&str> = present.iter().filter(|p| p.0 == i).map(|p| p.1).collect();
            match names.len() {
                0 if el.min > 0 => {
                    let name = if el.is_choice() { el.name.as_str() } else { el.base_name() };
                    self.push(
                        IssueType::Required,
                        &format!("{path}.{}", name.trim_end_matches("[x]")),
                        format!("Element '{name}' is required (min {}) in {}", el.min, td.name),
                    );
                }
                n if n > 1 => {
                    self.push(
                        IssueType::Structure,
                        &format!("{path}.{}", names[1]),
                        format!("Only one of {} may be present for {}", names.join(", "), el.name),
                    );
                }
                _ => {}
            }
        }
    }

    fn element_value(&mut self, val: &Value, el: &ElementDef, ty: &str, path: &str, has_ext: bool, node: &Node) {
        if el.is_many() {
            let Some(items) = val.as_array() else {
                self.push(
                    IssueType::Structure,
                    path,
                    format!("Element '{}' repeats and must be a JSON array", el.name),
                );
                return;
            };
            if items.is_empty() {
                self.push(IssueType::Structure, path, "Arrays must not be empty".into());
                return;
            }
            if let Max::N(m) = el.max
                && items.len() > m as usize
            {
                self.push(IssueType::Structure, path, format!("At most {m} values are allowed"));
            }
            for (i, item) in items.iter().enumerate() {
                let p = item_path(path, i);
                if item.is_null() && has_ext && self.defs.is_primitive(ty) {
                    continue;
                }
                self.value(item, el, ty, &p, node);
            }
        } else {
            if val.is_array() {
                self.push(
                    IssueType::Structure,
                    path,
                    format!("Element '{}' does not repeat and must not be an array", el.name),
                );
                return;
            }
            self.value(val, el, ty, path, node);
        }
    }

    fn value(&mut self, val: &Value, el: &ElementDef, ty: &str, path: &str, node: &Node) {
        if self.defs.is_primitive(ty) {
            self.primitive(val, ty, path);
            if let (Some(vs), Some(code)) = (&el.binding, val.as_str())
                && let Some(codes) = self.defs.value_set(vs)
                && !codes.contains(code)
            {
                self.push(IssueType::CodeInvalid, path, format!("'{code}' is not in the required value set {vs}"));
            }
            return;
        }
        if ty == "Resource" || self.defs.is_concrete_resource(ty) {
            self.resource(val, Some(path));
            return;
        }
        let Some(td) = self.defs.type_def(ty) else {
            // a type the tables do not describe: accept any object
            if !val.is_object() {
                self.push(IssueType::Structure, path, format!("A {ty} must be a JSON object"));
            }
            return;
        };
        match val.as_object() {
            Some(obj) => self.object(obj, td, path, false, node),
            None => self.push(IssueType::Structure, path, format!("A {ty} must be a JSON object")),
        }
    }

    fn primitive(&mut self, val: &Value, ty: &str, path: &str) {
        match ty {
            "boolean" => {
                if !val.is_boolean() {
                    self.push(IssueType::Value, path, "A boolean must be a JSON true or false".into());
                }
            }
            "integer" | "positiveInt" | "unsignedInt" => {
                let n = match val {
                    Value::Number(n) => n.as_i64().filter(|_| !n.to_string().contains(['.', 'e', 'E'])),
                    _ => None,
                };
                let ok = match (ty, n) {
                    (_, None) => false,
                    ("integer", Some(n)) => i32::try_from(n).is_ok(),
                    ("positiveInt", Some(n)) => n >= 1 && n <= i32::MAX as i64,
                    (_, Some(n)) => n >= 0 && n <= i32::MAX as i64,
                };
                if !ok {
                    self.push(IssueType::Value, path, format!("Not a valid {ty}: expected a JSON integer in range"));
                }
            }
            "decimal" => match val {
                Value::Number(n) => {
                    let text = n.to_string();
                    if let Some(re) = regex_for("decimal")
                        && !re.is_match(&text)
                    {
                        self.push(IssueType::Value, path, format!("'{text}' is not a valid decimal"));
                    }
                }
                _ => self.push(IssueType::Value, path, "A decimal must be a JSON number".into()),
            },
            _ => {
                let Some(s) = val.as_str() else {
                    self.push(IssueType::Value, path, format!("A {ty} must be a JSON string"));
                    return;
                };
                if s.is_empty() {
                    self.push(IssueType::Value, path, "Strings must not be empty".into());
                    return;
                }
                if ty == "xhtml" {
                    let contained: Vec<&str> =
                        self.contained.last().into_iter().flatten().map(String::as_str).collect();
                    if let Err(e) = crate::narrative::check(s, &contained) {
                        self.push(IssueType::Value, path, format!("Narrative: {e}"));
                    }
                    return;
                }
                if ty == "string" || ty == "markdown" {
                    // the R4 pattern [ \r\n\t\S]+ is "not only whitespace"
                    if s.trim().is_empty() {
                        self.push(IssueType::Value, path, format!("A {ty} must not be only whitespace"));
                    }
                    return;
                }
                if let Some(re) = regex_for(ty)
                    && !re.is_match(s)
                {
                    let shown: String = s.chars().take(64).collect();
                    self.push(IssueType::Value, path, format!("'{shown}' is not a valid {ty}"));
                }
            }
        }
    }

    /// R4 Element.id: "Unique id for the element within a resource (for internal
    /// references). This may be any string value that does not contain spaces." Its type
    /// is `string` (checked as such: not empty, not only whitespace); the one further
    /// rule is no space. A resource's own id is of type `id` and held to its regular
    /// expression `[A-Za-z0-9\-\.]{1,64}` with the other primitives.
    fn element_id(&mut self, val: &Value, path: &str) {
        if let Some(id) = val.as_str()
            && id.contains(' ')
        {
            self.push(IssueType::Value, path, format!("'{id}' is not a valid element id: R4 allows no spaces in it"));
        }
    }

    /// The extensions (or modifier extensions) of the element `owner`, which is itself an
    /// extension with `owner_url` when extensions nest. An extension whose url names an R4
    /// core extension is held to its definition: where it may appear
    /// (`StructureDefinition.context`), whether it is a modifier, its value type and its
    /// sub-extensions. An extension Hale does not know is kept as it is, unless it is a
    /// modifier: R4 (DomainResource and BackboneElement.modifierExtension) says
    /// "Applications processing a resource are required to check for modifier
    /// extensions", which "modify the understanding of the element in which it is
    /// contained"; one Hale does not know would change the meaning of what it keeps
    /// without Hale knowing how, so Hale refuses the resource instead.
    fn extensions(&mut self, val: &Value, path: &str, owner: &Node, owner_url: Option<&str>, modifier: bool) {
        let Some(items) = val.as_array() else { return };
        for (i, item) in items.iter().enumerate() {
            let Some(ext) = item.as_object() else { continue };
            let Some(url) = ext.get("url").and_then(Value::as_str) else { continue };
            let Some(def) = self.defs.extension(url) else {
                if modifier {
                    self.push(
                        IssueType::NotSupported,
                        &item_path(path, i),
                        format!(
                            "Unknown modifier extension '{url}': Hale does not know how it changes the meaning of \
                             what holds it, so it cannot accept the resource"
                        ),
                    );
                }
                continue;
            };
            let at = item_path(path, i);
            // R4 keeps modifiers apart: an extension whose definition says isModifier goes
            // in modifierExtension (extensibility.html, "isModifier"), and modifierExtension
            // holds only such extensions
            if def.is_modifier && !modifier {
                self.push(
                    IssueType::Structure,
                    &at,
                    format!("The extension {url} is a modifier: it belongs in modifierExtension, not extension"),
                );
            } else if !def.is_modifier && modifier {
                self.push(
                    IssueType::Structure,
                    &at,
                    format!("The extension {url} is not a modifier: it belongs in extension, not modifierExtension"),
                );
            }
            if !def.contexts.is_empty() && !def.contexts.iter().any(|c| self.context_allows(c, owner, owner_url)) {
                let allowed: Vec<&str> = def
                    .contexts
                    .iter()
                    .map(|c| match c {
                        ExtensionContext::Element(e)
                        | ExtensionContext::Extension(e)
                        | ExtensionContext::FhirPath(e) => e.as_str(),
                    })
                    .collect();
                self.push(
                    IssueType::Structure,
                    &at,
                    format!(
                        "The extension {url} may not be used on {}: its definition allows it only on {}",
                        display_path(owner),
                        allowed.join(", ")
                    ),
                );
            }
            self.extension_shape(ext, &def.shape, url, &at);
        }
    }

    /// Does one context of an extension's definition admit it on `owner`? R4
    /// (`StructureDefinition.context`, extension-context-type): an `element` context is
    /// "any element that has an ElementDefinition.id that matches that found in the
    /// expression"; an element's id is its path from the resource or data type that
    /// defines it (`Patient.name`, `HumanName.family`, `Questionnaire.item` for a nested
    /// item, whose definition is that of `Questionnaire.item`), and a type name alone
    /// (`Patient`, `HumanName`, `string`) is the root of that type, so every element of
    /// that type. A type also stands for the types that specialize it (`Resource` for any
    /// resource, `string` for a `code`, `Quantity` for an `Age`), and `Element` for any
    /// element at all (as the HL7 validator reads it). An `extension` context is inside the
    /// extension with that url. A `fhirpath` context is not evaluated here (no R4 core
    /// extension has one): it admits.
    fn context_allows(&self, context: &ExtensionContext, owner: &Node, owner_url: Option<&str>) -> bool {
        let expr = match context {
            ExtensionContext::Element(e) => e.as_str(),
            ExtensionContext::Extension(url) => return owner_url == Some(url.as_str()),
            ExtensionContext::FhirPath(_) => return true,
        };
        if expr == "Element" {
            return true;
        }
        // walk up from the owner, taking its name off the end of the expression at each
        // step: what is left must be the type of the element reached (or one it specializes)
        let mut rest = expr;
        let mut node = Some(owner);
        while let Some(n) = node {
            if self.defs.is_a(n.ty, rest) {
                return true;
            }
            // an ElementDefinition's example, fixed and pattern values are values of other
            // types, with the extensions of those types: any extension may be there (as
            // the HL7 reference validator holds)
            if let Some(p) = n.parent
                && ((n.name == "value[x]" && p.ty == "ElementDefinition.example")
                    || ((n.name == "fixed[x]" || n.name == "pattern[x]") && p.ty == "ElementDefinition"))
            {
                return true;
            }
            match rest.strip_suffix(n.name).and_then(|r| r.strip_suffix('.')) {
                Some(r) => rest = r,
                None => return false,
            }
            node = n.parent;
        }
        false
    }

    /// An extension (or sub-extension) against what its definition says it holds: a value
    /// of one of its types (or none, for a complex extension), and the sub-extensions it
    /// names, each as often as its cardinality allows; a simple extension nests none.
    /// `label` names it in messages (`url`, or `'lang' of url` for a sub-extension).
    fn extension_shape(&mut self, ext: &Map<String, Value>, shape: &ExtensionShape, label: &str, path: &str) {
        let Some(extension_type) = self.defs.type_def("Extension") else { return };
        let allowed = || -> String {
            shape.value_types.iter().map(|t| format!("value{}", capitalize(t))).collect::<Vec<_>>().join(", ")
        };
        let mut has_value = false;
        for key in ext.keys() {
            let name = match key.strip_prefix('_') {
                // `_valueCode` says the value's type only when `valueCode` is absent
                Some(n) if ext.contains_key(n) => continue,
                Some(n) => n,
                None => key.as_str(),
            };
            let Some(ty) = extension_type.choice_type(name, "value") else { continue };
            has_value = true;
            if shape.value_types.is_empty() {
                self.push(
                    IssueType::Structure,
                    &child_path(path, key),
                    format!("The extension {label} is complex: it holds sub-extensions, not a value ({name})"),
                );
            } else if !shape.value_types.iter().any(|t| t == ty) {
                self.push(
                    IssueType::Structure,
                    &child_path(path, key),
                    format!("The extension {label} takes {}, not {name}", allowed()),
                );
            }
        }
        if !has_value && shape.value_required && !shape.value_types.is_empty() {
            self.push(IssueType::Required, path, format!("The extension {label} must have a value: {}", allowed()));
        }
        let nested = ext.get("extension").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        let Some(slices) = &shape.sub_extensions else {
            if !nested.is_empty() {
                self.push(
                    IssueType::Structure,
                    &child_path(path, "extension"),
                    format!(
                        "The extension {label} holds a value and no extensions: its definition allows none inside it"
                    ),
                );
            }
            return;
        };
        let at = child_path(path, "extension");
        for slice in slices {
            let mut count = 0;
            for (i, item) in nested.iter().enumerate() {
                if item.get("url").and_then(Value::as_str) != Some(slice.url.as_str()) {
                    continue;
                }
                count += 1;
                if let Some(o) = item.as_object() {
                    let sub_label = format!("'{}' of {label}", slice.url);
                    self.extension_shape(o, &slice.shape, &sub_label, &item_path(&at, i));
                }
            }
            if count < slice.min as usize {
                self.push(
                    IssueType::Required,
                    path,
                    format!("The extension {label} needs its sub-extension '{}' (at least {})", slice.url, slice.min),
                );
            }
            if slice.max >= 0 && count > slice.max as usize {
                self.push(
                    IssueType::Structure,
                    &at,
                    format!(
                        "The extension {label} allows its sub-extension '{}' at most {} times",
                        slice.url, slice.max
                    ),
                );
            }
        }
    }

    /// An Attachment's `size` and `hash` describe its `data` (R4 datatypes, Attachment:
    /// the number of bytes, and the SHA-1 of the data in base64).
    fn attachment(&mut self, obj: &Map<String, Value>, path: &str) {
        use base64::Engine;
        use sha1::Digest;
        let Some(data) = obj.get("data").and_then(Value::as_str) else { return };
        // data that is not base64 is reported by its type's pattern
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(data) else { return };
        if let Some(size) = obj.get("size").and_then(Value::as_u64)
            && size != bytes.len() as u64
        {
            let at = child_path(path, "size");
            self.push(IssueType::Value, &at, format!("size is {size} but the data holds {} bytes", bytes.len()));
        }
        if let Some(hash) = obj.get("hash").and_then(Value::as_str) {
            let sha1 = base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(&bytes));
            if hash != sha1 {
                let at = child_path(path, "hash");
                self.push(IssueType::Value, &at, format!("hash is not the SHA-1 of the data in base64 ({sha1})"));
            }
        }
    }

    /// `_birthDate`: the id and extensions of a primitive.
    fn primitive_extension(
        &mut self,
        val: &Value,
        el: &ElementDef,
        ty: &str,
        path: &str,
        value: Option<&Value>,
        node: &Node,
    ) {
        let upath = format!(
            "{}_{}",
            &path[..path.rfind('.').map(|i| i + 1).unwrap_or(0)],
            &path[path.rfind('.').map(|i| i + 1).unwrap_or(0)..]
        );
        if !self.defs.is_primitive(ty) {
            self.push(
                IssueType::Structure,
                &upath,
                format!("'_' properties are only for primitive elements, not {ty}"),
            );
            return;
        }
        let Some(element) = self.defs.type_def("Element") else {
            self.push(IssueType::Exception, path, "the definition of Element is missing".into());
            return;
        };
        let check = |s: &mut Self, v: &Value, p: &str| match v.as_object() {
            Some(o) => s.object(o, element, p, false, node),
            None => s.push(IssueType::Structure, p, "Primitive extensions must be a JSON object".into()),
        };
        if el.is_many() {
            let Some(items) = val.as_array() else {
                self.push(IssueType::Structure, &upath, "Must be an array, like its element".into());
                return;
            };
            if let Some(vals) = value.and_then(Value::as_array)
                && vals.len() != items.len()
            {
                self.push(IssueType::Structure, &upath, "Must have as many items as its element".into());
            }
            for (i, item) in items.iter().enumerate() {
                let has_value = value.and_then(|v| v.get(i)).is_some_and(|v| !v.is_null());
                if item.is_null() {
                    if !has_value {
                        self.push(
                            IssueType::Structure,
                            &format!("{upath}[{i}]"),
                            "Both value and extension are null".into(),
                        );
                    }
                    continue;
                }
                check(self, item, &item_path(&upath, i));
            }
        } else {
            check(self, val, &upath);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn exprs(v: Value) -> Vec<String> {
        validate_resource(&v).into_iter().filter_map(|i| i.expression).collect()
    }

    #[test]
    fn a_valid_patient_passes() {
        let p = json!({"resourceType":"Patient","id":"p1","active":true,"gender":"female","birthDate":"1970-03",
            "name":[{"family":"Doe","given":["Jane","Q"]}],"multipleBirthInteger":2,
            "_birthDate":{"extension":[{"url":"http://example.org/x","valueString":"y"}]},
            "contact":[{"name":{"text":"Kin"}}],
            "text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"}});
        assert_eq!(validate_resource(&p), vec![]);
    }

    #[test]
    fn a_narrative_links_to_its_own_contained_resources_only() {
        let with = |contained: Value| {
            json!({"resourceType":"Observation","status":"final","code":{"text":"x"},
                "subject":{"reference":"#p"},"contained":contained,
                "text":{"status":"generated",
                    "div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Of <a href=\"#p\">the patient</a></div>"}})
        };
        assert_eq!(validate_resource(&with(json!([{"resourceType":"Patient","id":"p"}]))), vec![]);
        assert_eq!(exprs(with(json!([{"resourceType":"Patient","id":"q"}]))), ["Observation.text.div"]);
    }

    #[test]
    fn each_problem_names_its_element() {
        assert_eq!(exprs(json!({"resourceType":"Patient","birthDate":"1970-13-01"})), ["Patient.birthDate"]);
        assert_eq!(exprs(json!({"resourceType":"Patient","gender":"f"})), ["Patient.gender"]);
        assert_eq!(exprs(json!({"resourceType":"Patient","foo":1})), ["Patient.foo"]);
        assert_eq!(exprs(json!({"resourceType":"Patient","name":{"family":"x"}})), ["Patient.name"]);
        assert_eq!(exprs(json!({"resourceType":"Patient","active":"true"})), ["Patient.active"]);
        assert_eq!(exprs(json!({"resourceType":"Patient","name":[{"given":["a",""]}]})), ["Patient.name[0].given[1]"]);
        assert_eq!(exprs(json!({"resourceType":"Patient","name":[{}]})), ["Patient.name[0]"]);
        assert_eq!(exprs(json!({"resourceType":"Observation","code":{"text":"x"}})), ["Observation.status"]);
        assert_eq!(
            exprs(
                json!({"resourceType":"Observation","status":"final","code":{"text":"x"},"valueString":"a","valueBoolean":true})
            ),
            ["Observation.valueBoolean"]
        );
        assert_eq!(
            exprs(
                json!({"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":"1"}})
            ),
            ["Observation.valueQuantity.value"]
        );
        assert_eq!(
            exprs(json!({"resourceType":"Patient","multipleBirthInteger":1.5})),
            ["Patient.multipleBirthInteger"]
        );
    }

    #[test]
    fn contained_resources_are_validated() {
        let v = json!({"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o","active":1}]});
        assert_eq!(exprs(v), ["Patient.contained[0].active"]);
        let v = json!({"resourceType":"Patient","contained":[{"resourceType":"Nope"}]});
        assert_eq!(exprs(v), ["Patient.contained[0].resourceType"]);
    }

    #[test]
    fn unknown_resource_types_are_rejected() {
        assert_eq!(exprs(json!({"resourceType":"Patientx"})), ["Resource.resourceType"]);
        assert_eq!(exprs(json!({"resourceType":"DomainResource"})), ["Resource.resourceType"]);
    }

    #[test]
    fn attachments_say_the_truth_of_their_data_and_comments_are_gone() {
        // "hello": 5 bytes, SHA-1 qvTGHdzF6KLavt4PO0gs2a6pQ00=
        let doc = |att: serde_json::Value| serde_json::json!({"resourceType":"DocumentReference","status":"current","content":[{"attachment":att}]});
        let ok = doc(
            serde_json::json!({"contentType":"text/plain","data":"aGVsbG8=","size":5,"hash":"qvTGHdzF6KLavt4PO0gs2a6pQ00="}),
        );
        assert!(validate_resource(&ok).is_empty(), "{:?}", validate_resource(&ok));
        let size = validate_resource(&doc(serde_json::json!({"contentType":"text/plain","data":"aGVsbG8=","size":6})));
        assert_eq!(size[0].expression, Some("DocumentReference.content[0].attachment.size".to_string()), "{size:?}");
        let hash = validate_resource(&doc(
            serde_json::json!({"contentType":"text/plain","data":"aGVsbG8=","hash":"571ef9c5655840f324e679072ed62b1b95eef8a0"}),
        ));
        assert_eq!(hash[0].expression, Some("DocumentReference.content[0].attachment.hash".to_string()), "{hash:?}");
        // a URL's content is not checked here: nothing to compare with
        assert!(
            validate_resource(&doc(
                serde_json::json!({"url":"http://x/y.pdf","size":6,"hash":"qvTGHdzF6KLavt4PO0gs2a6pQ00="})
            ))
            .is_empty()
        );
        let comments =
            validate_resource(&serde_json::json!({"resourceType":"Patient","fhir_comments":["a DSTU2 comment"]}));
        assert_eq!(comments[0].expression, Some("Patient.fhir_comments".to_string()), "{comments:?}");
    }

    #[test]
    fn primitive_arrays_with_extensions_may_hold_null() {
        let ok = json!({"resourceType":"Patient","name":[{"given":["a",null],"_given":[null,{"extension":[{"url":"http://x","valueCode":"c"}]}]}]});
        assert_eq!(validate_resource(&ok), vec![]);
        let bad = json!({"resourceType":"Patient","name":[{"given":["a",null]}]});
        assert_eq!(exprs(bad), ["Patient.name[0].given[1]"]);
    }

    const SD: &str = "http://hl7.org/fhir/StructureDefinition/";

    /// (expression, diagnostics) of each issue.
    fn found(v: Value) -> Vec<(String, String)> {
        validate_resource(&v).into_iter().map(|i| (i.expression.unwrap_or_default(), i.diagnostics)).collect()
    }

    #[test]
    fn a_core_extension_takes_the_value_types_its_definition_allows() {
        // humanname-assembly-order: valueCode, on a HumanName
        let name = |ext: Value| json!({"resourceType":"Patient","name":[{"family":"Doe","extension":[ext]}]});
        assert_eq!(found(name(json!({"url": format!("{SD}humanname-assembly-order"), "valueCode": "NL1"}))), vec![]);
        let bad = found(name(json!({"url": format!("{SD}humanname-assembly-order"), "valueString": "NL1"})));
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert_eq!(bad[0].0, "Patient.name[0].extension[0].valueString");
        assert!(bad[0].1.contains("humanname-assembly-order") && bad[0].1.contains("valueCode"), "{bad:?}");
        // a type in the definition's list, complex too
        let place = |v: Value| {
            let mut ext = json!({"url": format!("{SD}patient-birthPlace")});
            ext.as_object_mut().unwrap().extend(v.as_object().unwrap().clone());
            json!({"resourceType":"Patient","extension":[ext]})
        };
        assert_eq!(found(place(json!({"valueAddress": {"city": "Oslo"}}))), vec![]);
        assert_eq!(exprs(place(json!({"valueString": "Oslo"}))), ["Patient.extension[0].valueString"]);
        // a value the definition requires
        let none = found(json!({"resourceType":"Patient","extension":[{"url": format!("{SD}patient-birthPlace"),
            "extension":[{"url":"x","valueString":"y"}]}]}));
        assert!(none.iter().any(|i| i.0 == "Patient.extension[0]" && i.1.contains("must have a value")), "{none:?}");
        // a simple extension holds no extensions
        assert!(none.iter().any(|i| i.0 == "Patient.extension[0].extension"), "{none:?}");
    }

    #[test]
    fn a_core_extension_appears_only_where_its_context_allows() {
        let birth_place = json!({"url": format!("{SD}patient-birthPlace"), "valueAddress": {"city": "Oslo"}});
        // context Patient: the Patient resource itself
        assert_eq!(found(json!({"resourceType":"Patient","extension":[birth_place.clone()]})), vec![]);
        let obs = json!({"resourceType":"Observation","status":"final","code":{"text":"x"},"extension":[birth_place.clone()]});
        let bad = found(obs);
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert_eq!(bad[0].0, "Observation.extension[0]");
        assert!(bad[0].1.contains("patient-birthPlace") && bad[0].1.contains("only on Patient"), "{bad:?}");
        // nor on an element of a Patient
        assert_eq!(
            exprs(json!({"resourceType":"Patient","name":[{"family":"Doe","extension":[birth_place]}]})),
            ["Patient.name[0].extension[0]"]
        );
        // context HumanName: any HumanName (a Patient's, a contact's), not the Patient
        let order = json!({"url": format!("{SD}humanname-assembly-order"), "valueCode": "NL1"});
        let on_contact =
            json!({"resourceType":"Patient","contact":[{"name":{"family":"Roe","extension":[order.clone()]}}]});
        assert_eq!(found(on_contact), vec![]);
        assert_eq!(exprs(json!({"resourceType":"Patient","extension":[order]})), ["Patient.extension[0]"]);
        // context Patient.birthDate: on the primitive, through `_birthDate`
        let time = json!({"url": format!("{SD}patient-birthTime"), "valueDateTime": "1970-03-01T08:30:00Z"});
        let ok = json!({"resourceType":"Patient","birthDate":"1970-03-01","_birthDate":{"extension":[time.clone()]}});
        assert_eq!(found(ok), vec![]);
        let bad = json!({"resourceType":"Patient","gender":"female","_gender":{"extension":[time]}});
        assert_eq!(exprs(bad), ["Patient._gender.extension[0]"]);
        // context Patient.contact: a backbone element by its path
        let related =
            json!({"url": format!("{SD}patient-relatedPerson"), "valueReference": {"reference": "RelatedPerson/r"}});
        let ok = json!({"resourceType":"Patient","contact":[{"name":{"text":"Kin"},"extension":[related.clone()]}]});
        assert_eq!(found(ok), vec![]);
        assert_eq!(exprs(json!({"resourceType":"Patient","extension":[related]})), ["Patient.extension[0]"]);
        // context Element: anywhere; context string: any string, and a code (a string)
        let absent = json!({"url": format!("{SD}data-absent-reason"), "valueCode": "unknown"});
        let ok = json!({"resourceType":"Patient","extension":[absent.clone()],"_gender":{"extension":[absent]}});
        assert_eq!(found(ok), vec![]);
        // in a contained resource, the context is that resource
        let contained = json!({"resourceType":"Organization","id":"o","name":"x","extension":[
            {"url": format!("{SD}patient-birthPlace"), "valueAddress": {"city": "Oslo"}}]});
        assert_eq!(
            exprs(json!({"resourceType":"Patient","contained":[contained]})),
            ["Patient.contained[0].extension[0]"]
        );
    }

    #[test]
    fn modifier_extensions_hale_does_not_know_refuse_the_resource_and_others_are_kept() {
        let unknown = json!({"url": "http://example.org/fhir/StructureDefinition/odd", "valueBoolean": true});
        // an unknown ordinary extension: accepted
        assert_eq!(found(json!({"resourceType":"Patient","extension":[unknown.clone()]})), vec![]);
        // as a modifier: refused, not supported, naming where
        let issues = validate_resource(&json!({"resourceType":"Patient","modifierExtension":[unknown.clone()]}));
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert_eq!(issues[0].code, IssueType::NotSupported);
        assert_eq!(issues[0].expression.as_deref(), Some("Patient.modifierExtension[0]"));
        assert!(issues[0].diagnostics.contains("http://example.org/fhir/StructureDefinition/odd"));
        // on a backbone element as well
        let c = json!({"resourceType":"Patient","contact":[{"name":{"text":"Kin"},"modifierExtension":[unknown]}]});
        assert_eq!(exprs(c), ["Patient.contact[0].modifierExtension[0]"]);
    }

    #[test]
    fn modifiers_go_in_modifier_extension_and_only_they_do() {
        let no = json!({"url": format!("{SD}request-doNotPerform"), "valueBoolean": true});
        let order = |key: &str, ext: Value| {
            json!({"resourceType":"NutritionOrder","status":"active","intent":"order","patient":{"reference":"Patient/p"},
                "dateTime":"2020-01-01", key: [ext]})
        };
        assert_eq!(found(order("modifierExtension", no.clone())), vec![]);
        assert_eq!(exprs(order("extension", no)), ["NutritionOrder.extension[0]"]);
        let name = json!({"url": format!("{SD}patient-mothersMaidenName"), "valueString": "Roe"});
        assert_eq!(found(json!({"resourceType":"Patient","extension":[name.clone()]})), vec![]);
        assert_eq!(
            exprs(json!({"resourceType":"Patient","modifierExtension":[name]})),
            ["Patient.modifierExtension[0]"]
        );
    }

    #[test]
    fn a_complex_core_extension_holds_its_sub_extensions() {
        let translated = |subs: Value| {
            json!({"resourceType":"Patient","name":[{"family":"Doe",
                "_family":{"extension":[{"url": format!("{SD}translation"), "extension": subs}]}}]})
        };
        let ok = translated(json!([{"url":"lang","valueCode":"nl"},{"url":"content","valueString":"Doe"}]));
        assert_eq!(found(ok), vec![]);
        // a required sub-extension missing
        let missing = found(translated(json!([{"url":"content","valueString":"Doe"}])));
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert_eq!(missing[0].0, "Patient.name[0]._family.extension[0]");
        assert!(missing[0].1.contains("'lang'"), "{missing:?}");
        // a sub-extension's value of a type its slice does not allow
        let wrong = translated(json!([{"url":"lang","valueString":"nl"},{"url":"content","valueString":"Doe"}]));
        assert_eq!(exprs(wrong), ["Patient.name[0]._family.extension[0].extension[0].valueString"]);
        // too many
        let twice = translated(json!([{"url":"lang","valueCode":"nl"},{"url":"lang","valueCode":"de"},
            {"url":"content","valueString":"Doe"}]));
        assert_eq!(exprs(twice), ["Patient.name[0]._family.extension[0].extension"]);
        // other sub-extensions are allowed (the slicing is open)
        let more = translated(json!([{"url":"lang","valueCode":"nl"},{"url":"content","valueString":"Doe"},
            {"url":"http://example.org/note","valueString":"n"}]));
        assert_eq!(found(more), vec![]);
        // a complex extension has no value
        let valued = json!({"resourceType":"Patient","extension":[{"url": format!("{SD}patient-nationality"),
            "valueString":"NL"}]});
        assert_eq!(exprs(valued), ["Patient.extension[0].valueString"]);
        // context string/code/markdown: not on a Patient
        let misplaced = json!({"resourceType":"Patient","extension":[{"url": format!("{SD}translation"),
            "extension":[{"url":"lang","valueCode":"nl"},{"url":"content","valueString":"Doe"}]}]});
        assert_eq!(exprs(misplaced), ["Patient.extension[0]"]);
    }

    #[test]
    fn element_ids_hold_no_spaces() {
        // R4 Element.id: "any string value that does not contain spaces"
        let named = |id: &str| json!({"resourceType":"Patient","name":[{"id": id, "family":"Doe"}]});
        assert_eq!(found(named("n-1.a_b:c")), vec![]);
        assert_eq!(exprs(named("n 1")), ["Patient.name[0].id"]);
        let contact = json!({"resourceType":"Patient","contact":[{"id":"a b","name":{"text":"Kin"}}]});
        assert_eq!(exprs(contact), ["Patient.contact[0].id"]);
        assert_eq!(
            exprs(json!({"resourceType":"Patient","_gender":{"id":"x y"},"gender":"other"})),
            ["Patient._gender.id"]
        );
        // a resource id is an `id`: [A-Za-z0-9\-\.]{1,64}
        assert_eq!(exprs(json!({"resourceType":"Patient","id":"a_b"})), ["Patient.id"]);
        assert_eq!(found(json!({"resourceType":"Patient","id":"a-b.c"})), vec![]);
    }
}
