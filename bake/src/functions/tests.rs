//! Conformance with buildx: every case in `testdata/expected.txt` (recorded from buildx
//! 0.29.1 by `testdata/oracle.py`) is evaluated here through `hcl::eval` with the built-ins
//! registered, and must give the same JSON or the same error.

use hcl::eval::{Context, Evaluate};
use hcl::Value;

use super::register_all;

/// Evaluates `jsonencode(EXPR)` and returns `ok:JSON` or `err:SUMMARY; DETAIL`, as recorded.
pub(super) fn eval_case(expr: &str) -> String {
    let body: hcl::Body = match hcl::from_str(&format!("r = jsonencode({expr})\n")) {
        Ok(b) => b,
        Err(e) => return format!("parse error: {e}"),
    };
    let attr = body.attributes().next().expect("one attribute");
    let mut ctx = Context::new();
    register_all(&mut ctx);
    match attr.expr().evaluate(&ctx) {
        Ok(Value::String(s)) => format!("ok:{s}"),
        Ok(other) => format!("unexpected value {other:?}"),
        Err(err) => match err.into_kind() {
            hcl::eval::ErrorKind::FuncCall(_, msg) => format!("err:{msg}"),
            other => format!("eval error: {other}"),
        },
    }
}

/// Cases whose buildx result needs what `hcl::Value` cannot hold: cty's 512-bit numbers (long
/// fractions, integers beyond 64 bits, 1e400) or a Go panic trace.
const UNREPRESENTABLE: &[&str] = &[
    "indent(-1, \"a\\nb\")",
    "subtract(0.3, 0.1)",
    "divide(1, 3)",
    "divide(2, 3)",
    "parseint(\"123456789012345678901234567890\", 10)",
    "jsondecode(\"1e400\")",
    // cty keeps f64 results (`pow`, `log`) at 53-bit precision and prints them shortest; an
    // `hcl::Number` does not say where it came from, and large integral floats print exactly.
    "upper(pow(2, 70))",
    // A list (from `split`) never equals a tuple (a literal) in cty; arrays carry no such type.
    "equal(split(\",\", \"a\"), [\"a\"])",
];

#[test]
fn matches_buildx() {
    let expected = include_str!("testdata/expected.txt");
    let mut failures = Vec::new();
    let mut count = 0;
    for line in expected.lines().filter(|l| !l.is_empty()) {
        let (expr, want) = line.split_once('\t').expect("tab-separated case");
        if UNREPRESENTABLE.contains(&expr) {
            continue;
        }
        let (kind, quoted) = want.split_once(':').expect("ok: or err:");
        let text: String = serde_json::from_str(quoted).expect("JSON-quoted result");
        let want = format!("{kind}:{text}");
        let got = eval_case(expr);
        count += 1;
        if got != want {
            failures.push(format!("{expr}\n    want {want}\n    got  {got}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {count} cases differ from buildx:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Functions whose results differ per call or per machine; tested below instead.
const NONDETERMINISTIC: &[&str] = &["bcrypt", "homedir", "timestamp", "uuidv4"];

#[test]
fn table_is_sorted_and_every_function_is_exercised() {
    let names: Vec<&str> = super::names().collect();
    assert!(names.windows(2).all(|w| w[0] < w[1]), "table not sorted");
    // buildx 0.29.1 offers 103 functions; `convert` needs the evaluator (see module docs).
    assert_eq!(names.len(), 102);
    let expected = include_str!("testdata/expected.txt");
    for name in names {
        if NONDETERMINISTIC.contains(&name) {
            continue;
        }
        let call = format!("{name}(");
        assert!(
            expected.lines().any(|l| l.starts_with(&call)),
            "no conformance case calls {name}"
        );
    }
}

fn s(v: &str) -> Value {
    Value::from(v)
}

#[test]
fn call_converts_checks_and_reports_with_positions() {
    use super::{call, lookup, FuncError};

    assert_eq!(call("upper", vec![s("a")]), Some(Ok(s("A"))));
    assert_eq!(call("upper", vec![Value::from(5)]), Some(Ok(s("5"))));
    assert!(call("nope", vec![]).is_none());

    let upper = lookup("upper").unwrap();
    let err = upper.call(vec![Value::Null]).unwrap_err();
    assert_eq!(err.arg_index(), Some(0));
    assert_eq!(
        upper.render_error(&err),
        "Invalid function argument; Invalid value for \"str\" parameter: argument must not be null."
    );
    let err = upper.call(vec![s("a"), s("b")]).unwrap_err();
    assert_eq!(err, FuncError::TooManyArgs { expects: 1 });
    assert_eq!(err.arg_index(), Some(1));
    let err = upper.call(vec![]).unwrap_err();
    assert_eq!(err.arg_index(), None);
    assert_eq!(err.summary(), "Not enough function arguments");

    // Variadic arguments are named by the variadic parameter.
    let join = lookup("join").unwrap();
    let err = join.call(vec![s(","), s("a")]).unwrap_err();
    assert_eq!(
        join.error_detail(&err),
        "Invalid value for \"lists\" parameter: list of string required."
    );
    let min = lookup("min").unwrap();
    let err = min.call(vec![]).unwrap_err();
    assert_eq!(err.arg_index(), None);
    assert_eq!(
        min.render_error(&err),
        "Error in function call; Call to function \"min\" failed: must pass at least one number."
    );
}

#[test]
fn results_are_nfc_normalized() {
    let got = super::call("reverse", vec![s("xe\u{301}")])
        .unwrap()
        .unwrap();
    assert_eq!(got, s("\u{e9}x"));
}

#[test]
fn numbers_print_as_cty_prints_them() {
    use super::format_number;
    use hcl::Number;

    let f = |x: f64| format_number(&Number::from_f64(x).unwrap());
    assert_eq!(format_number(&Number::from(-42)), "-42");
    assert_eq!(
        format_number(&Number::from(u64::MAX)),
        "18446744073709551615"
    );
    assert_eq!(f(1.5), "1.5");
    assert_eq!(f(0.1 + 0.2), "0.3");
    assert_eq!(f(1e30), "1000000000000000000000000000000");
    assert_eq!(f(18446744073709551616.0), "18446744073709551616");
    assert_eq!(f(-0.000001), "-0.000001");
    assert_eq!(f(2f64.sqrt()), "1.4142135623730951");
}

#[test]
fn timestamp_is_rfc3339_utc_now() {
    let Ok(Value::String(ts)) = super::call("timestamp", vec![]).unwrap() else {
        panic!("timestamp is a string");
    };
    let re = regex::Regex::new(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$").unwrap();
    assert!(re.is_match(&ts), "{ts}");
    // It parses back through formatdate.
    let year = super::call("formatdate", vec![s("YYYY"), s(&ts)])
        .unwrap()
        .unwrap();
    assert_eq!(year, s(&ts[..4]));
}

#[test]
fn uuidv4_is_random_version_4() {
    let a = super::call("uuidv4", vec![]).unwrap().unwrap();
    let b = super::call("uuidv4", vec![]).unwrap().unwrap();
    assert_ne!(a, b);
    let re =
        regex::Regex::new(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
            .unwrap();
    assert!(re.is_match(a.as_str().unwrap()), "{a}");
}

#[test]
fn bcrypt_hashes_verify_and_follow_go_costs() {
    let hash = |args: Vec<Value>| super::call("bcrypt", args).unwrap();
    let Ok(Value::String(h)) = hash(vec![s("secret")]) else {
        panic!("bcrypt gives a string");
    };
    assert!(h.starts_with("$2a$10$"), "{h}");
    assert!(::bcrypt::verify("secret", &h).unwrap());
    let Ok(Value::String(h)) = hash(vec![s("secret"), Value::from(4)]) else {
        panic!("bcrypt gives a string");
    };
    assert!(h.starts_with("$2a$04$"), "{h}");
    // Go raises a cost below the minimum to the default.
    let Ok(Value::String(h)) = hash(vec![s("x"), Value::from(2)]) else {
        panic!("bcrypt gives a string");
    };
    assert!(h.starts_with("$2a$10$"), "{h}");
    let bcrypt = super::lookup("bcrypt").unwrap();
    let err = hash(vec![s("x"), Value::from(32)]).unwrap_err();
    assert_eq!(
        bcrypt.error_detail(&err),
        "Call to function \"bcrypt\" failed: error occured generating password crypto/bcrypt: cost 32 is outside allowed inclusive range 4..31."
    );
    let err = hash(vec![s("x"), Value::from(5), Value::from(6)]).unwrap_err();
    assert_eq!(
        bcrypt.error_detail(&err),
        "Call to function \"bcrypt\" failed: bcrypt() takes no more than two arguments."
    );
    let err = hash(vec![s(&"a".repeat(73))]).unwrap_err();
    assert!(bcrypt
        .error_detail(&err)
        .contains("password length exceeds 72 bytes"));
}

#[test]
fn homedir_is_home() {
    if let Ok(home) = std::env::var("HOME") {
        if !home.is_empty() {
            assert_eq!(super::call("homedir", vec![]).unwrap().unwrap(), s(&home));
        }
    }
}

#[test]
fn try_and_can_success_paths_and_failure_wording() {
    assert_eq!(
        super::call("try", vec![s("a"), s("b")]).unwrap().unwrap(),
        s("a")
    );
    assert_eq!(
        super::call("can", vec![Value::Null]).unwrap().unwrap(),
        Value::Bool(true)
    );
    let msg = super::try_failure_message(&[
        (
            "Unsupported attribute".into(),
            Some("f.hcl:1,2-3".into()),
            "This object has no attribute \"x\".".into(),
        ),
        ("Bad".into(), None, "Worse.".into()),
    ]);
    assert_eq!(
        msg,
        "no expression succeeded:\n- Unsupported attribute (at f.hcl:1,2-3)\n  This object has no attribute \"x\".\n- Bad\n  Worse.\n\nAt least one expression must produce a successful result"
    );
}
