//! A builder's build cache: reading its records (`du`), pruning them, and rendering both as
//! buildx 0.29 does (its table, `--verbose` blocks, `json` lines and totals).
//!
//! Filters arrive as the user typed them (`--filter key=value`) and are turned once into what
//! BuildKit takes. This module asks nothing of the user; prompting is the command's business.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context as _, Result};
use bollard_buildkit_proto::moby::buildkit::v1 as control;
use kiln_drivers::Driver;
use serde_json::json;

use crate::builder::display::{human_size, tabwrite};
use crate::buildkit::BuildkitClient;
use crate::history::inspect::tab_padded;
use crate::history::json::go_compact;
use crate::history::time::{human_duration, now_nanos, parse_go_duration, rfc3339_nano, Nanos};

/// One cache record as BuildKit reports it.
pub type Record = control::UsageRecord;

/// `--filter` values turned into BuildKit's terms (buildx's `toBuildkitPruneInfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheFilter {
    /// `until=`/`unused-for=`: only records unused for this long (nanoseconds).
    pub keep_duration: Nanos,
    /// The other filters joined into one containerd-style filter expression.
    pub expr: String,
    /// Whether the user gave any filter at all (buildx then omits du's totals).
    pub given: bool,
}

impl CacheFilter {
    /// Parses `key=value` flags as Docker's `FilterOpt` and buildx do.
    pub fn parse(flags: &[String]) -> Result<CacheFilter> {
        let mut args: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for f in flags.iter().filter(|f| !f.is_empty()) {
            let (k, v) = f
                .split_once('=')
                .ok_or_else(|| anyhow!("bad format of filter (expected name=value)"))?;
            let values = args.entry(k.trim().to_lowercase()).or_default();
            let v = v.trim().to_string();
            if !values.contains(&v) {
                values.push(v);
            }
        }
        let until = args.get("until").cloned().unwrap_or_default();
        let unused_for = args.get("unused-for").cloned().unwrap_or_default();
        if !until.is_empty() && !unused_for.is_empty() {
            bail!("conflicting filters \"until\" and \"unused-for\"");
        }
        let until_key = if unused_for.is_empty() {
            "until"
        } else {
            "unused-for"
        };
        let durations: Vec<String> = until.into_iter().chain(unused_for).collect();
        let keep_duration = match durations.as_slice() {
            [] => 0,
            [d] => parse_go_duration(d).ok_or_else(|| {
                anyhow!(
                    "\"{until_key}\" filter expects a duration (e.g., '24h'): time: invalid duration \"{d}\""
                )
            })?,
            _ => bail!("filters expect only one value"),
        };
        let mut parts = Vec::new();
        for (key, values) in &args {
            if key == until_key {
                continue;
            }
            match values.as_slice() {
                [] => parts.push(key.clone()),
                [v] if key == "id" => parts.push(format!("{key}~={v}")),
                [v] if key.ends_with('!') || key.ends_with('~') => parts.push(format!("{key}={v}")),
                [v] => parts.push(format!("{key}=={v}")),
                _ => bail!("filters expect only one value"),
            }
        }
        Ok(CacheFilter {
            keep_duration,
            expr: parts.join(","),
            given: !args.is_empty(),
        })
    }
}

/// What `prune` asks BuildKit to keep or free (bytes; 0 means unset).
#[derive(Debug, Clone, Default)]
pub struct PruneOptions {
    pub all: bool,
    pub filter: CacheFilter,
    pub reserved_space: i64,
    pub max_used_space: i64,
    pub min_free_space: i64,
}

/// The cache records of one node, smallest first (as BuildKit's Go client sorts them).
pub async fn disk_usage(driver: Arc<dyn Driver>, filter: &CacheFilter) -> Result<Vec<Record>> {
    let client = BuildkitClient::connect(driver).await?;
    let resp = client
        .control()
        .disk_usage(control::DiskUsageRequest {
            filter: vec![filter.expr.clone()],
            age_limit: 0,
        })
        .await
        .map_err(|s| anyhow!("failed to call diskusage: {}", s.message()))?;
    let mut records = resp.into_inner().record;
    records.sort_by(|a, b| a.size.cmp(&b.size).then_with(|| a.id.cmp(&b.id)));
    Ok(records)
}

/// Prunes one node, handing each removed record to `removed` as BuildKit reports it.
pub async fn prune(
    driver: Arc<dyn Driver>,
    opts: &PruneOptions,
    mut removed: impl FnMut(&Record),
) -> Result<()> {
    let client = BuildkitClient::connect(driver).await?;
    if opts.max_used_space != 0 || opts.min_free_space != 0 {
        let version = client
            .buildkit_version()
            .await
            .context("failed to load buildkit capabilities for prune")?;
        if !version.as_deref().is_some_and(at_least_v0_17) {
            bail!("buildkit v0.17.0+ is required for max-used-space and min-free-space filters");
        }
    }
    let mut stream = client
        .control()
        .prune(control::PruneRequest {
            filter: vec![opts.filter.expr.clone()],
            all: opts.all,
            keep_duration: opts.filter.keep_duration,
            reserved_space: opts.reserved_space,
            max_used_space: opts.max_used_space,
            min_free_space: opts.min_free_space,
        })
        .await
        .map_err(|s| anyhow!("failed to call prune: {}", s.message()))?
        .into_inner();
    while let Some(rec) = stream
        .message()
        .await
        .map_err(|s| anyhow!("{}", s.message()))?
    {
        removed(&rec);
    }
    Ok(())
}

/// `v0.17.0` or newer; versions that do not parse are given the benefit of the doubt.
fn at_least_v0_17(version: &str) -> bool {
    let v = version.trim_start_matches('v');
    let mut parts = v.split(['.', '-', '+']).map(|p| p.parse::<u64>());
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor) >= (0, 17),
        _ => true,
    }
}

/// `du`'s output formats (`--format`, `--verbose`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DuFormat {
    Table,
    Pretty,
    Json,
}

impl DuFormat {
    pub fn parse(format: Option<&str>, verbose: bool) -> Result<DuFormat> {
        match (format, verbose) {
            (Some(_), true) => bail!("--format and --verbose cannot be used together"),
            (None, true) | (Some("pretty"), _) => Ok(DuFormat::Pretty),
            (None, false) | (Some("table"), _) => Ok(DuFormat::Table),
            (Some("json"), _) => Ok(DuFormat::Json),
            (Some(other), _) => {
                bail!("unsupported --format {other:?} (kiln takes table, pretty or json)")
            }
        }
    }
}

/// `buildx du`'s whole output for records gathered from every node.
pub fn du_output(nodes: &[Vec<Record>], format: DuFormat, filtered: bool, now: Nanos) -> String {
    let records = nodes.iter().flatten();
    let mut out = String::new();
    match format {
        DuFormat::Table => {
            let mut t = String::from("ID\tRECLAIMABLE\tSIZE\tLAST ACCESSED\n");
            for r in records {
                let (id, size) = marked_id_and_size(r);
                t.push_str(&format!(
                    "{id}\t{}\t{size}\t{}\n",
                    !r.in_use,
                    last_accessed(r, now)
                ));
            }
            out.push_str(&tabwrite(&t, 10, 3));
        }
        DuFormat::Pretty => {
            for r in records {
                out.push_str(&pretty(r, now));
                out.push('\n');
            }
        }
        DuFormat::Json => {
            for r in records {
                out.push_str(&go_compact(&json!({
                    "CreatedAt": go_time(r.created_at.as_ref()),
                    "Description": r.description,
                    "ID": r.id,
                    "LastUsedAt": last_accessed(r, now),
                    "Mutable": r.mutable,
                    "Parents": if r.parents.is_empty() { json!(null) } else { json!(r.parents) },
                    "Reclaimable": !r.in_use,
                    "Shared": r.shared,
                    "Size": size_of(r),
                    "Type": r.record_type,
                    "UsageCount": r.usage_count,
                })));
                out.push('\n');
            }
        }
    }
    if format != DuFormat::Json && !filtered {
        out.push_str(&summary(nodes));
    }
    out
}

/// du's `--verbose` block for one record (buildx's pretty template).
fn pretty(r: &Record, now: Nanos) -> String {
    let mut s = format!("ID:           {}\n", r.id);
    if !r.parents.is_empty() {
        s.push_str("Parents:\n");
        for p in &r.parents {
            s.push_str(&format!(" - {p}\n"));
        }
    }
    s.push_str(&format!(
        "Created at:   {}\n",
        go_time(r.created_at.as_ref())
    ));
    s.push_str(&format!("Mutable:      {}\n", r.mutable));
    s.push_str(&format!("Reclaimable:  {}\n", !r.in_use));
    s.push_str(&format!("Shared:       {}\n", r.shared));
    s.push_str(&format!("Size:         {}\n", size_of(r)));
    if !r.description.is_empty() {
        s.push_str(&format!("Description:  {}\n", r.description));
    }
    s.push_str(&format!("Usage count:  {}\n", r.usage_count));
    let last = last_accessed(r, now);
    if !last.is_empty() {
        s.push_str(&format!("Last used:    {last}\n"));
    }
    if !r.record_type.is_empty() {
        s.push_str(&format!("Type:         {}\n", r.record_type));
    }
    s
}

/// du's totals: `Shared:`/`Private:` when anything is shared, then `Reclaimable:` and `Total:`.
fn summary(nodes: &[Vec<Record>]) -> String {
    let (mut total, mut reclaimable, mut shared) = (0i64, 0i64, 0i64);
    for r in nodes.iter().flatten() {
        if r.size > 0 {
            total += r.size;
            if !r.in_use {
                reclaimable += r.size;
            }
        }
        if r.shared {
            shared += r.size;
        }
    }
    let mut t = String::new();
    if shared > 0 {
        t.push_str(&format!("Shared:\t{}\n", human_size(shared as f64)));
        t.push_str(&format!(
            "Private:\t{}\n",
            human_size((total - shared) as f64)
        ));
    }
    t.push_str(&format!(
        "Reclaimable:\t{}\n",
        human_size(reclaimable as f64)
    ));
    t.push_str(&format!("Total:\t{}\n", human_size(total as f64)));
    tab_padded(&t)
}

/// Prints what `prune` removed as it arrives, the way buildx's tabwriter flushes it.
#[derive(Debug, Default)]
pub struct PruneReport {
    verbose: bool,
    header_done: bool,
    total: i64,
}

impl PruneReport {
    pub fn new(verbose: bool) -> PruneReport {
        PruneReport {
            verbose,
            ..PruneReport::default()
        }
    }

    /// The text to print for one removed record.
    pub fn removed(&mut self, r: &Record, now: Nanos) -> String {
        self.total += r.size;
        if self.verbose {
            return tab_padded(&verbose_block(r, now));
        }
        let mut t = String::new();
        if !self.header_done {
            t.push_str("ID\tRECLAIMABLE\tSIZE\tLAST ACCESSED\n");
            self.header_done = true;
        }
        let (id, size) = marked_id_and_size(r);
        t.push_str(&format!(
            "{id:<40}\t{:<5}\t{size:<10}\t{}\n",
            !r.in_use,
            last_accessed(r, now)
        ));
        tab_padded(&t)
    }

    /// The closing `Total:` line.
    pub fn total(&self) -> String {
        tab_padded(&format!("Total:\t{}\n", human_size(self.total as f64)))
    }
}

/// buildx's `printVerbose` for one record, before tab padding.
fn verbose_block(r: &Record, now: Nanos) -> String {
    let mut kv = vec![("ID", r.id.clone())];
    if !r.parents.is_empty() {
        kv.push(("Parent", r.parents.join(",")));
    }
    kv.push(("Created at", go_time(r.created_at.as_ref())));
    kv.push(("Mutable", r.mutable.to_string()));
    kv.push(("Reclaimable", (!r.in_use).to_string()));
    kv.push(("Shared", r.shared.to_string()));
    kv.push(("Size", size_of(r)));
    if !r.description.is_empty() {
        kv.push(("Description", r.description.clone()));
    }
    kv.push(("Usage count", r.usage_count.to_string()));
    let last = last_accessed(r, now);
    if !last.is_empty() {
        kv.push(("Last used", last));
    }
    if !r.record_type.is_empty() {
        kv.push(("Type", r.record_type.clone()));
    }
    let mut s: String = kv.iter().map(|(k, v)| format!("{k}:\t{v}\n")).collect();
    s.push('\n');
    s
}

fn size_of(r: &Record) -> String {
    human_size(r.size as f64)
}

/// `5 minutes ago`, or empty for a record never used.
fn last_accessed(r: &Record, now: Nanos) -> String {
    match &r.last_used_at {
        Some(t) => format!("{} ago", human_duration(now - ts_nanos(t))),
        None => String::new(),
    }
}

fn ts_nanos(t: &bollard_buildkit_proto::google::protobuf::Timestamp) -> Nanos {
    t.seconds * 1_000_000_000 + i64::from(t.nanos)
}

/// Go's `time.Time.String()` for a UTC time: `2026-11-23 17:25:27.123 +0000 UTC`.
fn go_time(t: Option<&bollard_buildkit_proto::google::protobuf::Timestamp>) -> String {
    let n = t.map(ts_nanos).unwrap_or(0);
    let s = rfc3339_nano(n, 0);
    format!(
        "{} +0000 UTC",
        s.trim_end_matches('Z').replacen('T', " ", 1)
    )
}

/// The current time, for "... ago".
pub fn now() -> Nanos {
    now_nanos()
}

/// Docker's `MemBytes` flag values (`go-units`' `RAMInBytes`: `512m`, `1.5GiB`, `10GB` are binary).
pub fn parse_mem_bytes(s: &str) -> Result<i64, String> {
    let invalid = || format!("invalid size: '{s}'");
    let sep = s
        .rfind(|c: char| c.is_ascii_digit() || c == '.' || c == ' ')
        .ok_or_else(invalid)?;
    let (num, sfx) = if s.as_bytes()[sep] == b' ' {
        (&s[..sep], &s[sep + 1..])
    } else {
        (&s[..=sep], &s[sep + 1..])
    };
    let size: f64 = num.parse().map_err(|_| invalid())?;
    if size < 0.0 {
        return Err(invalid());
    }
    if sfx.is_empty() {
        return Ok(size as i64);
    }
    let bad = || format!("invalid suffix: '{}'", sfx.to_lowercase());
    if sfx.len() > 3 {
        return Err(bad());
    }
    let sfx = sfx.to_lowercase();
    if sfx.starts_with('b') {
        return if sfx.len() > 1 {
            Err(bad())
        } else {
            Ok(size as i64)
        };
    }
    let mul: f64 = match sfx.as_bytes()[0] {
        b'k' => 1024f64,
        b'm' => 1024f64.powi(2),
        b'g' => 1024f64.powi(3),
        b't' => 1024f64.powi(4),
        b'p' => 1024f64.powi(5),
        _ => return Err(bad()),
    };
    match sfx.len() {
        2 if &sfx[1..] != "b" => return Err(bad()),
        3 if &sfx[1..] != "ib" => return Err(bad()),
        _ => {}
    }
    Ok((size * mul) as i64)
}

/// A record's ID and size as buildx's tables show them: `*` marks a mutable record's ID and a
/// shared record's size.
fn marked_id_and_size(r: &Record) -> (String, String) {
    let id = if r.mutable {
        format!("{}*", r.id)
    } else {
        r.id.clone()
    };
    let size = if r.shared {
        format!("{}*", size_of(r))
    } else {
        size_of(r)
    };
    (id, size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_buildkit_proto::google::protobuf::Timestamp;

    fn filter(flags: &[&str]) -> Result<CacheFilter> {
        CacheFilter::parse(&flags.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn filters_become_buildkit_expressions() {
        let f = filter(&["until=24h", "description~=marker", "type=regular", "id=abc"]).unwrap();
        assert_eq!(f.keep_duration, 24 * 3600 * 1_000_000_000);
        assert_eq!(f.expr, "description~=marker,id~=abc,type==regular");
        assert!(f.given);
        assert_eq!(filter(&[]).unwrap(), CacheFilter::default());
        assert!(filter(&["until=1h", "unused-for=2h"]).is_err());
        assert!(filter(&["type=a", "type=b"]).is_err());
        assert!(filter(&["nokey"]).is_err());
        let e = filter(&["until=soon"]).unwrap_err().to_string();
        assert_eq!(
            e,
            "\"until\" filter expects a duration (e.g., '24h'): time: invalid duration \"soon\""
        );
    }

    #[test]
    fn sizes_parse_like_docker_membytes() {
        assert_eq!(parse_mem_bytes("512").unwrap(), 512);
        assert_eq!(parse_mem_bytes("1k").unwrap(), 1024);
        assert_eq!(parse_mem_bytes("1.5GiB").unwrap(), 1_610_612_736);
        assert_eq!(parse_mem_bytes("10MB").unwrap(), 10 * 1024 * 1024);
        assert!(parse_mem_bytes("10x").is_err());
        assert!(parse_mem_bytes("big").is_err());
    }

    fn record(id: &str, size: i64, in_use: bool) -> Record {
        Record {
            id: id.into(),
            size,
            in_use,
            created_at: Some(Timestamp {
                seconds: 1_795_450_657,
                nanos: 729_095_000,
            }),
            last_used_at: Some(Timestamp {
                seconds: 1_795_450_657,
                nanos: 0,
            }),
            usage_count: 1,
            description: "mount / from exec /bin/sh -c true".into(),
            record_type: "regular".into(),
            ..Record::default()
        }
    }

    #[test]
    fn du_table_and_totals_read_like_buildx() {
        let now = 1_795_450_657 * 1_000_000_000 + 300 * 1_000_000_000;
        let recs = vec![vec![
            record("qwerty1234567890abcdefghi", 4096, false),
            record("zxcvb", 1_234_567, true),
        ]];
        let out = du_output(&recs, DuFormat::Table, false, now);
        assert_eq!(
            out,
            "ID                          RECLAIMABLE   SIZE      LAST ACCESSED\n\
             qwerty1234567890abcdefghi   true          4.096kB   5 minutes ago\n\
             zxcvb                       false         1.235MB   5 minutes ago\n\
             Reclaimable:\t4.096kB\n\
             Total:\t\t1.239MB\n"
        );
        let filtered = du_output(&recs, DuFormat::Table, true, now);
        assert!(!filtered.contains("Total:"));
    }

    #[test]
    fn du_pretty_and_prune_verbose_read_like_buildx() {
        let now = 1_795_450_657 * 1_000_000_000 + 2 * 1_000_000_000;
        let r = record("abc", 0, false);
        assert_eq!(
            pretty(&r, now),
            "ID:           abc\n\
             Created at:   2026-11-23 16:17:37.729095 +0000 UTC\n\
             Mutable:      false\n\
             Reclaimable:  true\n\
             Shared:       false\n\
             Size:         0B\n\
             Description:  mount / from exec /bin/sh -c true\n\
             Usage count:  1\n\
             Last used:    2 seconds ago\n\
             Type:         regular\n"
        );
        let mut report = PruneReport::new(true);
        assert_eq!(
            report.removed(&r, now),
            "ID:\t\tabc\n\
             Created at:\t2026-11-23 16:17:37.729095 +0000 UTC\n\
             Mutable:\tfalse\n\
             Reclaimable:\ttrue\n\
             Shared:\t\tfalse\n\
             Size:\t\t0B\n\
             Description:\tmount / from exec /bin/sh -c true\n\
             Usage count:\t1\n\
             Last used:\t2 seconds ago\n\
             Type:\t\tregular\n\n"
        );
        assert_eq!(report.total(), "Total:\t0B\n");
    }

    #[test]
    fn prune_rows_flush_like_buildx() {
        let now = 1_795_450_657 * 1_000_000_000;
        let mut report = PruneReport::new(false);
        let first = report.removed(&record("qwerty1234567890abcdefghi", 4096, false), now);
        assert_eq!(
            first,
            "ID\t\t\t\t\t\tRECLAIMABLE\tSIZE\t\tLAST ACCESSED\n\
             qwerty1234567890abcdefghi               \ttrue \t\t4.096kB   \tLess than a second ago\n"
        );
        let second = report.removed(&record("abc", 10, false), now);
        assert_eq!(
            second,
            "abc                                     \ttrue \t10B       \tLess than a second ago\n"
        );
        assert_eq!(report.total(), "Total:\t4.106kB\n");
    }

    #[test]
    fn versions_gate_space_filters() {
        assert!(at_least_v0_17("v0.17.0"));
        assert!(at_least_v0_17("v0.25.1"));
        assert!(!at_least_v0_17("v0.12.5"));
        assert!(at_least_v0_17("unknown"));
    }
}
