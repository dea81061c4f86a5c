//! Bake's built-in functions: every function buildx 0.29.1 offers in HCL bake files, with the
//! results and error messages of its implementation (go-cty's stdlib, hashicorp/go-cty-funcs and
//! buildx's own additions).
//!
//! This module owns the functions and how their arguments are checked and converted; it does not
//! own expression evaluation. Three of buildx's functions need the evaluator's help and are only
//! partly served here:
//!
//! - `try` and `can` must see argument *errors*, which only the evaluator has: the versions here
//!   cover the case where every argument evaluated (then `try` returns the first, `can` returns
//!   true); [`try_failure_message`] words the error when none succeeded.
//! - `convert(value, type)` takes a type expression, which is not a value; it is not registered.
//!
//! Values are `hcl::Value`s, which do not keep cty's distinction between lists, tuples and sets,
//! or maps and objects: arrays are treated as tuples and objects as objects (what literals are in
//! buildx), and results that cty would type as lists or sets come back as arrays (sets sorted and
//! deduplicated, as cty iterates them).
//!
//! Errors follow HCL's diagnostics: [`FuncError::summary`] and [`Builtin::error_detail`] are
//! what buildx prints after the position ([`Builtin::render_error`] joins them), and
//! [`FuncError::arg_index`] tells which argument the position should point at (HCL points at
//! the argument for argument errors and at the function name otherwise). An evaluator that
//! keeps spans should call [`lookup`] and [`Builtin::call`] directly; [`register_all`] serves
//! `hcl::eval`, whose function errors are plain strings.
//!
//! cty keeps every string in Unicode NFC; results here are normalized, and string literals
//! should be too (`reverse("e\u0301")` is `"é"` in buildx).
//!
//! `testdata/cases.txt` lists conformance cases and `testdata/oracle.py` records what the
//! reference buildx makes of each into `testdata/expected.txt`, which `tests.rs` replays.

mod collection;
mod crypto;
mod datetime;
mod encoding;
mod format;
mod logic;
mod net;
mod number;
mod regex;
mod set;
mod string;
mod system;
mod value;

#[cfg(test)]
mod tests;

use hcl::eval::{Context, FuncArgs, FuncDef, ParamType};
use hcl::Value;

pub use value::format_number;

/// How a parameter's argument is converted before the function sees it, as cty converts
/// arguments to the parameter's declared type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Param {
    /// Any value (cty's dynamic pseudo-type): passed as is.
    Any,
    Str,
    Num,
    Bool,
    /// `list(string)`: an array whose elements are converted to strings.
    ListOfStr,
    /// `list(any)`: an array whose elements are unified to one type.
    List,
    /// `set(any)`: like `List`, then sorted and deduplicated.
    Set,
    /// A capsule type no bake value can have (go-cty's `bytes`).
    Bytes,
}

/// One parameter of a built-in: its name (errors quote it), type and whether null is accepted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ParamSpec {
    pub name: &'static str,
    pub ty: Param,
    pub allow_null: bool,
}

pub(crate) const fn p(name: &'static str, ty: Param) -> ParamSpec {
    ParamSpec {
        name,
        ty,
        allow_null: false,
    }
}

pub(crate) const fn p_null(name: &'static str, ty: Param) -> ParamSpec {
    ParamSpec {
        name,
        ty,
        allow_null: true,
    }
}

type Impl = fn(Vec<Value>) -> Result<Value, FuncError>;

/// A built-in function: its signature and implementation.
pub struct Builtin {
    name: &'static str,
    params: &'static [ParamSpec],
    variadic: Option<ParamSpec>,
    imp: Impl,
    /// The same function in the shape `hcl::eval` wants (errors rendered as text).
    shim: hcl::eval::Func,
}

impl Builtin {
    /// The function's name, as written in bake files.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Calls the function with evaluated arguments: checks the argument count, converts each
    /// argument to its parameter's type, then runs the function.
    pub fn call(&self, args: Vec<Value>) -> Result<Value, FuncError> {
        let fixed = self.params.len();
        if args.len() < fixed {
            return Err(FuncError::NotEnoughArgs {
                expects: fixed,
                at_least: self.variadic.is_some(),
                missing: self.params[args.len()].name,
            });
        }
        if self.variadic.is_none() && args.len() > fixed {
            return Err(FuncError::TooManyArgs { expects: fixed });
        }
        let mut converted = Vec::with_capacity(args.len());
        for (i, arg) in args.into_iter().enumerate() {
            let spec = self.param_at(i).expect("argument count checked above");
            let arg = value::convert_param(arg, spec.ty).map_err(|m| FuncError::arg(i, m))?;
            converted.push(arg);
        }
        // cty rejects nulls only after every argument converted, in parameter order.
        for (i, arg) in converted.iter().enumerate() {
            let spec = self.param_at(i).expect("argument count checked above");
            if arg.is_null() && !spec.allow_null {
                return Err(FuncError::arg(i, "argument must not be null"));
            }
        }
        (self.imp)(converted).map(value::nfc)
    }

    fn param_at(&self, index: usize) -> Option<&ParamSpec> {
        self.params.get(index).or(self.variadic.as_ref())
    }

    /// Renders an error of this function as `summary; detail`, the text buildx prints after
    /// the error's position.
    pub fn render_error(&self, err: &FuncError) -> String {
        format!("{}; {}", err.summary(), self.error_detail(err))
    }

    /// The detail line of an error of this function.
    pub fn error_detail(&self, err: &FuncError) -> String {
        let name = self.name;
        match err {
            FuncError::NotEnoughArgs {
                expects,
                at_least,
                missing,
            } => {
                let qual = if *at_least { " at least" } else { "" };
                format!(
                    "Function {name:?} expects{qual} {expects} argument(s). Missing value for {missing:?}."
                )
            }
            FuncError::TooManyArgs { expects } => {
                format!("Function {name:?} expects only {expects} argument(s).")
            }
            FuncError::Arg { index, message } => match self.param_at(*index) {
                Some(spec) => format!("Invalid value for {:?} parameter: {message}.", spec.name),
                None => format!("Call to function {name:?} failed: {message}."),
            },
            FuncError::Call(message) => format!("Call to function {name:?} failed: {message}."),
        }
    }
}

/// Why a built-in function call failed, in the categories HCL reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FuncError {
    /// Fewer arguments than the function's fixed parameters.
    NotEnoughArgs {
        expects: usize,
        at_least: bool,
        missing: &'static str,
    },
    /// More arguments than a function without a variadic parameter takes.
    TooManyArgs { expects: usize },
    /// One argument is unacceptable; `index` counts from 0 over all arguments.
    Arg { index: usize, message: String },
    /// The call failed as a whole.
    Call(String),
}

impl FuncError {
    pub(crate) fn arg(index: usize, message: impl Into<String>) -> FuncError {
        FuncError::Arg {
            index,
            message: message.into(),
        }
    }

    pub(crate) fn call(message: impl Into<String>) -> FuncError {
        FuncError::Call(message.into())
    }

    /// HCL's summary line for this kind of error.
    pub fn summary(&self) -> &'static str {
        match self {
            FuncError::NotEnoughArgs { .. } => "Not enough function arguments",
            FuncError::TooManyArgs { .. } => "Too many function arguments",
            FuncError::Arg { .. } => "Invalid function argument",
            FuncError::Call(_) => "Error in function call",
        }
    }

    /// The argument HCL points the error at, if any: the bad argument for argument errors, the
    /// first extra argument for too many arguments. `None` means the call itself.
    pub fn arg_index(&self) -> Option<usize> {
        match self {
            FuncError::Arg { index, .. } => Some(*index),
            FuncError::TooManyArgs { expects } => Some(*expects),
            FuncError::NotEnoughArgs { .. } | FuncError::Call(_) => None,
        }
    }
}

/// Declares the table of built-ins; each entry gets a shim for `hcl::eval` that knows its own
/// entry, since `hcl::eval::Func` is a plain function pointer.
macro_rules! builtins {
    ($( $name:literal => $imp:path, [$($param:expr),* $(,)?], $variadic:expr; )*) => {
        static BUILTINS: &[Builtin] = &[
            $({
                fn shim(args: FuncArgs) -> Result<Value, String> {
                    let builtin = lookup($name).expect("listed built-in");
                    builtin
                        .call(args.into_values())
                        .map_err(|err| builtin.render_error(&err))
                }
                Builtin {
                    name: $name,
                    params: &[$($param),*],
                    variadic: $variadic,
                    imp: $imp,
                    shim,
                }
            },)*
        ];
    };
}

use Param::{Any, Bool as B, Bytes as Byt, List as L, ListOfStr as LS, Num as N, Set as S, Str};

// Sorted by name: `lookup` searches by bisection.
builtins! {
    "absolute" => number::absolute, [p("num", N)], None;
    "add" => number::add, [p("a", N), p("b", N)], None;
    "and" => logic::and, [p("a", B), p("b", B)], None;
    "base64decode" => encoding::base64decode, [p("str", Str)], None;
    "base64encode" => encoding::base64encode, [p("str", Str)], None;
    "basename" => system::basename, [p("path", Str)], None;
    "bcrypt" => crypto::bcrypt, [p("str", Str)], Some(p("cost", N));
    "byteslen" => string::byteslen, [p("buf", Byt)], None;
    "bytesslice" => string::bytesslice, [p("buf", Byt), p("offset", N), p("length", N)], None;
    "can" => logic::can, [p_null("expression", Any)], None;
    "ceil" => number::ceil, [p("num", N)], None;
    "chomp" => string::chomp, [p("str", Str)], None;
    "chunklist" => collection::chunklist, [p("list", L), p("size", N)], None;
    "cidrhost" => net::cidrhost, [p("prefix", Str), p("hostnum", N)], None;
    "cidrnetmask" => net::cidrnetmask, [p("prefix", Str)], None;
    "cidrsubnet" => net::cidrsubnet, [p("prefix", Str), p("newbits", N), p("netnum", N)], None;
    "cidrsubnets" => net::cidrsubnets, [p("prefix", Str)], Some(p("newbits", N));
    "coalesce" => collection::coalesce, [], Some(p_null("vals", Any));
    "coalescelist" => collection::coalescelist, [], Some(p_null("vals", Any));
    "compact" => collection::compact, [p("list", LS)], None;
    "concat" => collection::concat, [], Some(p("seqs", Any));
    "contains" => collection::contains, [p("list", Any), p("value", Any)], None;
    "csvdecode" => encoding::csvdecode, [p("str", Str)], None;
    "dirname" => system::dirname, [p("path", Str)], None;
    "distinct" => collection::distinct, [p("list", L)], None;
    "divide" => number::divide, [p("a", N), p("b", N)], None;
    "element" => collection::element, [p("list", Any), p("index", N)], None;
    "equal" => logic::equal, [p_null("a", Any), p_null("b", Any)], None;
    "flatten" => collection::flatten, [p("list", Any)], None;
    "floor" => number::floor, [p("num", N)], None;
    "format" => format::format, [p("format", Str)], Some(p_null("args", Any));
    "formatdate" => datetime::formatdate, [p("format", Str), p("time", Str)], None;
    "formatlist" => format::formatlist, [p("format", Str)], Some(p_null("args", Any));
    "greaterthan" => number::greaterthan, [p("a", N), p("b", N)], None;
    "greaterthanorequalto" => number::greaterthanorequalto, [p("a", N), p("b", N)], None;
    "hasindex" => collection::hasindex, [p("collection", Any), p("key", Any)], None;
    "homedir" => system::homedir, [], None;
    "indent" => string::indent, [p("spaces", N), p("str", Str)], None;
    "index" => collection::index, [p("collection", Any), p("key", Any)], None;
    "indexof" => collection::indexof, [p("list", Any), p("value", Any)], None;
    "int" => number::int, [p("num", N)], None;
    "join" => string::join, [p("separator", Str)], Some(p("lists", LS));
    "jsondecode" => encoding::jsondecode, [p("str", Str)], None;
    "jsonencode" => encoding::jsonencode, [p_null("val", Any)], None;
    "keys" => collection::keys, [p("inputMap", Any)], None;
    "length" => collection::length, [p("collection", Any)], None;
    "lessthan" => number::lessthan, [p("a", N), p("b", N)], None;
    "lessthanorequalto" => number::lessthanorequalto, [p("a", N), p("b", N)], None;
    "log" => number::log, [p("num", N), p("base", N)], None;
    "lookup" => collection::lookup, [p("inputMap", Any), p("key", Str), p("default", Any)], None;
    "lower" => string::lower, [p("str", Str)], None;
    "max" => number::max, [], Some(p("numbers", N));
    "md5" => crypto::md5, [p("str", Str)], None;
    "merge" => collection::merge, [], Some(p_null("maps", Any));
    "min" => number::min, [], Some(p("numbers", N));
    "modulo" => number::modulo, [p("a", N), p("b", N)], None;
    "multiply" => number::multiply, [p("a", N), p("b", N)], None;
    "negate" => number::negate, [p("num", N)], None;
    "not" => logic::not, [p("val", B)], None;
    "notequal" => logic::notequal, [p_null("a", Any), p_null("b", Any)], None;
    "or" => logic::or, [p("a", B), p("b", B)], None;
    "parseint" => number::parseint, [p("number", Any), p("base", N)], None;
    "pow" => number::pow, [p("num", N), p("power", N)], None;
    "range" => collection::range, [], Some(p("params", N));
    "regex" => regex::regex, [p("pattern", Str), p("string", Str)], None;
    "regex_replace" => regex::regex_replace, [p("str", Str), p("pattern", Str), p("replace", Str)], None;
    "regexall" => regex::regexall, [p("pattern", Str), p("string", Str)], None;
    "replace" => string::replace, [p("str", Str), p("substr", Str), p("replace", Str)], None;
    "reverse" => string::reverse, [p("str", Str)], None;
    "reverselist" => collection::reverselist, [p("list", Any)], None;
    "rsadecrypt" => crypto::rsadecrypt, [p("ciphertext", Str), p("privatekey", Str)], None;
    "sanitize" => string::sanitize, [p("name", Str)], None;
    "sethaselement" => set::sethaselement, [p("set", S), p("elem", Any)], None;
    "setintersection" => set::setintersection, [p("first_set", S)], Some(p("other_sets", S));
    "setproduct" => collection::setproduct, [], Some(p("sets", Any));
    "setsubtract" => set::setsubtract, [p("a", S), p("b", S)], None;
    "setsymmetricdifference" => set::setsymmetricdifference, [p("first_set", S)], Some(p("other_sets", S));
    "setunion" => set::setunion, [p("first_set", S)], Some(p("other_sets", S));
    "sha1" => crypto::sha1, [p("str", Str)], None;
    "sha256" => crypto::sha256, [p("str", Str)], None;
    "sha512" => crypto::sha512, [p("str", Str)], None;
    "signum" => number::signum, [p("num", N)], None;
    "slice" => collection::slice, [p("list", Any), p("start_index", N), p("end_index", N)], None;
    "sort" => string::sort, [p("list", LS)], None;
    "split" => string::split, [p("separator", Str), p("str", Str)], None;
    "strlen" => string::strlen, [p("str", Str)], None;
    "substr" => string::substr, [p("str", Str), p("offset", N), p("length", N)], None;
    "subtract" => number::subtract, [p("a", N), p("b", N)], None;
    "timeadd" => datetime::timeadd, [p("timestamp", Str), p("duration", Str)], None;
    "timestamp" => datetime::timestamp, [], None;
    "title" => string::title, [p("str", Str)], None;
    "trim" => string::trim, [p("str", Str), p("cutset", Str)], None;
    "trimprefix" => string::trimprefix, [p("str", Str), p("prefix", Str)], None;
    "trimspace" => string::trimspace, [p("str", Str)], None;
    "trimsuffix" => string::trimsuffix, [p("str", Str), p("suffix", Str)], None;
    "try" => logic::try_, [], Some(p_null("expressions", Any));
    "upper" => string::upper, [p("str", Str)], None;
    "urlencode" => encoding::urlencode, [p("str", Str)], None;
    "uuidv4" => crypto::uuidv4, [], None;
    "uuidv5" => crypto::uuidv5, [p("namespace", Str), p("name", Str)], None;
    "values" => collection::values, [p("mapping", Any)], None;
    "zipmap" => collection::zipmap, [p("keys", LS), p("values", Any)], None;
}

/// Every built-in, sorted by name.
pub fn builtins() -> &'static [Builtin] {
    BUILTINS
}

/// The built-in called `name`, if there is one.
pub fn lookup(name: &str) -> Option<&'static Builtin> {
    BUILTINS
        .binary_search_by(|b| b.name.cmp(name))
        .ok()
        .map(|i| &BUILTINS[i])
}

/// The names of all built-ins (for "Did you mean" suggestions), sorted.
pub fn names() -> impl Iterator<Item = &'static str> {
    BUILTINS.iter().map(|b| b.name)
}

/// Calls the built-in `name`; `None` when there is no such function.
pub fn call(name: &str, args: Vec<Value>) -> Option<Result<Value, FuncError>> {
    lookup(name).map(|b| b.call(args))
}

/// Installs every built-in into an `hcl::eval` context. Argument checks are done by the
/// built-ins themselves (with cty's wording), so each is declared as taking any arguments.
pub fn register_all(ctx: &mut Context<'_>) {
    for builtin in BUILTINS {
        let def = FuncDef::builder()
            .variadic_param(ParamType::Any)
            .build(builtin.shim);
        ctx.declare_func(builtin.name, def);
    }
}

/// The error message of `try` when none of its arguments evaluated (HCL wraps it as "Error in
/// function call"); `failures` holds each argument's diagnostics in order as `(summary,
/// location, detail)`, the location written `file:line,col-col` when known.
pub fn try_failure_message(failures: &[(String, Option<String>, String)]) -> String {
    if failures.is_empty() {
        return "at least one argument is required".to_string();
    }
    let mut msg = String::from("no expression succeeded:\n");
    for (summary, at, detail) in failures {
        match at {
            Some(at) => msg.push_str(&format!("- {summary} (at {at})\n  {detail}\n")),
            None => msg.push_str(&format!("- {summary}\n  {detail}\n")),
        }
    }
    msg.push_str("\nAt least one expression must produce a successful result");
    msg
}
