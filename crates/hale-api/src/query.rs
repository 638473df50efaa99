//! Query strings: percent-decoding and the parameters every interaction shares.

/// Decodes `%XX` and `+`; `None` when the result is not UTF-8 or an escape is broken.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Parsed `name=value` pairs in order.
#[derive(Debug, Default, Clone)]
pub struct Params {
    pub pairs: Vec<(String, String)>,
}

impl Params {
    pub fn parse(raw: Option<&str>) -> Result<Self, String> {
        let mut pairs = Vec::new();
        for part in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (n, v) = part.split_once('=').unwrap_or((part, ""));
            let n =
                percent_decode(n).ok_or_else(|| "The query string is not valid percent-encoded UTF-8".to_string())?;
            let v =
                percent_decode(v).ok_or_else(|| format!("The value of '{n}' is not valid percent-encoded UTF-8"))?;
            pairs.push((n, v));
        }
        Ok(Params { pairs })
    }
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.pairs.iter().map(|(n, _)| n.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_pairs() {
        let p = Params::parse(Some("a=1%7C2&b=x+y&c")).unwrap();
        assert_eq!(p.get("a"), Some("1|2"));
        assert_eq!(p.get("b"), Some("x y"));
        assert_eq!(p.get("c"), Some(""));
        assert!(Params::parse(Some("a=%ZZ")).is_err());
        assert!(Params::parse(Some("a=%FF")).is_err());
    }
}
