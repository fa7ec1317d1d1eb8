//! `${VAR}` interpolation, as the Compose Specification defines it.
//!
//! `$VAR`, `${VAR}`, `${VAR:-default}` (unset or empty), `${VAR-default}`
//! (unset), `${VAR:?message}` / `${VAR?message}` (an error),
//! `${VAR:+replacement}` / `${VAR+replacement}`, and `$$` for a literal `$`.
//! Defaults and replacements may themselves contain `${…}`.

use std::collections::BTreeMap;

/// How deep `${A:-${B:-${C}}}` may nest.
const MAX_NESTING: usize = 8;

/// The result of interpolating one string.
#[derive(Debug, Default)]
pub(crate) struct Interpolated {
    pub text: String,
    /// Variables used without a value nor a default (they became "").
    pub unset: Vec<String>,
}

/// Interpolates `input` from `vars`; the error is the message to show.
pub(crate) fn interpolate(
    input: &str,
    vars: &BTreeMap<String, String>,
) -> Result<Interpolated, String> {
    let mut out = Interpolated::default();
    out.text = expand(input, vars, &mut out.unset, 0)?;
    Ok(out)
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn expand(
    input: &str,
    vars: &BTreeMap<String, String>,
    unset: &mut Vec<String>,
    depth: usize,
) -> Result<String, String> {
    if depth > MAX_NESTING {
        return Err(format!("{input:?}: interpolation nested too deeply"));
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let mut chars = after.chars();
        match chars.next() {
            Some('$') => {
                out.push('$');
                rest = &after[1..];
            }
            Some('{') => {
                let body_start = &after[1..];
                let end = closing_brace(body_start).ok_or_else(|| {
                    format!("{input:?}: unterminated ${{ (write $$ for a literal $)")
                })?;
                let body = &body_start[..end];
                out.push_str(&braced(body, input, vars, unset, depth)?);
                rest = &body_start[end + 1..];
            }
            Some(c) if is_name_start(c) => {
                let len = after
                    .find(|c: char| !is_name_char(c))
                    .unwrap_or(after.len());
                let name = &after[..len];
                match vars.get(name) {
                    Some(v) => out.push_str(v),
                    None => note_unset(unset, name),
                }
                rest = &after[len..];
            }
            _ => {
                return Err(format!(
                    "{input:?}: invalid interpolation (write $$ for a literal $)"
                ))
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn note_unset(unset: &mut Vec<String>, name: &str) {
    if !unset.iter().any(|u| u == name) {
        unset.push(name.to_string());
    }
}

/// Index of the `}` closing a `${`, counting nested `${…}`.
fn closing_brace(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'$') => i += 1,
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

fn braced(
    body: &str,
    input: &str,
    vars: &BTreeMap<String, String>,
    unset: &mut Vec<String>,
    depth: usize,
) -> Result<String, String> {
    let len = body.find(|c: char| !is_name_char(c)).unwrap_or(body.len());
    let name = &body[..len];
    if name.is_empty() || !name.starts_with(is_name_start) {
        return Err(format!("{input:?}: invalid variable name in ${{{body}}}"));
    }
    let op = &body[len..];
    let value = vars.get(name);
    let set_nonempty = value.is_some_and(|v| !v.is_empty());
    let (colon, op) = match op.strip_prefix(':') {
        Some(o) => (true, o),
        None => (false, op),
    };
    if op.is_empty() && !colon {
        return Ok(match value {
            Some(v) => v.clone(),
            None => {
                note_unset(unset, name);
                String::new()
            }
        });
    }
    let mut op_chars = op.chars();
    let kind = op_chars.next();
    let arg = op_chars.as_str();
    // `:` means "unset or empty"; without it, only "unset".
    let present = if colon { set_nonempty } else { value.is_some() };
    match kind {
        Some('-') => {
            if present {
                Ok(value.cloned().unwrap_or_default())
            } else {
                expand(arg, vars, unset, depth + 1)
            }
        }
        Some('?') => {
            if present {
                Ok(value.cloned().unwrap_or_default())
            } else {
                let message = expand(arg, vars, unset, depth + 1)?;
                Err(if message.is_empty() {
                    format!("required variable {name} is missing a value")
                } else {
                    format!("required variable {name} is missing a value: {message}")
                })
            }
        }
        Some('+') => {
            if present {
                expand(arg, vars, unset, depth + 1)
            } else {
                Ok(String::new())
            }
        }
        _ => Err(format!("{input:?}: invalid interpolation ${{{body}}}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        [("A", "alpha"), ("EMPTY", ""), ("PORT", "8080")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn ok(s: &str) -> (String, Vec<String>) {
        let r = interpolate(s, &vars()).unwrap();
        (r.text, r.unset)
    }

    #[test]
    fn the_compose_forms() {
        assert_eq!(ok("x${A}y").0, "xalphay");
        assert_eq!(ok("$A-$PORT").0, "alpha-8080");
        assert_eq!(ok("${MISSING:-def}").0, "def");
        assert_eq!(ok("${EMPTY:-def}").0, "def");
        assert_eq!(ok("${EMPTY-def}").0, "");
        assert_eq!(ok("${MISSING-def}").0, "def");
        assert_eq!(ok("${A:-def}").0, "alpha");
        assert_eq!(ok("${A:+set}").0, "set");
        assert_eq!(ok("${EMPTY:+set}").0, "");
        assert_eq!(ok("${EMPTY+set}").0, "set");
        assert_eq!(ok("${MISSING:-${A}}").0, "alpha");
        assert_eq!(ok("${MISSING:-${OTHER:-deep}}").0, "deep");
        assert_eq!(ok("cost: $$5 and $${A}").0, "cost: $5 and ${A}");
        assert_eq!(ok("${A?boom}").0, "alpha");
        assert_eq!(ok("no vars at all").0, "no vars at all");
    }

    #[test]
    fn unset_variables_become_empty_and_are_reported_once() {
        let (text, unset) = ok("a${NOPE}b$NOPE${ALSO}");
        assert_eq!(text, "ab");
        assert_eq!(unset, vec!["NOPE".to_string(), "ALSO".to_string()]);
        assert!(ok("${NOPE:-x}").1.is_empty());
    }

    #[test]
    fn errors() {
        let e = interpolate("${DB_PASSWORD:?set it in the app's config}", &vars()).unwrap_err();
        assert!(e.contains("DB_PASSWORD") && e.contains("set it"), "{e}");
        assert!(interpolate("${EMPTY:?}", &vars()).is_err());
        assert!(interpolate("${EMPTY?}", &vars()).is_ok());
        assert!(interpolate("${MISSING?}", &vars()).is_err());
        assert!(interpolate("${A", &vars())
            .unwrap_err()
            .contains("unterminated"));
        assert!(interpolate("${1A}", &vars()).is_err());
        assert!(interpolate("${A%x}", &vars()).is_err());
        assert!(interpolate("price $5", &vars()).is_err());
        assert!(interpolate("trailing $", &vars()).is_err());
    }
}
