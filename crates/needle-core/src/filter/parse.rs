//! JSON → [`Node`]: checks every operator and operand once, so matching never meets a bad one.
//!
//! Errors carry the path of the offending part, built as the parser descends: object keys joined
//! by dots, array indexes in brackets (`$and[1].price.$gt`); the root is the empty path.

use serde_json::{Map, Value};

use super::{Bound, CmpOp, FieldPath, Node, Num, Op};
use crate::error::{Error, Result};

/// How many `$and`/`$or`/`$not` levels a filter may nest. Bounds the parser's recursion (and so
/// its stack), whatever the input.
const MAX_DEPTH: usize = 32;

pub(super) fn parse(value: &Value) -> Result<Node> {
    Parser {
        path: String::new(),
    }
    .filter(value, 0)
}

struct Parser {
    /// The path of the part being parsed.
    path: String,
}

impl Parser {
    fn error(&self, reason: impl Into<String>) -> Error {
        Error::InvalidFilter {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    /// Runs `f` with `key` appended to the path.
    fn at_key<T>(&mut self, key: &str, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let len = self.path.len();
        if !self.path.is_empty() {
            self.path.push('.');
        }
        self.path.push_str(key);
        let result = f(self);
        self.path.truncate(len);
        result
    }

    /// Runs `f` with `[index]` appended to the path.
    fn at_index<T>(&mut self, index: usize, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let len = self.path.len();
        self.path.push_str(&format!("[{index}]"));
        let result = f(self);
        self.path.truncate(len);
        result
    }

    /// A filter object: its keys are fields, `$and`, `$or` or `$not`, all of which must match.
    fn filter(&mut self, value: &Value, depth: usize) -> Result<Node> {
        if depth > MAX_DEPTH {
            return Err(self.error(format!("filter nests deeper than {MAX_DEPTH} levels")));
        }
        let Value::Object(map) = value else {
            return Err(self.error(format!("filter must be a JSON object, got {}", kind(value))));
        };
        let mut clauses = Vec::with_capacity(map.len());
        for (key, value) in map {
            let clause = match key.as_str() {
                "$and" => Node::And(self.at_key(key, |p| p.filter_list("$and", value, depth))?),
                "$or" => Node::Or(self.at_key(key, |p| p.filter_list("$or", value, depth))?),
                "$nor" => Node::Not(Box::new(Node::Or(
                    self.at_key(key, |p| p.filter_list("$nor", value, depth))?,
                ))),
                "$not" => self.at_key(key, |p| {
                    if !value.is_object() {
                        return Err(p.error(format!(
                            "`$not` needs a filter object such as {{\"price\": {{\"$gt\": 5}}}}, got {}",
                            kind(value)
                        )));
                    }
                    Ok(Node::Not(Box::new(p.filter(value, depth + 1)?)))
                })?,
                op if op.starts_with('$') => {
                    return self.at_key(key, |p| {
                        Err(p.error(format!(
                            "unknown operator `{op}` (a filter's keys are field names, `$and`, `$or`, `$nor` or `$not`)"
                        )))
                    });
                }
                "" => return Err(self.error("empty field name")),
                field => self.at_key(field, |p| p.field(field, value, depth))?,
            };
            clauses.push(clause);
        }
        Ok(if clauses.len() == 1 {
            clauses.remove(0)
        } else {
            Node::And(clauses)
        })
    }

    /// The operand of `$and` or `$or`: a non-empty array of filter objects.
    fn filter_list(&mut self, op: &str, value: &Value, depth: usize) -> Result<Vec<Node>> {
        let need = format!("`{op}` needs a non-empty array of objects");
        let items = match value {
            Value::Array(items) if !items.is_empty() => items,
            Value::Array(_) => return Err(self.error(format!("{need}, got an empty array"))),
            other => return Err(self.error(format!("{need}, got {}", kind(other)))),
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                self.at_index(i, |p| {
                    if !item.is_object() {
                        return Err(p.error(format!("{need}, element {i} is {}", kind(item))));
                    }
                    p.filter(item, depth + 1)
                })
            })
            .collect()
    }

    /// A field's condition: an object of operators, or any other value to compare for equality.
    fn field(&mut self, name: &str, value: &Value, depth: usize) -> Result<Node> {
        if name.split('.').any(str::is_empty) {
            return Err(self.error(format!("field path `{name}` has an empty segment")));
        }
        let path = FieldPath {
            segments: name.split('.').map(String::from).collect(),
        };
        let ops = match value {
            Value::Object(map) if self.is_operator_object(map)? => self.operators(map, depth)?,
            // A plain object, like any other value, is compared for equality.
            other => vec![Op::Eq(other.clone())],
        };
        Ok(Node::Field { path, ops })
    }

    /// An object of operators on one field (`{"$gt": 1, "$lt": 5}`), all of which must match.
    /// Its keys are known to start with `$`.
    fn operators(&mut self, map: &Map<String, Value>, depth: usize) -> Result<Vec<Op>> {
        map.iter()
            .map(|(key, value)| self.at_key(key, |p| p.operator(key, value, depth)))
            .collect()
    }

    fn operator(&mut self, op: &str, value: &Value, depth: usize) -> Result<Op> {
        Ok(match op {
            "$eq" => Op::Eq(value.clone()),
            "$ne" => Op::Ne(value.clone()),
            "$gt" => Op::Cmp(CmpOp::Gt, self.bound(op, value)?),
            "$gte" => Op::Cmp(CmpOp::Gte, self.bound(op, value)?),
            "$lt" => Op::Cmp(CmpOp::Lt, self.bound(op, value)?),
            "$lte" => Op::Cmp(CmpOp::Lte, self.bound(op, value)?),
            "$in" => Op::In(self.array(op, value)?),
            "$nin" => Op::Nin(self.array(op, value)?),
            "$exists" => match value {
                Value::Bool(b) => Op::Exists(*b),
                other => {
                    return Err(self.error(format!(
                        "`$exists` needs a bool (true or false), got {}",
                        kind(other)
                    )));
                }
            },
            "$not" => {
                if depth >= MAX_DEPTH {
                    return Err(self.error(format!("filter nests deeper than {MAX_DEPTH} levels")));
                }
                let need =
                    "`$not` on a field needs a non-empty operator object such as {\"$gt\": 5}";
                match value {
                    Value::Object(map)
                        if !map.is_empty() && map.keys().all(|k| k.starts_with('$')) =>
                    {
                        Op::Not(self.operators(map, depth + 1)?)
                    }
                    Value::Object(map) if map.is_empty() => {
                        return Err(self.error(format!("{need}, got an empty object")));
                    }
                    Value::Object(_) => {
                        return Err(self.error(format!("{need}, got an object with field names")));
                    }
                    other => return Err(self.error(format!("{need}, got {}", kind(other)))),
                }
            }
            _ => {
                return Err(self.error(format!(
                    "unknown operator `{op}` (expected $eq, $ne, $gt, $gte, $lt, $lte, $in, $nin, $exists or $not)"
                )));
            }
        })
    }

    /// Whether a field's object value is operators (all keys start with `$`) rather than a plain
    /// object to compare for equality (no key does). Mixing the two is an error, as in MongoDB.
    fn is_operator_object(&self, map: &Map<String, Value>) -> Result<bool> {
        let operator = map.keys().find(|k| k.starts_with('$'));
        let field = map.keys().find(|k| !k.starts_with('$'));
        match (operator, field) {
            (Some(op), Some(field)) => Err(self.error(format!(
                "the object mixes operators (`{op}`) and field names (`{field}`); \
                 use {{\"$eq\": {{...}}}} to compare with an object that has `$` keys"
            ))),
            (operator, _) => Ok(operator.is_some()),
        }
    }

    /// The operand of `$gt`, `$gte`, `$lt` or `$lte`.
    fn bound(&self, op: &str, value: &Value) -> Result<Bound> {
        match value {
            Value::Number(n) => Num::from_json(n)
                .map(Bound::Num)
                .ok_or_else(|| self.error(format!("`{op}` operand {n} is out of range"))),
            Value::String(s) => Ok(Bound::Str(s.clone())),
            other => Err(self.error(format!(
                "`{op}` needs a number or string, got {}",
                kind(other)
            ))),
        }
    }

    /// The operand of `$in` or `$nin`.
    fn array(&self, op: &str, value: &Value) -> Result<Vec<Value>> {
        match value {
            Value::Array(items) => Ok(items.clone()),
            other => Err(self.error(format!("`{op}` needs an array, got {}", kind(other)))),
        }
    }
}

/// "a number", "an array", ...: the JSON type of `value`, for error messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
