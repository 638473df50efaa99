//! Bound values and placeholders: the shared SQL ([`hale_store::sql`]) is built with `?`
//! marks and numbered (`$1`, `$2`...) just before it is sent; [`Sql`] carries a
//! dynamically typed [`Bind`] that binds to whatever type PostgreSQL inferred for its
//! placeholder.

use std::error::Error as StdError;

use bytes::BytesMut;
use hale_store::sql::Bind;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

/// A bound value or a value read back (sort keys).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sql(pub Bind);

type BoxError = Box<dyn StdError + Sync + Send>;

/// PostgreSQL text cannot hold NUL; nothing a client sends may make a write fail on it.
pub(crate) fn clean(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') { std::borrow::Cow::Owned(s.replace('\0', "")) } else { std::borrow::Cow::Borrowed(s) }
}

impl ToSql for Sql {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match &self.0 {
            Bind::Null => Ok(IsNull::Yes),
            Bind::Integer(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                Type::FLOAT4 => (*i as f32).to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                _ => i.to_string().as_str().to_sql(ty, out),
            },
            Bind::Real(f) => match *ty {
                Type::FLOAT8 => f.to_sql(ty, out),
                Type::FLOAT4 => (*f as f32).to_sql(ty, out),
                Type::INT8 => (*f as i64).to_sql(ty, out),
                Type::INT4 => (*f as i32).to_sql(ty, out),
                _ => f.to_string().as_str().to_sql(ty, out),
            },
            Bind::Text(s) => clean(s).as_ref().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for Sql {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(Sql(match *ty {
            Type::INT8 => Bind::Integer(i64::from_sql(ty, raw)?),
            Type::INT4 => Bind::Integer(i32::from_sql(ty, raw)? as i64),
            Type::INT2 => Bind::Integer(i16::from_sql(ty, raw)? as i64),
            Type::FLOAT8 => Bind::Real(f64::from_sql(ty, raw)?),
            Type::FLOAT4 => Bind::Real(f32::from_sql(ty, raw)? as f64),
            Type::NUMERIC => return Err("numeric sort keys are not supported".into()),
            _ => Bind::Text(<&str>::from_sql(ty, raw)?.to_string()),
        }))
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(Sql(Bind::Null))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// `?` marks outside string literals become `$1`, `$2`, ... in order.
pub(crate) fn number_marks(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    let mut quoted = false;
    for ch in sql.chars() {
        match ch {
            '\'' => {
                quoted = !quoted;
                out.push(ch);
            }
            '?' if !quoted => {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            }
            _ => out.push(ch),
        }
    }
    out
}

/// Borrowed parameters as tokio-postgres takes them.
pub(crate) fn refs(args: &[Sql]) -> Vec<&(dyn ToSql + Sync)> {
    args.iter().map(|a| a as &(dyn ToSql + Sync)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_numbered_outside_literals() {
        assert_eq!(
            number_marks("a = ? AND b LIKE ? ESCAPE '\\' AND c = '?' AND d IN (?, ?)"),
            "a = $1 AND b LIKE $2 ESCAPE '\\' AND c = '?' AND d IN ($3, $4)"
        );
    }

    #[test]
    fn nul_is_removed() {
        assert_eq!(clean("a\0b"), "ab");
    }
}
