//! Encoding functions: base64, URL query escaping, JSON and CSV. The decoders are written
//! here rather than taken from crates because bake prints their error messages, which must be
//! Go's (`encoding/json`, `encoding/csv`, `encoding/base64`).

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use hcl::{Map, Value};

use super::value::{json_encode, parse_number, str_of};
use super::FuncError;

type R = Result<Value, FuncError>;

/// Go's `base64.StdEncoding`: padding required, non-zero trailing bits tolerated.
const GO_STD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

pub fn base64encode(args: Vec<Value>) -> R {
    Ok(Value::String(GO_STD.encode(str_of(&args[0]))))
}

pub fn base64decode(args: Vec<Value>) -> R {
    let s = str_of(&args[0]);
    // Go's decoder skips line breaks anywhere in the input.
    let cleaned: String = s.chars().filter(|c| *c != '\r' && *c != '\n').collect();
    let bytes = GO_STD
        .decode(cleaned)
        .map_err(|_| FuncError::call(format!("failed to decode base64 data '{s}'")))?;
    String::from_utf8(bytes).map(Value::String).map_err(|_| {
        FuncError::call("the result of decoding the the provided string is not valid UTF-8")
    })
}

/// Go's `url.QueryEscape`.
pub fn urlencode(args: Vec<Value>) -> R {
    let mut out = String::new();
    for b in str_of(&args[0]).bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    Ok(Value::String(out))
}

pub fn jsonencode(args: Vec<Value>) -> R {
    Ok(Value::String(json_encode(&args[0])))
}

pub fn jsondecode(args: Vec<Value>) -> R {
    let mut p = JsonParser {
        b: str_of(&args[0]).as_bytes(),
        pos: 0,
    };
    let v = p.document().map_err(FuncError::call)?;
    Ok(v)
}

/// A JSON reader with the error messages of Go's `json.Decoder.Token`, as cty uses it.
struct JsonParser<'a> {
    b: &'a [u8],
    pos: usize,
}

/// Go's `quoteChar` for syntax errors.
fn quote_char(c: u8) -> String {
    match c {
        b'\'' => "'\\''".into(),
        b'"' => "'\"'".into(),
        c => {
            let q = super::value::go_quote(&(c as char).to_string());
            format!("'{}'", &q[1..q.len() - 1])
        }
    }
}

impl JsonParser<'_> {
    fn skip_ws(&mut self) {
        while matches!(self.b.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.b.get(self.pos).copied()
    }

    fn document(&mut self) -> Result<Value, String> {
        let v = self.value(" looking for beginning of value")?;
        // Go's `Decoder.More`: anything but a closing delimiter counts as more data.
        match self.peek() {
            None | Some(b']' | b'}') => Ok(v),
            Some(_) => Err("extraneous data after JSON object".into()),
        }
    }

    fn value(&mut self, context: &str) -> Result<Value, String> {
        let Some(c) = self.peek() else {
            return Err("EOF".into());
        };
        match c {
            b'{' => {
                self.pos += 1;
                self.object()
            }
            b'[' => {
                self.pos += 1;
                self.array()
            }
            b'"' => self.string().map(Value::String),
            b'-' | b'0'..=b'9' => self.number(),
            b't' => self.literal("true", Value::Bool(true)),
            b'f' => self.literal("false", Value::Bool(false)),
            b'n' => self.literal("null", Value::Null),
            c => Err(format!("invalid character {}{context}", quote_char(c))),
        }
    }

    fn object(&mut self) -> Result<Value, String> {
        let mut attrs = Map::new();
        let mut first = true;
        loop {
            let Some(c) = self.peek() else {
                return Err("EOF".into());
            };
            if c == b'}' && first {
                self.pos += 1;
                break;
            }
            if c != b'"' {
                // Right after `{` Go's decoder gives no context.
                let context = if first {
                    ""
                } else {
                    " looking for beginning of object key string"
                };
                return Err(format!("invalid character {}{context}", quote_char(c)));
            }
            let key = self.string()?;
            match self.peek() {
                None => return Err("EOF".into()),
                Some(b':') => self.pos += 1,
                Some(c) => {
                    return Err(format!(
                        "invalid character {} after object key",
                        quote_char(c)
                    ))
                }
            }
            let v = self.value(" looking for beginning of value")?;
            attrs.insert(key, v);
            first = false;
            match self.peek() {
                None => return Err("EOF".into()),
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                Some(c) => {
                    return Err(format!(
                        "invalid character {} after object key:value pair",
                        quote_char(c)
                    ))
                }
            }
        }
        // cty objects order their attributes by name.
        attrs.sort_keys();
        Ok(Value::Object(attrs))
    }

    fn array(&mut self) -> Result<Value, String> {
        let mut items = Vec::new();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value(" looking for beginning of value")?);
            match self.peek() {
                None => return Err("EOF".into()),
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    break;
                }
                Some(c) => {
                    return Err(format!(
                        "invalid character {} after array element",
                        quote_char(c)
                    ))
                }
            }
        }
        Ok(Value::Array(items))
    }

    fn literal(&mut self, word: &str, v: Value) -> Result<Value, String> {
        for (i, want) in word.bytes().enumerate() {
            match self.b.get(self.pos + i) {
                None => return Err("unexpected EOF".into()),
                Some(c) if *c == want => {}
                Some(c) => {
                    return Err(format!(
                        "invalid character {} in literal {word} (expecting {})",
                        quote_char(*c),
                        quote_char(want)
                    ))
                }
            }
        }
        self.pos += word.len();
        Ok(v)
    }

    fn number(&mut self) -> Result<Value, String> {
        let start = self.pos;
        let b = self.b;
        let mut p = self.pos;
        let digit = |p: usize| b.get(p).is_some_and(u8::is_ascii_digit);
        if b[p] == b'-' {
            p += 1;
            match b.get(p) {
                None => return Err("unexpected EOF".into()),
                Some(c) if !c.is_ascii_digit() => {
                    return Err(format!(
                        "invalid character {} in numeric literal",
                        quote_char(*c)
                    ))
                }
                _ => {}
            }
        }
        if b[p] == b'0' {
            p += 1;
        } else {
            while digit(p) {
                p += 1;
            }
        }
        if b.get(p) == Some(&b'.') {
            p += 1;
            match b.get(p) {
                None => return Err("unexpected EOF".into()),
                Some(c) if !c.is_ascii_digit() => {
                    return Err(format!(
                        "invalid character {} after decimal point in numeric literal",
                        quote_char(*c)
                    ))
                }
                _ => {}
            }
            while digit(p) {
                p += 1;
            }
        }
        if matches!(b.get(p), Some(b'e' | b'E')) {
            p += 1;
            if matches!(b.get(p), Some(b'+' | b'-')) {
                p += 1;
            }
            match b.get(p) {
                None => return Err("unexpected EOF".into()),
                Some(c) if !c.is_ascii_digit() => {
                    return Err(format!(
                        "invalid character {} in exponent of numeric literal",
                        quote_char(*c)
                    ))
                }
                _ => {}
            }
            while digit(p) {
                p += 1;
            }
        }
        self.pos = p;
        let text = std::str::from_utf8(&b[start..p]).unwrap_or("0");
        parse_number(text)
            .map(Value::Number)
            .ok_or_else(|| "a number is required".to_string())
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let mut v = 0u32;
        for _ in 0..4 {
            let Some(c) = self.b.get(self.pos).copied() else {
                return Err("unexpected EOF".into());
            };
            let d = (c as char).to_digit(16).ok_or_else(|| {
                format!(
                    "invalid character {} in \\u hexadecimal character escape",
                    quote_char(c)
                )
            })?;
            v = v * 16 + d;
            self.pos += 1;
        }
        Ok(v)
    }

    fn string(&mut self) -> Result<String, String> {
        self.pos += 1; // opening quote
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(c) = self.b.get(self.pos).copied() else {
                return Err("unexpected EOF".into());
            };
            self.pos += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(e) = self.b.get(self.pos).copied() else {
                        return Err("unexpected EOF".into());
                    };
                    self.pos += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\x08',
                        b'f' => '\x0c',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            if (0xD800..0xDC00).contains(&hi)
                                && self.b.get(self.pos) == Some(&b'\\')
                                && self.b.get(self.pos + 1) == Some(&b'u')
                            {
                                let save = self.pos;
                                self.pos += 2;
                                let lo = self.hex4()?;
                                if (0xDC00..0xE000).contains(&lo) {
                                    char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                                        .unwrap_or('\u{fffd}')
                                } else {
                                    self.pos = save;
                                    '\u{fffd}'
                                }
                            } else {
                                char::from_u32(hi).unwrap_or('\u{fffd}')
                            }
                        }
                        other => {
                            return Err(format!(
                                "invalid character {} in string escape code",
                                quote_char(other)
                            ))
                        }
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                c if c < 0x20 => {
                    return Err(format!(
                        "invalid character {} in string literal",
                        quote_char(c)
                    ))
                }
                c => out.push(c),
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

/// A CSV problem, with the line Go's reader reports it on.
struct CsvError {
    line: usize,
    msg: &'static str,
}

const ERR_QUOTE: &str = "extraneous or missing \" in quoted-field";
const ERR_BARE_QUOTE: &str = "bare \" in non-quoted-field";

/// Reads records as Go's `encoding/csv` does by default: `,` separated, `"` quoting with `""`
/// escapes, CRLF read as LF, empty lines skipped. Each record comes with its first line.
fn csv_records(text: &str) -> Result<Vec<(usize, Vec<String>)>, CsvError> {
    // Physical lines, keeping their terminator, with "\r\n" folded to "\n" and a final "\r"
    // dropped, as Go's readLine does.
    let mut lines: Vec<String> = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (line, tail) = match rest.find('\n') {
            Some(i) => (&rest[..=i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let mut line = line.to_string();
        if line.ends_with("\r\n") {
            line.truncate(line.len() - 2);
            line.push('\n');
        } else if tail.is_empty() && line.ends_with('\r') {
            line.pop();
        }
        lines.push(line);
        rest = tail;
    }
    let mut records = Vec::new();
    let mut li = 0;
    while li < lines.len() {
        if lines[li] == "\n" {
            li += 1;
            continue;
        }
        let start_line = li + 1;
        let mut fields = Vec::new();
        let mut line: &str = &lines[li];
        li += 1;
        let mut pos = 0;
        'fields: loop {
            if line.as_bytes().get(pos) != Some(&b'"') {
                // Unquoted field: up to the next comma or the end of the line.
                let comma = line[pos..].find(',').map(|i| pos + i);
                let field_end = comma.unwrap_or_else(|| line.trim_end_matches('\n').len().max(pos));
                let field = &line[pos..field_end];
                if field.contains('"') {
                    return Err(CsvError {
                        line: li,
                        msg: ERR_BARE_QUOTE,
                    });
                }
                fields.push(field.to_string());
                match comma {
                    Some(c) => pos = c + 1,
                    None => break 'fields,
                }
                continue;
            }
            // Quoted field, possibly spanning lines.
            let mut field = String::new();
            pos += 1;
            loop {
                match line[pos..].find('"') {
                    Some(i) => {
                        field.push_str(&line[pos..pos + i]);
                        pos += i + 1;
                        match line.as_bytes().get(pos) {
                            Some(b'"') => {
                                field.push('"');
                                pos += 1;
                            }
                            Some(b',') => {
                                pos += 1;
                                fields.push(field);
                                continue 'fields;
                            }
                            Some(b'\n') | None => {
                                fields.push(field);
                                break 'fields;
                            }
                            Some(_) => {
                                return Err(CsvError {
                                    line: li,
                                    msg: ERR_QUOTE,
                                })
                            }
                        }
                    }
                    None => {
                        field.push_str(&line[pos..]);
                        if li >= lines.len() {
                            return Err(CsvError {
                                line: li,
                                msg: ERR_QUOTE,
                            });
                        }
                        line = &lines[li];
                        li += 1;
                        pos = 0;
                    }
                }
            }
        }
        records.push((start_line, fields));
    }
    Ok(records)
}

pub fn csvdecode(args: Vec<Value>) -> R {
    let records = csv_records(str_of(&args[0]))
        .map_err(|e| FuncError::call(format!("CSV parse error on line {}: {}", e.line, e.msg)))?;
    let mut records = records.into_iter();
    let Some((_, headers)) = records.next() else {
        return Err(FuncError::call("missing header line"));
    };
    for (i, h) in headers.iter().enumerate() {
        if headers[..i].contains(h) {
            return Err(FuncError::call(format!("duplicate column name {h:?}")));
        }
    }
    let mut rows = Vec::new();
    for (line, fields) in records {
        if fields.len() != headers.len() {
            return Err(FuncError::call(format!(
                "CSV parse error on line {line}: wrong number of fields"
            )));
        }
        let mut row: Map<String, Value> = headers
            .iter()
            .cloned()
            .zip(fields.into_iter().map(Value::String))
            .collect();
        row.sort_keys();
        rows.push(Value::Object(row));
    }
    Ok(Value::Array(rows))
}
