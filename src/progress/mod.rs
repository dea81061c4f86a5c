//! Build progress output, as `docker buildx build --progress=auto|tty|plain|quiet|rawjson`
//! shows it.
//!
//! A [`Printer`] is fed BuildKit's `Control/Status` messages ([`StatusResponse`]) and owns the
//! output stream (stderr unless one is injected). It keeps one trace of every vertex, so several
//! concurrent solves can share a display: label each solve's messages with
//! [`label_status`] and send them all into the channel given to [`run`].
//!
//! This module renders; it does not talk to BuildKit, decide exit codes, or print results.
//! [`error`] renders a failed solve's gRPC status for the caller's final error message.

pub mod error;
mod format;
mod own_step;
mod plain;
mod rawjson;
mod term;
mod trace;
mod tty;
mod warnings;

use std::io::Write;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard_buildkit_proto::google::protobuf::Timestamp;
use bollard_buildkit_proto::moby::buildkit::v1::{StatusResponse, VertexWarning};
use tokio::sync::mpsc;

pub use own_step::OwnStep;
pub use rawjson::warning_json;
pub use warnings::render_warnings;

use format::Nanos;

/// A build warning as BuildKit reports it (level, short text, details, URL, source location).
pub type Warning = VertexWarning;

/// How progress is shown (`--progress`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// `tty` when stderr is a terminal, else `plain`; `BUILDKIT_PROGRESS` overrides.
    #[default]
    Auto,
    Tty,
    Plain,
    Quiet,
    RawJson,
}

impl ProgressMode {
    pub fn as_str(&self) -> &'static str {
        match self {
            ProgressMode::Auto => "auto",
            ProgressMode::Tty => "tty",
            ProgressMode::Plain => "plain",
            ProgressMode::Quiet => "quiet",
            ProgressMode::RawJson => "rawjson",
        }
    }
}

impl std::fmt::Display for ProgressMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProgressMode {
    type Err = ProgressError;

    /// Accepts buildx's values; `none` is buildx's alias for `quiet` and the empty string means
    /// `auto`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "" | "auto" => Ok(ProgressMode::Auto),
            "tty" => Ok(ProgressMode::Tty),
            "plain" => Ok(ProgressMode::Plain),
            "quiet" | "none" => Ok(ProgressMode::Quiet),
            "rawjson" => Ok(ProgressMode::RawJson),
            other => Err(ProgressError::InvalidMode(other.to_string())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProgressError {
    #[error("invalid progress mode {0}")]
    InvalidMode(String),
    #[error("failed to get console: provided file is not a console")]
    NotAConsole,
}

/// A vertex that failed, with the output lines buildx repeats after the build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedVertex {
    pub digest: String,
    pub name: String,
    pub error: String,
    /// Its last log lines as `<seconds> <text>`.
    pub logs: Vec<String>,
}

/// What a finished display knows about the build.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Deduplicated, in first-seen order (also what goes into `buildx.build.warnings`).
    pub warnings: Vec<Warning>,
    #[allow(dead_code)] // read by multi-target summaries (bake)
    pub failed: Vec<FailedVertex>,
}

/// Knobs buildx and BuildKit read from the environment, read once per printer.
#[derive(Clone, Debug)]
struct Settings {
    colors: tty::Colors,
    /// `PROGRESS_NO_TRUNC=0`.
    truncate_names: bool,
    /// `BUILDKIT_TTY_LOG_LINES`.
    tty_log_lines: usize,
    /// `TTY_DISPLAY_RATE` (milliseconds) sets both.
    tick: Duration,
    min_redraw: Duration,
}

impl Settings {
    fn from_env() -> Settings {
        let var = |k: &str| std::env::var(k).ok();
        let mut s = Settings {
            colors: tty::Colors::from_env(
                var("NO_COLOR").as_deref(),
                var("BUILDKIT_COLORS").as_deref(),
            ),
            truncate_names: var("PROGRESS_NO_TRUNC").as_deref() == Some("0"),
            tty_log_lines: tty::TERM_HEIGHT_MIN,
            tick: Duration::from_millis(150),
            min_redraw: Duration::from_millis(100),
        };
        if let Some(n) = var("BUILDKIT_TTY_LOG_LINES").and_then(|v| v.parse::<usize>().ok()) {
            if n > 0 {
                s.tty_log_lines = n;
            }
        }
        if let Some(ms) = var("TTY_DISPLAY_RATE").and_then(|v| v.parse::<u64>().ok()) {
            s.tick = Duration::from_millis(ms);
            s.min_redraw = Duration::from_millis(ms);
        }
        s
    }
}

/// Wall-clock time in nanoseconds, replaceable in tests.
#[derive(Clone, Default)]
struct Clock(Option<Arc<AtomicI64>>);

impl Clock {
    fn now(&self) -> Nanos {
        match &self.0 {
            Some(t) => t.load(Ordering::SeqCst),
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as i64)
                .unwrap_or(0),
        }
    }
}

/// The display of one build (or of several solves feeding the same display).
pub struct Printer {
    mode: ProgressMode,
    out: Box<dyn Write + Send>,
    /// Where the terminal size comes from when writing to the real stderr.
    console: Option<console::Term>,
    /// Size for an injected writer (columns, rows).
    size: (usize, usize),
    settings: Settings,
    clock: Clock,
    trace: trace::Trace,
    plain: plain::PlainDisplay,
    tty: tty::TtyDisplay,
    last_redraw: Option<Nanos>,
    warnings: Vec<Warning>,
    debug: bool,
    finished: Option<Summary>,
}

impl Printer {
    /// A printer on stderr. `Auto` honours `BUILDKIT_PROGRESS` and picks tty or plain. Where
    /// buildx would refuse (`tty` without a terminal, a bad `BUILDKIT_PROGRESS`), this falls
    /// back to what `auto` would pick; use [`Printer::try_new`] to report those errors instead.
    pub fn new(mode: ProgressMode) -> Printer {
        Printer::try_new(mode).unwrap_or_else(|_| Printer::on_stderr(ProgressMode::Auto))
    }

    /// Like [`Printer::new`], but fails where buildx does.
    pub fn try_new(mode: ProgressMode) -> Result<Printer, ProgressError> {
        let mut mode = mode;
        if mode == ProgressMode::Auto {
            if let Ok(v) = std::env::var("BUILDKIT_PROGRESS") {
                if !v.is_empty() {
                    mode = v.parse()?;
                }
            }
        }
        if mode == ProgressMode::Tty && !console::Term::stderr().is_term() {
            return Err(ProgressError::NotAConsole);
        }
        Ok(Printer::on_stderr(mode))
    }

    fn on_stderr(mode: ProgressMode) -> Printer {
        let term = console::Term::stderr();
        let is_tty = term.is_term();
        let mut p = Printer::build(
            mode,
            Box::new(std::io::stderr()),
            is_tty,
            Settings::from_env(),
        );
        if p.mode == ProgressMode::Tty {
            p.console = Some(term);
            TTY_ON_STDERR.store(true, Ordering::SeqCst);
        }
        p
    }

    /// A printer on any writer. `is_tty` decides what `Auto` becomes; `Tty` always draws the
    /// live view, at 80x10 unless [`Printer::set_size`] says otherwise.
    // Injection points for tests and for bake's phases ("Building" vs others).
    #[allow(dead_code)]
    pub fn with_writer(mode: ProgressMode, w: Box<dyn Write + Send>, is_tty: bool) -> Printer {
        Printer::build(mode, w, is_tty, Settings::from_env())
    }

    fn build(
        mode: ProgressMode,
        out: Box<dyn Write + Send>,
        is_tty: bool,
        settings: Settings,
    ) -> Printer {
        let mode = match mode {
            ProgressMode::Auto if is_tty => ProgressMode::Tty,
            ProgressMode::Auto => ProgressMode::Plain,
            m => m,
        };
        let mut plain = plain::PlainDisplay::default();
        plain.truncate_names = settings.truncate_names;
        let tty = tty::TtyDisplay::new(settings.colors.clone(), settings.tty_log_lines);
        Printer {
            mode,
            out,
            console: None,
            size: (80, 10),
            trace: trace::Trace::new(mode == ProgressMode::Tty),
            plain,
            tty,
            settings,
            clock: Clock::default(),
            last_redraw: None,
            warnings: Vec::new(),
            debug: false,
            finished: None,
        }
    }

    /// The mode in effect (never `Auto`).
    // Injection points for tests and for bake's phases ("Building" vs others).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn mode(&self) -> ProgressMode {
        self.mode
    }

    /// Terminal size (columns, rows) for an injected writer in tty mode.
    // Injection points for tests and for bake's phases ("Building" vs others).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn set_size(&mut self, columns: usize, rows: usize) {
        self.size = (columns.max(1), rows.max(1));
    }

    /// buildx's build description: `#0 building with "NAME" instance using DRIVER driver` in
    /// plain mode, `DRIVER:NAME` at the right of the tty header.
    pub fn header(&mut self, builder: &str, driver: &str) {
        self.set_description(
            &format!("building with {builder:?} instance using {driver} driver"),
            &format!("{driver}:{builder}"),
        );
    }

    /// Any description: `text` for plain mode's `#0` line, `console` for the tty header.
    pub fn set_description(&mut self, text: &str, console: &str) {
        self.plain.desc = text.to_string();
        self.tty.desc = console.to_string();
    }

    /// The word after `[+]` in the tty header (`Building` by default).
    // Injection points for tests and for bake's phases ("Building" vs others).
    #[allow(dead_code)]
    pub fn set_phase(&mut self, phase: &str) {
        self.tty.phase = phase.to_string();
    }

    /// Expand warnings (details, URL, source) like `docker --debug`.
    pub fn set_debug(&mut self, debug: bool) {
        self.debug = debug;
    }

    /// How often the caller should call [`Printer::tick`] (150ms, or `TTY_DISPLAY_RATE`).
    pub fn tick_interval(&self) -> Duration {
        self.settings.tick
    }

    fn term_size(&self) -> (usize, usize) {
        if let Some(term) = &self.console {
            if let Some((rows, cols)) = term.size_checked() {
                if rows > 0 && cols > 0 {
                    return (cols as usize, rows as usize);
                }
            }
            return (80, 10);
        }
        self.size
    }

    /// Feeds one status message.
    pub fn update(&mut self, status: &StatusResponse) {
        if self.finished.is_some() {
            return;
        }
        self.warnings.extend(status.warnings.iter().cloned());
        let now = self.clock.now();
        let (width, height) = self.term_size();
        match self.mode {
            ProgressMode::RawJson => {
                let line = rawjson::status_json(status);
                let _ = writeln!(self.out, "{line}");
                let _ = self.out.flush();
                self.track_quietly(status, now);
            }
            ProgressMode::Quiet | ProgressMode::Auto => self.track_quietly(status, now),
            ProgressMode::Plain | ProgressMode::Tty => {
                let width = if self.mode == ProgressMode::Plain {
                    80
                } else {
                    width
                };
                self.trace.update(status, now, width, height);
                let min = self.settings.min_redraw.as_nanos() as i64;
                if self.last_redraw.is_some_and(|last| now - last < min) {
                    return;
                }
                self.last_redraw = Some(now);
                self.redraw(now, false);
            }
        }
    }

    /// Keeps failures for the summary in modes that draw nothing, without growing without bound.
    fn track_quietly(&mut self, status: &StatusResponse, now: Nanos) {
        self.trace.update(status, now, 80, 10);
        for v in &mut self.trace.arena {
            let n = v.logs.len();
            if n > trace::LOGS_BUFFER_SIZE && !v.logs_partial {
                v.logs.drain(..n - trace::LOGS_BUFFER_SIZE);
            }
        }
    }

    /// Redraws timers (tty) and flushes output held back by the redraw rate limit (plain).
    pub fn tick(&mut self) {
        if self.finished.is_some() {
            return;
        }
        let now = self.clock.now();
        self.redraw(now, false);
    }

    fn redraw(&mut self, now: Nanos, all: bool) {
        let (width, height) = self.term_size();
        let _ = match self.mode {
            ProgressMode::Plain => {
                let mut buf = Vec::new();
                let r = self.plain.print(&mut self.trace, &mut buf, now);
                let _ = self.out.write_all(&buf);
                let _ = self.out.flush();
                r
            }
            ProgressMode::Tty => {
                self.tty
                    .print(&mut self.trace, &mut self.out, now, width, height, all)
            }
            _ => Ok(()),
        };
    }

    /// Final frame and the logs of failed steps. Safe to call more than once; later calls only
    /// return the summary. buildx prints the warnings block next ([`Printer::print_warnings`]),
    /// whether or not the build failed, and only then the error.
    pub fn finish(&mut self) -> Summary {
        if let Some(s) = &self.finished {
            return s.clone();
        }
        let now = self.clock.now();
        let failed: Vec<FailedVertex> = self
            .trace
            .failed()
            .into_iter()
            .map(|(idx, logs)| {
                let v = &self.trace.arena[idx];
                FailedVertex {
                    digest: v.digest.clone(),
                    name: v.name.clone(),
                    error: v.error.clone(),
                    logs,
                }
            })
            .collect();
        if matches!(self.mode, ProgressMode::Plain | ProgressMode::Tty) {
            self.redraw(now, true);
            let mut block = String::new();
            for f in &failed {
                block.push_str(&format!("------\n > {}:\n", f.name));
                for l in &f.logs {
                    block.push_str(l);
                    block.push('\n');
                }
                block.push_str("------\n");
            }
            let _ = self.out.write_all(block.as_bytes());
        }
        let summary = Summary {
            warnings: warnings::dedup_warnings(&self.warnings),
            failed,
        };
        let _ = self.out.flush();
        self.finished = Some(summary.clone());
        summary
    }

    /// buildx's warnings block on this printer's output; nothing in quiet and rawjson modes.
    pub fn print_warnings(&mut self, summary: &Summary) {
        if matches!(self.mode, ProgressMode::Quiet | ProgressMode::RawJson) {
            return;
        }
        let block = render_warnings(&summary.warnings, self.debug);
        let _ = self.out.write_all(block.as_bytes());
        let _ = self.out.flush();
    }
}

impl Drop for Printer {
    fn drop(&mut self) {
        // Frames already end by showing the cursor; this covers a write cut short mid-frame.
        if self.mode == ProgressMode::Tty && self.finished.is_none() {
            let _ = self.out.write_all(tty::SHOW_CURSOR.as_bytes());
            let _ = self.out.flush();
        }
    }
}

/// Drives `printer` from `rx` until every sender is dropped, redrawing on a timer, then
/// finishes it. Spawn it and send each solve's (labelled) status messages into the channel;
/// the printer comes back for [`Printer::print_warnings`].
pub async fn run(
    mut printer: Printer,
    mut rx: mpsc::Receiver<StatusResponse>,
) -> (Printer, Summary) {
    let period = printer.tick_interval().max(Duration::from_millis(1));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(status) => {
                    printer.update(&status);
                    ticker.reset();
                }
                None => break,
            },
            _ = ticker.tick() => printer.tick(),
        }
    }
    let summary = printer.finish();
    (printer, summary)
}

/// Set once a tty display draws on the real stderr.
static TTY_ON_STDERR: AtomicBool = AtomicBool::new(false);

/// Shows the cursor again on stderr if a tty display used it. For exits that skip the printer's
/// own cleanup (Ctrl-C while a display task is still alive).
pub fn restore_terminal() {
    if TTY_ON_STDERR.load(Ordering::SeqCst) {
        let mut err = std::io::stderr();
        let _ = err.write_all(tty::SHOW_CURSOR.as_bytes());
        let _ = err.flush();
    }
}

/// What buildx does to one solve's status messages before they reach the shared display:
/// shift daemon timestamps onto the local clock (so timers count from when the solve was
/// started here, whatever the daemon's clock says) and, when several solves share the display,
/// label vertex names. Create one per solve, when the solve starts.
pub struct SolveFeed {
    label: Option<String>,
    created: Nanos,
    shift: Option<i64>,
}

impl SolveFeed {
    pub fn new(label: Option<&str>) -> SolveFeed {
        SolveFeed {
            label: label.map(str::to_string),
            created: Clock::default().now(),
            shift: None,
        }
    }

    pub fn adjust(&mut self, status: &mut StatusResponse) {
        if self.shift.is_none() {
            // The last started vertex of the first message that has one sets the offset.
            for v in &status.vertexes {
                if let Some(t) = &v.started {
                    self.shift = Some(format::timestamp_nanos(t) - self.created);
                }
            }
        }
        if let Some(shift) = self.shift {
            let adjust = |t: &mut Option<Timestamp>| {
                if let Some(t) = t.as_mut() {
                    *t = format::timestamp_from_nanos(format::timestamp_nanos(t) - shift);
                }
            };
            for v in &mut status.vertexes {
                adjust(&mut v.started);
                adjust(&mut v.completed);
            }
            for s in &mut status.statuses {
                adjust(&mut s.started);
                adjust(&mut s.completed);
                adjust(&mut s.timestamp);
            }
            for l in &mut status.logs {
                adjust(&mut l.timestamp);
            }
        }
        if let Some(label) = &self.label {
            label_status(status, label);
        }
    }
}

/// Prefixes vertex (and progress group) names with a node, platform or target label, as buildx
/// does when several solves share a display: `[linux/arm64 2/3] RUN ...`,
/// `[linux/arm64] exporting ...`.
pub fn label_status(status: &mut StatusResponse, label: &str) {
    fn add(label: &str, name: &str) -> String {
        match name.strip_prefix('[') {
            Some(rest) => format!("[{label} {rest}"),
            None => format!("[{label}] {name}"),
        }
    }
    for v in &mut status.vertexes {
        v.name = add(label, &v.name);
        if let Some(pg) = v.progress_group.as_mut() {
            pg.name = add(label, &pg.name);
        }
    }
}

#[cfg(test)]
mod tests;
