//! Collection functions over lists, tuples, maps and objects: indexing, length, slicing,
//! flattening, merging, products, ranges and the coalescing functions.
//!
//! Arrays are tuples and objects are objects here (see the module docs of `functions`), so the
//! checks and messages are cty's for those types.

use hcl::{Map, Number, Value};

use super::value::{convert, equals, num, num_cmp, str_of, to_int, unify, Ty};
use super::FuncError;

type R = Result<Value, FuncError>;

fn type_name(v: &Value) -> String {
    Ty::of(v).friendly_name()
}

/// cty's `HasIndex` on a tuple (array) or object-as-map.
fn has_index(coll: &Value, key: &Value) -> bool {
    match (coll, key) {
        (Value::Array(items), Value::Number(n)) => n
            .as_i64()
            .is_some_and(|i| i >= 0 && (i as usize) < items.len()),
        (Value::Object(attrs), Value::String(k)) => attrs.contains_key(k),
        _ => false,
    }
}

pub fn hasindex(args: Vec<Value>) -> R {
    match &args[0] {
        Value::Array(_) => Ok(Value::Bool(has_index(&args[0], &args[1]))),
        _ => Err(FuncError::call(
            "collection must be a list, a map or a tuple",
        )),
    }
}

pub fn index(args: Vec<Value>) -> R {
    let Value::Array(items) = &args[0] else {
        return Err(FuncError::call(
            "collection must be a list, a map or a tuple",
        ));
    };
    if !matches!(args[1], Value::Number(_) | Value::Null) {
        return Err(FuncError::call("key for tuple must be number"));
    }
    let idx =
        to_int(&args[1]).map_err(|m| FuncError::call(format!("invalid key for tuple: {m}")))?;
    if idx < 0 || idx as usize >= items.len() {
        return Err(FuncError::call(format!(
            "key must be between 0 and {} inclusive",
            items.len()
        )));
    }
    Ok(items[idx as usize].clone())
}

pub fn length(args: Vec<Value>) -> R {
    match &args[0] {
        Value::Array(items) => Ok(Value::from(items.len())),
        _ => Err(FuncError::call(
            "collection must be a list, a map or a tuple",
        )),
    }
}

pub fn element(args: Vec<Value>) -> R {
    let Value::Array(items) = &args[0] else {
        return Err(FuncError::call(format!(
            "cannot read elements from {}",
            type_name(&args[0])
        )));
    };
    let idx = to_int(&args[1]).map_err(|m| FuncError::call(format!("invalid index: {m}")))?;
    if items.is_empty() {
        return Err(FuncError::call(
            "cannot use element function with an empty list",
        ));
    }
    if idx < 0 {
        return Err(FuncError::call(
            "cannot use element function with a negative index",
        ));
    }
    Ok(items[(idx % items.len() as i64) as usize].clone())
}

pub fn coalescelist(args: Vec<Value>) -> R {
    if args.is_empty() {
        return Err(FuncError::call("at least one argument is required"));
    }
    if args.iter().any(|a| !matches!(a, Value::Array(_))) {
        return Err(FuncError::call(
            "coalescelist arguments must be lists or tuples",
        ));
    }
    args.into_iter()
        .find(|a| matches!(a, Value::Array(items) if !items.is_empty()))
        .ok_or_else(|| FuncError::call("no non-null arguments"))
}

pub fn compact(args: Vec<Value>) -> R {
    let Value::Array(items) = &args[0] else {
        return Ok(Value::Array(Vec::new()));
    };
    Ok(Value::Array(
        items
            .iter()
            .filter(|v| matches!(v, Value::String(s) if !s.is_empty()))
            .cloned()
            .collect(),
    ))
}

pub fn contains(args: Vec<Value>) -> R {
    let Value::Array(items) = &args[0] else {
        return Err(FuncError::call("argument must be list, tuple, or set"));
    };
    Ok(Value::Bool(items.iter().any(|v| equals(&args[1], v))))
}

pub fn distinct(args: Vec<Value>) -> R {
    let Value::Array(items) = &args[0] else {
        return Ok(Value::Array(Vec::new()));
    };
    let mut out: Vec<Value> = Vec::new();
    for v in items {
        if !out.iter().any(|o| equals(o, v)) {
            out.push(v.clone());
        }
    }
    Ok(Value::Array(out))
}

pub fn chunklist(args: Vec<Value>) -> R {
    let Value::Array(items) = &args[0] else {
        return Ok(Value::Array(Vec::new()));
    };
    let size = to_int(&args[1]).map_err(|m| FuncError::call(format!("invalid size: {m}")))?;
    if size < 0 {
        return Err(FuncError::call("the size argument must be positive"));
    }
    if items.is_empty() {
        return Ok(Value::Array(Vec::new()));
    }
    if size == 0 {
        return Ok(Value::Array(vec![Value::Array(items.clone())]));
    }
    Ok(Value::Array(
        items
            .chunks(size as usize)
            .map(|c| Value::Array(c.to_vec()))
            .collect(),
    ))
}

fn flatten_into(items: &[Value], out: &mut Vec<Value>) {
    for v in items {
        match v {
            Value::Array(inner) => flatten_into(inner, out),
            other => out.push(other.clone()),
        }
    }
}

pub fn flatten(args: Vec<Value>) -> R {
    let Value::Array(items) = &args[0] else {
        return Err(FuncError::call("can only flatten lists, sets and tuples"));
    };
    let mut out = Vec::new();
    flatten_into(items, &mut out);
    Ok(Value::Array(out))
}

fn sorted_entries(attrs: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<(&String, &Value)> = attrs.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

pub fn keys(args: Vec<Value>) -> R {
    let Value::Object(attrs) = &args[0] else {
        return Err(FuncError::arg(0, "must have map or object type"));
    };
    Ok(Value::Array(
        sorted_entries(attrs)
            .into_iter()
            .map(|(k, _)| Value::String(k.clone()))
            .collect(),
    ))
}

pub fn values(args: Vec<Value>) -> R {
    let Value::Object(attrs) = &args[0] else {
        return Err(FuncError::call(
            "values() requires a map as the first argument",
        ));
    };
    Ok(Value::Array(
        sorted_entries(attrs)
            .into_iter()
            .map(|(_, v)| v.clone())
            .collect(),
    ))
}

pub fn lookup(mut args: Vec<Value>) -> R {
    let default = args.pop().unwrap_or(Value::Null);
    let key = str_of(&args[1]).to_string();
    let Value::Object(attrs) = &mut args[0] else {
        return Err(FuncError::arg(
            0,
            "lookup() requires a map as the first argument",
        ));
    };
    Ok(attrs.shift_remove(&key).unwrap_or(default))
}

pub fn merge(args: Vec<Value>) -> R {
    let mut out: Map<String, Value> = Map::new();
    for arg in &args {
        match arg {
            Value::Null => {}
            Value::Object(attrs) => {
                for (k, v) in attrs {
                    out.insert(k.clone(), v.clone());
                }
            }
            other => {
                return Err(FuncError::call(format!(
                    "arguments must be maps or objects, got {:?}",
                    type_name(other)
                )))
            }
        }
    }
    // cty objects iterate their attributes by name.
    out.sort_keys();
    Ok(Value::Object(out))
}

pub fn reverselist(args: Vec<Value>) -> R {
    let Value::Array(items) = &args[0] else {
        return Err(FuncError::arg(
            0,
            format!(
                "can only reverse list or tuple values, not {}",
                type_name(&args[0])
            ),
        ));
    };
    Ok(Value::Array(items.iter().rev().cloned().collect()))
}

pub fn setproduct(args: Vec<Value>) -> R {
    if args.len() < 2 {
        return Err(FuncError::call("at least two arguments are required"));
    }
    let mut columns: Vec<Vec<Value>> = Vec::with_capacity(args.len());
    for (i, arg) in args.into_iter().enumerate() {
        let Value::Array(items) = arg else {
            return Err(FuncError::arg(i, "a set or a list is required"));
        };
        let tys: Vec<Ty> = items.iter().map(Ty::of).collect();
        let ety = if tys.is_empty() {
            Ty::Dynamic
        } else {
            unify(&tys).ok_or_else(|| FuncError::arg(i, "all elements must be of the same type"))?
        };
        let items = items
            .into_iter()
            .map(|v| convert(v, &ety))
            .collect::<Result<Vec<_>, _>>()
            .map_err(FuncError::call)?;
        columns.push(items);
    }
    let total: usize = columns.iter().map(Vec::len).product();
    let mut out = Vec::with_capacity(total);
    let mut idx = vec![0usize; columns.len()];
    for _ in 0..total {
        out.push(Value::Array(
            idx.iter()
                .zip(&columns)
                .map(|(i, c)| c[*i].clone())
                .collect(),
        ));
        for j in (0..idx.len()).rev() {
            idx[j] += 1;
            if idx[j] < columns[j].len() {
                break;
            }
            idx[j] = 0;
        }
    }
    Ok(Value::Array(out))
}

pub fn slice(args: Vec<Value>) -> R {
    let Value::Array(items) = &args[0] else {
        return Err(FuncError::arg(0, "must be a list or tuple value"));
    };
    let len = items.len() as i64;
    let start =
        to_int(&args[1]).map_err(|m| FuncError::arg(1, format!("invalid start index: {m}")))?;
    if start < 0 {
        return Err(FuncError::arg(1, "start index must not be less than zero"));
    }
    if start > len {
        return Err(FuncError::arg(
            1,
            "start index must not be greater than the length of the list",
        ));
    }
    let end = to_int(&args[2]).map_err(|m| FuncError::arg(2, format!("invalid end index: {m}")))?;
    if end < 0 {
        return Err(FuncError::arg(2, "end index must not be less than zero"));
    }
    if end > len {
        return Err(FuncError::arg(
            2,
            "end index must not be greater than the length of the list",
        ));
    }
    if start > end {
        return Err(FuncError::arg(
            1,
            "start index must not be greater than end index",
        ));
    }
    Ok(Value::Array(items[start as usize..end as usize].to_vec()))
}

pub fn zipmap(args: Vec<Value>) -> R {
    let Value::Array(keys) = &args[0] else {
        return Ok(Value::Object(Map::new()));
    };
    let Value::Array(values) = &args[1] else {
        return Err(FuncError::call(
            "values argument must be a list or tuple value",
        ));
    };
    if keys.len() != values.len() {
        return Err(FuncError::call(format!(
            "number of keys ({}) does not match number of values ({})",
            keys.len(),
            values.len()
        )));
    }
    let mut out = Map::new();
    for (i, (k, v)) in keys.iter().zip(values).enumerate() {
        let Value::String(k) = k else {
            return Err(FuncError::call(format!(
                "keys list has null value at index {i}"
            )));
        };
        out.insert(k.clone(), v.clone());
    }
    out.sort_keys();
    Ok(Value::Object(out))
}

pub fn concat(args: Vec<Value>) -> R {
    if args.is_empty() {
        return Err(FuncError::call("at least one argument is required"));
    }
    let mut out = Vec::new();
    for (i, arg) in args.into_iter().enumerate() {
        match arg {
            Value::Array(items) => out.extend(items),
            other => {
                return Err(FuncError::arg(
                    i,
                    format!(
                        "all arguments must be lists or tuples; got {}",
                        type_name(&other)
                    ),
                ))
            }
        }
    }
    Ok(Value::Array(out))
}

/// Adds two numbers, exactly for integers.
fn add(a: &Number, b: &Number) -> Number {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        if let Some(s) = x.checked_add(y) {
            return Number::from(s);
        }
    }
    Number::from_f64(a.as_f64().unwrap_or(0.0) + b.as_f64().unwrap_or(0.0))
        .unwrap_or(Number::from(0))
}

pub fn range(args: Vec<Value>) -> R {
    let zero = Number::from(0);
    let nums: Vec<Number> = args.iter().map(num).collect();
    let lt = |a: &Number, b: &Number| num_cmp(a, b) == std::cmp::Ordering::Less;
    let (start, end, step) = match nums.as_slice() {
        [end] => (
            zero,
            *end,
            Number::from(if lt(end, &zero) { -1 } else { 1 }),
        ),
        [start, end] => (
            *start,
            *end,
            Number::from(if lt(end, start) { -1 } else { 1 }),
        ),
        [start, end, step] => (*start, *end, *step),
        _ => return Err(FuncError::call("must have one, two, or three arguments")),
    };
    // buildx's cty never sees a zero step as zero (it compares values by identity), so a zero
    // step runs into the 1024-value limit instead.
    let down = lt(&step, &zero);
    if down && lt(&start, &end) {
        return Err(FuncError::arg(
            1,
            "end must be less than start when step is negative",
        ));
    }
    if !down && lt(&end, &start) {
        return Err(FuncError::arg(
            1,
            "end must be greater than start when step is positive",
        ));
    }
    let mut out = Vec::new();
    let mut n = start;
    loop {
        let done = if down { !lt(&end, &n) } else { !lt(&n, &end) };
        if done {
            break;
        }
        if out.len() >= 1024 {
            return Err(FuncError::call("more than 1024 values were generated; either decrease the difference between start and end or use a smaller step"));
        }
        out.push(Value::Number(n));
        n = add(&n, &step);
    }
    Ok(Value::Array(out))
}

pub fn indexof(args: Vec<Value>) -> R {
    let Value::Array(items) = &args[0] else {
        return Err(FuncError::call("argument must be a list or tuple"));
    };
    if items.is_empty() {
        return Err(FuncError::call("cannot search an empty list"));
    }
    items
        .iter()
        .position(|v| equals(v, &args[1]))
        .map(Value::from)
        .ok_or_else(|| FuncError::call("item not found"))
}

pub fn coalesce(args: Vec<Value>) -> R {
    let tys: Vec<Ty> = args.iter().map(Ty::of).collect();
    let ty = unify(&tys).ok_or_else(|| FuncError::call("all arguments must have the same type"))?;
    let first = args
        .into_iter()
        .find(|v| !v.is_null())
        .ok_or_else(|| FuncError::call("no non-null arguments"))?;
    convert(first, &ty).map_err(FuncError::call)
}
