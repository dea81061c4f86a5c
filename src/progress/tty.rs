//! `--progress=tty`: buildx's live, redrawn view (`[+] Building 12.3s (5/7)` and one `=>` line
//! per step, with the tail of running steps' output beneath them).
//!
//! Each frame moves the cursor back to the top of the previous frame and rewrites it, hiding
//! the cursor while drawing and showing it again at the end of every frame, so an interrupted
//! build never leaves the terminal without a cursor. Layout rules (column budget, which running
//! steps get a log view, how lines are dropped when the screen is short) follow progressui.

use std::io::Write;

use super::format::{align, char_len, human_bytes, seconds_between, truncate_chars, Nanos};
use super::trace::{is_canceled, Trace};

/// Columns a vertex's log view is narrower than the screen.
pub(crate) const TERM_PAD: usize = 10;
/// Fewest rows of log output a running step gets.
pub(crate) const TERM_HEIGHT_MIN: usize = 6;

pub(crate) const HIDE_CURSOR: &str = "\x1b[?25l";
pub(crate) const SHOW_CURSOR: &str = "\x1b[?25h";
const RESET: &str = "\x1b[0m";
const FAINT: &str = "\x1b[2m";

/// SGR sequences for the four states progressui colours; `None` prints plain text.
#[derive(Clone, Debug, Default)]
pub(crate) struct Colors {
    pub run: Option<String>,
    pub cancel: Option<String>,
    pub warning: Option<String>,
    pub error: Option<String>,
}

impl Colors {
    /// `NO_COLOR` turns colours off; `BUILDKIT_COLORS` (`run=green:error=255,0,0`) overrides them.
    pub fn from_env(no_color: Option<&str>, buildkit_colors: Option<&str>) -> Colors {
        if no_color.is_some_and(|v| !v.is_empty()) {
            return Colors::default();
        }
        let mut colors = Colors {
            run: Some(sgr(34)),
            cancel: Some(sgr(33)),
            warning: Some(sgr(33)),
            error: Some(sgr(31)),
        };
        for field in buildkit_colors.unwrap_or_default().split(':') {
            let Some((key, value)) = field.split_once('=') else {
                continue;
            };
            if value.contains('=') {
                continue;
            }
            let Some(code) = named_color(&value.to_lowercase()).or_else(|| rgb_color(value)) else {
                continue;
            };
            match key.to_lowercase().as_str() {
                "run" => colors.run = Some(code),
                "cancel" => colors.cancel = Some(code),
                "error" => colors.error = Some(code),
                "warning" => colors.warning = Some(code),
                _ => {}
            }
        }
        colors
    }
}

fn sgr(n: u8) -> String {
    format!("\x1b[{n}m")
}

fn named_color(name: &str) -> Option<String> {
    let code = match name {
        "default" => 39,
        "black" => 30,
        "red" => 31,
        "green" => 32,
        "yellow" => 33,
        "blue" => 34,
        "magenta" => 35,
        "cyan" => 36,
        "white" => 37,
        "light-black" => 90,
        "light-red" => 91,
        "light-green" => 92,
        "light-yellow" => 93,
        "light-blue" => 94,
        "light-magenta" => 95,
        "light-cyan" => 96,
        "light-white" => 97,
        _ => return None,
    };
    Some(sgr(code))
}

/// A `r,g,b` triple mapped onto the 256-colour cube, as aec's `NewRGB8Bit` does.
fn rgb_color(value: &str) -> Option<String> {
    let parts: Vec<u8> = value
        .split(',')
        .map(|p| p.trim().parse::<u8>().ok())
        .collect::<Option<_>>()?;
    let [r, g, b] = parts[..] else {
        return None;
    };
    let code = 16 + 36 * u32::from(r / 43) + 6 * u32::from(g / 43) + u32::from(b / 43);
    Some(format!("\x1b[38;5;{code}m"))
}

fn paint(s: &str, color: Option<&str>) -> String {
    match color {
        Some(c) => format!("{c}{s}{RESET}"),
        None => s.to_string(),
    }
}

#[derive(Clone, Debug)]
struct Job {
    /// Seconds to show; `None` when the job has no interval and is not drawn.
    seconds: Option<f64>,
    is_completed: bool,
    name: String,
    status: String,
    has_error: bool,
    is_canceled: bool,
    vertex: Option<usize>,
    show_term: bool,
}

struct DisplayInfo {
    start_time: Nanos,
    jobs: Vec<Job>,
    count_total: usize,
    count_completed: usize,
}

fn display_info(t: &Trace, now: Nanos) -> DisplayInfo {
    let diff = t.local_time_diff;
    let start_time = t.start_time.map(|s| s + diff).unwrap_or(now);
    let mut count_total = 0;
    let mut count_completed = 0;
    for idx in t.digest_entries() {
        let v = &t.arena[idx];
        if v.is_invisible() {
            continue;
        }
        count_total += 1;
        if v.is_completed() {
            count_completed += 1;
        }
    }

    let mut jobs = Vec::new();
    for &idx in &t.vertexes {
        let v = &t.arena[idx];
        let mut is_completed = true;
        let mut intervals = Vec::new();
        for ival in v.intervals() {
            if ival.stop.is_none() {
                is_completed = false;
            }
            intervals.push(super::trace::Interval {
                start: ival.start + diff,
                stop: ival.stop.map(|s| s + diff),
            });
        }
        let merged = super::trace::merge_intervals(intervals);
        let mut name = v.name.replace('\t', " ");
        let mut has_error = false;
        let mut canceled = false;
        if !v.error.is_empty() {
            if is_canceled(&v.error) {
                canceled = true;
                name = format!("CANCELED {name}");
            } else {
                has_error = true;
                name = format!("ERROR {name}");
            }
        }
        if v.cached {
            name = format!("CACHED {name}");
        }
        jobs.push(Job {
            seconds: (!merged.is_empty()).then(|| merged.iter().map(|i| i.seconds(now)).sum()),
            is_completed,
            name,
            status: String::new(),
            has_error,
            is_canceled: canceled,
            vertex: Some(idx),
            show_term: false,
        });
        for id in &v.statuses {
            let s = &v.by_id[id];
            let seconds = match s.started {
                Some(start) => seconds_between(start + diff, s.completed.map_or(now, |c| c + diff)),
                None => 0.0,
            };
            let status = if s.total != 0 {
                format!("{} / {}", human_bytes(s.current), human_bytes(s.total))
            } else if s.current != 0 {
                human_bytes(s.current)
            } else {
                String::new()
            };
            jobs.push(Job {
                seconds: Some(seconds),
                is_completed: s.completed.is_some(),
                name: format!("=> {}", s.id),
                status,
                has_error: false,
                is_canceled: false,
                vertex: None,
                show_term: false,
            });
        }
        for w in &v.warnings {
            let seconds = v
                .most_recent_interval()
                .map(|i| seconds_between(i.start + diff, i.stop.map_or(now, |s| s + diff)))
                .unwrap_or(0.0);
            jobs.push(Job {
                seconds: Some(seconds),
                is_completed: false,
                name: format!("WARN: {}", String::from_utf8_lossy(&w.short)),
                status: String::new(),
                has_error: false,
                is_canceled: true,
                vertex: None,
                show_term: false,
            });
        }
    }
    DisplayInfo {
        start_time,
        jobs,
        count_total,
        count_completed,
    }
}

/// Keeps the last `limit` lines, pulling unfinished jobs that scrolled off back into view in
/// place of finished ones.
fn wrap_height(jobs: Vec<Job>, limit: isize) -> Vec<Job> {
    if limit < 0 {
        return Vec::new();
    }
    let limit = limit as usize;
    if jobs.len() <= limit {
        return jobs;
    }
    let cut = jobs.len() - limit;
    let invisible: Vec<Job> = jobs[..cut]
        .iter()
        .filter(|j| !j.is_completed)
        .cloned()
        .collect();
    let wrapped: Vec<Job> = jobs[cut..].to_vec();
    if invisible.is_empty() {
        return wrapped;
    }
    let mut budget = invisible.len() as isize;
    let mut rewrapped = Vec::with_capacity(wrapped.len());
    let total = wrapped.len();
    for j in wrapped {
        if !j.is_completed || budget <= 0 {
            rewrapped.push(j);
        }
        budget -= 1;
    }
    let free = total - rewrapped.len();
    let mut out: Vec<Job> = invisible[invisible.len() - free..].to_vec();
    out.extend(rewrapped);
    out
}

pub(crate) struct TtyDisplay {
    pub phase: String,
    pub desc: String,
    pub colors: Colors,
    /// `BUILDKIT_TTY_LOG_LINES`: rows of output shown under a running step.
    pub term_height_initial: usize,
    line_count: usize,
    repeated: bool,
}

impl TtyDisplay {
    pub fn new(colors: Colors, term_height_initial: usize) -> Self {
        TtyDisplay {
            phase: "Building".to_string(),
            desc: String::new(),
            colors,
            term_height_initial,
            line_count: 0,
            repeated: false,
        }
    }

    /// Rows each running step's log view gets on a screen `height` rows tall.
    pub fn term_height(&self, height: usize) -> usize {
        TERM_HEIGHT_MIN.max(
            self.term_height_initial
                .min(height.saturating_sub(TERM_HEIGHT_MIN + 1)),
        )
    }

    fn setup_terminals(&self, t: &Trace, mut jobs: Vec<Job>, height: usize, all: bool) -> Vec<Job> {
        let mut candidates: Vec<usize> = Vec::new();
        let mut in_use = 0isize;
        for (i, j) in jobs.iter().enumerate() {
            if let Some(v) = j.vertex {
                if t.arena[v].term_bytes > 0 && !j.is_completed {
                    candidates.push(i);
                }
            }
            if !j.is_completed {
                in_use += 1;
            }
        }
        let weight = |i: &usize| {
            let v = &t.arena[jobs[*i].vertex.unwrap_or_default()];
            v.term_bytes + v.term_count * 50
        };
        candidates.sort_by_key(|i| std::cmp::Reverse(weight(i)));

        let mut free = height as isize - 2 - in_use;
        let mut to_hide = 0isize;
        let term_limit = (self.term_height(height) + 3) as isize;
        for &c in &candidates {
            if free <= term_limit {
                break;
            }
            jobs[c].show_term = true;
            if let Some(term) = jobs[c].vertex.and_then(|v| t.arena[v].term.as_ref()) {
                to_hide += term.used_height() as isize;
            }
            free -= term_limit;
        }
        if !all {
            jobs = wrap_height(jobs, height as isize - 2 - to_hide);
        }
        jobs
    }

    /// Draws one frame into `w`. `all` is the final frame: every line, and ` FINISHED` when
    /// everything completed.
    pub fn print(
        &mut self,
        t: &mut Trace,
        w: &mut dyn Write,
        now: Nanos,
        width: usize,
        height: usize,
        all: bool,
    ) -> std::io::Result<()> {
        let info = display_info(t, now);
        let jobs = self.setup_terminals(t, info.jobs, height, all);
        let mut out = String::new();

        for _ in 0..=self.line_count {
            out.push_str("\x1b[1A");
        }
        if !self.repeated {
            out.push_str("\x1b[1B");
        }
        self.repeated = true;
        out.push_str("\x1b[0G");
        out.push_str(HIDE_CURSOR);

        let finished =
            if info.count_completed > 0 && info.count_completed == info.count_total && all {
                "FINISHED"
            } else {
                ""
            };
        let header = format!(
            "[+] {} {:.1}s ({}/{}) {finished}",
            self.phase,
            seconds_between(info.start_time, now),
            info.count_completed,
            info.count_total
        );
        let header = if self.desc.is_empty() {
            align(&header, "", width)
        } else {
            align(&header, &self.desc, width.saturating_sub(1))
        };
        out.push_str(truncate_chars(&header, width));
        out.push('\n');

        let term_height = self.term_height(height);
        let mut line_count = 0;
        for job in &jobs {
            let Some(mut dt) = job.seconds else {
                continue;
            };
            if dt < 0.05 {
                dt = 0.0;
            }
            let pfx = " => ";
            let timer = format!(" {dt:3.1}s\n");
            let mut left = width as isize - char_len(pfx) as isize - char_len(&timer) as isize - 1;
            let mut show_status = false;
            if !job.status.is_empty() && left + char_len(&job.status) as isize > 20 {
                show_status = true;
                left -= char_len(&job.status) as isize + 1;
            }
            if left < 12 {
                // Too narrow to say anything useful about this step.
                continue;
            }
            let mut line = format!("{pfx}{}", truncate_chars(&job.name, left as usize));
            if show_status {
                line.push(' ');
                line.push_str(&job.status);
            }
            let mut line = align(&line, &timer, width);
            if job.is_completed {
                let color = if job.is_canceled {
                    &self.colors.cancel
                } else if job.has_error {
                    &self.colors.error
                } else {
                    &self.colors.run
                };
                line = paint(&line, color.as_deref());
            }
            out.push_str(&line);
            line_count += 1;
            if job.show_term {
                if let Some(v) = job.vertex {
                    let vtx = &mut t.arena[v];
                    if let Some(term) = vtx.term.as_mut() {
                        term.resize(term_height, width.saturating_sub(TERM_PAD));
                        for row in term.visible_rows() {
                            out.push_str(&paint(&format!(" => => # {row}\n"), Some(FAINT)));
                            line_count += 1;
                        }
                    }
                    vtx.term_count += 1;
                }
            }
        }

        // Blank out what is left of a taller previous frame.
        if self.line_count > line_count {
            let diff = self.line_count - line_count;
            for _ in 0..diff {
                out.push_str(&" ".repeat(width));
                out.push('\n');
            }
            out.push_str(&format!("\x1b[{diff}A\x1b[0G"));
        }
        self.line_count = line_count;
        out.push_str(SHOW_CURSOR);
        w.write_all(out.as_bytes())?;
        w.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str, done: bool) -> Job {
        Job {
            seconds: Some(0.0),
            is_completed: done,
            name: name.to_string(),
            status: String::new(),
            has_error: false,
            is_canceled: false,
            vertex: None,
            show_term: false,
        }
    }

    #[test]
    fn wrap_height_keeps_unfinished_jobs_visible() {
        let jobs = vec![
            job("a", false),
            job("b", true),
            job("c", true),
            job("d", true),
            job("e", false),
        ];
        let names: Vec<String> = wrap_height(jobs, 3).into_iter().map(|j| j.name).collect();
        assert_eq!(names, vec!["a", "d", "e"]);
    }

    #[test]
    fn colors_follow_env() {
        let c = Colors::from_env(Some("1"), None);
        assert!(c.run.is_none());
        let c = Colors::from_env(None, Some("run=green:error=255,0,0:bogus"));
        assert_eq!(c.run.as_deref(), Some("\x1b[32m"));
        assert_eq!(c.error.as_deref(), Some("\x1b[38;5;196m"));
        assert_eq!(c.cancel.as_deref(), Some("\x1b[33m"));
    }
}
