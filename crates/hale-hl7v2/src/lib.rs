//! HL7 v2 messages, pure (no I/O): a lenient parser and acknowledgements.
//!
//! [`Message::parse`] takes the bytes of one message as they arrive (a byte-order mark,
//! segments ended by CR, LF or CRLF, the encoding characters MSH-2 names, the character
//! set MSH-18 names: ASCII, UTF-8 or ISO-8859-1) and keeps every field as written;
//! [`Message::get`] reads a field, component or subcomponent by its HL7 address
//! (`PID-5.2`, `OBX-5`) with the escape sequences (`\F\ \S\ \T\ \R\ \E\ \Xhh\ \.br\`)
//! resolved. A message that cannot be read is refused with the reason and where
//! ([`ParseError`]). [`timestamp`] turns a DTM into a FHIR dateTime; [`ack`] writes the
//! acknowledgement of a message (MSA-2 echoing MSH-10, ERR-2 the location and ERR-3 a
//! table 0357 code).

#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod adt;
pub mod oru;
mod timestamp;

pub use timestamp::timestamp;

/// Why a message was refused, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub reason: String,
    /// The segment and field, e.g. `MSH-9`, or `segment 3`.
    pub location: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (at {})", self.reason, self.location)
    }
}

impl std::error::Error for ParseError {}

fn refuse(reason: impl Into<String>, location: impl Into<String>) -> ParseError {
    ParseError { reason: reason.into(), location: location.into() }
}

/// The separators of a message (MSH-1 and MSH-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Separators {
    pub field: char,
    pub component: char,
    pub repetition: char,
    pub escape: Option<char>,
    pub subcomponent: char,
}

impl Default for Separators {
    fn default() -> Self {
        Separators { field: '|', component: '^', repetition: '~', escape: Some('\\'), subcomponent: '&' }
    }
}

/// One segment: its name and its fields as written (escaped). For MSH, `fields[1]` is
/// MSH-1 (the field separator) and `fields[2]` MSH-2, as HL7 numbers them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub name: String,
    fields: Vec<String>,
}

impl Segment {
    /// Field `n` (1-based) as written, or "".
    pub fn raw(&self, n: usize) -> &str {
        self.fields.get(n).map(String::as_str).unwrap_or("")
    }

    /// The number of the last field present.
    pub fn len(&self) -> usize {
        self.fields.len().saturating_sub(1)
    }

    /// Whether the segment has no field.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A parsed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub separators: Separators,
    pub segments: Vec<Segment>,
    /// The character set the bytes were read in (`UTF-8`, `ISO-8859-1`, `ASCII`).
    pub charset: &'static str,
}

/// The character set MSH-18 names, as Hale reads it.
fn charset_of(name: &str) -> Result<&'static str, String> {
    let n = name.trim().to_ascii_uppercase();
    match n.as_str() {
        "" | "ASCII" | "UNICODE UTF-8" | "UTF-8" | "UNICODE" => Ok(if n == "ASCII" { "ASCII" } else { "UTF-8" }),
        "8859/1" | "ISO-8859-1" | "ISO IR100" => Ok("ISO-8859-1"),
        other => {
            Err(format!("the character set '{other}' (MSH-18) is not one Hale reads (ASCII, UNICODE UTF-8, 8859/1)"))
        }
    }
}

impl Message {
    /// Parses one message.
    pub fn parse(bytes: &[u8]) -> Result<Message, ParseError> {
        // MLLP framing and a byte-order mark, if they came along
        let mut b = bytes;
        while let [0x0b | b'\r' | b'\n' | b' ' | b'\t', rest @ ..] = b {
            b = rest;
        }
        if let Some(rest) = b.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
            b = rest;
        }
        while let [rest @ .., 0x1c | 0x0b | b'\r' | b'\n' | b' ' | b'\t'] = b {
            b = rest;
        }
        if b.is_empty() {
            return Err(refuse("the message is empty", "segment 1"));
        }
        // a batch file of one message: its FHS/BHS header and BTS/FTS trailer are set aside
        let unwrapped;
        if b.starts_with(b"FHS") || b.starts_with(b"BHS") {
            let lines: Vec<&[u8]> = b
                .split(|c| *c == b'\r' || *c == b'\n')
                .filter(|l| !l.is_empty() && !["FHS", "BHS", "BTS", "FTS"].iter().any(|h| l.starts_with(h.as_bytes())))
                .collect();
            if lines.iter().filter(|l| l.starts_with(b"MSH")).count() != 1 {
                return Err(refuse("a batch must hold exactly one message (MSH)", "BHS"));
            }
            unwrapped = lines.join(&b'\r');
            b = &unwrapped;
        }
        if !b.starts_with(b"MSH") {
            let start = String::from_utf8_lossy(&b[..b.len().min(3)]).into_owned();
            return Err(refuse(format!("a message begins with MSH, not '{start}'"), "segment 1"));
        }
        // the header is ASCII: read it to learn the character set
        let first_end = b.iter().position(|c| *c == b'\r' || *c == b'\n').unwrap_or(b.len());
        let header = String::from_utf8_lossy(&b[..first_end]).into_owned();
        let seps = separators(&header)?;
        let msh18 = header.split(seps.field).nth(17).unwrap_or("");
        // MSH-18 may repeat: the first names the message's own character set
        let named = msh18.split(seps.repetition).next().unwrap_or("");
        let charset = charset_of(named).map_err(|e| refuse(e, "MSH-18"))?;
        let text: String = match charset {
            "ISO-8859-1" => b.iter().map(|&c| c as char).collect(),
            _ => match std::str::from_utf8(b) {
                Ok(t) => t.to_string(),
                Err(e) => {
                    let at = b[..e.valid_up_to()].iter().filter(|c| **c == b'\r' || **c == b'\n').count() + 1;
                    return Err(refuse(
                        "the message is not valid UTF-8, and MSH-18 names no other character set",
                        format!("segment {at}"),
                    ));
                }
            },
        };
        // a message that names ASCII but holds other characters is read as the UTF-8 it
        // is (it would have been refused above if it were not)
        let charset = if charset == "ASCII" && !text.is_ascii() { "UTF-8" } else { charset };
        let mut segments = Vec::new();
        for (i, line) in text.split(['\r', '\n']).enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let name: String = line.chars().take(3).collect();
            let ok_name = name.len() == 3 && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
            if !ok_name {
                return Err(refuse(
                    format!("'{}' is not a segment name", name.escape_debug()),
                    format!("segment {}", i + 1),
                ));
            }
            if line.chars().nth(3).is_some_and(|c| c != seps.field) {
                return Err(refuse(
                    format!("the segment {name} is not followed by the field separator '{}'", seps.field),
                    format!("segment {}", i + 1),
                ));
            }
            let mut fields: Vec<String> = line.split(seps.field).map(str::to_string).collect();
            if name == "MSH" {
                // MSH-1 is the separator itself, so MSH-n is the n-th piece
                fields.insert(1, seps.field.to_string());
            }
            segments.push(Segment { name, fields });
        }
        if segments.first().is_some_and(|s| s.name == "MSH") && segments.iter().skip(1).any(|s| s.name == "MSH") {
            return Err(refuse("two messages in one: a batch must be sent a message at a time", "MSH"));
        }
        let msg = Message { separators: seps, segments, charset };
        for (field, what) in [(9, "the message type"), (10, "the message control id"), (12, "the version")] {
            if msg.raw("MSH", field).trim().is_empty() {
                return Err(refuse(format!("MSH-{field} ({what}) is empty"), format!("MSH-{field}")));
            }
        }
        Ok(msg)
    }

    /// The first segment named `name`.
    pub fn segment(&self, name: &str) -> Option<&Segment> {
        self.segments.iter().find(|s| s.name == name)
    }

    /// Every segment named `name`, in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Segment> + 'a {
        self.segments.iter().filter(move |s| s.name == name)
    }

    fn raw(&self, segment: &str, field: usize) -> &str {
        self.segment(segment).map(|s| s.raw(field)).unwrap_or("")
    }

    /// A value by its HL7 address in the first segment of that name: `PID-3` (the first
    /// repetition of the field), `PID-5.2` (a component), `PID-3.4.2` (a
    /// subcomponent), with escapes resolved; "" when absent.
    pub fn get(&self, address: &str) -> String {
        let Some((seg, rest)) = address.split_once('-') else { return String::new() };
        match self.segment(seg) {
            Some(s) => self.value(s, rest),
            None => String::new(),
        }
    }

    /// A value of segment `s` by `field[.component[.subcomponent]]`, first repetition.
    pub fn value(&self, s: &Segment, path: &str) -> String {
        let mut parts = path.split('.').map(|p| p.parse::<usize>().ok());
        let Some(Some(field)) = parts.next() else { return String::new() };
        let component = parts.next().flatten();
        let sub = parts.next().flatten();
        let raw = s.raw(field);
        if s.name == "MSH" && field <= 2 {
            return raw.to_string();
        }
        let first = raw.split(self.separators.repetition).next().unwrap_or("");
        self.pick(first, component, sub)
    }

    /// Every repetition of field `field` of segment `s`, each as its components (escapes
    /// resolved).
    pub fn repetitions(&self, s: &Segment, field: usize) -> Vec<Vec<String>> {
        let raw = s.raw(field);
        if raw.is_empty() {
            return Vec::new();
        }
        raw.split(self.separators.repetition)
            .map(|r| r.split(self.separators.component).map(|c| self.unescape(c)).collect())
            .collect()
    }

    /// How many repetitions field `field` of segment `s` has (0 when empty).
    pub fn repeats(&self, s: &Segment, field: usize) -> usize {
        let raw = s.raw(field);
        if raw.is_empty() { 0 } else { raw.split(self.separators.repetition).count() }
    }

    /// Component `component` (and subcomponent `sub`) of repetition `rep` (from 0) of
    /// field `field` of segment `s`, escapes resolved; "" when absent.
    pub fn at(&self, s: &Segment, field: usize, rep: usize, component: usize, sub: Option<usize>) -> String {
        let raw = s.raw(field);
        let r = raw.split(self.separators.repetition).nth(rep).unwrap_or("");
        self.pick(r, Some(component), sub)
    }

    fn pick(&self, rep: &str, component: Option<usize>, sub: Option<usize>) -> String {
        let Some(c) = component else { return self.unescape(rep) };
        let comp = rep.split(self.separators.component).nth(c.saturating_sub(1)).unwrap_or("");
        match sub {
            None => self.unescape(comp),
            Some(n) => self.unescape(comp.split(self.separators.subcomponent).nth(n.saturating_sub(1)).unwrap_or("")),
        }
    }

    /// Resolves the escape sequences of a value: `\F\` `\S\` `\T\` `\R\` `\E\` to the
    /// separators, `\Xhh..\` to the bytes it names (read in the message's character
    /// set), `\.br\` to a line break; highlighting (`\H\`, `\N\`) and anything unknown
    /// is dropped.
    pub fn unescape(&self, s: &str) -> String {
        let Some(esc) = self.separators.escape else { return s.to_string() };
        if !s.contains(esc) {
            return s.to_string();
        }
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(i) = rest.find(esc) {
            out.push_str(&rest[..i]);
            let after = &rest[i + esc.len_utf8()..];
            let Some(j) = after.find(esc) else {
                // a lone escape character stands for itself
                out.push(esc);
                rest = after;
                continue;
            };
            let seq = &after[..j];
            let sep = &self.separators;
            match seq {
                "F" => out.push(sep.field),
                "S" => out.push(sep.component),
                "T" => out.push(sep.subcomponent),
                "R" => out.push(sep.repetition),
                "E" => out.push(esc),
                ".br" => out.push('\n'),
                x if x.starts_with('X') && x.len() > 1 && (x.len() - 1).is_multiple_of(2) => {
                    let bytes: Option<Vec<u8>> =
                        (1..x.len()).step_by(2).map(|k| u8::from_str_radix(x.get(k..k + 2)?, 16).ok()).collect();
                    if let Some(bytes) = bytes {
                        match self.charset {
                            "ISO-8859-1" => out.extend(bytes.iter().map(|&c| c as char)),
                            _ => out.push_str(&String::from_utf8_lossy(&bytes)),
                        }
                    }
                }
                _ => {}
            }
            rest = &after[j + esc.len_utf8()..];
        }
        out.push_str(rest);
        out
    }

    /// MSH-9 as (message code, trigger event, structure): `ORU`, `R01`, `ORU_R01`.
    pub fn message_type(&self) -> (String, String, String) {
        let msh = self.segment("MSH");
        let get = |c| msh.map(|s| self.value(s, &format!("9.{c}"))).unwrap_or_default();
        (get(1), get(2), get(3))
    }

    /// MSH-10, the message control id.
    pub fn control_id(&self) -> String {
        self.get("MSH-10")
    }

    /// Whether `other` is this message sent again: the same segments and fields, but
    /// MSH-7 (the time of the message, which a sender may stamp anew on a resend) and
    /// trailing empty fields.
    pub fn same_content(&self, other: &Message) -> bool {
        let norm = |m: &Message| -> Vec<(String, Vec<String>)> {
            m.segments
                .iter()
                .map(|s| {
                    let mut f = s.fields.clone();
                    if s.name == "MSH"
                        && let Some(t) = f.get_mut(7)
                    {
                        t.clear();
                    }
                    while f.last().is_some_and(String::is_empty) {
                        f.pop();
                    }
                    (s.name.clone(), f)
                })
                .collect()
        };
        self.separators == other.separators && norm(self) == norm(other)
    }
}

/// MSH-1 and MSH-2 of a header line.
fn separators(header: &str) -> Result<Separators, ParseError> {
    let mut chars = header.chars().skip(3);
    let Some(field) = chars.next() else {
        return Err(refuse("the MSH segment ends before its field separator", "MSH-1"));
    };
    if field.is_alphanumeric() || field.is_whitespace() {
        return Err(refuse(format!("'{field}' cannot be the field separator"), "MSH-1"));
    }
    let enc: String = chars.take_while(|c| *c != field).collect();
    let e: Vec<char> = enc.chars().collect();
    if e.len() < 3 || e.len() > 5 {
        return Err(refuse(format!("MSH-2 '{enc}' does not name the encoding characters"), "MSH-2"));
    }
    let mut seen = vec![field];
    for c in &e {
        if seen.contains(c) || c.is_alphanumeric() || c.is_whitespace() {
            return Err(refuse(format!("MSH-2 '{enc}' repeats or uses an unusable character"), "MSH-2"));
        }
        seen.push(*c);
    }
    Ok(Separators {
        field,
        component: e[0],
        repetition: e[1],
        escape: (e.len() >= 4 || e[2] == '\\').then(|| if e.len() >= 4 { e[2] } else { '\\' }),
        subcomponent: if e.len() >= 4 { e[3] } else { e[2] },
    })
}

/// An acknowledgement code (MSA-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCode {
    /// Application accept, error, reject (original mode).
    Aa,
    Ae,
    Ar,
    /// Commit accept, error, reject (enhanced mode).
    Ca,
    Ce,
    Cr,
}

impl AckCode {
    pub fn code(self) -> &'static str {
        match self {
            AckCode::Aa => "AA",
            AckCode::Ae => "AE",
            AckCode::Ar => "AR",
            AckCode::Ca => "CA",
            AckCode::Ce => "CE",
            AckCode::Cr => "CR",
        }
    }
}

impl AckCode {
    /// Whether the message was accepted (`AA` or `CA`).
    pub fn accepted(self) -> bool {
        matches!(self, AckCode::Aa | AckCode::Ca)
    }
}

/// The code to answer `msg` with: in enhanced mode (MSH-15, the accept acknowledgement
/// type, valued) the commit code (`CA`, `CE`, `CR`) for the application code, else the
/// application code itself (original mode).
pub fn mode_code(msg: &Message, code: AckCode) -> AckCode {
    if msg.get("MSH-15").trim().is_empty() {
        return code;
    }
    match code {
        AckCode::Aa | AckCode::Ca => AckCode::Ca,
        AckCode::Ae | AckCode::Ce => AckCode::Ce,
        AckCode::Ar | AckCode::Cr => AckCode::Cr,
    }
}

/// Whether an answer with `code` is sent at all: in enhanced mode MSH-15 says when
/// (`AL` always, `NE` never, `ER` on an error, `SU` on success); in original mode always.
pub fn ack_wanted(msg: &Message, code: AckCode) -> bool {
    match msg.get("MSH-15").trim() {
        "NE" => false,
        "ER" => !code.accepted(),
        "SU" => code.accepted(),
        _ => true,
    }
}

/// What went wrong, for ERR: the location (`PID^1^3`), a table 0357 code and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckError {
    pub location: String,
    pub code: &'static str,
    pub text: String,
}

/// Escapes text for a field of a message with `seps`.
pub fn escape(s: &str, seps: &Separators) -> String {
    let Some(esc) = seps.escape else { return s.to_string() };
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            c if c == esc => out.push_str(&format!("{esc}E{esc}")),
            c if c == seps.field => out.push_str(&format!("{esc}F{esc}")),
            c if c == seps.component => out.push_str(&format!("{esc}S{esc}")),
            c if c == seps.subcomponent => out.push_str(&format!("{esc}T{esc}")),
            c if c == seps.repetition => out.push_str(&format!("{esc}R{esc}")),
            '\r' | '\n' => out.push_str(&format!("{esc}.br{esc}")),
            c => out.push(c),
        }
    }
    out
}

/// The acknowledgement of `msg`: MSH (sender and receiver swapped, `ACK^<trigger>^ACK`,
/// the control id `control_id`, `time` as MSH-7), MSA (`code`, MSH-10 of the message),
/// and an ERR for each error. Segments end with CR.
pub fn ack(msg: &Message, code: AckCode, control_id: &str, time: &str, errors: &[AckError]) -> String {
    let s = msg.separators;
    let f = s.field;
    let enc: String =
        [Some(s.component), Some(s.repetition), s.escape, Some(s.subcomponent)].iter().flatten().collect();
    let msh = msg.segment("MSH");
    let raw = |n| msh.map(|m| m.raw(n).to_string()).unwrap_or_default();
    let (_, trigger, _) = msg.message_type();
    let mut out = format!(
        "MSH{f}{enc}{f}{}{f}{}{f}{}{f}{}{f}{time}{f}{f}ACK{c}{}{c}ACK{f}{}{f}{}{f}{}\r",
        raw(5),
        raw(6),
        raw(3),
        raw(4),
        escape(&trigger, &s),
        escape(control_id, &s),
        raw(11),
        raw(12),
        c = s.component,
    );
    out.push_str(&format!("MSA{f}{}{f}{}\r", code.code(), raw(10)));
    for e in errors {
        out.push_str(&format!(
            "ERR{f}{f}{}{f}{}{c}{}{c}HL70357{f}E{f}{f}{f}{f}{}\r",
            e.location,
            e.code,
            escape(table_0357(e.code), &s),
            escape(&e.text, &s),
            c = s.component,
        ));
    }
    out
}

/// The text of an HL7 table 0357 (message error condition) code.
pub fn table_0357(code: &str) -> &'static str {
    match code {
        "0" => "Message accepted",
        "100" => "Segment sequence error",
        "101" => "Required field missing",
        "102" => "Data type error",
        "103" => "Table value not found",
        "200" => "Unsupported message type",
        "201" => "Unsupported event code",
        "202" => "Unsupported processing id",
        "203" => "Unsupported version id",
        "204" => "Unknown key identifier",
        "205" => "Duplicate key identifier",
        "206" => "Application record locked",
        "207" => "Application internal error",
        _ => "Application error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORU: &str = "MSH|^~\\&|LAB|NORTH|HALE|CLINIC|20240711160217.749-0700||ORU^R01^ORU_R01|MSG0001|P|2.5.1\rPID|1||4711^^^CLINIC&1.2.3&ISO^MR||Alvarez^Ana^M||19800203|F\rOBX|1|NM|2823-3^Potassium^LN||6.9|mmol/L^^UCUM|3.5-5.1|HH|||F\rNTE|1||Call \\F\\ repeat\\.br\\tomorrow \\T\\ \\S\\ \\R\\ \\E\\\r";

    #[test]
    fn a_resend_is_the_same_content_whatever_its_time_and_line_ends() {
        let m = Message::parse(ORU.as_bytes()).unwrap();
        let again = ORU.replace("20240711160217.749-0700", "20240711170000").replace('\r', "\r\n");
        assert!(m.same_content(&Message::parse(again.as_bytes()).unwrap()));
        let other = ORU.replace("|6.9|", "|7.0|");
        assert!(!m.same_content(&Message::parse(other.as_bytes()).unwrap()));
    }

    #[test]
    fn enhanced_mode_answers_with_commit_codes_when_msh_15_asks() {
        let original = Message::parse(ORU.as_bytes()).unwrap();
        assert_eq!(mode_code(&original, AckCode::Aa), AckCode::Aa);
        assert!(ack_wanted(&original, AckCode::Ae));
        let with = |accept: &str| {
            Message::parse(ORU.replacen("|P|2.5.1", &format!("|P|2.5.1|||{accept}|NE"), 1).as_bytes()).unwrap()
        };
        let al = with("AL");
        assert_eq!(al.get("MSH-15"), "AL");
        assert_eq!(mode_code(&al, AckCode::Aa), AckCode::Ca);
        assert_eq!(mode_code(&al, AckCode::Ae), AckCode::Ce);
        assert_eq!(mode_code(&al, AckCode::Ar), AckCode::Cr);
        assert!(ack_wanted(&al, AckCode::Ca) && ack_wanted(&al, AckCode::Cr));
        assert!(!ack_wanted(&with("NE"), AckCode::Ca));
        assert!(ack_wanted(&with("ER"), AckCode::Ce) && !ack_wanted(&with("ER"), AckCode::Ca));
        assert!(ack_wanted(&with("SU"), AckCode::Ca) && !ack_wanted(&with("SU"), AckCode::Cr));
    }

    #[test]
    fn fields_components_and_escapes_read_by_address() {
        let m = Message::parse(ORU.as_bytes()).unwrap();
        assert_eq!(m.message_type(), ("ORU".into(), "R01".into(), "ORU_R01".into()));
        assert_eq!(m.control_id(), "MSG0001");
        assert_eq!(m.get("MSH-1"), "|");
        assert_eq!(m.get("MSH-2"), "^~\\&");
        assert_eq!(m.get("PID-3.1"), "4711");
        assert_eq!(m.get("PID-3.4.2"), "1.2.3");
        assert_eq!(m.get("PID-5.2"), "Ana");
        assert_eq!(m.get("OBX-5"), "6.9");
        assert_eq!(m.get("NTE-3"), "Call | repeat\ntomorrow & ^ ~ \\");
        assert_eq!(m.get("ZZZ-1"), "");
        assert_eq!(m.all("OBX").count(), 1);
    }

    #[test]
    fn line_ends_bom_framing_and_custom_separators() {
        for end in ["\r", "\n", "\r\n"] {
            let text = ORU.replace('\r', end);
            let framed = [&[0x0b_u8][..], &[0xEF, 0xBB, 0xBF], text.as_bytes(), &[0x1c, b'\r']].concat();
            let m = Message::parse(&framed).unwrap();
            assert_eq!(m.segments.len(), 4, "{end:?}");
        }
        let custom = "MSH#*!%$#A#B#C#D#20240101##ADT*A01#1#P#2.5\rPID#1##99*x$y##Doe*Jane";
        let m = Message::parse(custom.as_bytes()).unwrap();
        assert_eq!(
            (m.separators.component, m.separators.repetition, m.separators.escape, m.separators.subcomponent),
            ('*', '!', Some('%'), '$')
        );
        assert_eq!(m.get("PID-3.2.2"), "y");
        assert_eq!(m.get("PID-5.2"), "Jane");
        // MSH-2 with the truncation character
        let five = ORU.replacen("^~\\&", "^~\\&#", 1);
        assert_eq!(Message::parse(five.as_bytes()).unwrap().get("PID-5.1"), "Alvarez");
    }

    #[test]
    fn a_batch_of_one_message_is_read_as_that_message() {
        let batch = format!("FHS|^~\\&|A\rBHS|^~\\&|A\r{ORU}BTS|1\rFTS|1\r");
        assert_eq!(Message::parse(batch.as_bytes()).unwrap().control_id(), "MSG0001");
        let two = format!("FHS|^~\\&|A\r{ORU}{}FTS|1", ORU.replace("MSG0001", "MSG0002"));
        assert_eq!(Message::parse(two.as_bytes()).unwrap_err().location, "BHS");
    }

    #[test]
    fn character_sets() {
        let latin = "MSH|^~\\&|A|B|C|D|20240101||ADT^A08|1|P|2.5||||||8859/1\rPID|1||1||M\u{fc}ller^J\u{fc}rgen";
        let bytes: Vec<u8> = latin.chars().map(|c| c as u32 as u8).collect();
        let m = Message::parse(&bytes).unwrap();
        assert_eq!((m.charset, m.get("PID-5.1")), ("ISO-8859-1", "Müller".to_string()));
        // the same bytes without MSH-18 are not UTF-8: refused, with where
        let bare: Vec<u8> = latin.replace("||||||8859/1", "").chars().map(|c| c as u32 as u8).collect();
        let e = Message::parse(&bare).unwrap_err();
        assert_eq!(e.location, "segment 2");
        let utf8 = latin.replace("8859/1", "UNICODE UTF-8");
        assert_eq!(Message::parse(utf8.as_bytes()).unwrap().get("PID-5.2"), "Jürgen");
        let hex = "MSH|^~\\&|A|B|C|D|20240101||ADT^A08|1|P|2.5\rPID|1||1||M\\XC3BC\\ller";
        assert_eq!(Message::parse(hex.as_bytes()).unwrap().get("PID-5"), "Müller");
        assert_eq!(Message::parse(latin.replace("8859/1", "EBCDIC").as_bytes()).unwrap_err().location, "MSH-18");
        // named ASCII, written in UTF-8: read as what it is
        let m = Message::parse(latin.replace("8859/1", "ASCII").as_bytes()).unwrap();
        assert_eq!((m.charset, m.get("PID-5.2")), ("UTF-8", "Jürgen".to_string()));
    }

    #[test]
    fn malformed_messages_are_refused_with_where() {
        let cases: &[(&str, &str)] = &[
            ("", "segment 1"),
            ("PID|1", "segment 1"),
            ("MSH", "MSH-1"),
            ("MSHA^~\\&", "MSH-1"),
            ("MSH|^^\\&|A", "MSH-2"),
            ("MSH|^~\\&|A|B|C|D|2024||ADT^A01||P|2.5", "MSH-10"),
            ("MSH|^~\\&|A|B|C|D|2024|||1|P|2.5", "MSH-9"),
            ("MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5\rpid|1", "segment 2"),
            ("MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5\rPID-1", "segment 2"),
            ("MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5\rMSH|^~\\&|A|B|C|D|2024||ADT^A01|2|P|2.5", "MSH"),
        ];
        for (text, location) in cases {
            let e = Message::parse(text.as_bytes()).unwrap_err();
            assert_eq!(e.location, *location, "{text:?}: {e}");
        }
    }

    #[test]
    fn an_ack_echoes_the_control_id_and_names_each_error() {
        let m = Message::parse(ORU.as_bytes()).unwrap();
        let err = AckError { location: "OBX^1^5".into(), code: "102", text: "not a number | really".into() };
        let a = ack(&m, AckCode::Ae, "ACK-1", "20240711160300", &[err]);
        let parsed = Message::parse(a.as_bytes()).unwrap();
        assert_eq!(parsed.message_type(), ("ACK".into(), "R01".into(), "ACK".into()));
        assert_eq!((parsed.get("MSH-3"), parsed.get("MSH-5")), ("HALE".into(), "LAB".into()));
        assert_eq!((parsed.get("MSA-1"), parsed.get("MSA-2")), ("AE".into(), "MSG0001".into()));
        assert_eq!(parsed.get("ERR-2"), "OBX^1^5");
        let err = parsed.segment("ERR").unwrap();
        assert_eq!(parsed.value(err, "2.1"), "OBX");
        assert_eq!(parsed.value(err, "3.1"), "102");
        assert_eq!(parsed.value(err, "3.2"), "Data type error");
        assert_eq!(parsed.value(err, "8"), "not a number | really");
        assert!(a.ends_with('\r') && !a.contains('\n'));
    }
}
