//! A YAML tree that remembers where every node came from.
//!
//! serde stops at the first error and forgets positions once a value is
//! built; reviewers need every mistake in a file at once, each with its line
//! and column, so policies are decoded from this tree by hand instead.

use std::collections::HashMap;
use std::fmt;

use saphyr_parser::{Event, Parser, ScalarStyle};

/// 1-based line and column, as editors and compilers print them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A scalar and whether it was quoted: a quoted `"true"` is a string.
    Scalar {
        text: String,
        quoted: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
}

impl Node {
    pub fn kind_name(&self) -> &'static str {
        match &self.value {
            Value::Scalar { text, quoted } if !quoted && is_null(text) => "null",
            Value::Scalar { .. } => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, quoted: false } if is_null(text))
    }
}

fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// Parses every document of a YAML stream.
pub fn parse_documents(source: &str) -> Result<Vec<Node>, SyntaxError> {
    let mut builder = TreeBuilder::default();
    for event in Parser::new_from_str(source) {
        let (event, span) = event.map_err(|e| SyntaxError {
            pos: Pos {
                line: e.marker().line(),
                col: e.marker().col() + 1,
            },
            message: e.info().to_string(),
        })?;
        let pos = Pos {
            line: span.start.line(),
            col: span.start.col() + 1,
        };
        builder.on_event(event, pos)?;
    }
    Ok(builder.documents)
}

#[derive(Default)]
struct TreeBuilder {
    documents: Vec<Node>,
    /// Open collections with their anchor ids; a map's pending key waits in `Frame::key`.
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
}

struct Frame {
    node: Node,
    anchor: usize,
    key: Option<Node>,
}

impl TreeBuilder {
    fn on_event(&mut self, event: Event<'_>, pos: Pos) -> Result<(), SyntaxError> {
        match event {
            Event::Scalar(text, style, anchor, _tag) => {
                let quoted = !matches!(style, ScalarStyle::Plain);
                let node = Node {
                    value: Value::Scalar {
                        text: text.into_owned(),
                        quoted,
                    },
                    pos,
                };
                self.finish(node, anchor);
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame {
                node: Node {
                    value: Value::Seq(Vec::new()),
                    pos,
                },
                anchor,
                key: None,
            }),
            Event::MappingStart(anchor, _) => self.stack.push(Frame {
                node: Node {
                    value: Value::Map(Vec::new()),
                    pos,
                },
                anchor,
                key: None,
            }),
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some(frame) = self.stack.pop() {
                    self.finish(frame.node, frame.anchor);
                }
            }
            Event::Alias(id) => {
                let Some(target) = self.anchors.get(&id).cloned() else {
                    return Err(SyntaxError {
                        pos,
                        message: "alias refers to an unknown anchor".into(),
                    });
                };
                self.finish(Node { pos, ..target }, 0);
            }
            _ => {}
        }
        Ok(())
    }

    fn finish(&mut self, node: Node, anchor: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        let Some(parent) = self.stack.last_mut() else {
            self.documents.push(node);
            return;
        };
        match &mut parent.node.value {
            Value::Seq(items) => items.push(node),
            Value::Map(entries) => match parent.key.take() {
                None => parent.key = Some(node),
                Some(key) => entries.push((key, node)),
            },
            Value::Scalar { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_point_at_the_value() {
        let docs = parse_documents("a:\n  b: [1, x]\n").unwrap();
        let Value::Map(top) = &docs[0].value else {
            panic!("not a map")
        };
        let (key, inner) = &top[0];
        assert_eq!(key.pos, Pos { line: 1, col: 1 });
        let Value::Map(inner) = &inner.value else {
            panic!("not a map")
        };
        let Value::Seq(items) = &inner[0].1.value else {
            panic!("not a seq")
        };
        assert_eq!(items[1].pos, Pos { line: 2, col: 10 });
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let err = parse_documents("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.pos.line >= 1, "{err:?}");
    }

    #[test]
    fn aliases_are_resolved() {
        let docs = parse_documents("a: &x {k: v}\nb: *x\n").unwrap();
        let Value::Map(top) = &docs[0].value else {
            panic!()
        };
        assert!(matches!(top[1].1.value, Value::Map(_)));
    }

    #[test]
    fn quoted_scalars_are_marked() {
        let docs = parse_documents("a: 'true'\n").unwrap();
        let Value::Map(top) = &docs[0].value else {
            panic!()
        };
        assert!(matches!(
            &top[0].1.value,
            Value::Scalar { quoted: true, .. }
        ));
    }
}
