//! `--progress=plain`: buildx's `#N ...` text log.
//!
//! One vertex is "current" at a time; its new statuses and log lines are printed under its
//! `#N name` header, and switching to another unfinished vertex prints `#N ...`. The choice of
//! which running vertex to show follows progressui's text multiplexer (completed vertexes first,
//! then the current one, fairness by output rate) so interleaving matches buildx.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;

use super::format::{human_bytes, seconds_between, truncate_chars, Nanos, NANOS_PER_SEC};
use super::trace::{is_canceled, LogRing, Trace};

const ANTI_FLICKER_SECS: f64 = 5.0;
const MAX_DELAY_NANOS: i64 = 10 * NANOS_PER_SEC;
const MIN_TIME_DELTA_NANOS: i64 = 5 * NANOS_PER_SEC;
const MIN_PROGRESS_DELTA: f64 = 0.05;

struct LastStatus {
    current: i64,
    timestamp: Nanos,
}

struct Stat {
    block_secs: f64,
    speed: f64,
    share: f64,
    over_limit: bool,
}

#[derive(Default)]
pub(crate) struct PlainDisplay {
    current: Option<usize>,
    /// Keyed by status id alone, as progressui does.
    last: HashMap<String, LastStatus>,
    not_first: bool,
    next_index: usize,
    pub desc: String,
    /// `PROGRESS_NO_TRUNC=0` shortens vertex names to 72 characters.
    pub truncate_names: bool,
}

impl PlainDisplay {
    pub fn print(&mut self, t: &mut Trace, w: &mut dyn Write, now: Nanos) -> std::io::Result<()> {
        let mut completed = BTreeSet::new();
        let mut rest = BTreeSet::new();
        for &idx in &t.updates {
            let v = &t.arena[idx];
            if v.is_invisible() {
                continue;
            }
            if v.is_completed() {
                completed.insert(idx);
            } else {
                rest.insert(idx);
            }
        }

        let current = self.current;
        if let Some(c) = current {
            if completed.contains(&c) {
                self.print_vertex(t, c, w, now)?;
            }
        }

        let mut done: Vec<usize> = completed.iter().copied().collect();
        done.sort_by_key(|&i| t.arena[i].most_recent_interval().and_then(|iv| iv.stop));
        for idx in done {
            if Some(idx) != current {
                self.print_vertex(t, idx, w, now)?;
            }
        }

        if rest.is_empty() {
            if let Some(c) = current {
                let v = &t.arena[c];
                if v.is_started() && !v.is_completed() {
                    return Ok(());
                }
            }
            // Nothing new, but keep an open vertex on screen so its later output has a header.
            let open = t.digest_entries().find(|&i| {
                let v = &t.arena[i];
                v.is_started() && !v.is_completed() && !v.is_invisible()
            });
            if let Some(idx) = open {
                self.print_vertex(t, idx, w, now)?;
            }
            return Ok(());
        }

        if let Some(c) = current {
            if rest.contains(&c) {
                self.print_vertex(t, c, w, now)?;
            }
            rest.insert(c);
        }

        let mut stats: HashMap<usize, Stat> = HashMap::new();
        let mut sum = 0.0;
        let mut max: Option<usize> = None;
        for &idx in &rest {
            let v = &t.arena[idx];
            let Some(block_time) = v.last_block_time else {
                continue;
            };
            let block_nanos = now - block_time;
            let block_secs = block_nanos as f64 / NANOS_PER_SEC as f64;
            let speed = v.count as f64 / block_secs;
            let over_limit = block_nanos > MAX_DELAY_NANOS && Some(idx) != current;
            sum += speed;
            let better = match max {
                None => true,
                Some(m) => stats[&m].speed < speed,
            };
            stats.insert(
                idx,
                Stat {
                    block_secs,
                    speed,
                    share: 0.0,
                    over_limit,
                },
            );
            if over_limit || better {
                max = Some(idx);
            }
        }
        for s in stats.values_mut() {
            s.share = s.speed / sum;
        }

        if current.is_none_or(|c| completed.contains(&c)) {
            if let Some(m) = max {
                self.print_vertex(t, m, w, now)?;
            }
            return Ok(());
        }

        // Surface vertexes that have waited too long behind the current one.
        if let Some(&idx) = rest
            .iter()
            .find(|i| stats.get(i).is_some_and(|s| s.over_limit))
        {
            return self.print_vertex(t, idx, w, now);
        }

        if let (Some(c), Some(m)) = (current.and_then(|c| stats.get(&c)), max) {
            if 1.0 / (1.0 - c.share) * ANTI_FLICKER_SECS < c.block_secs {
                self.print_vertex(t, m, w, now)?;
            }
        }
        Ok(())
    }

    fn print_vertex(
        &mut self,
        t: &mut Trace,
        idx: usize,
        w: &mut dyn Write,
        now: Nanos,
    ) -> std::io::Result<()> {
        if t.arena[idx].index == 0 {
            self.next_index += 1;
            t.arena[idx].index = self.next_index;
        }

        if Some(idx) != self.current {
            if let Some(old_idx) = self.current {
                let old = &mut t.arena[old_idx];
                if old.logs_partial {
                    writeln!(w)?;
                }
                old.logs_offset = 0;
                old.count = 0;
                writeln!(w, "#{} ...", old.index)?;
            }
            if self.not_first {
                writeln!(w)?;
            } else {
                if !self.desc.is_empty() {
                    write!(w, "#0 {}\n\n", self.desc)?;
                }
                self.not_first = true;
            }
            let v = &t.arena[idx];
            if self.truncate_names && v.name.len() > 72 {
                writeln!(w, "#{} {}...", v.index, truncate_chars(&v.name, 72))?;
            } else {
                writeln!(w, "#{} {}", v.index, v.name)?;
            }
        }

        let v = &mut t.arena[idx];
        let index = v.index;
        // A status still running (e.g. remote cache loading) keeps the vertex current.
        let mut open_status = false;
        for id in &v.statuses {
            if !v.status_updates.contains(id) {
                continue;
            }
            let s = &v.by_id[id];
            if let Some(last) = self.last.get(id) {
                if s.completed.is_none() {
                    let progress_delta = if s.total > 0 {
                        (s.current - last.current) as f64 / s.total as f64
                    } else {
                        0.0
                    };
                    let time_delta = s.timestamp - last.timestamp;
                    if progress_delta < MIN_PROGRESS_DELTA && time_delta < MIN_TIME_DELTA_NANOS {
                        continue;
                    }
                }
            }
            self.last.insert(
                id.clone(),
                LastStatus {
                    current: s.current,
                    timestamp: s.timestamp,
                },
            );
            let bytes = if s.total != 0 {
                format!(" {} / {}", human_bytes(s.current), human_bytes(s.total))
            } else if s.current != 0 {
                format!(" {}", human_bytes(s.current))
            } else {
                String::new()
            };
            let mut tm = String::new();
            if let Some(started) = s.started {
                let diff = seconds_between(started, s.completed.unwrap_or(s.timestamp));
                if diff > 0.01 {
                    tm = format!(" {diff:.1}s");
                }
            }
            if s.completed.is_some() {
                tm.push_str(" done");
            } else {
                open_status = true;
            }
            writeln!(w, "#{index} {id}{bytes}{tm}")?;
        }
        v.status_updates.clear();

        for warning in &v.warnings[v.warning_idx..] {
            writeln!(
                w,
                "#{index} WARN: {}",
                String::from_utf8_lossy(&warning.short)
            )?;
        }
        v.warning_idx = v.warnings.len();

        let n = v.logs.len();
        for i in 0..n {
            let line = if i == 0 && v.logs_offset != 0 {
                let tail = v.logs[i][v.logs_offset.min(v.logs[i].len())..].to_vec();
                w.write_all(&tail)?;
                tail
            } else {
                write!(w, "#{index} ")?;
                w.write_all(&v.logs[i])?;
                v.logs[i].clone()
            };
            if i != n - 1 || !v.logs_partial {
                writeln!(w)?;
            }
            let ring = v.logs_ring.get_or_insert_with(LogRing::new);
            ring.set_current(line);
            if !v.logs_partial {
                ring.advance();
            }
        }
        if n > 0 {
            if v.logs_partial {
                v.logs.drain(..n - 1);
                v.logs_offset = v.logs[0].len();
            } else {
                v.logs.clear();
                v.logs_offset = 0;
            }
        }

        self.current = Some(idx);
        if v.is_completed() && !open_status {
            self.current = None;
            v.count = 0;
            if v.logs_partial {
                writeln!(w)?;
            }
            if !v.error.is_empty() {
                if is_canceled(&v.error) {
                    writeln!(w, "#{index} CANCELED")?;
                } else {
                    writeln!(w, "#{index} ERROR: {}", v.error)?;
                }
            } else if v.cached {
                writeln!(w, "#{index} CACHED")?;
            } else {
                let intervals = &v.merged_intervals;
                if intervals.is_empty() {
                    writeln!(w, "#{index} DONE")?;
                } else {
                    let dt: f64 = intervals.iter().map(|i| i.seconds(now)).sum();
                    writeln!(w, "#{index} DONE {dt:.1}s")?;
                }
            }
        }

        t.updates.remove(&idx);
        Ok(())
    }
}
