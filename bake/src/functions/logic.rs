//! Boolean and equality functions, and the success paths of `try` and `can` (their failure
//! paths need the evaluator, which alone sees argument errors).

use hcl::Value;

use super::value::equals;
use super::FuncError;

type R = Result<Value, FuncError>;

fn b(v: &Value) -> bool {
    matches!(v, Value::Bool(true))
}

pub fn and(args: Vec<Value>) -> R {
    Ok(Value::Bool(b(&args[0]) && b(&args[1])))
}

pub fn or(args: Vec<Value>) -> R {
    Ok(Value::Bool(b(&args[0]) || b(&args[1])))
}

pub fn not(args: Vec<Value>) -> R {
    Ok(Value::Bool(!b(&args[0])))
}

pub fn equal(args: Vec<Value>) -> R {
    Ok(Value::Bool(equals(&args[0], &args[1])))
}

pub fn notequal(args: Vec<Value>) -> R {
    Ok(Value::Bool(!equals(&args[0], &args[1])))
}

/// `can` with an argument that evaluated: true.
pub fn can(_args: Vec<Value>) -> R {
    Ok(Value::Bool(true))
}

/// `try` with arguments that all evaluated: the first.
pub fn try_(args: Vec<Value>) -> R {
    args.into_iter()
        .next()
        .ok_or_else(|| FuncError::call("at least one argument is required"))
}
