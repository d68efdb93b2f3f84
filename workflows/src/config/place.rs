//! Where a value stands in the config text: the line and column of the value at a path
//! (`hosts[1].name`), for the checks that compare fields once the file is read and so
//! hold values that no longer know their place.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// One step of a path: a mapping's key or a sequence's index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

impl From<&str> for Seg {
    fn from(key: &str) -> Seg {
        Seg::Key(key.to_string())
    }
}

impl From<&String> for Seg {
    fn from(key: &String) -> Seg {
        Seg::Key(key.clone())
    }
}

impl From<usize> for Seg {
    fn from(index: usize) -> Seg {
        Seg::Index(index)
    }
}

/// A path of [`Seg`]s: `field_field_path!["hosts", i, "name"]`.
macro_rules! field_path {
    ($($seg:expr),* $(,)?) => {
        vec![$($crate::config::place::Seg::from($seg)),*]
    };
}
pub(crate) use field_path;

/// The YAML text as a tree of places: only the shape and where each value stands.
enum Node {
    Map(Vec<(String, Spanned<Node>)>),
    Seq(Vec<Spanned<Node>>),
    Leaf,
}

/// The line and column (from 1) of the value at `path` in `text`; none when the text does
/// not read as YAML or holds nothing there (a default the file does not write).
pub fn locate(text: &str, path: &[Seg]) -> Option<(u64, u64)> {
    let root: Spanned<Node> = serde_saphyr::from_str(text).ok()?;
    let mut here = &root;
    for seg in path {
        here = match (&here.value, seg) {
            (Node::Map(entries), Seg::Key(key)) => &entries.iter().find(|(k, _)| k == key)?.1,
            (Node::Seq(items), Seg::Index(i)) => items.get(*i)?,
            _ => return None,
        };
    }
    let at = &here.referenced;
    (at.line() > 0).then(|| (at.line(), at.column()))
}

/// A mapping's key as text (the config's keys are scalars).
struct Key(String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scalar key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
        }
        d.deserialize_any(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        struct NodeVisitor;
        impl<'de> Visitor<'de> for NodeVisitor {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Key>()? {
                    entries.push((key.0, map.next_value::<Spanned<Node>>()?));
                }
                Ok(Node::Map(entries))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Spanned<Node>>()? {
                    items.push(item);
                }
                Ok(Node::Seq(items))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
                Node::deserialize(d)
            }
            fn visit_none<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_i128<E: de::Error>(self, _: i128) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_u128<E: de::Error>(self, _: u128) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
        }
        d.deserialize_any(NodeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str, path: Vec<Seg>) -> Option<(u64, u64)> {
        locate(text, &path)
    }

    #[test]
    fn values_are_found_by_path() {
        let text = "hosts:\n  - name: a\n    address: 10.0.0.1\n  - {name: b, address: x}\ncluster:\n  name: prod\n  nodes:\n    - {hostname: a, role: worker}\n";
        assert_eq!(at(text, field_path!["hosts", 1, "name"]), Some((4, 12)));
        assert_eq!(at(text, field_path!["hosts", 0, "address"]), Some((3, 14)));
        assert_eq!(at(text, field_path!["cluster", "name"]), Some((6, 9)));
        assert_eq!(
            at(text, field_path!["cluster", "nodes"]).map(|p| p.0),
            Some(8)
        );
        assert_eq!(at(text, field_path!["hosts", 2, "name"]), None);
        assert_eq!(at(text, field_path!["hosts", 0, "user"]), None);
        assert_eq!(at("a: [\n", field_path!["a"]), None);
    }
}
