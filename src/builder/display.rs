//! How builders look on screen: `ls`'s table and JSON lines and `inspect`'s report, byte for
//! byte as buildx 0.29.1 prints them (Go's `tabwriter`, `time.Duration` and `go-units` sizes
//! included), so scripts that read buildx's output read kiln's.

use serde::Serialize;

use super::{BrokenBuilder, Builder, GcPolicy, NodeInfo};
use crate::platform::{self, Platform};
use kiln_drivers::NodeStatus;

/// A builder as `ls` and `inspect` show it: live, or one that could not be loaded.
pub enum Shown<'a> {
    Loaded {
        builder: &'a Builder,
        nodes: &'a [NodeInfo],
    },
    Broken(&'a BrokenBuilder),
}

impl Shown<'_> {
    fn name(&self) -> &str {
        match self {
            Shown::Loaded { builder, .. } => &builder.name,
            Shown::Broken(b) => &b.name,
        }
    }

    /// A Docker-context builder whose daemon cannot be reached is shown as a builder-level
    /// error with no driver, as buildx shows it (it cannot tell which driver would apply).
    fn builder_error(&self) -> Option<String> {
        match self {
            Shown::Broken(b) => Some(b.error.clone()),
            Shown::Loaded { builder, nodes } if builder.docker_context => {
                nodes.iter().find_map(|n| n.error.clone())
            }
            Shown::Loaded { .. } => None,
        }
    }
}

const LS_HEADER: &str = "NAME/NODE\tDRIVER/ENDPOINT\tSTATUS\tBUILDKIT\tPLATFORMS\n";
const LS_INDENT: &str = " \\_ ";

/// `ls`'s table and the lines it prints on stderr about builders it could not load.
pub fn ls_table(builders: &[Shown<'_>], current: &str, trunc: bool) -> (String, Vec<String>) {
    let mut rows = String::from(LS_HEADER);
    let mut problems = Vec::new();
    for b in sorted_errors_last(builders) {
        let star = if b.name() == current { "*" } else { "" };
        if let Some(err) = b.builder_error() {
            rows.push_str(&format!("{}{star}\t\terror\t\t\n", b.name()));
            problems.push(format!("Cannot load builder {}: {}", b.name(), err.trim()));
            continue;
        }
        let Shown::Loaded { builder, nodes } = b else {
            continue;
        };
        rows.push_str(&format!(
            "{}{star}\t{}\t\t\t\n",
            builder.name, builder.driver_kind
        ));
        for (node, info) in builder.nodes.iter().zip(nodes.iter()) {
            let platforms = platform::format_in_groups(&node.platforms, &info.platforms);
            rows.push_str(&format!(
                "{LS_INDENT}{}\t{LS_INDENT}{}\t{}\t{}\t{}\n",
                node.name,
                node.stored_endpoint,
                status_word(info),
                info.version.as_deref().unwrap_or(""),
                if trunc {
                    truncate_platforms(&platforms, 4)
                } else {
                    platforms.join(", ")
                },
            ));
            if let Some(err) = &info.error {
                problems.push(format!(
                    "Failed to get status for {} ({}): {}",
                    builder.name,
                    node.name,
                    err.trim()
                ));
            }
        }
    }
    (tabwrite(&rows, 10, 3), problems)
}

/// Builders that failed to load go last, the rest keep their order (buildx's stable sort).
fn sorted_errors_last<'a, 'b>(builders: &'a [Shown<'b>]) -> Vec<&'a Shown<'b>> {
    let (ok, bad): (Vec<_>, Vec<_>) = builders.iter().partition(|b| b.builder_error().is_none());
    ok.into_iter().chain(bad).collect()
}

fn status_word(info: &NodeInfo) -> &'static str {
    if info.error.is_some() {
        "error"
    } else {
        info.status.word()
    }
}

/// One JSON object per builder and line, keys in buildx's (alphabetical) order.
pub fn ls_json(builders: &[Shown<'_>], current: &str) -> String {
    let mut out = String::new();
    for b in sorted_errors_last(builders) {
        let line = serde_json::to_string(&builder_json(b, b.name() == current))
            .expect("builder JSON always serialises");
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[derive(Serialize)]
struct BuilderJson {
    #[serde(rename = "Current")]
    current: bool,
    #[serde(rename = "Driver")]
    driver: String,
    #[serde(rename = "Dynamic")]
    dynamic: bool,
    #[serde(rename = "Err", skip_serializing_if = "Option::is_none")]
    err: Option<String>,
    #[serde(rename = "LastActivity")]
    last_activity: String,
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Nodes")]
    nodes: Vec<NodeJson>,
}

#[derive(Serialize, Default)]
struct NodeJson {
    #[serde(rename = "DriverOpts", skip_serializing_if = "Option::is_none")]
    driver_opts: Option<std::collections::BTreeMap<String, String>>,
    #[serde(rename = "Endpoint")]
    endpoint: String,
    #[serde(rename = "Err", skip_serializing_if = "Option::is_none")]
    err: Option<String>,
    #[serde(rename = "Flags", skip_serializing_if = "Option::is_none")]
    flags: Option<Vec<String>>,
    #[serde(rename = "GCPolicy", skip_serializing_if = "Option::is_none")]
    gc_policy: Option<Vec<GcJson>>,
    #[serde(rename = "IDs", skip_serializing_if = "Option::is_none")]
    ids: Option<Vec<String>>,
    #[serde(rename = "Labels", skip_serializing_if = "Option::is_none")]
    labels: Option<std::collections::BTreeMap<String, String>>,
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Platforms", skip_serializing_if = "Option::is_none")]
    platforms: Option<Vec<Platform>>,
    #[serde(rename = "Status", skip_serializing_if = "Option::is_none")]
    status: Option<String>,
    #[serde(rename = "Version", skip_serializing_if = "Option::is_none")]
    version: Option<String>,
}

#[derive(Serialize)]
struct GcJson {
    all: bool,
    filter: Option<Vec<String>>,
    #[serde(rename = "keepDuration")]
    keep_duration: i64,
    #[serde(rename = "maxUsedSpace")]
    max_used_space: i64,
    #[serde(rename = "minFreeSpace")]
    min_free_space: i64,
    #[serde(rename = "reservedSpace")]
    reserved_space: i64,
}

fn non_empty<C: Clone + Default + PartialEq>(c: &C) -> Option<C> {
    (*c != C::default()).then(|| c.clone())
}

fn builder_json(b: &Shown<'_>, current: bool) -> BuilderJson {
    let zero_time = "0001-01-01T00:00:00Z".to_string();
    if let Some(err) = b.builder_error() {
        let last_activity = match b {
            Shown::Loaded { builder, .. } => builder.last_activity,
            Shown::Broken(_) => None,
        };
        return BuilderJson {
            current,
            driver: match b {
                Shown::Broken(bb) => bb.driver.clone(),
                Shown::Loaded { .. } => String::new(),
            },
            dynamic: false,
            err: Some(err.trim().to_string()),
            last_activity: last_activity.map(|t| t.rfc3339()).unwrap_or(zero_time),
            name: b.name().to_string(),
            nodes: vec![NodeJson::default()],
        };
    }
    let Shown::Loaded { builder, nodes } = b else {
        unreachable!("broken builders always have an error")
    };
    BuilderJson {
        current,
        driver: builder.driver_kind.to_string(),
        dynamic: false,
        err: None,
        last_activity: builder
            .last_activity
            .map(|t| t.rfc3339())
            .unwrap_or(zero_time),
        name: builder.name.clone(),
        nodes: builder
            .nodes
            .iter()
            .zip(nodes.iter())
            .map(|(n, info)| NodeJson {
                driver_opts: non_empty(&n.driver_opts),
                endpoint: n.stored_endpoint.clone(),
                err: info.error.as_ref().map(|e| e.trim().to_string()),
                flags: non_empty(&n.buildkitd_flags),
                gc_policy: (!info.gc_policy.is_empty()).then(|| {
                    info.gc_policy
                        .iter()
                        .map(|p| GcJson {
                            all: p.all,
                            filter: non_empty(&p.filters),
                            keep_duration: p.keep_duration,
                            max_used_space: p.max_used_space,
                            min_free_space: p.min_free_space,
                            reserved_space: p.reserved_space,
                        })
                        .collect()
                }),
                ids: non_empty(&info.worker_ids),
                labels: non_empty(&info.labels),
                name: n.name.clone(),
                platforms: non_empty(&info.platforms),
                status: Some(status_word(info).to_string()),
                version: info.version.clone(),
            })
            .collect(),
    }
}

/// `inspect`'s report.
pub fn inspect(b: &Shown<'_>) -> String {
    let mut t = String::new();
    let (driver, last_activity) = match b {
        Shown::Loaded { builder, .. } if !builder.docker_context || b.builder_error().is_none() => {
            (builder.driver_kind.to_string(), builder.last_activity)
        }
        Shown::Loaded { builder, .. } => (String::new(), builder.last_activity),
        Shown::Broken(bb) => (bb.driver.clone(), None),
    };
    t.push_str(&format!("Name:\t{}\n", b.name()));
    t.push_str(&format!("Driver:\t{driver}\n"));
    if let Some(at) = last_activity {
        t.push_str(&format!("Last Activity:\t{}\n", at.go_display()));
    }
    if let Some(err) = b.builder_error() {
        t.push_str(&format!("Error:\t{err}\n"));
        return tabwrite(&t, 0, 1);
    }
    let Shown::Loaded { builder, nodes } = b else {
        unreachable!("broken builders always have an error")
    };
    t.push_str("\nNodes:\n");
    for (i, (n, info)) in builder.nodes.iter().zip(nodes.iter()).enumerate() {
        if i > 0 {
            t.push('\n');
        }
        t.push_str(&format!("Name:\t{}\n", n.name));
        t.push_str(&format!("Endpoint:\t{}\n", n.stored_endpoint));
        if !n.driver_opts.is_empty() {
            let opts: Vec<String> = n
                .driver_opts
                .iter()
                .map(|(k, v)| format!("{k}={}", go_quote(v)))
                .collect();
            t.push_str(&format!("Driver Options:\t{}\n", opts.join(" ")));
        }
        if let Some(err) = &info.error {
            t.push_str(&format!("Error:\t{err}\n"));
            continue;
        }
        t.push_str(&format!("Status:\t{}\n", info.status.word()));
        if let NodeStatus::Inactive(reason) = &info.status {
            if !reason.is_empty() {
                t.push_str(&format!("Reason:\t{reason}\n"));
            }
        }
        if !n.buildkitd_flags.is_empty() {
            t.push_str(&format!(
                "BuildKit daemon flags:\t{}\n",
                n.buildkitd_flags.join(" ")
            ));
        }
        if let Some(v) = info.version.as_deref().filter(|v| !v.is_empty()) {
            t.push_str(&format!("BuildKit version:\t{v}\n"));
        }
        let platforms = platform::format_in_groups(&n.platforms, &info.platforms);
        if !platforms.is_empty() {
            t.push_str(&format!("Platforms:\t{}\n", platforms.join(", ")));
        }
        if !info.labels.is_empty() {
            t.push_str("Labels:\n");
            for (k, v) in &info.labels {
                t.push_str(&format!("\t{k}:\t{v}\n"));
            }
        }
        for (ri, rule) in info.gc_policy.iter().enumerate() {
            push_gc_rule(&mut t, ri, rule);
        }
        for (f, content) in &n.files {
            t.push_str(&format!("File#{f}:\n"));
            for line in content.split('\n') {
                t.push_str(&format!("\t> {line}\n"));
            }
        }
    }
    tabwrite(&t, 0, 1)
}

fn push_gc_rule(t: &mut String, index: usize, rule: &GcPolicy) {
    t.push_str(&format!("GC Policy rule#{index}:\n"));
    t.push_str(&format!("\tAll:\t{}\n", rule.all));
    if !rule.filters.is_empty() {
        t.push_str(&format!("\tFilters:\t{}\n", rule.filters.join(" ")));
    }
    if rule.keep_duration > 0 {
        t.push_str(&format!(
            "\tKeep Duration:\t{}\n",
            go_duration(rule.keep_duration)
        ));
    }
    for (label, v) in [
        ("Reserved Space", rule.reserved_space),
        ("Max Used Space", rule.max_used_space),
        ("Min Free Space", rule.min_free_space),
    ] {
        if v > 0 {
            t.push_str(&format!("\t{label}:\t{}\n", bytes_size(v as f64)));
        }
    }
}

/// Go's `%q` for the plain strings driver options hold.
fn go_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// Go's `time.Duration.String()` (`48h0m0s`, `1.5s`, `300ms`).
pub fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let neg = ns < 0;
    let u = ns.unsigned_abs();
    let sign = if neg { "-" } else { "" };
    if u < 1_000_000_000 {
        let (unit, div) = match u {
            0..1_000 => ("ns", 1),
            1_000..1_000_000 => ("µs", 1_000),
            _ => ("ms", 1_000_000),
        };
        return format!("{sign}{}{unit}", fraction(u, div));
    }
    let secs = u / 1_000_000_000;
    let (h, m) = (secs / 3600, secs % 3600 / 60);
    let s = fraction(u % 60_000_000_000, 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{sign}{s}s"),
        (0, m) => format!("{sign}{m}m{s}s"),
        (h, m) => format!("{sign}{h}h{m}m{s}s"),
    }
}

/// `v / div` with the fractional digits Go keeps (no trailing zeros).
fn fraction(v: u64, div: u64) -> String {
    let whole = v / div;
    let rem = v % div;
    if rem == 0 {
        return whole.to_string();
    }
    let width = div.ilog10() as usize;
    let digits = format!("{rem:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// `go-units`' `BytesSize`: binary units, four significant digits (`3.346GiB`).
pub fn bytes_size(mut size: f64) -> String {
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let mut i = 0;
    while size >= 1024.0 && i < UNITS.len() - 1 {
        size /= 1024.0;
        i += 1;
    }
    format!("{}{}", go_g4(size), UNITS[i])
}

/// `go-units`' `HumanSize`: decimal units, four significant digits (`1.235MB`).
pub fn human_size(mut size: f64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut i = 0;
    while size >= 1000.0 && i < UNITS.len() - 1 {
        size /= 1000.0;
        i += 1;
    }
    format!("{}{}", go_g4(size), UNITS[i])
}

/// Go's `%.4g` for the non-negative values below 1024 that `bytes_size` formats.
fn go_g4(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let sci = format!("{v:.3e}");
    let exp: i32 = sci
        .split_once('e')
        .and_then(|(_, e)| e.parse().ok())
        .unwrap_or(0);
    if !(-4..4).contains(&exp) {
        let (mantissa, _) = sci.split_once('e').unwrap_or((&sci, ""));
        let mantissa = trim_fraction(mantissa);
        return format!(
            "{mantissa}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        );
    }
    let decimals = (3 - exp).max(0) as usize;
    trim_fraction(&format!("{v:.decimals$}")).to_string()
}

fn trim_fraction(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

const TRUNC_MAJOR: &[&str] = &[
    "linux/amd64",
    "linux/arm64",
    "linux/arm",
    "linux/ppc64le",
    "linux/s390x",
    "linux/riscv64",
    "linux/mips64",
];

/// `os/arch` of a formatted platform (`linux/amd64/v2*` → `linux/amd64`).
fn os_arch(p: &str) -> String {
    p.trim_end_matches('*')
        .split('/')
        .take(2)
        .collect::<Vec<_>>()
        .join("/")
}

/// `ls`'s short platform list: variants folded under their `os/arch` (`linux/amd64 (+4)`), at
/// most `max` groups, the rest counted (`(3 more)`). Mirrors buildx's `truncPlatforms`.
pub fn truncate_platforms(pfs: &[String], max: usize) -> String {
    let mut groups: std::collections::BTreeMap<String, Vec<&String>> = Default::default();
    for major in TRUNC_MAJOR {
        for p in pfs {
            if groups.len() >= max {
                break;
            }
            if os_arch(p) == *major {
                groups.entry(major.to_string()).or_default().push(p);
            }
        }
    }
    let mut left: std::collections::BTreeMap<String, Vec<&String>> = Default::default();
    for p in pfs {
        if groups.len() >= max {
            break;
        }
        let key = os_arch(p);
        if !groups.contains_key(&key) {
            left.entry(key).or_default().push(p);
        }
    }
    groups.extend(left);

    let render = |key: &str, members: &[&String]| {
        if members.len() == 1 {
            members[0].clone()
        } else {
            let star = if members.iter().any(|p| p.ends_with('*')) {
                "*"
            } else {
                ""
            };
            format!("{key}{star} (+{})", members.len())
        }
    };
    let mut out = Vec::new();
    let mut count = 0;
    for major in TRUNC_MAJOR {
        if let Some(m) = groups.get(*major) {
            out.push(render(major, m));
            count += m.len();
        }
    }
    for (key, m) in &groups {
        if out.len() >= max {
            break;
        }
        if TRUNC_MAJOR.contains(&key.as_str()) {
            continue;
        }
        out.push(render(key, m));
        count += m.len();
    }
    if pfs.len() > count {
        out.push(format!("({} more)", pfs.len() - count));
    }
    out.join(", ")
}

/// Go's `text/tabwriter` with `' '` padding and no flags: tab-terminated cells are aligned in
/// columns; a column block ends at the first line without a cell in that column.
pub fn tabwrite(text: &str, minwidth: usize, padding: usize) -> String {
    let lines: Vec<Vec<&str>> = text.split('\n').map(|l| l.split('\t').collect()).collect();
    let mut out = String::new();
    let mut widths = Vec::new();
    format_block(
        &lines,
        &mut widths,
        0,
        lines.len(),
        minwidth,
        padding,
        &mut out,
    );
    out
}

fn cell_width(s: &str) -> usize {
    s.chars().count()
}

fn format_block(
    lines: &[Vec<&str>],
    widths: &mut Vec<usize>,
    mut line0: usize,
    line1: usize,
    minwidth: usize,
    padding: usize,
    out: &mut String,
) {
    let column = widths.len();
    let mut this = line0;
    while this < line1 {
        if column + 1 >= lines[this].len() {
            this += 1;
            continue;
        }
        write_lines(lines, widths, line0, this, out);
        line0 = this;
        let mut width = minwidth;
        while this < line1 && column + 1 < lines[this].len() {
            width = width.max(cell_width(lines[this][column]) + padding);
            this += 1;
        }
        widths.push(width);
        format_block(lines, widths, line0, this, minwidth, padding, out);
        widths.pop();
        line0 = this;
    }
    write_lines(lines, widths, line0, line1, out);
}

fn write_lines(lines: &[Vec<&str>], widths: &[usize], from: usize, to: usize, out: &mut String) {
    for (i, line) in lines.iter().enumerate().take(to).skip(from) {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if j < widths.len() {
                out.extend(std::iter::repeat_n(
                    ' ',
                    widths[j].saturating_sub(cell_width(cell)),
                ));
            }
        }
        // The text after the last newline is an unterminated line.
        if i + 1 < lines.len() {
            out.push('\n');
        }
    }
}

/// The status `rm --all-inactive` goes by: a node counts as running only when it answered.
pub fn is_inactive(nodes: &[NodeInfo]) -> bool {
    !nodes
        .iter()
        .any(|n| n.error.is_none() && n.status == NodeStatus::Running)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_go() {
        assert_eq!(go_duration(172_800_000_000_000), "48h0m0s");
        assert_eq!(go_duration(5_184_000_000_000_000), "1440h0m0s");
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(300_000_000), "300ms");
        assert_eq!(go_duration(0), "0s");
    }

    #[test]
    fn sizes_read_like_go_units() {
        assert_eq!(bytes_size(3_592_570_859.0), "3.346GiB");
        assert_eq!(bytes_size(26_000_000_000.0), "24.21GiB");
        assert_eq!(bytes_size(202_000_000_000.0), "188.1GiB");
        assert_eq!(bytes_size(51_000_000_000.0), "47.5GiB");
        assert_eq!(bytes_size(512.0), "512B");
        assert_eq!(bytes_size(1024.0), "1KiB");
    }

    #[test]
    fn platforms_fold_like_buildx() {
        let p: Vec<String> = [
            "linux/amd64",
            "linux/amd64/v2",
            "linux/amd64/v3",
            "linux/amd64/v4",
            "linux/arm64",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(truncate_platforms(&p, 4), "linux/amd64 (+4), linux/arm64");
        let p: Vec<String> = ["linux/amd64", "linux/arm64", "linux/386"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            truncate_platforms(&p, 4),
            "linux/amd64, linux/arm64, linux/386"
        );
        let p: Vec<String> = [
            "linux/arm64*",
            "linux/amd64",
            "linux/riscv64",
            "linux/ppc64le",
            "linux/s390x",
            "linux/386",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            truncate_platforms(&p, 4),
            "linux/amd64, linux/arm64*, linux/ppc64le, linux/s390x, (2 more)"
        );
    }

    #[test]
    fn tabwriter_matches_go() {
        let t = "Name:\tdefault\nDriver:\tdocker\n\nNodes:\nName:\tx\nBuildKit version:\tv\nLabels:\n\tk:\tv\n\tlonger:\tw\n";
        assert_eq!(
            tabwrite(t, 0, 1),
            "Name:   default\nDriver: docker\n\nNodes:\nName:             x\nBuildKit version: v\nLabels:\n k:      v\n longer: w\n"
        );
        let ls = "NAME/NODE\tDRIVER/ENDPOINT\tSTATUS\tBUILDKIT\tPLATFORMS\ndefault*\tdocker\t\t\t\n \\_ default\t \\_ default\trunning\tv0.8+unknown\tlinux/amd64\n";
        // Empty trailing cells are still padded: the builder row ends in spaces, as buildx's.
        let expected = format!(
            "NAME/NODE     DRIVER/ENDPOINT   STATUS    BUILDKIT       PLATFORMS\n\
             default*      docker{}\n \
             \\_ default    \\_ default       running   v0.8+unknown   linux/amd64\n",
            " ".repeat(12 + 10 + 15)
        );
        assert_eq!(tabwrite(ls, 10, 3), expected);
    }
}
