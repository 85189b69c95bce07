//! [`Node`] × metadata → bool: the meaning of each operator, and how JSON values compare.

use std::cmp::Ordering;

use serde_json::{Number, Value};

use super::{Bound, CmpOp, FieldPath, Node, Num, Op};

impl Node {
    pub(crate) fn matches(&self, metadata: Option<&Value>) -> bool {
        match self {
            Node::And(children) => children.iter().all(|c| c.matches(metadata)),
            Node::Or(children) => children.iter().any(|c| c.matches(metadata)),
            Node::Not(child) => !child.matches(metadata),
            Node::Field { path, ops } => {
                let value = path.lookup(metadata);
                ops.iter().all(|op| op.matches(value))
            }
        }
    }
}

impl FieldPath {
    /// The value at this path, walking nested objects; `None` if any step is missing or is not
    /// an object.
    pub(crate) fn lookup<'a>(&self, metadata: Option<&'a Value>) -> Option<&'a Value> {
        self.segments
            .iter()
            .try_fold(metadata?, |value, key| value.as_object()?.get(key))
    }
}

impl Op {
    /// Whether the field's value (`None` when missing) satisfies this operator.
    pub(crate) fn matches(&self, field: Option<&Value>) -> bool {
        match self {
            Op::Eq(v) => eq_matches(field, v),
            Op::Ne(v) => !eq_matches(field, v),
            Op::In(values) => values.iter().any(|v| eq_matches(field, v)),
            Op::Nin(values) => !values.iter().any(|v| eq_matches(field, v)),
            Op::Cmp(op, bound) => field.is_some_and(|f| match f {
                Value::Array(items) => items.iter().any(|item| op.holds(compare(item, bound))),
                other => op.holds(compare(other, bound)),
            }),
            Op::Exists(exists) => field.is_some() == *exists,
            Op::Not(ops) => !ops.iter().all(|op| op.matches(field)),
        }
    }
}

/// MongoDB's equality: the field equals `v`, or is an array with an element equal to `v`;
/// a missing field equals `null`.
fn eq_matches(field: Option<&Value>, v: &Value) -> bool {
    match field {
        None => v.is_null(),
        Some(f) => {
            values_equal(f, v)
                || matches!(f, Value::Array(items) if items.iter().any(|item| values_equal(item, v)))
        }
    }
}

/// Deep equality where numbers compare by value (`1 == 1.0`) and object keys in any order.
fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (Num::from_json(x), Num::from_json(y)) {
            (Some(x), Some(y)) => x.compare(y) == Some(Ordering::Equal),
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| values_equal(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(key, xv)| y.get(key).is_some_and(|yv| values_equal(xv, yv)))
        }
        // Null, bool and string compare structurally; different types are unequal.
        _ => a == b,
    }
}

/// How `value` orders against `bound`, if they are comparable (both numbers or both strings).
fn compare(value: &Value, bound: &Bound) -> Option<Ordering> {
    match (value, bound) {
        (Value::Number(n), Bound::Num(b)) => Num::from_json(n)?.compare(*b),
        (Value::String(s), Bound::Str(b)) => Some(s.as_str().cmp(b.as_str())),
        _ => None,
    }
}

impl CmpOp {
    pub(crate) fn holds(self, ordering: Option<Ordering>) -> bool {
        matches!(
            (self, ordering),
            (CmpOp::Gt, Some(Ordering::Greater))
                | (CmpOp::Gte, Some(Ordering::Greater | Ordering::Equal))
                | (CmpOp::Lt, Some(Ordering::Less))
                | (CmpOp::Lte, Some(Ordering::Less | Ordering::Equal))
        )
    }
}

impl Num {
    /// The value of a JSON number: exact for every `i64` and `u64`; `None` for a float that is
    /// not finite (possible only with serde_json's `arbitrary_precision`).
    pub(crate) fn from_json(n: &Number) -> Option<Num> {
        if let Some(i) = n.as_i64() {
            Some(Num::Int(i.into()))
        } else if let Some(u) = n.as_u64() {
            Some(Num::Int(u.into()))
        } else {
            n.as_f64().filter(|f| f.is_finite()).map(Num::Float)
        }
    }

    /// Exact numeric order, even between integers beyond 2⁵³ and floats.
    pub(crate) fn compare(self, other: Num) -> Option<Ordering> {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => Some(a.cmp(&b)),
            (Num::Float(a), Num::Float(b)) => a.partial_cmp(&b),
            (Num::Int(i), Num::Float(f)) => int_cmp_float(i, f),
            (Num::Float(f), Num::Int(i)) => int_cmp_float(i, f).map(Ordering::reverse),
        }
    }
}

/// Compares an integer with a float exactly (converting the integer to `f64` would round it).
fn int_cmp_float(i: i128, f: f64) -> Option<Ordering> {
    /// 2¹²⁷: every float of smaller magnitude truncates to an integer that fits in `i128`.
    const LIMIT: f64 = (1u128 << 127) as f64;
    if f.is_nan() {
        return None;
    }
    if f >= LIMIT {
        return Some(Ordering::Less);
    }
    if f < -LIMIT {
        return Some(Ordering::Greater);
    }
    let whole = f.trunc();
    // Exact: `whole` is an integer in [-2¹²⁷, 2¹²⁷).
    let whole_int = whole as i128;
    Some(i.cmp(&whole_int).then_with(|| {
        // Same integer part: the fraction decides.
        if f > whole {
            Ordering::Less
        } else if f < whole {
            Ordering::Greater
        } else {
            Ordering::Equal
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_float_comparison_is_exact() {
        use Ordering::*;
        let cases: [(i128, f64, Ordering); 14] = [
            (1, 1.0, Equal),
            (1, 1.5, Less),
            (2, 1.5, Greater),
            (-1, -1.5, Greater),
            (-2, -1.5, Less),
            (0, -0.0, Equal),
            (0, 1e-300, Less),
            (0, -1e-300, Greater),
            ((1 << 53) + 1, (1u64 << 53) as f64, Greater),
            (i64::MAX.into(), 9_223_372_036_854_775_808.0, Less),
            (u64::MAX.into(), 18_446_744_073_709_551_616.0, Less),
            (i64::MIN.into(), -9_223_372_036_854_775_808.0, Equal),
            (i128::MAX, 1e300, Less),
            (i128::MIN, -1e300, Greater),
        ];
        for (i, f, want) in cases {
            assert_eq!(int_cmp_float(i, f), Some(want), "{i} vs {f}");
            assert_eq!(
                Num::Float(f).compare(Num::Int(i)),
                Some(want.reverse()),
                "{f} vs {i}"
            );
        }
        assert_eq!(int_cmp_float(1, f64::NAN), None);
        assert_eq!(int_cmp_float(1, f64::INFINITY), Some(Less));
        assert_eq!(int_cmp_float(1, f64::NEG_INFINITY), Some(Greater));
    }

    #[test]
    fn json_numbers_convert_exactly() {
        assert_eq!(
            Num::from_json(&Number::from(u64::MAX)),
            Some(Num::Int(u64::MAX.into()))
        );
        assert_eq!(
            Num::from_json(&Number::from(i64::MIN)),
            Some(Num::Int(i64::MIN.into()))
        );
        assert_eq!(
            Num::from_json(&Number::from_f64(0.5).expect("0.5 is finite")),
            Some(Num::Float(0.5))
        );
    }
}
