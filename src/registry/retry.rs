//! When a registry request that failed is worth repeating, and how long to wait first.
//!
//! Registries in front of CI runners (ghcr, Docker Hub, cloud registries behind load balancers)
//! answer the odd 502/503/504 or 429, or drop a connection before answering; containerd's and
//! Docker's clients repeat such requests, so kiln does too. This module owns only the policy
//! (which failures, how many attempts, the backoff, `Retry-After`); the client decides which
//! requests are safe to repeat and does the repeating.
//!
//! Backoff: 0.5 s before the first retry, doubling for each next one (1 s, 2 s, …), never more
//! than [`MAX_WAIT`]. A 429 or 503 with `Retry-After: SECONDS` waits that long instead, also
//! capped at [`MAX_WAIT`] so a registry cannot park kiln for minutes. No jitter: kiln's requests
//! to one registry are few and already spread by their own latency.

use std::time::Duration;

use http::{HeaderMap, StatusCode};

use super::Error;

/// Sets how many times a failed request is repeated (0 disables retrying).
pub const RETRIES_ENV: &str = "KILN_REGISTRY_RETRIES";
/// Repeats when [`RETRIES_ENV`] is unset: three attempts in all, as containerd's default.
const DEFAULT_RETRIES: u32 = 2;
/// More than this only delays the inevitable: with the doubling backoff it is over a minute.
const MAX_RETRIES: u32 = 10;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest kiln waits before one retry, whatever the registry's `Retry-After` says.
pub const MAX_WAIT: Duration = Duration::from_secs(10);

/// How many times to repeat a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    retries: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: DEFAULT_RETRIES,
        }
    }
}

impl RetryPolicy {
    /// The policy [`RETRIES_ENV`] asks for (`value` is its content, `None` when unset).
    pub fn from_env_value(value: Option<&str>) -> Result<RetryPolicy, Error> {
        let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
            return Ok(RetryPolicy::default());
        };
        match value.parse::<u32>() {
            Ok(retries) if retries <= MAX_RETRIES => Ok(RetryPolicy { retries }),
            _ => Err(Error::Invalid(format!(
                "{RETRIES_ENV} must be a number of retries from 0 to {MAX_RETRIES} \
                 (0 disables retrying), not {value:?}"
            ))),
        }
    }

    /// Attempts in all, the first included.
    pub fn attempts(self) -> u32 {
        self.retries + 1
    }

    /// How long to wait before retry number `retry` (1 for the first), given what the registry
    /// asked for with `Retry-After`.
    pub fn wait(self, retry: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(asked) => asked.min(MAX_WAIT),
            None => backoff(retry),
        }
    }
}

/// The backoff before retry number `retry` (1 for the first).
fn backoff(retry: u32) -> Duration {
    let doublings = retry.saturating_sub(1).min(16);
    (FIRST_BACKOFF * (1u32 << doublings)).min(MAX_WAIT)
}

/// Whether an answer with `status` says "try again later" rather than "this request is wrong":
/// gateway and availability errors, a request timeout, and rate limiting. Other 4xx never are.
pub fn retryable_status(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::REQUEST_TIMEOUT
            | StatusCode::TOO_MANY_REQUESTS
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT
    )
}

/// The wait a 429 or 503 asks for with `Retry-After` in its seconds form; the HTTP-date form
/// is rare from registries and falls back to the backoff.
pub fn retry_after(status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
    if status != StatusCode::TOO_MANY_REQUESTS && status != StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Whether a request that ended in `error` may be repeated: only when no answer came at all
/// (refused, reset or closed before a response). A timeout is not: it already took the full
/// timeout, and repeating it would multiply the time a dead registry costs.
pub fn retryable_error(error: &Error) -> bool {
    matches!(error, Error::Connect { .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_attempts_unless_the_environment_says_otherwise() {
        assert_eq!(RetryPolicy::from_env_value(None).unwrap().attempts(), 3);
        assert_eq!(RetryPolicy::from_env_value(Some("")).unwrap().attempts(), 3);
        assert_eq!(
            RetryPolicy::from_env_value(Some("0")).unwrap().attempts(),
            1
        );
        assert_eq!(
            RetryPolicy::from_env_value(Some(" 5 ")).unwrap().attempts(),
            6
        );
        for bad in ["-1", "many", "11", "2.5"] {
            let err = RetryPolicy::from_env_value(Some(bad)).unwrap_err();
            let text = err.to_string();
            assert!(text.starts_with("KILN_REGISTRY_RETRIES must be"), "{text}");
            assert!(text.contains(&format!("{bad:?}")), "{text}");
            assert_eq!(text.lines().count(), 1);
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy::default();
        let waits: Vec<u64> = (1..=7)
            .map(|n| p.wait(n, None).as_millis() as u64)
            .collect();
        assert_eq!(waits, vec![500, 1000, 2000, 4000, 8000, 10000, 10000]);
        assert_eq!(p.wait(1000, None), MAX_WAIT);
    }

    #[test]
    fn retry_after_is_honoured_but_capped() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.wait(1, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(p.wait(1, Some(Duration::from_secs(3600))), MAX_WAIT);
        assert_eq!(p.wait(2, Some(Duration::ZERO)), Duration::ZERO);
    }

    #[test]
    fn retry_after_is_read_in_its_seconds_form_on_429_and_503() {
        let mut h = HeaderMap::new();
        h.insert(http::header::RETRY_AFTER, " 7 ".parse().unwrap());
        assert_eq!(
            retry_after(StatusCode::TOO_MANY_REQUESTS, &h),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after(StatusCode::SERVICE_UNAVAILABLE, &h),
            Some(Duration::from_secs(7))
        );
        assert_eq!(retry_after(StatusCode::BAD_GATEWAY, &h), None);
        h.insert(
            http::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(StatusCode::TOO_MANY_REQUESTS, &h), None);
        assert_eq!(
            retry_after(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new()),
            None
        );
    }

    #[test]
    fn only_transient_answers_are_retried() {
        for s in [408, 429, 502, 503, 504] {
            assert!(retryable_status(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [
            200, 201, 202, 307, 400, 401, 403, 404, 405, 409, 416, 500, 501,
        ] {
            assert!(!retryable_status(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }

    #[test]
    fn only_failures_before_any_answer_are_retried() {
        let connect = Error::Connect {
            registry: "r".into(),
            detail: "connection refused".into(),
        };
        assert!(retryable_error(&connect));
        let timeout = Error::Timeout {
            registry: "r".into(),
            detail: "no response".into(),
        };
        assert!(!retryable_error(&timeout));
        assert!(!retryable_error(&Error::NotFound("x".into())));
        assert!(!retryable_error(&Error::DigestMismatch {
            what: "x".into()
        }));
    }
}
