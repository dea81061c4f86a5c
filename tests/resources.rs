//! Resource behaviour a user relies on: a huge context streams in constant memory, and Ctrl-C
//! stops a build promptly with exit code 130.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// Waits for a child and returns (exit code, peak RSS in KiB) for that child alone.
fn wait_with_peak_rss(child: std::process::Child) -> (Option<i32>, i64) {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own unwaited child; status and usage are valid out-pointers.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4 failed");
    std::mem::forget(child);
    let code = if libc::WIFEXITED(status) {
        Some(libc::WEXITSTATUS(status))
    } else {
        None
    };
    (code, usage.ru_maxrss)
}

#[test]
fn one_gib_file_context_streams_in_constant_memory() {
    let user = User::new(Engine::Modern);
    let ctx = tempfile::Builder::new()
        .prefix("kiln-big-")
        .tempdir_in("/var/tmp")
        .unwrap();
    write_tree(
        ctx.path(),
        &[("Dockerfile", "FROM scratch\nCOPY big /big\n")],
    );
    // Sparse: costs no disk, but every byte is still read and sent.
    let f = std::fs::File::create(ctx.path().join("big")).unwrap();
    f.set_len(1 << 30).unwrap();
    drop(f);
    let child = user
        .kiln(&[
            "build",
            "--progress=plain",
            "-o",
            "type=cacheonly",
            ctx.path().to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (code, peak_kib) = wait_with_peak_rss(child);
    assert_eq!(code, Some(0), "build of a 1 GiB context failed");
    assert!(
        peak_kib < 100 * 1024,
        "kiln's peak RSS was {} MiB for a 1 GiB context",
        peak_kib / 1024
    );
}

#[test]
fn ctrl_c_cancels_the_build_and_exits_130() {
    let user = User::new(Engine::Modern);
    let ctx = tempfile::tempdir().unwrap();
    let marker = unique("sleep");
    write_tree(
        ctx.path(),
        &[(
            "Dockerfile",
            &format!("FROM busybox\nRUN echo {marker} && sleep 60\n"),
        )],
    );
    let mut child = user
        .kiln(&[
            "build",
            "--no-cache",
            "--progress=plain",
            ctx.path().to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the RUN step has started, then interrupt.
    let stderr = child.stderr.take().unwrap();
    let seen = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(stderr).lines();
        for l in lines.by_ref().map_while(Result::ok) {
            if l.contains(&marker) && !l.contains("RUN") {
                break;
            }
        }
        lines.map_while(Result::ok).count()
    });
    let started = Instant::now();
    while !seen.is_finished() && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let t = Instant::now();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?} to stop",
        t.elapsed()
    );
}
