//! A small YAML document tree that remembers the line of every key and
//! value, built from `saphyr-parser`'s events.
//!
//! Anchors and aliases are expanded here (with a budget, so an "alias bomb"
//! is refused instead of filling the memory), merge keys (`<<: *defaults`,
//! common in Compose files) are applied, duplicate keys are refused, and the
//! nesting depth is bounded. Scalars keep their text and whether they were
//! plain (unquoted): the Compose reader types them by context, after
//! interpolation.

use saphyr_parser::{Event, Parser, ScalarStyle, Span, StrInput, Tag};
use std::collections::HashMap;

/// Deepest nesting of mappings and sequences accepted.
pub(crate) const MAX_DEPTH: usize = 32;
/// Most nodes a document may have once its aliases are expanded.
pub(crate) const MAX_NODES: usize = 200_000;

/// A value of the document, with the line it starts on (1-based).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub line: usize,
    pub kind: Kind,
}

/// What a [`Node`] is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    /// A scalar as written; `plain` when it was not quoted nor a block scalar
    /// (only plain scalars can be `null`).
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

/// A mapping key and its line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Key {
    pub name: String,
    pub line: usize,
}

/// A document that could not be read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct YamlError {
    pub line: usize,
    pub message: String,
}

impl Node {
    /// `~`, `null` or nothing at all (`key:`).
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { text, plain: true }
            if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// What it is, for messages ("a mapping").
    pub fn what(&self) -> &'static str {
        match &self.kind {
            _ if self.is_null() => "nothing (null)",
            Kind::Scalar { .. } => "a scalar",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }

    fn size(&self) -> usize {
        match &self.kind {
            Kind::Scalar { .. } => 1,
            Kind::Seq(items) => 1 + items.iter().map(Node::size).sum::<usize>(),
            Kind::Map(entries) => 1 + entries.iter().map(|(_, v)| 1 + v.size()).sum::<usize>(),
        }
    }
}

/// Reads the one document of `text`; `Ok(None)` when there is none.
pub(crate) fn load(text: &str) -> Result<Option<Node>, YamlError> {
    let mut loader = Loader {
        parser: Parser::new_from_str(text),
        anchors: HashMap::new(),
        nodes: 0,
    };
    loader.stream()
}

struct Loader<'a> {
    parser: Parser<'a, StrInput<'a>>,
    /// Anchored nodes by anchor id, with their size.
    anchors: HashMap<usize, (Node, usize)>,
    nodes: usize,
}

impl<'a> Loader<'a> {
    fn next(&mut self) -> Result<(Event<'a>, Span), YamlError> {
        match self.parser.next_event() {
            Some(Ok(ev)) => Ok(ev),
            Some(Err(e)) => Err(YamlError {
                line: e.marker().line().max(1),
                message: format!("invalid YAML: {}", e.info()),
            }),
            None => Err(YamlError {
                line: 1,
                message: "invalid YAML: unexpected end".into(),
            }),
        }
    }

    fn stream(&mut self) -> Result<Option<Node>, YamlError> {
        let mut doc = None;
        loop {
            let (ev, span) = self.next()?;
            match ev {
                Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
                Event::StreamEnd => return Ok(doc),
                Event::DocumentStart(_) => {
                    if doc.is_some() {
                        return Err(YamlError {
                            line: span.start.line().max(1),
                            message: "only one YAML document is allowed in a Compose file".into(),
                        });
                    }
                    let (ev, span) = self.next()?;
                    doc = Some(self.node(ev, span, 0)?);
                }
                _ => {
                    return Err(YamlError {
                        line: span.start.line().max(1),
                        message: "invalid YAML: unexpected content".into(),
                    })
                }
            }
        }
    }

    fn count(&mut self, n: usize, line: usize) -> Result<(), YamlError> {
        self.nodes += n;
        if self.nodes > MAX_NODES {
            return Err(YamlError {
                line,
                message: format!(
                    "the document is too large once its aliases are expanded (more than {MAX_NODES} values)"
                ),
            });
        }
        Ok(())
    }

    fn node(&mut self, ev: Event<'a>, span: Span, depth: usize) -> Result<Node, YamlError> {
        let line = span.start.line().max(1);
        let (node, anchor) = match ev {
            Event::Alias(id) => {
                let Some((node, size)) = self.anchors.get(&id) else {
                    return Err(YamlError {
                        line,
                        message: "invalid YAML: unknown alias".into(),
                    });
                };
                let (node, size) = (node.clone(), *size);
                self.count(size, line)?;
                return Ok(node);
            }
            Event::Scalar(text, style, anchor, tag) => {
                self.count(1, line)?;
                let mut plain = style == ScalarStyle::Plain;
                if let Some(tag) = tag {
                    check_tag(&tag, line, &["str", "int", "float", "bool", "null"])?;
                    if tag.suffix == "str" {
                        plain = false;
                    }
                }
                (
                    Node {
                        line,
                        kind: Kind::Scalar {
                            text: text.into_owned(),
                            plain,
                        },
                    },
                    anchor,
                )
            }
            Event::SequenceStart(anchor, tag) => {
                self.count(1, line)?;
                if let Some(tag) = tag {
                    check_tag(&tag, line, &["seq"])?;
                }
                let depth = self.deeper(depth, line)?;
                let mut items = Vec::new();
                loop {
                    let (ev, span) = self.next()?;
                    if matches!(ev, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.node(ev, span, depth)?);
                }
                (
                    Node {
                        line,
                        kind: Kind::Seq(items),
                    },
                    anchor,
                )
            }
            Event::MappingStart(anchor, tag) => {
                self.count(1, line)?;
                if let Some(tag) = tag {
                    check_tag(&tag, line, &["map"])?;
                }
                let depth = self.deeper(depth, line)?;
                (self.mapping(line, depth)?, anchor)
            }
            _ => {
                return Err(YamlError {
                    line,
                    message: "invalid YAML: unexpected event".into(),
                })
            }
        };
        if anchor > 0 {
            let size = node.size();
            self.anchors.insert(anchor, (node.clone(), size));
        }
        Ok(node)
    }

    fn deeper(&self, depth: usize, line: usize) -> Result<usize, YamlError> {
        if depth + 1 > MAX_DEPTH {
            return Err(YamlError {
                line,
                message: format!("the document is nested more than {MAX_DEPTH} levels deep"),
            });
        }
        Ok(depth + 1)
    }

    fn mapping(&mut self, line: usize, depth: usize) -> Result<Node, YamlError> {
        let mut entries: Vec<(Key, Node)> = Vec::new();
        let mut merged: Vec<(Key, Node)> = Vec::new();
        loop {
            let (ev, span) = self.next()?;
            if matches!(ev, Event::MappingEnd) {
                break;
            }
            let key = self.node(ev, span, depth)?;
            let key_line = key.line;
            let Kind::Scalar { text, plain } = key.kind else {
                return Err(YamlError {
                    line: key_line,
                    message: "a mapping key must be a plain string, not a list or mapping".into(),
                });
            };
            let (ev, span) = self.next()?;
            let value = self.node(ev, span, depth)?;
            if plain && text == "<<" {
                // Merge key: entries of the mapping (or of each mapping of the
                // list, earlier ones first) that the mapping does not set itself.
                let sources = match value.kind {
                    Kind::Map(m) => vec![m],
                    Kind::Seq(items) => {
                        let mut maps = Vec::new();
                        for item in items {
                            match item.kind {
                                Kind::Map(m) => maps.push(m),
                                _ => {
                                    return Err(YamlError {
                                        line: item.line,
                                        message: "<< (merge) takes a mapping or a list of mappings"
                                            .into(),
                                    })
                                }
                            }
                        }
                        maps
                    }
                    _ => {
                        return Err(YamlError {
                            line: value.line,
                            message: "<< (merge) takes a mapping or a list of mappings".into(),
                        })
                    }
                };
                for source in sources {
                    for (k, v) in source {
                        if !merged.iter().any(|(m, _)| m.name == k.name) {
                            merged.push((k, v));
                        }
                    }
                }
                continue;
            }
            if let Some((first, _)) = entries.iter().find(|(k, _)| k.name == text) {
                return Err(YamlError {
                    line: key_line,
                    message: format!(
                        "duplicate key {text:?} (already set on line {})",
                        first.line
                    ),
                });
            }
            entries.push((
                Key {
                    name: text,
                    line: key_line,
                },
                value,
            ));
        }
        for (k, v) in merged {
            if !entries.iter().any(|(e, _)| e.name == k.name) {
                entries.push((k, v));
            }
        }
        Ok(Node {
            line,
            kind: Kind::Map(entries),
        })
    }
}

fn check_tag(tag: &Tag, line: usize, core: &[&str]) -> Result<(), YamlError> {
    if tag.is_yaml_core_schema() && core.contains(&tag.suffix.as_str()) {
        return Ok(());
    }
    Err(YamlError {
        line,
        message: format!("the YAML tag {tag} is not supported"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(n: &Node) -> &str {
        match &n.kind {
            Kind::Scalar { text, .. } => text,
            _ => panic!("not a scalar: {n:?}"),
        }
    }

    fn map(n: &Node) -> &[(Key, Node)] {
        match &n.kind {
            Kind::Map(m) => m,
            _ => panic!("not a map: {n:?}"),
        }
    }

    #[test]
    fn keeps_lines_and_plainness() {
        let doc = load("a: 1\nb:\n  c: 'x'\n  d:\n").unwrap().unwrap();
        let m = map(&doc);
        assert_eq!((m[0].0.name.as_str(), m[0].0.line), ("a", 1));
        assert_eq!(m[1].0.line, 2);
        let inner = map(&m[1].1);
        assert_eq!(inner[0].0.line, 3);
        assert_eq!(
            inner[0].1.kind,
            Kind::Scalar {
                text: "x".into(),
                plain: false
            }
        );
        assert!(inner[1].1.is_null());
        assert!(!inner[0].1.is_null());
    }

    #[test]
    fn merges_anchors_and_refuses_duplicates() {
        let doc = load("x: &d {a: 1, b: 2}\ny:\n  <<: *d\n  b: 3\n")
            .unwrap()
            .unwrap();
        let y = map(&map(&doc)[1].1);
        assert_eq!(y.len(), 2);
        assert_eq!(y[0].0.name, "b");
        assert_eq!(scalar(&y[0].1), "3");
        assert_eq!(scalar(&y[1].1), "1");
        let err = load("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.message.contains("duplicate key"), "{err:?}");
    }

    #[test]
    fn refuses_alias_bombs_and_deep_nesting() {
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..8 {
            let prev = if i == 0 {
                "a".to_string()
            } else {
                format!("l{}", i - 1)
            };
            bomb.push_str(&format!(
                "l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
        }
        let err = load(&bomb).unwrap_err();
        assert!(err.message.contains("aliases"), "{err:?}");
        let deep = format!("a: {}{}", "[".repeat(100), "]".repeat(100));
        let err = load(&deep).unwrap_err();
        assert!(err.message.contains("nested"), "{err:?}");
    }

    #[test]
    fn syntax_errors_have_lines_and_one_document_only() {
        let err = load("a: 1\nb: [1, 2\n").unwrap_err();
        assert!(err.line >= 2, "{err:?}");
        assert!(err.message.starts_with("invalid YAML"), "{err:?}");
        let err = load("a: 1\n---\nb: 2\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert_eq!(load("").unwrap(), None);
        let err = load("a: !reset null\n").unwrap_err();
        assert!(err.message.contains("tag"), "{err:?}");
    }
}
