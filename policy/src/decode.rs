//! Typed reads from the positioned YAML tree, reporting into `Diagnostics`.
//!
//! Each reader returns `None` after recording an error, so decoding goes on
//! and the user sees every mistake of a file in one run.

use crate::diag::{closest, Diagnostics};
use crate::yaml::{Node, Pos, Value};

/// The fields of one mapping; whatever is not taken by the end is reported as unknown.
pub struct Fields<'a> {
    pub path: String,
    pub pos: Pos,
    entries: Vec<(&'a str, &'a Node, Pos)>,
    taken: Vec<bool>,
    known: &'static [&'static str],
}

impl<'a> Fields<'a> {
    /// Opens `node` as a mapping whose allowed keys are `known`.
    pub fn open(
        node: &'a Node,
        path: &str,
        known: &'static [&'static str],
        diags: &mut Diagnostics,
    ) -> Option<Self> {
        let Value::Map(entries) = &node.value else {
            if node.is_null() {
                return Some(Self::empty(path, node.pos, known));
            }
            diags.error(
                node.pos,
                path,
                format!("expected a mapping, found {}", node.kind_name()),
            );
            return None;
        };
        let mut fields = Self::empty(path, node.pos, known);
        for (key, value) in entries {
            let Some(name) = key.as_str() else {
                diags.error(key.pos, path, "mapping keys must be plain names");
                continue;
            };
            if fields.entries.iter().any(|(n, _, _)| *n == name) {
                diags.error(
                    key.pos,
                    &join(path, name),
                    "field given twice; only one value can apply",
                );
                continue;
            }
            fields.entries.push((name, value, key.pos));
            fields.taken.push(false);
        }
        Some(fields)
    }

    fn empty(path: &str, pos: Pos, known: &'static [&'static str]) -> Self {
        Self {
            path: path.to_string(),
            pos,
            entries: Vec::new(),
            taken: Vec::new(),
            known,
        }
    }

    pub fn field_path(&self, name: &str) -> String {
        join(&self.path, name)
    }

    /// The value of `name`, if present and not null.
    pub fn get(&mut self, name: &str) -> Option<&'a Node> {
        let index = self.entries.iter().position(|(n, _, _)| *n == name)?;
        self.taken[index] = true;
        let node = self.entries[index].1;
        (!node.is_null()).then_some(node)
    }

    /// Where the key `name` is written: unsupported fields are reported there.
    pub fn key_pos(&self, name: &str) -> Option<Pos> {
        self.entries
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, _, pos)| *pos)
    }

    pub fn has(&self, name: &str) -> bool {
        self.entries.iter().any(|(n, _, _)| *n == name)
    }

    pub fn require(&mut self, name: &str, diags: &mut Diagnostics) -> Option<&'a Node> {
        let node = self.get(name);
        if node.is_none() {
            diags.error(
                self.pos,
                &self.path,
                format!("missing required field `{name}`"),
            );
        }
        node
    }

    /// Reports fields that were never read; call once the decoder took what it knows.
    pub fn finish(self, diags: &mut Diagnostics) {
        for ((name, _, pos), taken) in self.entries.iter().zip(&self.taken) {
            if *taken {
                continue;
            }
            let field = join(&self.path, name);
            match closest(name, self.known) {
                Some(near) => diags.error_hint(
                    *pos,
                    &field,
                    format!("unknown field `{name}`"),
                    format!("did you mean `{near}`?"),
                ),
                None => diags.error_hint(
                    *pos,
                    &field,
                    format!("unknown field `{name}`"),
                    format!("known fields here: {}", self.known.join(", ")),
                ),
            }
        }
    }
}

pub fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

pub fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

pub fn string(node: &Node, path: &str, diags: &mut Diagnostics) -> Option<String> {
    match &node.value {
        Value::Scalar { text, .. } => Some(text.clone()),
        _ => {
            diags.error(
                node.pos,
                path,
                format!("expected a string, found {}", node.kind_name()),
            );
            None
        }
    }
}

pub fn boolean(node: &Node, path: &str, diags: &mut Diagnostics) -> Option<bool> {
    match &node.value {
        Value::Scalar {
            text,
            quoted: false,
        } => match text.as_str() {
            "true" | "True" | "TRUE" => Some(true),
            "false" | "False" | "FALSE" => Some(false),
            other => {
                diags.error_hint(
                    node.pos,
                    path,
                    format!("expected true or false, found `{other}`"),
                    "write `true` or `false` without quotes",
                );
                None
            }
        },
        _ => {
            diags.error(
                node.pos,
                path,
                format!("expected true or false, found {}", node.kind_name()),
            );
            None
        }
    }
}

pub fn integer(node: &Node, path: &str, diags: &mut Diagnostics) -> Option<i64> {
    let text = match &node.value {
        Value::Scalar { text, .. } => text.as_str(),
        _ => {
            diags.error(
                node.pos,
                path,
                format!("expected a number, found {}", node.kind_name()),
            );
            return None;
        }
    };
    let parsed = if let Some(hex) = text.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()
    } else {
        text.parse::<i64>().ok()
    };
    if parsed.is_none() {
        diags.error(node.pos, path, format!("expected a number, found `{text}`"));
    }
    parsed
}

/// A value chosen from a fixed set of words.
pub fn keyword<T: Copy>(
    node: &Node,
    path: &str,
    choices: &[(&'static str, T)],
    diags: &mut Diagnostics,
) -> Option<T> {
    let text = string(node, path, diags)?;
    if let Some((_, value)) = choices.iter().find(|(name, _)| *name == text) {
        return Some(*value);
    }
    let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
    let hint = match closest(&text, &names) {
        Some(near) => format!("did you mean `{near}`?"),
        None => format!("use one of: {}", names.join(", ")),
    };
    diags.error_hint(node.pos, path, format!("unknown value `{text}`"), hint);
    None
}

/// The items of a list; a single scalar is not silently taken as a one-item list.
pub fn list<'a>(node: &'a Node, path: &str, diags: &mut Diagnostics) -> Option<&'a [Node]> {
    match &node.value {
        Value::Seq(items) => Some(items),
        _ => {
            diags.error_hint(
                node.pos,
                path,
                format!("expected a list, found {}", node.kind_name()),
                "write a list as `[a, b]` or as lines starting with `- `",
            );
            None
        }
    }
}
