//! `$VAR` / `${VAR}` / `$$` templates, as atomic's `/exports/*.template` files use them
//! (Python `string.Template` syntax: identifiers are `[A-Za-z_][A-Za-z0-9_]*`).
//!
//! Pure functions. Every lookup goes through a caller-supplied function, so the caller decides
//! how a value is escaped for the file it lands in; an unknown variable is an error that names
//! the variable.

use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("{file}: unknown variable ${var} (set it with --set {var}=VALUE)")]
    Unknown { file: String, var: String },
    #[error("{file}: line {line}: invalid placeholder after '$' (write $$ for a literal $)")]
    Invalid { file: String, line: usize },
}

#[derive(Debug, PartialEq)]
enum Piece<'a> {
    Text(&'a str),
    /// A variable and the byte offset of its `$` in the template.
    Var(&'a str, usize),
}

fn ident_len(s: &str) -> usize {
    let b = s.as_bytes();
    if b.is_empty() || !(b[0].is_ascii_alphabetic() || b[0] == b'_') {
        return 0;
    }
    b.iter().take_while(|c| c.is_ascii_alphanumeric() || **c == b'_').count()
}

fn parse<'a>(file: &str, text: &'a str) -> Result<Vec<Piece<'a>>, TemplateError> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push(Piece::Text(&rest[..i]));
        let after = &rest[i + 1..];
        let invalid = || TemplateError::Invalid {
            file: file.to_string(),
            line: text[..text.len() - rest.len() + i].matches('\n').count() + 1,
        };
        if let Some(r) = after.strip_prefix('$') {
            out.push(Piece::Text("$"));
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            let n = ident_len(r);
            if n == 0 || !r[n..].starts_with('}') {
                return Err(invalid());
            }
            out.push(Piece::Var(&r[..n], text.len() - rest.len() + i));
            rest = &r[n + 1..];
        } else {
            let n = ident_len(after);
            if n == 0 {
                return Err(invalid());
            }
            out.push(Piece::Var(&after[..n], text.len() - rest.len() + i));
            rest = &after[n..];
        }
    }
    out.push(Piece::Text(rest));
    Ok(out)
}

/// The variables a template uses, sorted.
pub fn variables(file: &str, text: &str) -> Result<BTreeSet<String>, TemplateError> {
    Ok(parse(file, text)?
        .into_iter()
        .filter_map(|p| match p {
            Piece::Var(v, _) => Some(v.to_string()),
            Piece::Text(_) => None,
        })
        .collect())
}

/// Every placeholder of a template: (variable, byte offset of its `$`), in order.
pub fn placeholders(file: &str, text: &str) -> Result<Vec<(String, usize)>, TemplateError> {
    Ok(parse(file, text)?
        .into_iter()
        .filter_map(|p| match p {
            Piece::Var(v, at) => Some((v.to_string(), at)),
            Piece::Text(_) => None,
        })
        .collect())
}

/// One substitution made by [`render_spans`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub var: String,
    /// Byte offset of the placeholder's `$` in the template.
    pub at: usize,
    /// Where its value landed in the output.
    pub out: std::ops::Range<usize>,
}

/// Renders `text`; `value(name)` returns the (already escaped) replacement or `None` if unknown.
pub fn render(file: &str, text: &str, value: impl Fn(&str) -> Option<String>) -> Result<String, TemplateError> {
    render_at(file, text, |v, _| value(v))
}

/// Like [`render`], also telling `value` the byte offset of the placeholder in `text`.
pub fn render_at(
    file: &str,
    text: &str,
    value: impl Fn(&str, usize) -> Option<String>,
) -> Result<String, TemplateError> {
    render_spans(file, text, value).map(|(out, _)| out)
}

/// Like [`render_at`], also saying where each value landed in the output.
pub fn render_spans(
    file: &str,
    text: &str,
    value: impl Fn(&str, usize) -> Option<String>,
) -> Result<(String, Vec<Span>), TemplateError> {
    let mut out = String::with_capacity(text.len());
    let mut spans = Vec::new();
    for p in parse(file, text)? {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Var(v, at) => {
                let val = value(v, at)
                    .ok_or_else(|| TemplateError::Unknown { file: file.to_string(), var: v.to_string() })?;
                let start = out.len();
                out.push_str(&val);
                spans.push(Span { var: v.to_string(), at, out: start..out.len() });
            }
        }
    }
    Ok((out, spans))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_variables() {
        let v = variables("f", "a $A b ${B_2}c $$D $A").unwrap();
        assert_eq!(v.into_iter().collect::<Vec<_>>(), ["A", "B_2"]);
    }

    #[test]
    fn renders() {
        let get = |k: &str| (k == "X").then(|| "1".to_string());
        assert_eq!(render("f", "$X-${X}x $$X", get).unwrap(), "1-1x $X");
        assert_eq!(render("f", "a $Y", get), Err(TemplateError::Unknown { file: "f".into(), var: "Y".into() }));
    }

    #[test]
    fn spans_say_where_values_landed() {
        let get = |k: &str, _: usize| Some(if k == "A" { "xy".to_string() } else { String::new() });
        let (out, spans) = render_spans("f", "[$A, ${B}]$$", get).unwrap();
        assert_eq!(out, "[xy, ]$");
        assert_eq!(spans, [Span { var: "A".into(), at: 1, out: 1..3 }, Span { var: "B".into(), at: 5, out: 5..5 }]);
        assert_eq!(placeholders("f", "[$A, ${B}]").unwrap(), [("A".to_string(), 1), ("B".to_string(), 5)]);
    }

    #[test]
    fn invalid_placeholders() {
        for bad in ["$", "a $1", "${X", "${}", "x\n$ y"] {
            assert!(matches!(render("f", bad, |_| Some(String::new())), Err(TemplateError::Invalid { .. })), "{bad:?}");
        }
        assert_eq!(render("f", "x\n\n$-", |_| None), Err(TemplateError::Invalid { file: "f".into(), line: 3 }));
    }
}
