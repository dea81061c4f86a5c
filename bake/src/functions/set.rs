//! Set functions. Arguments arrive already converted to sets (elements unified to one type,
//! deduplicated and in cty's set order); results are sets in the same order.

use hcl::Value;

use super::value::{convert, equals, set_of, unify, Ty};
use super::FuncError;

type R = Result<Value, FuncError>;

fn elements(v: Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items,
        _ => Vec::new(),
    }
}

pub fn sethaselement(args: Vec<Value>) -> R {
    let Value::Array(items) = &args[0] else {
        return Ok(Value::Bool(false));
    };
    Ok(Value::Bool(items.iter().any(|v| equals(v, &args[1]))))
}

/// Converts every set to their common element type, as cty does before a set operation.
fn common_sets(args: Vec<Value>) -> Result<Vec<Vec<Value>>, FuncError> {
    let sets: Vec<Vec<Value>> = args.into_iter().map(elements).collect();
    let mut tys = Vec::new();
    for set in &sets {
        let etys: Vec<Ty> = set.iter().map(Ty::of).collect();
        // An empty set of unknown element type does not constrain the result.
        if let Some(t) = unify(&etys) {
            tys.push(t);
        }
    }
    let ety = if tys.is_empty() {
        Ty::Dynamic
    } else {
        unify(&tys)
            .ok_or_else(|| FuncError::call("given sets must all have compatible element types"))?
    };
    sets.into_iter()
        .enumerate()
        .map(|(i, set)| {
            let converted = set
                .into_iter()
                .map(|v| convert(v, &ety))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|m| FuncError::arg(i, m))?;
            Ok(set_of(converted))
        })
        .collect()
}

fn fold(args: Vec<Value>, op: fn(Vec<Value>, &[Value]) -> Vec<Value>) -> R {
    let mut sets = common_sets(args)?.into_iter();
    let mut acc = sets.next().unwrap_or_default();
    for set in sets {
        acc = op(acc, &set);
    }
    Ok(Value::Array(set_of(acc)))
}

fn has(set: &[Value], v: &Value) -> bool {
    set.iter().any(|x| equals(x, v))
}

pub fn setunion(args: Vec<Value>) -> R {
    fold(args, |mut a, b| {
        a.extend(b.iter().cloned());
        a
    })
}

pub fn setintersection(args: Vec<Value>) -> R {
    fold(args, |a, b| a.into_iter().filter(|v| has(b, v)).collect())
}

pub fn setsubtract(args: Vec<Value>) -> R {
    fold(args, |a, b| a.into_iter().filter(|v| !has(b, v)).collect())
}

pub fn setsymmetricdifference(args: Vec<Value>) -> R {
    fold(args, |a, b| {
        let mut out: Vec<Value> = a.iter().filter(|v| !has(b, v)).cloned().collect();
        out.extend(b.iter().filter(|v| !has(&a, v)).cloned());
        out
    })
}
