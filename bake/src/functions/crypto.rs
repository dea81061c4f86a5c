//! Hashing, `bcrypt`, `rsadecrypt` and UUID functions.

use base64::Engine;
use hcl::Value;
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

use super::value::{go_quote, str_of, to_int};
use super::FuncError;

type R = Result<Value, FuncError>;

fn hex_digest<D: Digest>(args: &[Value]) -> R {
    Ok(Value::String(hex::encode(D::digest(
        str_of(&args[0]).as_bytes(),
    ))))
}

pub fn md5(args: Vec<Value>) -> R {
    hex_digest::<Md5>(&args)
}

pub fn sha1(args: Vec<Value>) -> R {
    hex_digest::<Sha1>(&args)
}

pub fn sha256(args: Vec<Value>) -> R {
    hex_digest::<Sha256>(&args)
}

pub fn sha512(args: Vec<Value>) -> R {
    hex_digest::<Sha512>(&args)
}

pub fn bcrypt(args: Vec<Value>) -> R {
    let mut cost: i64 = 10;
    if args.len() > 1 {
        cost = to_int(&args[1]).map_err(FuncError::call)?;
    }
    if args.len() > 2 {
        return Err(FuncError::call("bcrypt() takes no more than two arguments"));
    }
    let password = str_of(&args[0]);
    let fail = |why: String| FuncError::call(format!("error occured generating password {why}"));
    if password.len() > 72 {
        return Err(fail("bcrypt: password length exceeds 72 bytes".into()));
    }
    // Go's bcrypt raises a too-low cost to the default and rejects a too-high one.
    if cost < 4 {
        cost = 10;
    }
    if cost > 31 {
        return Err(fail(format!(
            "crypto/bcrypt: cost {cost} is outside allowed inclusive range 4..31"
        )));
    }
    let hashed =
        ::bcrypt::hash_with_result(password, cost as u32).map_err(|e| fail(e.to_string()))?;
    Ok(Value::String(
        hashed.format_for_version(::bcrypt::Version::TwoA),
    ))
}

/// The first PEM block in `text`: its headers and decoded body (Go's `pem.Decode`, which
/// skips blocks it cannot decode).
/// A PEM block's headers and decoded body.
type PemBlock = (Vec<(String, String)>, Vec<u8>);

fn pem_block(text: &str) -> Option<PemBlock> {
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + 11..];
        let type_end = after.find("-----")?;
        let kind = &after[..type_end];
        // The body starts on the line after `-----BEGIN TYPE-----`.
        let body_start = &after[type_end + 5..];
        let body_start = body_start
            .find('\n')
            .map_or(body_start, |i| &body_start[i + 1..]);
        let end_marker = format!("-----END {kind}-----");
        let Some(end) = body_start.find(&end_marker) else {
            rest = body_start;
            continue;
        };
        let body = &body_start[..end];
        let mut headers = Vec::new();
        let mut data = String::new();
        let mut in_headers = true;
        for line in body.lines() {
            let line = line.trim();
            if in_headers {
                if let Some((k, v)) = line.split_once(':') {
                    headers.push((k.trim().to_string(), v.trim().to_string()));
                    continue;
                }
                in_headers = false;
            }
            data.push_str(line);
        }
        match base64::engine::general_purpose::STANDARD.decode(data) {
            Ok(bytes) => return Some((headers, bytes)),
            Err(_) => rest = &body_start[end..],
        }
    }
    None
}

pub fn rsadecrypt(args: Vec<Value>) -> R {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;

    let ciphertext = str_of(&args[0]);
    let key = str_of(&args[1]);
    let raw = base64::engine::general_purpose::STANDARD
        .decode(ciphertext)
        .map_err(|_| {
            FuncError::call(format!(
                "failed to decode input {}: cipher text must be base64-encoded",
                go_quote(ciphertext)
            ))
        })?;
    let (headers, der) =
        pem_block(key).ok_or_else(|| FuncError::call("failed to parse key: no key found"))?;
    if headers
        .iter()
        .any(|(k, v)| k == "Proc-Type" && v == "4,ENCRYPTED")
    {
        return Err(FuncError::call("failed to parse key: password protected keys are not supported. Please decrypt the key prior to use"));
    }
    let private = rsa::RsaPrivateKey::from_pkcs1_der(&der).map_err(|_| {
        if rsa::RsaPrivateKey::from_pkcs8_der(&der).is_ok() {
            FuncError::call("x509: failed to parse private key (use ParsePKCS8PrivateKey instead for this key format)")
        } else {
            FuncError::call("x509: malformed private key")
        }
    })?;
    let plain = private
        .decrypt(rsa::Pkcs1v15Encrypt, &raw)
        .map_err(|_| FuncError::call("crypto/rsa: decryption error"))?;
    Ok(Value::String(String::from_utf8_lossy(&plain).into_owned()))
}

pub fn uuidv4(_args: Vec<Value>) -> R {
    Ok(Value::String(uuid::Uuid::new_v4().to_string()))
}

/// google/uuid's `Parse`: the standard form, `urn:uuid:` or brace wrapped, or 32 hex digits.
fn parse_uuid(s: &str) -> Result<uuid::Uuid, String> {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let byte = |x: usize, b: &[u8]| -> Option<u8> { Some(hex(b[x])? << 4 | hex(b[x + 1])?) };
    let body: &[u8] = match b.len() {
        36 => b,
        45 => {
            if !b[..9].eq_ignore_ascii_case(b"urn:uuid:") {
                let prefix = String::from_utf8_lossy(&b[..9]);
                return Err(format!("invalid urn prefix: {}", go_quote(&prefix)));
            }
            &b[9..]
        }
        38 => &b[1..],
        32 => {
            let mut out = [0u8; 16];
            for (i, o) in out.iter_mut().enumerate() {
                *o = byte(i * 2, b).ok_or("invalid UUID format")?;
            }
            return Ok(uuid::Uuid::from_bytes(out));
        }
        n => return Err(format!("invalid UUID length: {n}")),
    };
    if body[8] != b'-' || body[13] != b'-' || body[18] != b'-' || body[23] != b'-' {
        return Err("invalid UUID format".into());
    }
    let mut out = [0u8; 16];
    const AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
    for (o, x) in out.iter_mut().zip(AT) {
        *o = byte(x, body).ok_or("invalid UUID format")?;
    }
    Ok(uuid::Uuid::from_bytes(out))
}

pub fn uuidv5(args: Vec<Value>) -> R {
    let ns = str_of(&args[0]);
    let namespace = match ns {
        "dns" => uuid::Uuid::NAMESPACE_DNS,
        "url" => uuid::Uuid::NAMESPACE_URL,
        "oid" => uuid::Uuid::NAMESPACE_OID,
        "x500" => uuid::Uuid::NAMESPACE_X500,
        other => parse_uuid(other).map_err(|e| {
            FuncError::call(format!("uuidv5() doesn't support namespace {other} ({e})"))
        })?,
    };
    Ok(Value::String(
        uuid::Uuid::new_v5(&namespace, str_of(&args[1]).as_bytes()).to_string(),
    ))
}
