//! The rules of a narrative's XHTML (R4 Narrative.div, invariants txt-1 and txt-2, and
//! the "xhtml" section of the narrative page): a single `div` in the XHTML namespace,
//! well-formed XML, only the basic HTML formatting elements and their attributes
//! (chapters 7–11 and 15 of HTML 4.0, `a`, `img`, `style` attributes), no event
//! attributes, no `javascript:` or `vbscript:` links, and some non-whitespace content.
//! These are also security rules: the clinician's pages and the patient portal show
//! narratives.

const XHTML: &str = "http://www.w3.org/1999/xhtml";

/// The elements a narrative may hold.
const ELEMENTS: &[&str] = &[
    "a",
    "abbr",
    "acronym",
    "b",
    "big",
    "blockquote",
    "br",
    "caption",
    "cite",
    "code",
    "col",
    "colgroup",
    "dd",
    "dfn",
    "div",
    "dl",
    "dt",
    "em",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "i",
    "img",
    "kbd",
    "li",
    "ol",
    "p",
    "pre",
    "q",
    "samp",
    "small",
    "span",
    "strong",
    "sub",
    "sup",
    "table",
    "tbody",
    "td",
    "tfoot",
    "th",
    "thead",
    "tr",
    "tt",
    "ul",
    "var",
];

/// Attributes every element may carry.
const COMMON: &[&str] = &["id", "class", "style", "lang", "dir", "title"];

const CELL: &[&str] = &[
    "colspan", "rowspan", "headers", "abbr", "scope", "align", "valign", "nowrap", "width", "height", "char",
    "charoff", "axis",
];
const ROWS: &[&str] = &["align", "valign", "char", "charoff"];
const COLS: &[&str] = &["span", "width", "align", "valign", "char", "charoff"];

/// The attributes an element may carry besides [`COMMON`].
fn attributes(element: &str) -> &'static [&'static str] {
    match element {
        "a" => &["href", "name", "rel", "type", "hreflang"],
        "img" => &["src", "alt", "width", "height", "border", "longdesc"],
        "table" => &["border", "cellpadding", "cellspacing", "summary", "width", "frame", "rules"],
        "td" | "th" => CELL,
        "tr" | "tbody" | "thead" | "tfoot" => ROWS,
        "col" | "colgroup" => COLS,
        "ol" => &["start", "type", "compact"],
        "ul" => &["type", "compact"],
        "li" => &["value", "type"],
        "q" | "blockquote" => &["cite"],
        "pre" => &["width"],
        "br" => &["clear"],
        "hr" => &["align", "noshade", "size", "width"],
        "p" | "div" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "caption" => &["align"],
        "dl" => &["compact"],
        _ => &[],
    }
}

/// What in a `style` attribute (lower case, without whitespace) loads a stylesheet or
/// runs script: a narrative's styles are its own (R4 Narrative.div: "internally
/// contained style attributes", no "external stylesheet references" or scripts).
const ACTIVE_STYLE: &[&str] = &["@import", "expression(", "javascript:", "vbscript:", "behavior:", "-moz-binding"];

/// HTML's named character references that narratives commonly use, which XML does not
/// know without a DTD: replaced by their numeric references before parsing.
const ENTITIES: &[(&str, &str)] = &[
    ("&nbsp;", "&#160;"),
    ("&copy;", "&#169;"),
    ("&reg;", "&#174;"),
    ("&deg;", "&#176;"),
    ("&plusmn;", "&#177;"),
    ("&micro;", "&#181;"),
    ("&middot;", "&#183;"),
    ("&times;", "&#215;"),
    ("&ndash;", "&#8211;"),
    ("&mdash;", "&#8212;"),
    ("&lsquo;", "&#8216;"),
    ("&rsquo;", "&#8217;"),
    ("&ldquo;", "&#8220;"),
    ("&rdquo;", "&#8221;"),
    ("&bull;", "&#8226;"),
    ("&hellip;", "&#8230;"),
    ("&le;", "&#8804;"),
    ("&ge;", "&#8805;"),
];

/// Checks a narrative's `div` (of a resource whose contained resources have the ids
/// `contained`); `Err` names the rule broken and where in the XHTML.
pub fn check(div: &str, contained: &[&str]) -> Result<(), String> {
    let mut text = std::borrow::Cow::Borrowed(div);
    if div.contains('&') {
        let mut t = div.to_string();
        for (name, number) in ENTITIES {
            if t.contains(name) {
                t = t.replace(name, number);
            }
        }
        text = std::borrow::Cow::Owned(t);
    }
    let doc = roxmltree::Document::parse(&text)
        .map_err(|e| format!("the narrative is not well-formed XHTML: {e} (txt-1)"))?;
    let root = doc.root_element();
    if root.tag_name().name() != "div" || root.tag_name().namespace() != Some(XHTML) {
        return Err("the narrative must be one <div> in the XHTML namespace (http://www.w3.org/1999/xhtml)".into());
    }
    let mut content = false;
    // the targets of the narrative's internal links (`<a href="#x">`, where), and the
    // names it gives its elements (`id`, `<a name>`)
    let mut links: Vec<(&str, roxmltree::Node<'_, '_>)> = Vec::new();
    let mut anchors: Vec<&str> = Vec::new();
    for node in root.descendants() {
        if node.is_text() {
            content |= node.text().is_some_and(|t| !t.trim().is_empty());
            continue;
        }
        if !node.is_element() {
            continue;
        }
        let name = node.tag_name().name();
        let at = || location(node);
        if node.tag_name().namespace() != Some(XHTML) {
            return Err(format!("<{name}> at {} is not in the XHTML namespace (txt-1)", at()));
        }
        if !ELEMENTS.contains(&name) {
            return Err(format!("<{name}> at {} is not allowed in a narrative (txt-1)", at()));
        }
        content |= name == "img";
        for a in node.attributes() {
            let attr = a.name();
            if a.namespace() == Some("http://www.w3.org/XML/1998/namespace") {
                continue;
            }
            if attr.to_ascii_lowercase().starts_with("on") {
                return Err(format!("the event attribute {attr} on <{name}> at {} is not allowed (txt-1)", at()));
            }
            if !COMMON.contains(&attr) && !attributes(name).contains(&attr) {
                return Err(format!("the attribute {attr} on <{name}> at {} is not allowed (txt-1)", at()));
            }
            let v: String = a.value().chars().filter(|c| !c.is_whitespace() && !c.is_control()).collect();
            let v = v.to_ascii_lowercase();
            if matches!(attr, "href" | "src" | "cite" | "longdesc") {
                if v.starts_with("javascript:") || v.starts_with("vbscript:") {
                    return Err(format!("the {attr} of <{name}> at {} runs script (txt-1)", at()));
                }
                // a link to a data: URL is a document of its own (text/html runs script);
                // images may be data: URLs
                if v.starts_with("data:") && !(name == "img" && attr == "src") {
                    return Err(format!("the {attr} of <{name}> at {} is a data: URL (txt-1)", at()));
                }
            }
            if attr == "style" && ACTIVE_STYLE.iter().any(|active| v.contains(active)) {
                return Err(format!(
                    "the style of <{name}> at {} loads a stylesheet or runs script: only style attributes contained in the narrative are allowed (txt-1)",
                    at()
                ));
            }
            match attr {
                "id" => anchors.push(a.value()),
                "name" if name == "a" => anchors.push(a.value()),
                "href" if name == "a" => {
                    if let Some(target) = a.value().strip_prefix('#').filter(|t| !t.is_empty()) {
                        links.push((target, node));
                    }
                }
                _ => {}
            }
        }
    }
    // internal links lead somewhere: an element of the narrative or a contained resource
    if let Some((target, node)) = links.iter().find(|(t, _)| !anchors.contains(t) && !contained.contains(t)) {
        return Err(format!(
            "the link to #{target} at {} leads nowhere: no element of the narrative has that id or name, and no contained resource",
            location(*node)
        ));
    }
    if !content {
        return Err("the narrative has no content: it needs some non-whitespace text or an image (txt-2)".into());
    }
    Ok(())
}

/// Where an element is: `/div/p[2]/script` (positions among siblings of its name).
fn location(node: roxmltree::Node<'_, '_>) -> String {
    let mut parts = Vec::new();
    let mut n = Some(node);
    while let Some(e) = n.filter(|e| e.is_element()) {
        let name = e.tag_name().name();
        let index = e.prev_siblings().skip(1).filter(|s| s.is_element() && s.tag_name().name() == name).count();
        let after = e.next_siblings().skip(1).any(|s| s.is_element() && s.tag_name().name() == name);
        parts.push(if index > 0 || after { format!("{name}[{}]", index + 1) } else { name.to_string() });
        n = e.parent();
    }
    parts.reverse();
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    fn check(div: &str) -> Result<(), String> {
        super::check(div, &["img1"])
    }

    fn div(inner: &str) -> String {
        format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{inner}</div>")
    }

    #[test]
    fn safe_narratives_pass() {
        for ok in [
            div("<p>Blood pressure <b>128/84</b> mmHg&nbsp;&mdash; fine</p>"),
            div("<table class=\"grid\"><tr><td colspan=\"2\" style=\"color: red\">x</td></tr></table>"),
            div("<a href=\"http://example.org\">link</a> <a name=\"here\">here</a>"),
            div("<img src=\"#pic\" alt=\"\"/>"),
            div("<img src=\"data:image/png;base64,iVBORw0KGgo=\" alt=\"dot\"/>"),
            div("<p id=\"top\">a</p><a href=\"#top\">top</a> <a name=\"n\">n</a><a href=\"#n\">n</a>"),
            div("<a href=\"#img1\">the contained image</a> <a href=\"#\">page</a>"),
            div("<td style=\"background-image: url(tbl_bck1.png); color: #F0F0F0\">x</td>"),
            "<div xmlns=\"http://www.w3.org/1999/xhtml\" xml:lang=\"en\" lang=\"en\">text</div>".to_string(),
        ] {
            assert_eq!(check(&ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn unsafe_or_empty_narratives_are_named() {
        for (bad, says) in [
            (div("<p>a</p><script>alert(1)</script>"), "<script> at /div/script"),
            (div("<p>a</p><p onclick=\"x()\">b</p>"), "onclick on <p> at /div/p[2]"),
            (div("<a href=\" JavaScript:alert(1)\">x</a>"), "runs script"),
            (div("<iframe src=\"http://x\">x</iframe>"), "<iframe>"),
            (div("<form><input/></form>"), "<form>"),
            (div("<p style=\"x\" data-x=\"1\">a</p>"), "data-x"),
            (div("  <p> </p> "), "txt-2"),
            ("<p xmlns=\"http://www.w3.org/1999/xhtml\">x</p>".to_string(), "one <div>"),
            ("<div>x</div>".to_string(), "XHTML namespace"),
            (div("<p>unclosed"), "well-formed"),
            (div("<p>&unknown;</p>"), "well-formed"),
            (div("<p>a</p><a href=\"#nowhere\">x</a>"), "link to #nowhere at /div/a leads nowhere"),
            (div("<a href=\"data:text/html,&lt;script&gt;alert(1)&lt;/script&gt;\">x</a>"), "data: URL"),
            (div("<p style=\"width: expression(alert(1))\">a</p>"), "runs script"),
            (div("<p style=\"@import url(http://evil.example/x.css)\">a</p>"), "loads a stylesheet"),
            (div("<p style=\"background: url( JavaScript:alert(1))\">a</p>"), "runs script"),
            (div("<svg xmlns=\"http://www.w3.org/2000/svg\"><script/></svg>"), "not in the XHTML namespace"),
        ] {
            let e = check(&bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
