//! Recorded-style status sequences through each display mode.

use super::*;
use bollard_buildkit_proto::google::protobuf::Timestamp;
use bollard_buildkit_proto::moby::buildkit::v1::{Vertex, VertexLog, VertexStatus};
use std::sync::Mutex;

const T0: i64 = 1_700_000_000 * format::NANOS_PER_SEC;

/// `secs` after T0, in nanoseconds.
fn at(secs: f64) -> Nanos {
    T0 + (secs * 1000.0).round() as i64 * 1_000_000
}

fn ts(secs: f64) -> Option<Timestamp> {
    let n = at(secs);
    Some(Timestamp {
        seconds: n / format::NANOS_PER_SEC,
        nanos: (n % format::NANOS_PER_SEC) as i32,
    })
}

#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SharedBuf {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

fn test_settings() -> Settings {
    Settings {
        colors: tty::Colors::default(),
        truncate_names: false,
        tty_log_lines: tty::TERM_HEIGHT_MIN,
        tick: Duration::from_millis(150),
        min_redraw: Duration::ZERO,
    }
}

struct Harness {
    printer: Printer,
    buf: SharedBuf,
    clock: Arc<AtomicI64>,
}

impl Harness {
    fn new(mode: ProgressMode) -> Harness {
        let buf = SharedBuf::default();
        let mut printer = Printer::build(mode, Box::new(buf.clone()), false, test_settings());
        let clock = Arc::new(AtomicI64::new(T0));
        printer.clock = Clock(Some(clock.clone()));
        Harness {
            printer,
            buf,
            clock,
        }
    }

    fn feed(&mut self, secs: f64, status: StatusResponse) {
        self.clock.store(at(secs), Ordering::SeqCst);
        self.printer.update(&status);
    }

    fn set_time(&mut self, secs: f64) {
        self.clock.store(at(secs), Ordering::SeqCst);
    }
}

fn vertex(digest: &str, name: &str, started: f64, completed: Option<f64>) -> StatusResponse {
    StatusResponse {
        vertexes: vec![Vertex {
            digest: digest.into(),
            name: name.into(),
            started: ts(started),
            completed: completed.and_then(ts),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn cached(digest: &str, name: &str, at_secs: f64) -> StatusResponse {
    let mut s = vertex(digest, name, at_secs, Some(at_secs));
    s.vertexes[0].cached = true;
    s
}

fn failed(digest: &str, name: &str, started: f64, completed: f64, err: &str) -> StatusResponse {
    let mut s = vertex(digest, name, started, Some(completed));
    s.vertexes[0].error = err.into();
    s
}

fn log(digest: &str, at_secs: f64, msg: &str) -> StatusResponse {
    StatusResponse {
        logs: vec![VertexLog {
            vertex: digest.into(),
            timestamp: ts(at_secs),
            stream: 1,
            msg: msg.as_bytes().to_vec(),
        }],
        ..Default::default()
    }
}

fn status(
    digest: &str,
    id: &str,
    current: i64,
    total: i64,
    started: f64,
    now: f64,
    completed: bool,
) -> StatusResponse {
    StatusResponse {
        statuses: vec![VertexStatus {
            id: id.into(),
            vertex: digest.into(),
            current,
            total,
            timestamp: ts(now),
            started: ts(started),
            completed: if completed { ts(now) } else { None },
            ..Default::default()
        }],
        ..Default::default()
    }
}

const ERR: &str = "process \"/bin/sh -c exit 1\" did not complete successfully: exit code: 1";

/// A small `FROM busybox` / `RUN` build as BuildKit reports it.
fn busybox_build(h: &mut Harness) {
    h.feed(
        0.0,
        vertex(
            "sha256:d1",
            "[internal] load build definition from Dockerfile",
            0.0,
            None,
        ),
    );
    h.feed(
        0.005,
        status(
            "sha256:d1",
            "transferring dockerfile:",
            67,
            0,
            0.0,
            0.005,
            true,
        ),
    );
    h.feed(
        0.01,
        vertex(
            "sha256:d1",
            "[internal] load build definition from Dockerfile",
            0.0,
            Some(0.01),
        ),
    );
    h.feed(
        0.02,
        vertex(
            "sha256:d2",
            "[internal] load metadata for docker.io/library/busybox:latest",
            0.02,
            None,
        ),
    );
    h.feed(
        0.52,
        vertex(
            "sha256:d2",
            "[internal] load metadata for docker.io/library/busybox:latest",
            0.02,
            Some(0.52),
        ),
    );
    h.feed(
        0.6,
        vertex(
            "sha256:d3",
            "[1/3] FROM docker.io/library/busybox:latest",
            0.6,
            None,
        ),
    );
    h.feed(
        0.8,
        status(
            "sha256:d3",
            "sha256:9ad63333",
            1_200_000,
            3_400_000,
            0.6,
            0.8,
            false,
        ),
    );
    h.feed(
        0.9,
        status(
            "sha256:d3",
            "sha256:9ad63333",
            3_400_000,
            3_400_000,
            0.6,
            0.9,
            true,
        ),
    );
    h.feed(
        0.95,
        vertex(
            "sha256:d3",
            "[1/3] FROM docker.io/library/busybox:latest",
            0.6,
            Some(0.92),
        ),
    );
    h.feed(1.0, cached("sha256:d4", "[2/3] RUN echo cached", 1.0));
    h.feed(1.1, vertex("sha256:d5", "[3/3] RUN echo hi", 1.1, None));
    h.feed(1.334, log("sha256:d5", 1.334, "hi\n"));
    h.feed(
        1.4,
        vertex("sha256:d5", "[3/3] RUN echo hi", 1.1, Some(1.4)),
    );
}

#[test]
fn plain_output_matches_buildx() {
    let mut h = Harness::new(ProgressMode::Plain);
    h.printer.header("default", "docker");
    busybox_build(&mut h);
    let summary = h.printer.finish();
    assert!(summary.failed.is_empty());
    assert_eq!(
        h.buf.text(),
        "#0 building with \"default\" instance using docker driver\n\
         \n\
         #1 [internal] load build definition from Dockerfile\n\
         #1 transferring dockerfile: 67B done\n\
         #1 DONE 0.0s\n\
         \n\
         #2 [internal] load metadata for docker.io/library/busybox:latest\n\
         #2 DONE 0.5s\n\
         \n\
         #3 [1/3] FROM docker.io/library/busybox:latest\n\
         #3 sha256:9ad63333 1.20MB / 3.40MB 0.2s\n\
         #3 sha256:9ad63333 3.40MB / 3.40MB 0.3s done\n\
         #3 DONE 0.3s\n\
         \n\
         #4 [2/3] RUN echo cached\n\
         #4 CACHED\n\
         \n\
         #5 [3/3] RUN echo hi\n\
         #5 0.234 hi\n\
         #5 DONE 0.3s\n"
    );
}

#[test]
fn plain_interleaves_concurrent_vertexes_like_buildx() {
    let mut h = Harness::new(ProgressMode::Plain);
    h.feed(0.0, vertex("sha256:a", "[a 1/1] RUN slow", 0.0, None));
    h.feed(0.1, log("sha256:a", 0.1, "a1\n"));
    h.feed(6.0, vertex("sha256:b", "[b 1/1] RUN quick", 6.0, None));
    h.feed(6.1, log("sha256:a", 6.1, "a2\n"));
    h.feed(6.2, vertex("sha256:b", "[b 1/1] RUN quick", 6.0, Some(6.2)));
    h.feed(6.3, vertex("sha256:a", "[a 1/1] RUN slow", 0.0, Some(6.3)));
    h.printer.finish();
    assert_eq!(
        h.buf.text(),
        "#1 [a 1/1] RUN slow\n\
         #1 0.100 a1\n\
         #1 ...\n\
         \n\
         #2 [b 1/1] RUN quick\n\
         #2 DONE 0.2s\n\
         \n\
         #1 [a 1/1] RUN slow\n\
         #1 6.100 a2\n\
         #1 DONE 6.3s\n"
    );
}

#[test]
fn plain_partial_log_lines_are_joined() {
    let mut h = Harness::new(ProgressMode::Plain);
    h.feed(0.0, vertex("sha256:a", "[1/1] RUN printf", 0.0, None));
    h.feed(0.1, log("sha256:a", 0.1, "abc"));
    h.feed(0.2, log("sha256:a", 0.2, "def\nnext\n"));
    h.feed(0.3, vertex("sha256:a", "[1/1] RUN printf", 0.0, Some(0.3)));
    h.printer.finish();
    assert_eq!(
        h.buf.text(),
        "#1 [1/1] RUN printf\n#1 0.100 abcdef\n#1 0.200 next\n#1 DONE 0.3s\n"
    );
}

#[test]
fn plain_error_prints_error_line_and_log_block() {
    let mut h = Harness::new(ProgressMode::Plain);
    h.feed(
        0.0,
        vertex(
            "sha256:a",
            "[1/2] FROM docker.io/library/busybox",
            0.0,
            Some(0.1),
        ),
    );
    h.feed(0.2, vertex("sha256:b", "[2/2] RUN exit 1", 0.2, None));
    h.feed(0.3, log("sha256:b", 0.3, "oops\n"));
    h.feed(0.4, failed("sha256:b", "[2/2] RUN exit 1", 0.2, 0.4, ERR));
    h.feed(
        0.4,
        failed("sha256:c", "[2/2] RUN other", 0.2, 0.4, "context canceled"),
    );
    let summary = h.printer.finish();
    assert_eq!(
        h.buf.text(),
        format!(
            "#1 [1/2] FROM docker.io/library/busybox\n\
             #1 DONE 0.1s\n\
             \n\
             #2 [2/2] RUN exit 1\n\
             #2 0.100 oops\n\
             #2 ERROR: {ERR}\n\
             \n\
             #3 [2/2] RUN other\n\
             #3 CANCELED\n\
             ------\n > [2/2] RUN exit 1:\n0.100 oops\n------\n"
        )
    );
    assert_eq!(
        summary.failed,
        vec![FailedVertex {
            digest: "sha256:b".into(),
            name: "[2/2] RUN exit 1".into(),
            error: ERR.into(),
            logs: vec!["0.100 oops".into()],
        }]
    );
}

#[test]
fn plain_rate_limit_defers_output_to_tick() {
    let mut h = Harness::new(ProgressMode::Plain);
    h.printer.settings.min_redraw = Duration::from_millis(100);
    h.feed(0.0, vertex("sha256:a", "[1/1] RUN x", 0.0, None));
    h.feed(0.01, log("sha256:a", 0.01, "held\n"));
    assert_eq!(h.buf.text(), "#1 [1/1] RUN x\n");
    h.set_time(0.2);
    h.printer.tick();
    assert_eq!(h.buf.text(), "#1 [1/1] RUN x\n#1 0.010 held\n");
}

#[test]
fn warnings_show_in_plain_and_end_block() {
    let mut h = Harness::new(ProgressMode::Plain);
    h.feed(
        0.0,
        vertex(
            "sha256:a",
            "[internal] load build definition from Dockerfile",
            0.0,
            None,
        ),
    );
    let warning = Warning {
        vertex: "sha256:a".into(),
        level: 1,
        short: b"JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals (line 3)".to_vec(),
        ..Default::default()
    };
    h.feed(
        0.01,
        StatusResponse {
            warnings: vec![warning.clone(), warning.clone()],
            ..Default::default()
        },
    );
    h.feed(
        0.02,
        vertex(
            "sha256:a",
            "[internal] load build definition from Dockerfile",
            0.0,
            Some(0.02),
        ),
    );
    let summary = h.printer.finish();
    h.printer.print_warnings(&summary);
    assert_eq!(summary.warnings, vec![warning]);
    let text = h.buf.text();
    assert!(
        text.contains("#1 WARN: JSONArgsRecommended: JSON arguments recommended for CMD"),
        "{text}"
    );
    assert!(text.ends_with(
        "#1 DONE 0.0s\n\n \x1b[33m1 warning found (use docker --debug to expand):\n\x1b[0m - JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals (line 3)\n"
    ));
}

#[test]
fn quiet_prints_nothing_but_keeps_summary() {
    let mut h = Harness::new(ProgressMode::Quiet);
    h.feed(0.0, vertex("sha256:b", "[2/2] RUN exit 1", 0.0, None));
    h.feed(0.1, log("sha256:b", 0.1, "oops\n"));
    h.feed(
        0.2,
        StatusResponse {
            warnings: vec![Warning {
                vertex: "sha256:b".into(),
                short: b"W".to_vec(),
                ..Default::default()
            }],
            ..Default::default()
        },
    );
    h.feed(0.4, failed("sha256:b", "[2/2] RUN exit 1", 0.0, 0.4, ERR));
    let summary = h.printer.finish();
    h.printer.print_warnings(&summary);
    assert_eq!(h.buf.text(), "");
    assert_eq!(summary.warnings.len(), 1);
    assert_eq!(summary.failed[0].logs, vec!["0.100 oops".to_string()]);
}

#[test]
fn rawjson_prints_one_object_per_message() {
    let mut h = Harness::new(ProgressMode::RawJson);
    h.printer.header("default", "docker");
    let first = vertex("sha256:a", "[1/1] RUN echo hi", 0.0, None);
    let second = log("sha256:a", 0.5, "hi\n");
    h.feed(0.0, first.clone());
    h.feed(0.5, second.clone());
    h.printer.finish();
    let text = h.buf.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        vec![
            r#"{"vertexes":[{"digest":"sha256:a","name":"[1/1] RUN echo hi","started":"2023-11-14T22:13:20Z"}]}"#,
            r#"{"logs":[{"vertex":"sha256:a","stream":1,"data":"aGkK","timestamp":"2023-11-14T22:13:20.5Z"}]}"#,
        ]
    );
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v.is_object());
    }
    assert_eq!(rawjson::status_json(&first), lines_first(&text));
}

fn lines_first(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

#[test]
fn tty_draws_frames_and_restores_cursor() {
    let mut h = Harness::new(ProgressMode::Tty);
    assert_eq!(h.printer.mode(), ProgressMode::Tty);
    h.printer.set_size(60, 30);
    h.printer.header("default", "docker");
    h.feed(
        0.0,
        vertex(
            "sha256:a",
            "[1/2] FROM docker.io/library/busybox",
            0.0,
            Some(0.3),
        ),
    );
    h.feed(0.4, vertex("sha256:b", "[2/2] RUN echo hi", 0.4, None));
    h.feed(0.5, log("sha256:b", 0.5, "hello from the build\n"));
    h.set_time(1.0);
    h.printer.tick();
    let running = h.buf.text();
    assert!(
        running.contains(" => => # hello from the build"),
        "{running:?}"
    );
    assert!(
        running.contains(&format!("{:<53}  0.6s\n", " => [2/2] RUN echo hi")),
        "{running:?}"
    );
    h.feed(1.2, vertex("sha256:b", "[2/2] RUN echo hi", 0.4, Some(1.2)));
    h.feed(1.2, cached("sha256:c", "[internal] load metadata", 1.2));
    let summary = h.printer.finish();
    assert!(summary.failed.is_empty());
    let text = h.buf.text();
    // The final frame: header with FINISHED and the description on the right, every step.
    let last = text.rsplit("\x1b[?25l").next().unwrap();
    let header = format!(
        "{:<44} docker:default\n",
        "[+] Building 1.2s (3/3) FINISHED"
    );
    assert!(last.starts_with(&header), "{last:?}");
    assert!(last.contains(&format!(
        "{:<53}  0.3s\n",
        " => [1/2] FROM docker.io/library/busybox"
    )));
    assert!(last.contains(&format!("{:<53}  0.8s\n", " => [2/2] RUN echo hi")));
    assert!(last.contains(&format!(
        "{:<53}  0.0s\n",
        " => CACHED [internal] load metadata"
    )));
    assert!(!last.contains("=> => #"));
    assert!(text.ends_with("\x1b[?25h"));
    assert_eq!(
        text.matches("\x1b[?25l").count(),
        text.matches("\x1b[?25h").count()
    );
}

#[test]
fn tty_error_steps_and_colors() {
    let mut h = Harness::new(ProgressMode::Tty);
    h.printer.tty.colors = tty::Colors::from_env(None, None);
    h.printer.set_size(60, 30);
    h.feed(0.0, vertex("sha256:b", "[2/2] RUN exit 1", 0.0, None));
    h.feed(0.1, log("sha256:b", 0.1, "oops\n"));
    h.feed(0.2, failed("sha256:b", "[2/2] RUN exit 1", 0.0, 0.2, ERR));
    let summary = h.printer.finish();
    let text = h.buf.text();
    assert!(text.contains(&format!(
        "\x1b[31m{:<53}  0.2s\n\x1b[0m",
        " => ERROR [2/2] RUN exit 1"
    )));
    assert!(text.ends_with("\x1b[?25h------\n > [2/2] RUN exit 1:\n0.100 oops\n------\n"));
    assert_eq!(summary.failed[0].logs, vec!["0.100 oops".to_string()]);
}

#[test]
fn tty_drop_restores_cursor_without_finish() {
    let buf = SharedBuf::default();
    {
        let mut p = Printer::build(
            ProgressMode::Auto,
            Box::new(buf.clone()),
            true,
            test_settings(),
        );
        assert_eq!(p.mode(), ProgressMode::Tty);
        p.update(&vertex("sha256:a", "[1/1] RUN x", 0.0, None));
    }
    assert!(buf.text().ends_with("\x1b[?25h\x1b[?25h"));
}

#[test]
fn progress_mode_parses_buildx_values() {
    assert_eq!("auto".parse::<ProgressMode>().unwrap(), ProgressMode::Auto);
    assert_eq!("tty".parse::<ProgressMode>().unwrap(), ProgressMode::Tty);
    assert_eq!(
        "plain".parse::<ProgressMode>().unwrap(),
        ProgressMode::Plain
    );
    assert_eq!(
        "quiet".parse::<ProgressMode>().unwrap(),
        ProgressMode::Quiet
    );
    assert_eq!("none".parse::<ProgressMode>().unwrap(), ProgressMode::Quiet);
    assert_eq!(
        "rawjson".parse::<ProgressMode>().unwrap(),
        ProgressMode::RawJson
    );
    assert_eq!(
        "fancy".parse::<ProgressMode>().unwrap_err().to_string(),
        "invalid progress mode fancy"
    );
    assert_eq!(ProgressMode::RawJson.to_string(), "rawjson");
}

#[test]
fn label_status_prefixes_like_buildx() {
    let mut s = vertex("sha256:a", "[2/3] RUN make", 0.0, None);
    s.vertexes.push(Vertex {
        name: "exporting to image".into(),
        ..Default::default()
    });
    label_status(&mut s, "linux/arm64");
    assert_eq!(s.vertexes[0].name, "[linux/arm64 2/3] RUN make");
    assert_eq!(s.vertexes[1].name, "[linux/arm64] exporting to image");
}

#[test]
fn solve_feed_moves_timestamps_to_local_clock() {
    let mut feed = SolveFeed::new(Some("linux/amd64"));
    feed.created = at(100.0);
    let mut first = vertex("sha256:a", "[1/2] FROM busybox", 0.5, Some(1.0));
    feed.adjust(&mut first);
    assert_eq!(first.vertexes[0].name, "[linux/amd64 1/2] FROM busybox");
    assert_eq!(first.vertexes[0].started, ts(100.0));
    assert_eq!(first.vertexes[0].completed, ts(100.5));
    let mut later = log("sha256:a", 0.75, "x");
    later.statuses = status("sha256:a", "s", 0, 0, 0.6, 0.7, true).statuses;
    feed.adjust(&mut later);
    assert_eq!(later.logs[0].timestamp, ts(100.25));
    assert_eq!(later.statuses[0].started, ts(100.1));
    assert_eq!(later.statuses[0].timestamp, ts(100.2));
    let mut unlabelled = SolveFeed::new(None);
    let mut s = vertex("sha256:b", "[2/2] RUN x", 0.0, None);
    unlabelled.adjust(&mut s);
    assert_eq!(s.vertexes[0].name, "[2/2] RUN x");
}

#[test]
fn progress_groups_show_as_one_vertex() {
    let mut h = Harness::new(ProgressMode::Plain);
    let pg = bollard_buildkit_proto::pb::ProgressGroup {
        id: "g1".into(),
        name: "[linux/amd64] merging".into(),
        weak: false,
    };
    let mut a = vertex("sha256:a", "merge part a", 0.0, Some(0.2));
    a.vertexes[0].progress_group = Some(pg.clone());
    let mut b = vertex("sha256:b", "merge part b", 0.1, Some(0.4));
    b.vertexes[0].progress_group = Some(pg);
    h.feed(0.2, a);
    h.feed(0.4, b);
    h.printer.finish();
    assert_eq!(
        h.buf.text(),
        "#1 [linux/amd64] merging\n#1 DONE 0.2s\n\n#1 [linux/amd64] merging\n#1 DONE 0.4s\n"
    );
}

#[tokio::test]
async fn run_drives_printer_from_channel() {
    let buf = SharedBuf::default();
    let mut printer = Printer::build(
        ProgressMode::Plain,
        Box::new(buf.clone()),
        false,
        test_settings(),
    );
    printer.header("default", "docker");
    let (tx, rx) = mpsc::channel(16);
    let task = tokio::spawn(run(printer, rx));
    let mut s = vertex("sha256:a", "[1/1] RUN x", 0.0, Some(0.5));
    label_status(&mut s, "node1");
    tx.send(s).await.unwrap();
    drop(tx);
    let (_printer, summary) = task.await.unwrap();
    assert!(summary.failed.is_empty());
    assert_eq!(
        buf.text(),
        "#0 building with \"default\" instance using docker driver\n\n#1 [node1 1/1] RUN x\n#1 DONE 0.5s\n"
    );
}
