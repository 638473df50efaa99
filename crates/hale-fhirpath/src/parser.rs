//! Lexer and parser: FHIRPath text -> [`Node`] tree.

use rust_decimal::Decimal;

use crate::Error;
use crate::temporal::Temporal;

/// Deepest nesting the parser accepts (parentheses, operators, arguments).
const MAX_DEPTH: usize = 64;
/// Deepest tree the parser builds (`1+1+1...`, `a.b.c...` are deep too): evaluation and
/// checking recurse over the tree, so this bounds their stack use.
const MAX_TREE_DEPTH: usize = 128;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// A backtick-delimited identifier: never a keyword.
    Delimited(String),
    Str(String),
    Int(String),
    Dec(String),
    Date(String),
    Time(String),
    Env(String),
    Special(String),
    Sym(&'static str),
    Eof,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    pos: usize,
}

const SYMS: [&str; 20] =
    ["<=", ">=", "!=", "!~", "(", ")", "[", "]", "{", "}", ".", ",", "+", "-", "*", "/", "&", "|", "<", ">"];

fn lex(src: &str) -> Result<Vec<Token>, Error> {
    let chars: Vec<char> = src.chars().collect();
    // byte positions are not needed: positions are reported in characters
    let mut toks = Vec::new();
    let mut i = 0;
    let n = chars.len();
    while i < n {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '/' && i + 1 < n && chars[i + 1] == '/' {
            while i < n && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c == '/' && i + 1 < n && chars[i + 1] == '*' {
            let start = i;
            i += 2;
            loop {
                if i + 1 >= n {
                    return Err(Error::syntax(start, "unterminated comment"));
                }
                if chars[i] == '*' && chars[i + 1] == '/' {
                    i += 2;
                    break;
                }
                i += 1;
            }
            continue;
        }
        let pos = i;
        if c.is_ascii_alphabetic() || c == '_' {
            let s = i;
            while i < n && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            toks.push(Token { tok: Tok::Ident(chars[s..i].iter().collect()), pos });
            continue;
        }
        if c == '`' {
            let (s, next) = read_quoted(&chars, i, '`')?;
            i = next;
            toks.push(Token { tok: Tok::Delimited(s), pos });
            continue;
        }
        if c == '\'' {
            let (s, next) = read_quoted(&chars, i, '\'')?;
            i = next;
            toks.push(Token { tok: Tok::Str(s), pos });
            continue;
        }
        if c.is_ascii_digit() {
            let s = i;
            while i < n && chars[i].is_ascii_digit() {
                i += 1;
            }
            let mut dec = false;
            if i + 1 < n && chars[i] == '.' && chars[i + 1].is_ascii_digit() {
                dec = true;
                i += 1;
                while i < n && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            let text: String = chars[s..i].iter().collect();
            if !dec && i < n && chars[i] == 'L' {
                i += 1;
            }
            toks.push(Token { tok: if dec { Tok::Dec(text) } else { Tok::Int(text) }, pos });
            continue;
        }
        if c == '@' {
            let s = i + 1;
            i += 1;
            let is_time = i < n && chars[i] == 'T';
            while i < n
                && (chars[i].is_ascii_digit()
                    || matches!(chars[i], '-' | ':' | 'T' | 'Z' | '+')
                    || (chars[i] == '.' && i + 1 < n && chars[i + 1].is_ascii_digit()))
            {
                // a '-' or '+' only continues the literal when digits follow
                if matches!(chars[i], '-' | '+') && !(i + 1 < n && chars[i + 1].is_ascii_digit()) {
                    break;
                }
                i += 1;
            }
            let text: String = chars[s..i].iter().collect();
            if is_time {
                toks.push(Token { tok: Tok::Time(text), pos });
            } else {
                toks.push(Token { tok: Tok::Date(text), pos });
            }
            continue;
        }
        if c == '%' {
            i += 1;
            if i < n && chars[i] == '\'' {
                let (s, next) = read_quoted(&chars, i, '\'')?;
                i = next;
                toks.push(Token { tok: Tok::Env(s), pos });
            } else if i < n && chars[i] == '`' {
                let (s, next) = read_quoted(&chars, i, '`')?;
                i = next;
                toks.push(Token { tok: Tok::Env(s), pos });
            } else {
                let s = i;
                while i < n && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == '-') {
                    i += 1;
                }
                if s == i {
                    return Err(Error::syntax(pos, "expected a name after '%'"));
                }
                toks.push(Token { tok: Tok::Env(chars[s..i].iter().collect()), pos });
            }
            continue;
        }
        if c == '$' {
            i += 1;
            let s = i;
            while i < n && chars[i].is_ascii_alphanumeric() {
                i += 1;
            }
            let name: String = chars[s..i].iter().collect();
            if !matches!(name.as_str(), "this" | "index" | "total") {
                return Err(Error::syntax(pos, format!("unknown special variable ${name}")));
            }
            toks.push(Token { tok: Tok::Special(name), pos });
            continue;
        }
        if c == '=' {
            toks.push(Token { tok: Tok::Sym("="), pos });
            i += 1;
            continue;
        }
        if c == '~' {
            toks.push(Token { tok: Tok::Sym("~"), pos });
            i += 1;
            continue;
        }
        let mut found = false;
        for s in SYMS {
            let sc: Vec<char> = s.chars().collect();
            if i + sc.len() <= n && chars[i..i + sc.len()] == sc[..] {
                toks.push(Token { tok: Tok::Sym(s), pos });
                i += sc.len();
                found = true;
                break;
            }
        }
        if !found {
            return Err(Error::syntax(pos, format!("unexpected character '{c}'")));
        }
    }
    toks.push(Token { tok: Tok::Eof, pos: n });
    Ok(toks)
}

fn read_quoted(chars: &[char], start: usize, q: char) -> Result<(String, usize), Error> {
    let mut i = start + 1;
    let mut out = String::new();
    while i < chars.len() {
        let c = chars[i];
        if c == q {
            return Ok((out, i + 1));
        }
        if c == '\\' {
            i += 1;
            let e = *chars.get(i).ok_or_else(|| Error::syntax(start, "unterminated string"))?;
            match e {
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'f' => out.push('\u{c}'),
                '\\' => out.push('\\'),
                '/' => out.push('/'),
                '\'' => out.push('\''),
                '"' => out.push('"'),
                '`' => out.push('`'),
                'u' => {
                    let hex: String = chars.get(i + 1..i + 5).map(|s| s.iter().collect()).unwrap_or_default();
                    let v = u32::from_str_radix(&hex, 16).map_err(|_| Error::syntax(i, "bad \\u escape"))?;
                    out.push(char::from_u32(v).ok_or_else(|| Error::syntax(i, "bad \\u escape"))?);
                    i += 4;
                }
                other => out.push(other),
            }
            i += 1;
            continue;
        }
        out.push(c);
        i += 1;
    }
    Err(Error::syntax(start, "unterminated string"))
}

/// A type named by `is`, `as`, `ofType`: an optional namespace and a name.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TypeSpec {
    pub namespace: Option<String>,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Mul,
    Div,
    IntDiv,
    Mod,
    Add,
    Sub,
    Concat,
    Union,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    Equiv,
    NotEquiv,
    In,
    Contains,
    And,
    Or,
    Xor,
    Implies,
}

#[derive(Debug, Clone)]
pub(crate) enum Node {
    Empty,
    Bool(bool),
    Str(String),
    Int(i64),
    Dec(Decimal),
    Temporal(Temporal),
    Quantity(Decimal, String),
    /// An identifier evaluated against `$this` (member, or type name at the head), with
    /// its position.
    Ident(String, usize),
    This,
    Index,
    Total,
    Env(String),
    /// base, name, position of the name
    Member(Box<Node>, String, usize),
    /// target (None: `$this`), name, arguments
    Func(Option<Box<Node>>, String, Vec<Node>, usize),
    Indexer(Box<Node>, Box<Node>),
    Neg(Box<Node>),
    /// operator, operands, position of the operator
    Binary(BinOp, Box<Node>, Box<Node>, usize),
    Is(Box<Node>, TypeSpec),
    As(Box<Node>, TypeSpec),
    /// A subexpression evaluated once per evaluation (see `cache`), with its slot.
    Cached(Box<Node>, usize),
}

struct Parser {
    toks: Vec<Token>,
    p: usize,
    /// Nesting of the recursive descent.
    depth: usize,
    /// Depth of the tree the last parse function returned.
    d: usize,
}

pub(crate) fn parse(src: &str) -> Result<Node, Error> {
    let toks = lex(src)?;
    let mut p = Parser { toks, p: 0, depth: 0, d: 0 };
    if matches!(p.peek(), Tok::Eof) {
        return Err(Error::syntax(0, "empty expression"));
    }
    let node = p.expr(0)?;
    if !matches!(p.peek(), Tok::Eof) {
        return Err(Error::syntax(p.pos(), format!("unexpected {}", p.describe())));
    }
    Ok(node)
}

fn binop(t: &Tok) -> Option<(BinOp, u8)> {
    let (op, prec) = match t {
        Tok::Sym(s) => match *s {
            "*" => (BinOp::Mul, 10),
            "/" => (BinOp::Div, 10),
            "+" => (BinOp::Add, 9),
            "-" => (BinOp::Sub, 9),
            "&" => (BinOp::Concat, 9),
            "|" => (BinOp::Union, 7),
            "<" => (BinOp::Lt, 6),
            "<=" => (BinOp::Le, 6),
            ">" => (BinOp::Gt, 6),
            ">=" => (BinOp::Ge, 6),
            "=" => (BinOp::Eq, 5),
            "!=" => (BinOp::Ne, 5),
            "~" => (BinOp::Equiv, 5),
            "!~" => (BinOp::NotEquiv, 5),
            _ => return None,
        },
        Tok::Ident(s) => match s.as_str() {
            "div" => (BinOp::IntDiv, 10),
            "mod" => (BinOp::Mod, 10),
            "in" => (BinOp::In, 4),
            "contains" => (BinOp::Contains, 4),
            "and" => (BinOp::And, 3),
            "or" => (BinOp::Or, 2),
            "xor" => (BinOp::Xor, 2),
            "implies" => (BinOp::Implies, 1),
            _ => return None,
        },
        _ => return None,
    };
    Some((op, prec))
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.p.min(self.toks.len() - 1)].tok
    }
    fn peek_at(&self, k: usize) -> &Tok {
        &self.toks[(self.p + k).min(self.toks.len() - 1)].tok
    }
    fn pos(&self) -> usize {
        self.toks[self.p.min(self.toks.len() - 1)].pos
    }
    fn next(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.p < self.toks.len() - 1 {
            self.p += 1;
        }
        t
    }
    fn describe(&self) -> String {
        match self.peek() {
            Tok::Eof => "end of expression".into(),
            Tok::Sym(s) => format!("'{s}'"),
            Tok::Ident(s) | Tok::Delimited(s) => format!("'{s}'"),
            Tok::Str(s) => format!("string '{s}'"),
            Tok::Int(s) | Tok::Dec(s) => format!("number {s}"),
            Tok::Date(s) | Tok::Time(s) => format!("'@{s}'"),
            Tok::Env(s) => format!("'%{s}'"),
            Tok::Special(s) => format!("'${s}'"),
        }
    }
    fn expect(&mut self, s: &'static str) -> Result<(), Error> {
        if *self.peek() == Tok::Sym(s) {
            self.next();
            Ok(())
        } else {
            Err(Error::syntax(self.pos(), format!("expected '{s}', found {}", self.describe())))
        }
    }
    /// Records the depth of a node just built.
    fn built(&mut self, d: usize) -> Result<(), Error> {
        self.d = d;
        if d > MAX_TREE_DEPTH {
            return Err(Error::syntax(self.pos(), "expression too deep"));
        }
        Ok(())
    }
    fn enter(&mut self) -> Result<(), Error> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Error::syntax(self.pos(), "expression nested too deeply"));
        }
        Ok(())
    }

    fn expr(&mut self, min_prec: u8) -> Result<Node, Error> {
        self.enter()?;
        let mut lhs = self.unary()?;
        let mut ld = self.d;
        loop {
            let t = self.peek().clone();
            if let Tok::Ident(kw) = &t
                && (kw == "is" || kw == "as")
            {
                if 8 < min_prec {
                    break;
                }
                self.next();
                let ts = self.type_spec()?;
                lhs = if kw == "is" { Node::Is(Box::new(lhs), ts) } else { Node::As(Box::new(lhs), ts) };
                ld += 1;
                self.built(ld)?;
                continue;
            }
            let Some((op, prec)) = binop(&t) else { break };
            if prec < min_prec {
                break;
            }
            self.next();
            // implies is right-associative
            let next_min = if op == BinOp::Implies { prec } else { prec + 1 };
            let op_pos = self.toks[self.p.saturating_sub(1)].pos;
            let rhs = self.expr(next_min)?;
            ld = ld.max(self.d) + 1;
            self.built(ld)?;
            lhs = Node::Binary(op, Box::new(lhs), Box::new(rhs), op_pos);
        }
        self.d = ld;
        self.depth -= 1;
        Ok(lhs)
    }

    fn type_spec(&mut self) -> Result<TypeSpec, Error> {
        let first = self.ident()?;
        if *self.peek() == Tok::Sym(".") {
            self.next();
            let second = self.ident()?;
            return Ok(TypeSpec { namespace: Some(first), name: second });
        }
        Ok(TypeSpec { namespace: None, name: first })
    }

    fn ident(&mut self) -> Result<String, Error> {
        match self.next() {
            Tok::Ident(s) | Tok::Delimited(s) => Ok(s),
            _ => {
                self.p = self.p.saturating_sub(1);
                Err(Error::syntax(self.pos(), format!("expected an identifier, found {}", self.describe())))
            }
        }
    }

    fn unary(&mut self) -> Result<Node, Error> {
        match self.peek() {
            Tok::Sym("-") => {
                self.next();
                self.enter()?;
                let inner = self.unary()?;
                self.depth -= 1;
                Ok(match inner {
                    Node::Int(i) => Node::Int(-i),
                    Node::Dec(d) => Node::Dec(-d),
                    Node::Quantity(d, u) => Node::Quantity(-d, u),
                    other => {
                        self.built(self.d + 1)?;
                        Node::Neg(Box::new(other))
                    }
                })
            }
            Tok::Sym("+") => {
                self.next();
                self.enter()?;
                let inner = self.unary()?;
                self.depth -= 1;
                Ok(inner)
            }
            _ => self.postfix(),
        }
    }

    fn postfix(&mut self) -> Result<Node, Error> {
        let mut node = self.term()?;
        let mut nd = self.d;
        loop {
            match self.peek() {
                Tok::Sym(".") => {
                    self.next();
                    let pos = self.pos();
                    let name = self.ident()?;
                    if *self.peek() == Tok::Sym("(") {
                        let args = self.args()?;
                        nd = nd.max(self.d) + 1;
                        node = Node::Func(Some(Box::new(node)), name, args, pos);
                    } else {
                        nd += 1;
                        node = Node::Member(Box::new(node), name, pos);
                    }
                }
                Tok::Sym("[") => {
                    self.next();
                    let idx = self.expr(0)?;
                    self.expect("]")?;
                    nd = nd.max(self.d) + 1;
                    node = Node::Indexer(Box::new(node), Box::new(idx));
                }
                _ => break,
            }
            self.built(nd)?;
        }
        self.d = nd;
        Ok(node)
    }

    fn args(&mut self) -> Result<Vec<Node>, Error> {
        self.expect("(")?;
        let mut args = Vec::new();
        self.d = 0;
        if *self.peek() == Tok::Sym(")") {
            self.next();
            return Ok(args);
        }
        let mut ad = 0;
        loop {
            args.push(self.expr(0)?);
            ad = ad.max(self.d);
            self.d = ad;
            match self.next() {
                Tok::Sym(",") => continue,
                Tok::Sym(")") => break,
                _ => {
                    self.p = self.p.saturating_sub(1);
                    return Err(Error::syntax(self.pos(), format!("expected ',' or ')', found {}", self.describe())));
                }
            }
        }
        Ok(args)
    }

    fn term(&mut self) -> Result<Node, Error> {
        let pos = self.pos();
        // leaves; parentheses and calls set the depth of what they hold
        self.d = 1;
        let t = self.next();
        match t {
            Tok::Sym("(") => {
                let e = self.expr(0)?;
                self.expect(")")?;
                Ok(e)
            }
            Tok::Sym("{") => {
                self.expect("}")?;
                Ok(Node::Empty)
            }
            Tok::Str(s) => Ok(Node::Str(s)),
            Tok::Int(s) => {
                let v: Decimal = s.parse().map_err(|_| Error::syntax(pos, "bad number"))?;
                if let Some(q) = self.quantity_unit() {
                    return Ok(Node::Quantity(v, q));
                }
                match s.parse::<i64>() {
                    Ok(i) => Ok(Node::Int(i)),
                    Err(_) => Err(Error::syntax(pos, format!("integer {s} out of range"))),
                }
            }
            Tok::Dec(s) => {
                let v: Decimal = s.parse().map_err(|_| Error::syntax(pos, format!("decimal {s} out of range")))?;
                if let Some(q) = self.quantity_unit() {
                    return Ok(Node::Quantity(v, q));
                }
                Ok(Node::Dec(v))
            }
            Tok::Date(s) => {
                let t =
                    Temporal::parse_literal(&s).ok_or_else(|| Error::syntax(pos, format!("bad date/time '@{s}'")))?;
                Ok(Node::Temporal(t))
            }
            Tok::Time(s) => {
                let t = Temporal::parse_time(&s[1..]).ok_or_else(|| Error::syntax(pos, format!("bad time '@{s}'")))?;
                Ok(Node::Temporal(t))
            }
            Tok::Env(s) => Ok(Node::Env(s)),
            Tok::Special(s) => Ok(match s.as_str() {
                "this" => Node::This,
                "index" => Node::Index,
                _ => Node::Total,
            }),
            Tok::Ident(s) | Tok::Delimited(s) => {
                let delimited = matches!(self.toks[self.p.saturating_sub(1)].tok, Tok::Delimited(_));
                if !delimited {
                    match s.as_str() {
                        "true" => return Ok(Node::Bool(true)),
                        "false" => return Ok(Node::Bool(false)),
                        _ => {}
                    }
                }
                if *self.peek() == Tok::Sym("(") {
                    let args = self.args()?;
                    self.built(self.d + 1)?;
                    return Ok(Node::Func(None, s, args, pos));
                }
                if !delimited && binop(&Tok::Ident(s.clone())).is_some() && !matches!(s.as_str(), "contains" | "in") {
                    return Err(Error::syntax(pos, format!("unexpected '{s}'")));
                }
                Ok(Node::Ident(s, pos))
            }
            _ => {
                self.p = self.p.saturating_sub(1);
                Err(Error::syntax(pos, format!("unexpected {}", self.describe())))
            }
        }
    }

    fn quantity_unit(&mut self) -> Option<String> {
        match self.peek().clone() {
            Tok::Str(u) => {
                self.next();
                Some(u)
            }
            Tok::Ident(u) if crate::units::is_calendar_word(u.as_str()) => {
                // `2 days` but not `2 day.x`? a calendar word after a number is always a unit
                let _ = self.peek_at(1);
                self.next();
                Some(u)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_precedence() {
        let n = parse("1 + 2 * 3 = 7 and true").unwrap();
        assert!(matches!(n, Node::Binary(BinOp::And, _, _, _)));
        let n = parse("Patient.name.given").unwrap();
        assert!(matches!(n, Node::Member(_, _, _)));
        let n = parse("Observation.value as Quantity").unwrap();
        assert!(matches!(n, Node::As(_, _)));
        assert!(parse("2 + 2 /").is_err());
        assert!(parse("2 + 2 /* x").is_err());
        assert!(parse("").is_err());
        assert!(parse("((((").is_err());
        let deep = "(".repeat(10_000) + "1" + &")".repeat(10_000);
        assert!(parse(&deep).is_err());
        assert!(parse(&vec!["1"; 10_000].join(" + ")).is_err());
        assert!(parse(&vec!["a"; 10_000].join(".")).is_err());
        assert!(parse(&"-".repeat(10_000)).is_err());
        assert!(parse(&vec!["1"; 120].join(" + ")).is_ok());
    }

    #[test]
    fn parses_literals() {
        assert!(matches!(parse("@2015-02-04T14:34:28Z").unwrap(), Node::Temporal(_)));
        assert!(matches!(parse("@T14:34").unwrap(), Node::Temporal(_)));
        assert!(matches!(parse("4.5 'mg'").unwrap(), Node::Quantity(_, _)));
        assert!(matches!(parse("7 days").unwrap(), Node::Quantity(_, _)));
        assert!(matches!(parse("'a\\'b'").unwrap(), Node::Str(s) if s == "a'b"));
    }
}
