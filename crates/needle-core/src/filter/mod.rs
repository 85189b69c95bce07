//! Metadata filters: a MongoDB-style JSON filter, parsed once into a typed tree ([`Filter`]) and
//! then matched against each record's metadata.
//!
//! Owns the filter language (`parse`: JSON → tree, with errors that name the offending path) and
//! its meaning (`eval`: tree × metadata → bool). Knows nothing of collections, graphs or how
//! search uses a filter (selectivity, pre- or post-filtering).

mod eval;
mod parse;

use serde_json::Value;

use crate::error::Result;

/// A parsed metadata filter in MongoDB's query language, matched against a record's JSON
/// metadata.
///
/// | form | matches when |
/// |---|---|
/// | `{"field": value}` | same as `{"field": {"$eq": value}}` |
/// | `{"$eq": v}`, `{"$ne": v}` | the field equals (does not equal) `v` |
/// | `{"$gt": v}`, `$gte`, `$lt`, `$lte` | the field compares so with `v`, a number or a string |
/// | `{"$in": [..]}`, `{"$nin": [..]}` | the field equals one (none) of the values |
/// | `{"$exists": bool}` | the field is present (absent); a `null` value is present |
/// | `{"field": {"$not": {ops}}}` | the operators do not all match |
/// | `{"$and": [f, ..]}`, `{"$or": [f, ..]}` | all (any) of the filters match |
/// | `{"$nor": [f, ..]}` | none of the filters matches |
/// | `{"$not": f}` | the filter does not match |
///
/// - A dotted field name (`"a.b.c"`) walks nested objects. Arrays are not walked by a path.
/// - Several keys in one object, or several operators on one field, must all match. `{}`
///   matches everything.
/// - Numbers compare by value (`1` equals `1.0`; integers beyond 2⁵³ compare exactly), strings
///   by bytes (code points); a comparison between different types is false.
/// - As in MongoDB, an array field matches when any element matches (or, for `$eq` and `$in`,
///   when the whole array equals the value); `$ne` and `$nin` are the exact negations of `$eq`
///   and `$in`, so they match a missing field; `{"field": null}` matches a missing field.
/// - Object values compare as whole objects (same keys, equal values, in any order).
///
/// Missing metadata behaves like an empty object.
#[derive(Debug, Clone)]
pub struct Filter {
    root: Node,
    /// The JSON it was parsed from (logged by `delete_by_filter`, replayed by parsing again).
    source: Value,
}

/// Two filters are equal when they parse to the same tree, whatever their spelling.
impl PartialEq for Filter {
    fn eq(&self, other: &Filter) -> bool {
        self.root == other.root
    }
}

impl Filter {
    /// Parses a filter from JSON, checking every operator and operand.
    ///
    /// A malformed filter is [`Error::InvalidFilter`](crate::Error::InvalidFilter),
    /// whose `path` names the offending part (`$and[1].price.$gt`) and whose `reason` says what
    /// is wrong with it.
    ///
    /// ```
    /// use needle_core::{Filter, Error};
    /// use serde_json::json;
    ///
    /// let filter = Filter::parse(&json!({
    ///     "lang": "en",
    ///     "price": {"$gte": 10, "$lt": 20},
    ///     "$or": [{"tags": "sale"}, {"stock.count": {"$gt": 100}}],
    /// }))?;
    /// let metadata = json!({"lang": "en", "price": 12.5, "tags": ["new", "sale"]});
    /// assert!(filter.matches(Some(&metadata)));
    ///
    /// let err = Filter::parse(&json!({"$and": [{"a": 1}, {"price": {"$gt": true}}]})).unwrap_err();
    /// assert!(matches!(err, Error::InvalidFilter { path, .. } if path == "$and[1].price.$gt"));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn parse(value: &Value) -> Result<Filter> {
        parse::parse(value).map(|root| Filter {
            root,
            source: value.clone(),
        })
    }

    /// Whether a record's metadata matches. `None` behaves like an empty object.
    ///
    /// ```
    /// use needle_core::Filter;
    /// use serde_json::json;
    ///
    /// let in_stock = Filter::parse(&json!({"stock": {"$gt": 0}}))?;
    /// assert!(in_stock.matches(Some(&json!({"stock": 3}))));
    /// assert!(!in_stock.matches(None));
    /// # Ok::<(), needle_core::Error>(())
    /// ```
    pub fn matches(&self, metadata: Option<&Value>) -> bool {
        self.root.matches(metadata)
    }

    /// The JSON this filter was parsed from.
    pub fn to_json(&self) -> &Value {
        &self.source
    }

    /// The parsed tree, for the planner that answers parts of it from payload indexes.
    pub(crate) fn root(&self) -> &Node {
        &self.root
    }
}

/// One node of a parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    /// Every child matches; an empty list matches everything.
    And(Vec<Node>),
    /// At least one child matches (never empty).
    Or(Vec<Node>),
    /// The child does not match.
    Not(Box<Node>),
    /// The value at `path` satisfies every operator in `ops` (never empty).
    Field { path: FieldPath, ops: Vec<Op> },
}

/// A field name split at its dots: `"a.b"` is the key `b` of the object at key `a`.
/// Every segment is non-empty.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FieldPath {
    pub(crate) segments: Box<[String]>,
}

impl FieldPath {
    /// Splits a dotted path; `None` if it is empty or has an empty segment.
    pub(crate) fn parse(dotted: &str) -> Option<FieldPath> {
        if dotted.split('.').any(str::is_empty) {
            return None;
        }
        Some(FieldPath {
            segments: dotted.split('.').map(String::from).collect(),
        })
    }

    /// The path joined by dots, as written in a filter.
    pub(crate) fn dotted(&self) -> String {
        self.segments.join(".")
    }
}

/// One operator applied to one field's value (or to its absence).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Op {
    Eq(Value),
    Ne(Value),
    Cmp(CmpOp, Bound),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Exists(bool),
    /// The operators do not all match (never empty).
    Not(Vec<Op>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Gt,
    Gte,
    Lt,
    Lte,
}

/// The right-hand side of a comparison: only numbers and strings are ordered.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Bound {
    Num(Num),
    Str(String),
}

/// A JSON number, as an exact integer when it is one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Num {
    /// Any `i64` or `u64`.
    Int(i128),
    /// Always finite.
    Float(f64),
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;
    use crate::Error;

    fn filter(value: Value) -> Filter {
        Filter::parse(&value).unwrap_or_else(|e| panic!("{value} should parse: {e}"))
    }

    fn matches(f: Value, metadata: Value) -> bool {
        filter(f).matches(Some(&metadata))
    }

    /// The `path` of the error `Filter::parse` returns, with the reason for the assert message.
    fn error_path(value: &Value) -> (String, String) {
        match Filter::parse(value) {
            Err(Error::InvalidFilter { path, reason }) => (path, reason),
            Err(other) => panic!("{value}: expected InvalidFilter, got {other:?}"),
            Ok(f) => panic!("{value}: expected an error, parsed {f:?}"),
        }
    }

    #[track_caller]
    fn assert_error(value: Value, want_path: &str, reason_contains: &str) {
        let (path, reason) = error_path(&value);
        assert_eq!(path, want_path, "{value}: reason {reason:?}");
        assert!(
            reason.contains(reason_contains),
            "{value}: reason {reason:?} does not contain {reason_contains:?}"
        );
    }

    // ---- operators -------------------------------------------------------------------------

    #[test]
    fn bare_value_is_eq() {
        assert!(matches(json!({"lang": "en"}), json!({"lang": "en"})));
        assert!(!matches(json!({"lang": "en"}), json!({"lang": "fr"})));
        assert!(!matches(json!({"lang": "en"}), json!({})));
        assert_eq!(filter(json!({"a": 1})), filter(json!({"a": {"$eq": 1}})));
        assert!(matches(json!({"ok": true}), json!({"ok": true})));
        assert!(!matches(json!({"ok": true}), json!({"ok": 1})));
    }

    #[test]
    fn eq_and_ne() {
        assert!(matches(json!({"a": {"$eq": 3}}), json!({"a": 3})));
        assert!(!matches(json!({"a": {"$eq": 3}}), json!({"a": 4})));
        assert!(!matches(json!({"a": {"$eq": 3}}), json!({"a": "3"})));
        assert!(matches(json!({"a": {"$ne": 3}}), json!({"a": 4})));
        assert!(matches(json!({"a": {"$ne": 3}}), json!({"a": "3"})));
        assert!(!matches(json!({"a": {"$ne": 3}}), json!({"a": 3})));
    }

    #[test]
    fn eq_on_objects_compares_whole_objects_in_any_key_order() {
        let f = json!({"dims": {"w": 1, "h": 2.0}});
        assert!(matches(f.clone(), json!({"dims": {"h": 2, "w": 1}})));
        assert!(!matches(
            f.clone(),
            json!({"dims": {"h": 2, "w": 1, "d": 3}})
        ));
        assert!(!matches(f, json!({"dims": {"h": 2}})));
        assert!(matches(json!({"a": {}}), json!({"a": {}})));
        assert!(!matches(json!({"a": {}}), json!({"a": {"b": 1}})));
    }

    #[test]
    fn ordered_comparisons_on_numbers() {
        let m = json!({"price": 10});
        assert!(matches(json!({"price": {"$gt": 9}}), m.clone()));
        assert!(!matches(json!({"price": {"$gt": 10}}), m.clone()));
        assert!(matches(json!({"price": {"$gte": 10}}), m.clone()));
        assert!(!matches(json!({"price": {"$gte": 10.5}}), m.clone()));
        assert!(matches(json!({"price": {"$lt": 10.5}}), m.clone()));
        assert!(!matches(json!({"price": {"$lt": 10}}), m.clone()));
        assert!(matches(json!({"price": {"$lte": 10}}), m.clone()));
        assert!(!matches(json!({"price": {"$lte": 9.99}}), m.clone()));
        assert!(matches(json!({"price": {"$gt": -1e300}}), m.clone()));
        assert!(matches(json!({"price": {"$lt": 1e300}}), m));
    }

    #[test]
    fn integers_and_floats_compare_by_value() {
        assert!(matches(json!({"a": 1}), json!({"a": 1.0})));
        assert!(matches(json!({"a": 1.0}), json!({"a": 1})));
        assert!(matches(json!({"a": -0.0}), json!({"a": 0})));
        assert!(matches(json!({"a": {"$gt": 1}}), json!({"a": 1.5})));
        assert!(matches(json!({"a": {"$lt": 2.5}}), json!({"a": 2})));
        assert!(matches(json!({"a": {"$lt": -1.5}}), json!({"a": -2})));
        assert!(!matches(json!({"a": {"$lt": -1.5}}), json!({"a": -1})));
        assert!(matches(json!({"a": u64::MAX}), json!({"a": u64::MAX})));
        assert!(matches(json!({"a": {"$gt": -1}}), json!({"a": u64::MAX})));
        assert!(matches(
            json!({"a": {"$lt": i64::MIN}}),
            json!({"a": -1e19})
        ));
        assert!(matches(json!({"a": {"$gt": u64::MAX}}), json!({"a": 1e20})));
        // 2^53 + 1 is not a float; a conversion to f64 would call the two equal.
        let big = (1i64 << 53) + 1;
        let float = (1i64 << 53) as f64;
        assert!(!matches(json!({"a": float}), json!({"a": big})));
        assert!(matches(json!({"a": {"$gt": float}}), json!({"a": big})));
        assert!(matches(json!({"a": {"$lt": big}}), json!({"a": float})));
    }

    #[test]
    fn ordered_comparisons_on_strings_are_lexicographic() {
        let m = json!({"name": "banana"});
        assert!(matches(json!({"name": {"$gt": "apple"}}), m.clone()));
        assert!(matches(json!({"name": {"$gt": "ban"}}), m.clone()));
        assert!(!matches(json!({"name": {"$gt": "cherry"}}), m.clone()));
        assert!(matches(
            json!({"name": {"$gte": "banana", "$lte": "banana"}}),
            m.clone()
        ));
        assert!(matches(json!({"name": {"$lt": "bananas"}}), m.clone()));
        assert!(matches(json!({"name": {"$lt": "b\u{e9}"}}), m.clone()));
        assert!(matches(json!({"name": {"$gt": "Zebra"}}), m));
    }

    #[test]
    fn comparisons_across_types_are_false() {
        for m in [
            json!({"a": "10"}),
            json!({"a": true}),
            json!({"a": null}),
            json!({"a": {"b": 1}}),
        ] {
            for op in ["$gt", "$gte", "$lt", "$lte"] {
                assert!(!matches(json!({"a": {op: 5}}), m.clone()), "{op} {m}");
            }
        }
        assert!(!matches(json!({"a": {"$gt": "1"}}), json!({"a": 5})));
        assert!(!matches(json!({"a": {"$lt": "z"}}), json!({"a": 5})));
        assert!(!matches(json!({"a": 5}), json!({"a": "5"})));
    }

    #[test]
    fn in_and_nin() {
        let f = json!({"lang": {"$in": ["en", "fr"]}});
        assert!(matches(f.clone(), json!({"lang": "fr"})));
        assert!(!matches(f.clone(), json!({"lang": "de"})));
        assert!(!matches(f, json!({})));
        assert!(matches(json!({"n": {"$in": [1, 2.5]}}), json!({"n": 1.0})));
        assert!(!matches(json!({"n": {"$in": []}}), json!({"n": 1})));

        let f = json!({"lang": {"$nin": ["en", "fr"]}});
        assert!(!matches(f.clone(), json!({"lang": "fr"})));
        assert!(matches(f.clone(), json!({"lang": "de"})));
        assert!(matches(f, json!({})));
        assert!(matches(json!({"n": {"$nin": []}}), json!({"n": 1})));
    }

    #[test]
    fn exists() {
        assert!(matches(json!({"a": {"$exists": true}}), json!({"a": 0})));
        assert!(matches(json!({"a": {"$exists": true}}), json!({"a": null})));
        assert!(!matches(json!({"a": {"$exists": true}}), json!({"b": 1})));
        assert!(matches(json!({"a": {"$exists": false}}), json!({"b": 1})));
        assert!(!matches(
            json!({"a": {"$exists": false}}),
            json!({"a": false})
        ));
        assert!(matches(json!({"a.b": {"$exists": false}}), json!({"a": 5})));
        assert!(matches(
            json!({"a.b": {"$exists": true}}),
            json!({"a": {"b": []}})
        ));
    }

    #[test]
    fn nor_is_the_negation_of_or() {
        let f = json!({"$nor": [{"lang": "fr"}, {"year": 2020}]});
        assert!(!matches(f.clone(), json!({"lang": "en", "year": 2020})));
        assert!(matches(f.clone(), json!({"lang": "en", "year": 2021})));
        assert!(matches(f, json!({})));
        assert_error(json!({"$nor": []}), "$nor", "non-empty array");
    }

    #[test]
    fn and_or_and_implicit_and() {
        let m = json!({"lang": "en", "year": 2020});
        assert!(matches(
            json!({"$and": [{"lang": "en"}, {"year": 2020}]}),
            m.clone()
        ));
        assert!(!matches(
            json!({"$and": [{"lang": "en"}, {"year": 2021}]}),
            m.clone()
        ));
        assert!(matches(
            json!({"$or": [{"lang": "fr"}, {"year": 2020}]}),
            m.clone()
        ));
        assert!(!matches(
            json!({"$or": [{"lang": "fr"}, {"year": 2021}]}),
            m.clone()
        ));
        assert!(matches(
            json!({"lang": "en", "year": {"$gte": 2000}}),
            m.clone()
        ));
        assert!(!matches(
            json!({"lang": "en", "year": {"$lt": 2000}}),
            m.clone()
        ));
        assert!(matches(
            json!({"$or": [{"lang": "de"}, {"$and": [{"lang": "en"}, {"year": {"$gt": 2019}}]}]}),
            m.clone()
        ));
        assert!(!matches(
            json!({"year": {"$gt": 2000, "$lt": 2010}}),
            m.clone()
        ));
        assert!(matches(
            json!({"year": {"$gt": 2000, "$lt": 2030}}),
            m.clone()
        ));
        assert!(matches(json!({}), m));
        assert!(filter(json!({})).matches(None));
    }

    #[test]
    fn not_on_a_field_and_on_a_filter() {
        let f = json!({"price": {"$not": {"$gt": 5}}});
        assert!(matches(f.clone(), json!({"price": 3})));
        assert!(!matches(f.clone(), json!({"price": 7})));
        assert!(matches(f.clone(), json!({})));
        assert!(matches(f, json!({"price": "expensive"})));
        // $not of several operators negates their conjunction.
        let f = json!({"price": {"$not": {"$gt": 5, "$lt": 10}}});
        assert!(!matches(f.clone(), json!({"price": 7})));
        assert!(matches(f, json!({"price": 12})));

        let f = json!({"$not": {"lang": "en", "year": 2020}});
        assert!(!matches(f.clone(), json!({"lang": "en", "year": 2020})));
        assert!(matches(f.clone(), json!({"lang": "en", "year": 2021})));
        assert!(matches(f, json!({})));
        assert!(!filter(json!({"$not": {}})).matches(None));
    }

    #[test]
    fn dotted_paths_walk_nested_objects() {
        let m = json!({"a": {"b": {"c": 42, "s": "x"}}, "top": 1});
        assert!(matches(json!({"a.b.c": 42}), m.clone()));
        assert!(matches(json!({"a.b.c": {"$gt": 40}}), m.clone()));
        assert!(matches(json!({"a.b": {"c": 42, "s": "x"}}), m.clone()));
        assert!(!matches(json!({"a.b.c": 41}), m.clone()));
        assert!(!matches(json!({"a.b.c.d": 42}), m.clone()));
        assert!(!matches(json!({"a.x.c": 42}), m.clone()));
        assert!(!matches(json!({"top.b": 1}), m.clone()));
        assert!(matches(json!({"a.b.c": {"$ne": 1}}), m.clone()));
        assert!(matches(json!({"a.x.c": {"$ne": 1}}), m.clone()));
        // A literal dotted key is not reached by a dotted path.
        assert!(!matches(json!({"k.l": 1}), json!({"k.l": 1})));
        // Paths do not walk into arrays.
        assert!(!matches(json!({"a.b": 1}), json!({"a": [{"b": 1}]})));
    }

    #[test]
    fn missing_fields_and_missing_metadata() {
        let none: Option<&Value> = None;
        let empty = json!({});
        let not_an_object = json!(7);
        for metadata in [none, Some(&empty), Some(&not_an_object)] {
            let check = |f: Value, want: bool| {
                assert_eq!(
                    filter(f.clone()).matches(metadata),
                    want,
                    "{f} on {metadata:?}"
                )
            };
            check(json!({"a": 1}), false);
            check(json!({"a": {"$ne": 1}}), true);
            check(json!({"a": {"$gt": 1}}), false);
            check(json!({"a": {"$lte": "z"}}), false);
            check(json!({"a": {"$in": [1]}}), false);
            check(json!({"a": {"$nin": [1]}}), true);
            check(json!({"a": {"$exists": true}}), false);
            check(json!({"a": {"$exists": false}}), true);
            check(json!({"a": null}), true);
            check(json!({"a": {"$ne": null}}), false);
            check(json!({"a": {"$in": [null, 1]}}), true);
            check(json!({"a.b": {"$not": {"$eq": 1}}}), true);
            check(json!({}), true);
        }
        // A present null is still null.
        assert!(matches(json!({"a": null}), json!({"a": null})));
        assert!(!matches(json!({"a": null}), json!({"a": 0})));
        assert!(matches(json!({"a": {"$ne": null}}), json!({"a": 0})));
    }

    #[test]
    fn arrays_match_on_any_element_or_as_a_whole() {
        let m = json!({"tags": ["red", "green"], "n": [1, 5, 9]});
        assert!(matches(json!({"tags": "red"}), m.clone()));
        assert!(matches(json!({"tags": "green"}), m.clone()));
        assert!(!matches(json!({"tags": "blue"}), m.clone()));
        assert!(matches(json!({"tags": ["red", "green"]}), m.clone()));
        assert!(!matches(json!({"tags": ["green", "red"]}), m.clone()));
        assert!(!matches(json!({"tags": ["red"]}), m.clone()));

        assert!(!matches(json!({"tags": {"$ne": "red"}}), m.clone()));
        assert!(matches(json!({"tags": {"$ne": "blue"}}), m.clone()));
        assert!(!matches(
            json!({"tags": {"$ne": ["red", "green"]}}),
            m.clone()
        ));

        assert!(matches(
            json!({"tags": {"$in": ["blue", "green"]}}),
            m.clone()
        ));
        assert!(!matches(
            json!({"tags": {"$in": ["blue", "pink"]}}),
            m.clone()
        ));
        assert!(matches(
            json!({"tags": {"$in": [["red", "green"]]}}),
            m.clone()
        ));
        assert!(!matches(
            json!({"tags": {"$nin": ["blue", "green"]}}),
            m.clone()
        ));
        assert!(matches(
            json!({"tags": {"$nin": ["blue", "pink"]}}),
            m.clone()
        ));

        assert!(matches(json!({"n": {"$gt": 8}}), m.clone()));
        assert!(!matches(json!({"n": {"$gt": 9}}), m.clone()));
        assert!(matches(json!({"n": {"$lt": 2}}), m.clone()));
        // Like MongoDB, each operator may be satisfied by a different element.
        assert!(matches(json!({"n": {"$gt": 6, "$lt": 4}}), m.clone()));
        assert!(matches(json!({"n": 5.0}), m.clone()));

        assert!(matches(json!({"e": {"$exists": true}}), json!({"e": []})));
        assert!(!matches(json!({"e": {"$gt": 0}}), json!({"e": []})));
        assert!(matches(json!({"e": []}), json!({"e": []})));
        assert!(matches(json!({"a": null}), json!({"a": [1, null]})));
        assert!(matches(json!({"a": [1]}), json!({"a": [[1], 2]})));
    }

    // ---- errors ----------------------------------------------------------------------------

    #[test]
    fn filter_must_be_an_object() {
        for bad in [
            json!(null),
            json!(1),
            json!("a"),
            json!([{"a": 1}]),
            json!(true),
        ] {
            assert_error(bad, "", "filter must be a JSON object");
        }
    }

    #[test]
    fn unknown_operators_name_their_path() {
        assert_error(
            json!({"price": {"$foo": 1}}),
            "price.$foo",
            "unknown operator `$foo`",
        );
        assert_error(
            json!({"$xor": [{"a": 1}]}),
            "$xor",
            "unknown operator `$xor`",
        );
        assert_error(
            json!({"$and": [{"a": 1}, {"b": {"$regex": "x"}}]}),
            "$and[1].b.$regex",
            "unknown operator `$regex`",
        );
        assert_error(
            json!({"a": {"$not": {"$bad": 1}}}),
            "a.$not.$bad",
            "unknown operator",
        );
    }

    #[test]
    fn operand_types_are_checked() {
        assert_error(
            json!({"price": {"$gt": true}}),
            "price.$gt",
            "`$gt` needs a number or string",
        );
        assert_error(
            json!({"price": {"$gte": null}}),
            "price.$gte",
            "needs a number or string",
        );
        assert_error(
            json!({"price": {"$lt": [1]}}),
            "price.$lt",
            "needs a number or string",
        );
        assert_error(
            json!({"price": {"$lte": {}}}),
            "price.$lte",
            "needs a number or string",
        );
        assert_error(json!({"a": {"$in": 1}}), "a.$in", "`$in` needs an array");
        assert_error(
            json!({"a": {"$nin": "x"}}),
            "a.$nin",
            "`$nin` needs an array",
        );
        assert_error(
            json!({"a": {"$exists": 1}}),
            "a.$exists",
            "`$exists` needs a bool",
        );
        assert_error(
            json!({"$and": [{"a": 1}, {"price": {"$gt": "1", "$lt": false}}]}),
            "$and[1].price.$lt",
            "number or string",
        );
    }

    #[test]
    fn logical_operators_need_non_empty_arrays_of_objects() {
        assert_error(
            json!({"$and": []}),
            "$and",
            "`$and` needs a non-empty array of objects",
        );
        assert_error(
            json!({"$or": {"a": 1}}),
            "$or",
            "`$or` needs a non-empty array of objects",
        );
        assert_error(
            json!({"$and": [{"a": 1}, 2]}),
            "$and[1]",
            "needs a non-empty array of objects",
        );
        assert_error(
            json!({"$or": [{"a": 1}, {"$and": [{"b": 1}, {"c": {"$in": 3}}]}]}),
            "$or[1].$and[1].c.$in",
            "needs an array",
        );
        assert_error(
            json!({"$not": [{"a": 1}]}),
            "$not",
            "`$not` needs a filter object",
        );
        assert_error(
            json!({"$not": {"a": {"$gt": []}}}),
            "$not.a.$gt",
            "number or string",
        );
    }

    #[test]
    fn field_not_needs_an_operator_object() {
        assert_error(json!({"a": {"$not": 5}}), "a.$not", "operator object");
        assert_error(json!({"a": {"$not": {}}}), "a.$not", "operator object");
        assert_error(
            json!({"a": {"$not": {"b": 1}}}),
            "a.$not",
            "operator object",
        );
        assert_error(
            json!({"a": {"$not": {"$gt": 1, "b": 1}}}),
            "a.$not",
            "operator object",
        );
    }

    #[test]
    fn field_names_must_be_non_empty() {
        assert_error(json!({"": 1}), "", "empty field name");
        assert_error(json!({"$and": [{"": 1}]}), "$and[0]", "empty field name");
        assert_error(json!({"a..b": 1}), "a..b", "empty segment");
        assert_error(json!({".a": 1}), ".a", "empty segment");
        assert_error(json!({"a.": 1}), "a.", "empty segment");
    }

    #[test]
    fn operators_and_fields_do_not_mix_in_one_object() {
        assert_error(json!({"a": {"$gt": 1, "b": 2}}), "a", "mixes operators");
    }

    #[test]
    fn nesting_is_limited_to_32_levels() {
        fn nested(levels: usize) -> Value {
            (0..levels).fold(json!({"a": 1}), |inner, i| {
                if i % 2 == 0 {
                    json!({"$and": [inner]})
                } else {
                    json!({"$not": inner})
                }
            })
        }
        filter(nested(32));
        let (path, reason) = error_path(&nested(33));
        assert!(reason.contains("deeper than 32"), "{reason}");
        assert!(path.starts_with("$and[0].$not.$and[0]"), "{path}");
        assert_eq!(path.matches('$').count(), 33, "{path}");

        let mut deep_not = json!({"$gt": 1});
        for _ in 0..40 {
            deep_not = json!({"$not": deep_not});
        }
        let (_, reason) = error_path(&json!({"a": deep_not}));
        assert!(reason.contains("deeper than 32"), "{reason}");

        let mut deep = json!({"a": 1});
        for _ in 0..1000 {
            deep = json!({"$or": [deep]});
        }
        let (_, reason) = error_path(&deep);
        assert!(reason.contains("deeper than 32"), "{reason}");
    }

    #[test]
    fn errors_display_path_and_reason() {
        let err = Filter::parse(&json!({"price": {"$gt": true}})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid filter at 'price.$gt': `$gt` needs a number or string, got a bool"
        );
    }

    // ---- properties ------------------------------------------------------------------------

    /// Keys that exercise the parser: every operator, a few wrong ones, odd field names.
    fn arb_key() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => prop::sample::select(vec![
                "$and", "$or", "$not", "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin",
                "$exists", "$foo", "$", "a", "b", "a.b", "b.a", "", ".", "a..b", "a.",
            ])
            .prop_map(String::from),
            1 => "[ab$.]{0,4}",
        ]
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-3i64..3).prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            prop::sample::select(vec![-1.5, 0.0, 0.5, 1.0, 2.0, 1e300]).prop_map(Value::from),
            any::<f64>().prop_map(Value::from), // NaN and infinities become null
            arb_key().prop_map(Value::String),
        ];
        leaf.prop_recursive(6, 64, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec((arb_key(), inner), 0..5)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    /// Small values that collide often, so equality and order are exercised.
    fn arb_small_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-2i64..3).prop_map(Value::from),
            prop::sample::select(vec![-1.0, 0.0, 0.5, 1.0, 2.0]).prop_map(Value::from),
            prop::sample::select(vec!["", "a", "b", "ab"]).prop_map(Value::from),
        ];
        leaf.prop_recursive(2, 8, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::vec((prop::sample::select(vec!["a", "b"]), inner), 0..3)
                    .prop_map(|kv| {
                        Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
                    }),
            ]
        })
    }

    fn arb_metadata() -> impl Strategy<Value = Value> {
        prop::collection::vec(
            (prop::sample::select(vec!["a", "b"]), arb_small_value()),
            0..3,
        )
        .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
    }

    proptest! {
        #[test]
        fn parse_never_panics(value in arb_json()) {
            let _ = Filter::parse(&value);
        }

        #[test]
        fn parse_never_panics_under_a_field(value in arb_json()) {
            let _ = Filter::parse(&json!({"a": value}));
            let _ = Filter::parse(&json!({"$and": [value]}));
        }

        #[test]
        fn matches_never_panics_and_logic_is_boolean(
            f in arb_json(), g in arb_json(), metadata in arb_json()
        ) {
            if let (Ok(pf), Ok(pg)) = (Filter::parse(&f), Filter::parse(&g)) {
                let (mf, mg) = (pf.matches(Some(&metadata)), pg.matches(Some(&metadata)));
                let not = filter(json!({"$not": f.clone()}));
                let and = filter(json!({"$and": [f.clone(), g.clone()]}));
                let or = filter(json!({"$or": [f, g]}));
                prop_assert_eq!(not.matches(Some(&metadata)), !mf);
                prop_assert_eq!(and.matches(Some(&metadata)), mf && mg);
                prop_assert_eq!(or.matches(Some(&metadata)), mf || mg);
            }
        }

        #[test]
        fn negating_operators_are_exact_negations(
            x in arb_small_value(), y in arb_small_value(), metadata in arb_metadata()
        ) {
            let m = Some(&metadata);
            let eq = filter(json!({"a": {"$eq": x.clone()}})).matches(m);
            prop_assert_eq!(filter(json!({"a": {"$ne": x.clone()}})).matches(m), !eq);
            prop_assert_eq!(filter(json!({"a": {"$not": {"$eq": x.clone()}}})).matches(m), !eq);

            let is_in = filter(json!({"a": {"$in": [x.clone(), y.clone()]}})).matches(m);
            let eq_y = filter(json!({"a": {"$eq": y.clone()}})).matches(m);
            prop_assert_eq!(is_in, eq || eq_y);
            prop_assert_eq!(filter(json!({"a": {"$nin": [x, y]}})).matches(m), !is_in);
        }

        #[test]
        fn equality_is_symmetric(x in arb_small_value(), y in arb_small_value()) {
            // Arrays match element-wise only on the field side, so compare non-arrays.
            prop_assume!(!x.is_array() && !y.is_array());
            let xy = filter(json!({"a": {"$eq": x.clone()}})).matches(Some(&json!({"a": y.clone()})));
            let yx = filter(json!({"a": {"$eq": y}})).matches(Some(&json!({"a": x})));
            prop_assert_eq!(xy, yx);
        }

        #[test]
        fn numbers_are_totally_ordered(
            x in prop_oneof![any::<i64>().prop_map(Value::from), any::<u64>().prop_map(Value::from),
                             (-1e20f64..1e20).prop_map(Value::from), (-5i64..5).prop_map(Value::from)],
            y in prop_oneof![any::<i64>().prop_map(Value::from), any::<u64>().prop_map(Value::from),
                             (-1e20f64..1e20).prop_map(Value::from), (-5.0f64..5.0).prop_map(Value::from)],
        ) {
            let m = Some(json!({"a": x.clone()}));
            let holds = |op: &str| filter(json!({"a": {op: y.clone()}})).matches(m.as_ref());
            let (lt, eq, gt) = (holds("$lt"), holds("$eq"), holds("$gt"));
            prop_assert_eq!(u8::from(lt) + u8::from(eq) + u8::from(gt), 1, "{} vs {}", x, y);
            prop_assert_eq!(holds("$lte"), lt || eq);
            prop_assert_eq!(holds("$gte"), gt || eq);
            // Antisymmetry: x < y exactly when y > x.
            let swapped = filter(json!({"a": {"$gt": x}})).matches(Some(&json!({"a": y})));
            prop_assert_eq!(swapped, lt);
        }
    }
}
