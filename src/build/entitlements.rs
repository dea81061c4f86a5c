//! `--allow`: the extra privileges (entitlements) a build may use, checked as buildx checks them
//! (BuildKit's `entitlements.Parse`) and sent as the solve's `entitlements`. Whether the daemon
//! grants them is its own configuration; this module only names them.

use anyhow::{bail, Result};

/// The entitlements BuildKit knows.
const KNOWN: &[&str] = &["security.insecure", "network.host", "device"];

/// `--allow` values, each checked; empty values are skipped. Values are not split on commas:
/// buildx takes each flag as one entitlement (`device=NAME[,alias=ALIAS]` has commas of its own).
pub fn parse(values: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for v in values.iter().filter(|v| !v.is_empty()) {
        check(v)?;
        if !out.contains(v) {
            out.push(v.clone());
        }
    }
    Ok(out)
}

/// BuildKit's `entitlements.Parse`: a known name, or `device` with an optional device config.
fn check(s: &str) -> Result<()> {
    let (key, rest) = s.split_once('=').unwrap_or((s, ""));
    if key == "device" {
        return check_device_config(rest);
    }
    if !KNOWN.contains(&s) {
        bail!("unknown entitlement {s}");
    }
    Ok(())
}

/// `device=NAME[,alias=ALIAS]` (empty: all devices).
fn check_device_config(s: &str) -> Result<()> {
    if s.is_empty() {
        return Ok(());
    }
    let fields = super::exporter::split_csv(s)?;
    for field in &fields[1..] {
        match field.split_once('=') {
            Some(("alias", _)) => {}
            Some((k, _)) => bail!("unknown device config key {k:?}"),
            None => bail!("invalid device config {field:?}"),
        }
    }
    Ok(())
}

/// The solve's entitlements: the allowed ones, plus `network.host` when the whole build runs on
/// the host network (as buildx adds it for `--network=host`).
pub fn for_solve(allowed: &[String], host_network: bool) -> Vec<String> {
    let mut out = allowed.to_vec();
    if host_network && !out.iter().any(|e| e == "network.host") {
        out.push("network.host".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn known_entitlements_pass() {
        assert_eq!(
            parse(&strings(&[
                "network.host",
                "",
                "security.insecure",
                "network.host"
            ]))
            .unwrap(),
            strings(&["network.host", "security.insecure"])
        );
        parse(&strings(&[
            "device",
            "device=/dev/fuse",
            "device=nvidia.com/gpu,alias=gpu",
        ]))
        .unwrap();
    }

    #[test]
    fn unknown_entitlements_fail_as_in_buildkit() {
        let e = |v: &str| parse(&strings(&[v])).unwrap_err().to_string();
        assert_eq!(e("bogus"), "unknown entitlement bogus");
        assert_eq!(
            e("network.host,security.insecure"),
            "unknown entitlement network.host,security.insecure"
        );
        assert_eq!(e("network.host=1"), "unknown entitlement network.host=1");
        assert_eq!(e("device=x,foo=1"), "unknown device config key \"foo\"");
    }

    #[test]
    fn host_network_adds_network_host_once() {
        assert_eq!(for_solve(&[], true), strings(&["network.host"]));
        assert_eq!(
            for_solve(&strings(&["network.host"]), true),
            strings(&["network.host"])
        );
        assert!(for_solve(&[], false).is_empty());
    }
}
