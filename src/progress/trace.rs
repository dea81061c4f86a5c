//! The state the tty and plain displays render from: every vertex seen in the status stream,
//! its time intervals, statuses, log lines and warnings.
//!
//! This follows the bookkeeping of BuildKit's `progressui` trace (numbering, interval merging,
//! progress groups, how log chunks are split into timestamped lines) because buildx's output is
//! a direct function of it. It does no output itself.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use bollard_buildkit_proto::moby::buildkit::v1::{
    StatusResponse, Vertex as PbVertex, VertexStatus as PbStatus, VertexWarning,
};
use bollard_buildkit_proto::pb::ProgressGroup;

use super::format::{opt_timestamp_nanos, seconds_between, timestamp_nanos, Nanos};
use super::term::VirtualTerm;

/// How many recent log lines the plain display keeps per vertex for the error block.
pub(crate) const LOGS_BUFFER_SIZE: usize = 10;

/// A vertex error that only means the build was interrupted, which buildx shows as CANCELED.
pub(crate) fn is_canceled(error: &str) -> bool {
    error.ends_with("context canceled")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Interval {
    pub start: Nanos,
    pub stop: Option<Nanos>,
}

impl Interval {
    pub fn seconds(&self, now: Nanos) -> f64 {
        seconds_between(self.start, self.stop.unwrap_or(now))
    }
}

/// Combines overlapping intervals; an open interval swallows every interval after it.
pub(crate) fn merge_intervals(mut intervals: Vec<Interval>) -> Vec<Interval> {
    if intervals.is_empty() {
        return Vec::new();
    }
    intervals.sort_by_key(|i| i.start);
    let mut merged = Vec::new();
    let mut cur = intervals[0];
    for next in intervals.into_iter().skip(1) {
        let Some(cur_stop) = cur.stop else {
            merged.push(cur);
            return merged;
        };
        if cur_stop < next.start {
            merged.push(cur);
            cur = next;
            continue;
        }
        let Some(next_stop) = next.stop else {
            merged.push(Interval {
                start: cur.start,
                stop: None,
            });
            return merged;
        };
        if cur_stop >= next_stop {
            continue;
        }
        cur = Interval {
            start: cur.start,
            stop: Some(next_stop),
        };
    }
    merged.push(cur);
    merged
}

/// The last values of a vertex message that decide whether a new message is news.
#[derive(Clone, Debug, Default)]
struct VertexSnapshot {
    digest: String,
    name: String,
    started: Option<Nanos>,
    cached: bool,
    error: String,
}

#[derive(Clone, Debug)]
pub(crate) struct StatusEntry {
    pub id: String,
    pub current: i64,
    pub total: i64,
    pub timestamp: Nanos,
    pub started: Option<Nanos>,
    pub completed: Option<Nanos>,
}

impl StatusEntry {
    fn from_pb(s: &PbStatus) -> Self {
        StatusEntry {
            id: s.id.clone(),
            current: s.current,
            total: s.total,
            timestamp: s.timestamp.as_ref().map(timestamp_nanos).unwrap_or(0),
            started: opt_timestamp_nanos(&s.started),
            completed: opt_timestamp_nanos(&s.completed),
        }
    }
}

/// The plain display's ring of recent log lines; a partial line occupies the current slot
/// until its newline arrives.
#[derive(Clone, Debug)]
pub(crate) struct LogRing {
    slots: Vec<Option<Vec<u8>>>,
    pos: usize,
}

impl LogRing {
    pub fn new() -> Self {
        LogRing {
            slots: vec![None; LOGS_BUFFER_SIZE],
            pos: 0,
        }
    }

    pub fn set_current(&mut self, line: Vec<u8>) {
        self.slots[self.pos] = Some(line);
    }

    pub fn advance(&mut self) {
        self.pos = (self.pos + 1) % self.slots.len();
    }

    /// Oldest first, starting at the slot that will be overwritten next.
    pub fn lines(&self) -> impl Iterator<Item = &Vec<u8>> {
        let n = self.slots.len();
        (0..n).filter_map(move |i| self.slots[(self.pos + i) % n].as_ref())
    }
}

pub(crate) struct Vtx {
    pub digest: String,
    pub name: String,
    pub cached: bool,
    pub error: String,
    /// Set on real vertexes that belong to a progress group; those are shown via the group.
    pub progress_group: Option<ProgressGroup>,
    prev: Option<VertexSnapshot>,

    /// Status ids in the order they started.
    pub statuses: Vec<String>,
    pub by_id: HashMap<String, StatusEntry>,
    pub status_updates: HashSet<String>,

    /// Number shown as `#N` by the plain display; 0 until it first prints the vertex.
    pub index: usize,

    /// Formatted log lines (`<seconds> <text>`) not yet printed by the plain display; the tty
    /// display never drains them.
    pub logs: Vec<Vec<u8>>,
    pub logs_partial: bool,
    pub logs_offset: usize,
    pub logs_ring: Option<LogRing>,

    pub last_block_time: Option<Nanos>,
    pub count: u64,

    pub warnings: Vec<VertexWarning>,
    pub warning_idx: usize,

    pub term: Option<VirtualTerm>,
    pub term_bytes: usize,
    pub term_count: usize,

    intervals: BTreeMap<Nanos, Interval>,
    pub merged_intervals: Vec<Interval>,

    pub hidden: bool,
    /// For a progress group's synthetic vertex: its members, in first-seen order.
    group_members: Option<Vec<(String, PbVertex)>>,
}

impl Vtx {
    fn new(digest: String) -> Self {
        Vtx {
            digest,
            name: String::new(),
            cached: false,
            error: String::new(),
            progress_group: None,
            prev: None,
            statuses: Vec::new(),
            by_id: HashMap::new(),
            status_updates: HashSet::new(),
            index: 0,
            logs: Vec::new(),
            logs_partial: false,
            logs_offset: 0,
            logs_ring: None,
            last_block_time: None,
            count: 0,
            warnings: Vec::new(),
            warning_idx: 0,
            term: None,
            term_bytes: 0,
            term_count: 0,
            intervals: BTreeMap::new(),
            merged_intervals: Vec::new(),
            hidden: false,
            group_members: None,
        }
    }

    fn bump(&mut self, now: Nanos) {
        if self.count == 0 {
            self.last_block_time = Some(now);
        }
        self.count += 1;
    }

    pub fn most_recent_interval(&self) -> Option<Interval> {
        self.merged_intervals.last().copied()
    }

    pub fn is_started(&self) -> bool {
        !self.merged_intervals.is_empty()
    }

    pub fn is_completed(&self) -> bool {
        self.most_recent_interval()
            .is_some_and(|i| i.stop.is_some())
    }

    pub fn intervals(&self) -> impl Iterator<Item = &Interval> {
        self.intervals.values()
    }

    /// Shown neither as a line of its own nor in the counts.
    pub fn is_invisible(&self) -> bool {
        self.progress_group.is_some() || self.hidden
    }

    fn remerge(&mut self) {
        self.merged_intervals = merge_intervals(self.intervals.values().copied().collect());
    }

    /// Recomputes a group's synthetic vertex from its members.
    fn refresh_group(&mut self) -> (bool, bool, bool) {
        let mut changed = false;
        let mut newly_started = false;
        let already_started = self.is_started();
        let was_hidden = self.hidden;
        let mut cached = true;
        let mut error = String::new();
        let members = self.group_members.take().unwrap_or_default();
        for (_, sub) in &members {
            if let Some(start) = opt_timestamp_nanos(&sub.started) {
                let new = Interval {
                    start,
                    stop: opt_timestamp_nanos(&sub.completed),
                };
                if self.intervals.get(&start) != Some(&new) {
                    changed = true;
                }
                if !already_started {
                    newly_started = true;
                }
                self.intervals.insert(start, new);
                if !sub.progress_group.as_ref().is_some_and(|g| g.weak) {
                    self.hidden = false;
                }
            }
            cached = cached && sub.cached;
            if error.is_empty() {
                error = sub.error.clone();
            } else {
                self.hidden = false;
            }
        }
        self.group_members = Some(members);
        if self.cached != cached || self.error != error {
            changed = true;
        }
        self.cached = cached;
        self.error = error;
        let newly_revealed = !self.hidden && was_hidden;
        if newly_revealed {
            changed = true;
        }
        self.remerge();
        (changed, newly_started, newly_revealed)
    }
}

/// Everything known about one build's (or several builds') progress.
#[derive(Default)]
pub(crate) struct Trace {
    pub start_time: Option<Nanos>,
    /// Local clock minus the daemon's clock, taken when the first vertex starts, so running
    /// timers can be computed from daemon timestamps.
    pub local_time_diff: i64,
    pub arena: Vec<Vtx>,
    /// Vertexes in the order they started (the tty display's line order).
    pub vertexes: Vec<usize>,
    pub by_digest: HashMap<String, usize>,
    /// Digest keys of `by_digest` in insertion order, so iteration is deterministic.
    digest_order: Vec<String>,
    /// Vertexes with something new to print.
    pub updates: BTreeSet<usize>,
    groups: HashMap<String, usize>,
    /// Whether vertexes get a virtual terminal for the tty's log view.
    pub console: bool,
}

impl Trace {
    pub fn new(console: bool) -> Self {
        Trace {
            console,
            ..Default::default()
        }
    }

    fn insert_vertex(&mut self, digest: &str, vtx: Vtx) -> usize {
        let idx = self.arena.len();
        self.arena.push(vtx);
        self.map_digest(digest, idx);
        idx
    }

    fn map_digest(&mut self, digest: &str, idx: usize) {
        if self.by_digest.insert(digest.to_string(), idx).is_none() {
            self.digest_order.push(digest.to_string());
        }
    }

    /// Vertex indexes behind each digest, in first-seen order. Group members map to their group.
    pub fn digest_entries(&self) -> impl Iterator<Item = usize> + '_ {
        self.digest_order.iter().map(|d| self.by_digest[d])
    }

    fn new_term(&self, term_width: usize, term_height: usize) -> Option<VirtualTerm> {
        self.console.then(|| {
            VirtualTerm::new(
                term_height,
                term_width.saturating_sub(super::tty::TERM_PAD).max(1),
            )
        })
    }

    /// Marks a vertex as updated if its message says something new.
    fn note_vertex_event(&mut self, idx: usize, v: &PbVertex, now: Nanos) {
        let started = opt_timestamp_nanos(&v.started);
        if started.is_none() {
            return;
        }
        let vtx = &mut self.arena[idx];
        let old = vtx.prev.clone().unwrap_or_default();
        // Any message that carries a completion time counts, matching progressui which compares
        // pointers there.
        let changed = v.digest != old.digest
            || v.name != old.name
            || started != old.started
            || v.completed.is_some()
            || v.cached != old.cached
            || v.error != old.error;
        if changed {
            vtx.bump(now);
            self.updates.insert(idx);
        }
        vtx.prev = Some(VertexSnapshot {
            digest: v.digest.clone(),
            name: v.name.clone(),
            started,
            cached: v.cached,
            error: v.error.clone(),
        });
    }

    pub fn update(
        &mut self,
        s: &StatusResponse,
        now: Nanos,
        term_width: usize,
        term_height: usize,
    ) {
        let mut groups: Vec<String> = Vec::new();
        for v in &s.vertexes {
            let started = opt_timestamp_nanos(&v.started);
            if self.start_time.is_none() {
                self.start_time = started;
            }
            if let Some(pg) = &v.progress_group {
                let gidx = match self.groups.get(&pg.id) {
                    Some(&g) => g,
                    None => {
                        let mut g = Vtx::new(pg.id.clone());
                        g.name = pg.name.clone();
                        g.hidden = true;
                        g.group_members = Some(Vec::new());
                        g.term = self.new_term(term_width, term_height);
                        let g = self.insert_vertex(&pg.id, g);
                        self.groups.insert(pg.id.clone(), g);
                        g
                    }
                };
                if !groups.contains(&pg.id) {
                    groups.push(pg.id.clone());
                }
                let members = self.arena[gidx].group_members.get_or_insert_with(Vec::new);
                match members.iter_mut().find(|(d, _)| *d == v.digest) {
                    Some(slot) => slot.1 = v.clone(),
                    None => members.push((v.digest.clone(), v.clone())),
                }
                self.map_digest(&v.digest, gidx);
                continue;
            }

            let prev = self.by_digest.get(&v.digest).copied();
            let idx = match prev {
                Some(i) => i,
                None => {
                    let mut vtx = Vtx::new(v.digest.clone());
                    vtx.term = self.new_term(term_width, term_height);
                    self.insert_vertex(&v.digest, vtx)
                }
            };
            let was_started = prev.is_some() && self.arena[idx].is_started();
            self.note_vertex_event(idx, v, now);
            if let Some(start) = started {
                if !was_started {
                    if self.local_time_diff == 0 {
                        self.local_time_diff = now - start;
                    }
                    self.vertexes.push(idx);
                }
            }
            let vtx = &mut self.arena[idx];
            // A repeated unstarted message must not reset a vertex that already runs.
            if !was_started || started.is_some() {
                vtx.name = v.name.clone();
                vtx.cached = v.cached;
                vtx.error = v.error.clone();
                vtx.progress_group = v.progress_group.clone();
            }
            if let Some(start) = started {
                vtx.intervals.insert(
                    start,
                    Interval {
                        start,
                        stop: opt_timestamp_nanos(&v.completed),
                    },
                );
                vtx.remerge();
            }
        }

        for id in groups {
            let gidx = self.groups[&id];
            let (changed, newly_started, newly_revealed) = self.arena[gidx].refresh_group();
            if newly_started && self.local_time_diff == 0 {
                if let Some(first) = self.arena[gidx].merged_intervals.first() {
                    self.local_time_diff = now - first.start;
                }
            }
            if self.arena[gidx].hidden {
                continue;
            }
            if newly_revealed {
                self.vertexes.push(gidx);
            }
            if changed {
                self.arena[gidx].bump(now);
                self.updates.insert(gidx);
            }
        }

        for st in &s.statuses {
            let Some(&idx) = self.by_digest.get(&st.vertex) else {
                continue;
            };
            let entry = StatusEntry::from_pb(st);
            let vtx = &mut self.arena[idx];
            let prev_started = vtx.by_id.get(&st.id).map(|p| p.started.is_some());
            if entry.started.is_some() && prev_started != Some(true) {
                vtx.statuses.push(st.id.clone());
            }
            vtx.by_id.insert(st.id.clone(), entry);
            vtx.status_updates.insert(st.id.clone());
            vtx.bump(now);
            self.updates.insert(idx);
        }

        for w in &s.warnings {
            let Some(&idx) = self.by_digest.get(&w.vertex) else {
                continue;
            };
            let vtx = &mut self.arena[idx];
            vtx.warnings.push(w.clone());
            vtx.bump(now);
        }

        for l in &s.logs {
            let Some(&idx) = self.by_digest.get(&l.vertex) else {
                continue;
            };
            let vtx = &mut self.arena[idx];
            if let Some(term) = vtx.term.as_mut() {
                term.resize_width(term_width.saturating_sub(super::tty::TERM_PAD).max(1));
                term.write(&l.msg);
                vtx.term_bytes += l.msg.len();
            }
            let log_ts = l.timestamp.as_ref().map(timestamp_nanos).unwrap_or(0);
            let offset_secs = vtx
                .most_recent_interval()
                .map(|i| seconds_between(i.start, log_ts))
                .unwrap_or(0.0);
            let complete = split_lines(&l.msg, |i, line| {
                if vtx.logs_partial && !vtx.logs.is_empty() && i == 0 {
                    vtx.logs.last_mut().unwrap().extend_from_slice(line);
                } else {
                    let mut formatted = format_log_offset(offset_secs).into_bytes();
                    formatted.push(b' ');
                    formatted.extend_from_slice(line);
                    vtx.logs.push(formatted);
                }
            });
            vtx.logs_partial = !complete;
            self.updates.insert(idx);
            vtx.bump(now);
        }
    }

    /// The vertexes that failed (not merely canceled), in display order, with the log lines
    /// progressui prints for them after the build.
    pub fn failed(&self) -> Vec<(usize, Vec<String>)> {
        self.vertexes
            .iter()
            .filter_map(|&idx| {
                let v = &self.arena[idx];
                if v.error.is_empty() || is_canceled(&v.error) {
                    return None;
                }
                let mut lines: Vec<String> = v
                    .logs
                    .iter()
                    .map(|l| String::from_utf8_lossy(l).into_owned())
                    .collect();
                if let Some(ring) = &v.logs_ring {
                    lines.extend(
                        ring.lines()
                            .map(|l| String::from_utf8_lossy(l).into_owned()),
                    );
                }
                Some((idx, lines))
            })
            .collect()
    }
}

/// Seconds since the vertex started with the precision progressui uses (more digits early on).
fn format_log_offset(secs: f64) -> String {
    let prec = if secs < 10.0 {
        3
    } else if secs < 100.0 {
        2
    } else {
        1
    };
    format!("{secs:.prec$}")
}

/// Calls `f` for each line of `data` (the last may lack its newline); returns whether `data`
/// ended with a newline. Empty data counts as unterminated, as in progressui.
fn split_lines(mut data: &[u8], mut f: impl FnMut(usize, &[u8])) -> bool {
    if data.is_empty() {
        return false;
    }
    let mut i = 0;
    loop {
        if data.is_empty() {
            return true;
        }
        match data.iter().position(|&b| b == b'\n') {
            None => {
                f(i, data);
                return false;
            }
            Some(pos) => {
                f(i, &data[..pos]);
                data = &data[pos + 1..];
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(start: i64, stop: Option<i64>) -> Interval {
        Interval { start, stop }
    }

    #[test]
    fn merge_intervals_combines_overlaps() {
        assert!(merge_intervals(vec![]).is_empty());
        assert_eq!(
            merge_intervals(vec![iv(2, Some(4)), iv(2, Some(4))]),
            vec![iv(2, Some(4))]
        );
        assert_eq!(
            merge_intervals(vec![iv(7, Some(8)), iv(0, Some(1)), iv(2, Some(3))]),
            vec![iv(0, Some(1)), iv(2, Some(3)), iv(7, Some(8))]
        );
        assert_eq!(
            merge_intervals(vec![iv(0, Some(10)), iv(1, Some(2)), iv(9, Some(12))]),
            vec![iv(0, Some(12))]
        );
        assert_eq!(
            merge_intervals(vec![iv(0, Some(3)), iv(2, None), iv(5, Some(6))]),
            vec![iv(0, None)]
        );
        assert_eq!(
            merge_intervals(vec![iv(0, None), iv(5, Some(6))]),
            vec![iv(0, None)]
        );
    }

    #[test]
    fn split_lines_reports_trailing_newline() {
        let mut seen = Vec::new();
        assert!(split_lines(b"a\nb\n", |i, l| seen.push((i, l.to_vec()))));
        assert_eq!(seen, vec![(0, b"a".to_vec()), (1, b"b".to_vec())]);
        assert!(!split_lines(b"a\nb", |_, _| {}));
        assert!(!split_lines(b"", |_, _| panic!("no lines")));
    }

    #[test]
    fn log_offset_precision() {
        assert_eq!(format_log_offset(0.1234), "0.123");
        assert_eq!(format_log_offset(12.3456), "12.35");
        assert_eq!(format_log_offset(123.46), "123.5");
    }
}
