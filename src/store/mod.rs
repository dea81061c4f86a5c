//! Builder instances on disk.
//!
//! Layout of the config directory (`KILN_CONFIG`, else the user's config dir, `~/.config/kiln`):
//! - `instances/<name>`: one JSON file per builder ([`NodeGroup`]);
//! - `activity/<name>`: when the builder was last saved or used (RFC 3339), kept apart so a build
//!   can record activity without rewriting the instance;
//! - `current`: the current builder per Docker endpoint, and an optional global one;
//! - `.lock`: the lock every reader and writer takes ([`Store::read`], [`Store::write`]);
//! - `refs/<builder>/<node>/<ref>`: the paths of each build kiln started ([`BuildState`]).
//!
//! Every file is written to a temporary file in the same directory and renamed into place, so a
//! reader sees the old or the new file, never half of one; the lock makes read-modify-write
//! sequences (create, rm, use) safe against concurrent kiln processes. This module knows nothing
//! of drivers or Docker contexts.

mod names;
mod refs;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use kiln_bake::calendar::{civil_from_days, days_from_civil};
use serde::{Deserialize, Serialize};

pub use names::{random_name, validate_name};
pub use refs::{read_build_state, save_build_state, BuildState};

const INSTANCES: &str = "instances";
const ACTIVITY: &str = "activity";
const CURRENT: &str = "current";

/// A stored builder: buildx calls it a node group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeGroup {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Driver")]
    pub driver: String,
    #[serde(rename = "Nodes", default)]
    pub nodes: Vec<Node>,
}

/// One node of a stored builder.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    #[serde(rename = "Name")]
    pub name: String,
    /// A Docker context name or a Docker host URL, as the user gave it.
    #[serde(rename = "Endpoint")]
    pub endpoint: String,
    /// Declared platforms, normalised (`os/arch[/variant]`).
    #[serde(rename = "Platforms", default)]
    pub platforms: Vec<String>,
    #[serde(
        rename = "DriverOpts",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(rename = "Flags", default, skip_serializing_if = "Vec::is_empty")]
    pub buildkitd_flags: Vec<String>,
    /// Files handed to BuildKit (`buildkitd.toml`), by name.
    #[serde(rename = "Files", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, String>,
}

/// Which builder is current: one per Docker endpoint key, and optionally one for all of them.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Current {
    #[serde(rename = "Global", default, skip_serializing_if = "Option::is_none")]
    global: Option<String>,
    #[serde(rename = "Endpoints", default)]
    by_endpoint: BTreeMap<String, String>,
}

/// The builder store in one directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// The directory kiln keeps its state in: `KILN_CONFIG`, else the platform's config dir.
pub fn config_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("KILN_CONFIG").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    directories::ProjectDirs::from("", "", "kiln")
        .map(|p| p.config_dir().to_path_buf())
        .context("cannot find a config directory for kiln: set KILN_CONFIG")
}

impl Store {
    /// The store in [`config_dir`].
    pub fn open() -> Result<Store> {
        Store::at(config_dir()?)
    }

    /// The store in `dir`, created if missing.
    pub fn at(dir: impl Into<PathBuf>) -> Result<Store> {
        let dir = dir.into();
        for sub in [INSTANCES, ACTIVITY] {
            std::fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("creating {}", dir.join(sub).display()))?;
        }
        Ok(Store { dir })
    }

    /// A read-only view; other readers may hold one at the same time, writers wait.
    pub fn read(&self) -> Result<Txn<'_>> {
        self.txn(false)
    }

    /// A read-write view; it excludes every other reader and writer until dropped.
    pub fn write(&self) -> Result<Txn<'_>> {
        self.txn(true)
    }

    fn txn(&self, exclusive: bool) -> Result<Txn<'_>> {
        let path = self.dir.join(".lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        if exclusive {
            lock.lock()
        } else {
            lock.lock_shared()
        }
        .with_context(|| format!("locking {}", path.display()))?;
        Ok(Txn {
            store: self,
            _lock: lock,
            exclusive,
        })
    }
}

/// A locked view of the store; the lock is released on drop.
#[derive(Debug)]
pub struct Txn<'a> {
    store: &'a Store,
    _lock: File,
    exclusive: bool,
}

impl Txn<'_> {
    fn path(&self, parts: &[&str]) -> PathBuf {
        parts
            .iter()
            .fold(self.store.dir.clone(), |p, part| p.join(part))
    }

    fn ensure_writable(&self) -> Result<()> {
        anyhow::ensure!(self.exclusive, "the builder store was opened read-only");
        Ok(())
    }

    /// Every stored builder, sorted by name. Files that are not builders are skipped.
    pub fn list(&self) -> Result<Vec<NodeGroup>> {
        let dir = self.path(&[INSTANCES]);
        let mut out = Vec::new();
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            // Temporary files (leading dot) and foreign files are not builders.
            if validate_name(&name).map(|n| n != name).unwrap_or(true) {
                continue;
            }
            if let Some(ng) = self.get(&name)? {
                out.push(ng);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The builder of that name, or `None` (also for names no builder could have).
    pub fn get(&self, name: &str) -> Result<Option<NodeGroup>> {
        let Ok(name) = validate_name(name) else {
            return Ok(None);
        };
        let path = self.path(&[INSTANCES, &name]);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let ng = serde_json::from_slice(&text)
            .with_context(|| format!("builder file {} is corrupt", path.display()))?;
        Ok(Some(ng))
    }

    /// Writes the builder (atomically) and records activity.
    pub fn save(&self, ng: &NodeGroup) -> Result<()> {
        self.ensure_writable()?;
        let name = validate_name(&ng.name)?;
        let json = serde_json::to_vec(ng)?;
        write_atomic(&self.path(&[INSTANCES, &name]), &json)?;
        self.touch_activity(&name)
    }

    /// Removes the builder; `false` when there was none.
    pub fn remove(&self, name: &str) -> Result<bool> {
        self.ensure_writable()?;
        let name = validate_name(name)?;
        let _ = std::fs::remove_file(self.path(&[ACTIVITY, &name]));
        match std::fs::remove_file(self.path(&[INSTANCES, &name])) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).with_context(|| format!("removing builder {name}")),
        }
    }

    /// Records that the builder was used now.
    pub fn touch_activity(&self, name: &str) -> Result<()> {
        let name = validate_name(name)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        write_atomic(
            &self.path(&[ACTIVITY, &name]),
            Timestamp(now).rfc3339().as_bytes(),
        )
    }

    /// When the builder was last saved or used, if recorded.
    pub fn last_activity(&self, name: &str) -> Option<Timestamp> {
        let name = validate_name(name).ok()?;
        let text = std::fs::read_to_string(self.path(&[ACTIVITY, &name])).ok()?;
        Timestamp::parse_rfc3339(text.trim())
    }

    fn read_current(&self) -> Result<Current> {
        let path = self.path(&[CURRENT]);
        match std::fs::read(&path) {
            // A `current` file from an older layout is not worth failing over: start afresh.
            Ok(t) => Ok(serde_json::from_slice(&t).unwrap_or_default()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Current::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Makes `name` the current builder for the Docker endpoint `key` (and for every endpoint if
    /// `global`); `None` returns `key` to its Docker context's own builder.
    pub fn set_current(&self, key: &str, name: Option<&str>, global: bool) -> Result<()> {
        self.ensure_writable()?;
        let mut cur = self.read_current()?;
        // Choosing a builder here ends a global choice made elsewhere, as in buildx.
        cur.global = None;
        match name {
            Some(n) => {
                let n = validate_name(n)?;
                if global {
                    cur.global = Some(n.clone());
                }
                cur.by_endpoint.insert(key.to_string(), n);
            }
            None => {
                cur.by_endpoint.remove(key);
            }
        }
        write_atomic(&self.path(&[CURRENT]), &serde_json::to_vec(&cur)?)
    }

    /// The current builder for the Docker endpoint `key`: the global one, else the one chosen for
    /// `key`; `None` when neither is set or the chosen builder no longer exists.
    pub fn current(&self, key: &str) -> Result<Option<NodeGroup>> {
        let cur = self.read_current()?;
        if let Some(g) = &cur.global {
            if let Some(ng) = self.get(g)? {
                return Ok(Some(ng));
            }
        }
        match cur.by_endpoint.get(key) {
            Some(name) => self.get(name),
            None => Ok(None),
        }
    }
}

/// Writes `path` by writing a temporary file beside it and renaming it over the old one, so
/// readers see the old contents or the new, never a mix (also used for `--iidfile` and
/// `--metadata-file`).
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .with_context(|| format!("{} is not a file path", path.display()))?
        .to_string_lossy();
    let tmp = dir.join(format!(".{file_name}.{}.tmp", crate::buildkit::new_id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(data)?;
        // Flush before the rename so a crash cannot leave an empty file under the real name.
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

/// Seconds since the Unix epoch, UTC, shown the ways buildx shows times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// `2006-01-02T15:04:05Z`
    pub fn rfc3339(self) -> String {
        let (y, mo, d, h, mi, s) = civil(self.0);
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    }

    /// `2006-01-02 15:04:05 +0000 UTC`, Go's default rendering of a UTC time (`inspect`).
    pub fn go_display(self) -> String {
        let (y, mo, d, h, mi, s) = civil(self.0);
        format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} +0000 UTC")
    }

    /// Parses the `...Z` form [`Timestamp::rfc3339`] writes (fractions of seconds ignored).
    pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
        let s = s.strip_suffix('Z')?;
        let (date, time) = s.split_once('T')?;
        let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
        let (y, mo, day) = (d.next()??, d.next()??, d.next()??);
        let time = time.split('.').next()?;
        let mut t = time.split(':').map(|p| p.parse::<i64>().ok());
        let (h, mi, sec) = (t.next()??, t.next()??, t.next()??);
        if !(1..=12).contains(&mo) || !(1..=31).contains(&day) {
            return None;
        }
        Some(Timestamp(
            days_from_civil(y, mo, day) * 86400 + h * 3600 + mi * 60 + sec,
        ))
    }
}

/// (year, month, day, hour, minute, second) for seconds since the epoch, UTC.
fn civil(secs: i64) -> (i64, i64, i64, i64, i64, i64) {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    (y, m.into(), d.into(), rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn group(name: &str, endpoint: &str) -> NodeGroup {
        NodeGroup {
            name: name.into(),
            driver: "docker".into(),
            nodes: vec![Node {
                name: format!("{name}0"),
                endpoint: endpoint.into(),
                platforms: vec!["linux/amd64".into()],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn save_get_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path()).unwrap();
        let txn = store.write().unwrap();
        txn.save(&group("b", "unix:///b.sock")).unwrap();
        txn.save(&group("a", "unix:///a.sock")).unwrap();
        let names: Vec<_> = txn.list().unwrap().into_iter().map(|g| g.name).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(txn.get("A").unwrap().unwrap(), group("a", "unix:///a.sock"));
        assert!(txn.last_activity("a").is_some());
        assert!(txn.remove("a").unwrap());
        assert!(!txn.remove("a").unwrap());
        assert!(txn.get("a").unwrap().is_none());
        assert!(txn.get("not a name").unwrap().is_none());
    }

    #[test]
    fn read_only_view_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path()).unwrap();
        let txn = store.read().unwrap();
        assert!(txn.save(&group("a", "x")).is_err());
    }

    #[test]
    fn concurrent_writers_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    // Each thread opens its own store, as separate processes would.
                    let store = Store::at(&path).unwrap();
                    let txn = store.write().unwrap();
                    let name = format!("b{i}");
                    assert!(txn.get(&name).unwrap().is_none());
                    txn.save(&group(&name, &format!("unix:///{i}.sock")))
                        .unwrap();
                    txn.set_current(&format!("key{i}"), Some(&name), false)
                        .unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let store = Store::at(&path).unwrap();
        let txn = store.read().unwrap();
        assert_eq!(txn.list().unwrap().len(), 16);
        for i in 0..16 {
            let cur = txn.current(&format!("key{i}")).unwrap().unwrap();
            assert_eq!(cur.name, format!("b{i}"));
        }
        // No temporary files are left behind.
        let leftovers = std::fs::read_dir(path.join(INSTANCES))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with('.')
            })
            .count();
        assert_eq!(leftovers, 0);
    }

    #[test]
    fn readers_never_see_half_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::at(dir.path()).unwrap());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let big = |i: usize| {
            let mut g = group("big", "unix:///big.sock");
            g.nodes[0]
                .files
                .insert("buildkitd.toml".into(), "x".repeat(200_000 + i));
            g
        };
        store.write().unwrap().save(&big(0)).unwrap();
        let writer = {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    store.write().unwrap().save(&big(i)).unwrap();
                }
            })
        };
        let reader = {
            let path = dir.path().join(INSTANCES).join("big");
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut reads = 0;
                // Read without the lock: renames alone must keep every read whole.
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let bytes = std::fs::read(&path).unwrap();
                    serde_json::from_slice::<NodeGroup>(&bytes).expect("a whole file");
                    reads += 1;
                }
                reads
            })
        };
        writer.join().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
    }

    #[test]
    fn current_is_per_endpoint_with_an_optional_global() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path()).unwrap();
        let txn = store.write().unwrap();
        txn.save(&group("a", "ctx-a")).unwrap();
        txn.save(&group("b", "ctx-b")).unwrap();
        assert!(txn.current("ctx-a").unwrap().is_none());

        txn.set_current("ctx-a", Some("a"), false).unwrap();
        txn.set_current("ctx-b", Some("b"), false).unwrap();
        assert_eq!(txn.current("ctx-a").unwrap().unwrap().name, "a");
        assert_eq!(txn.current("ctx-b").unwrap().unwrap().name, "b");
        assert!(txn
            .current("unix:///var/run/docker.sock")
            .unwrap()
            .is_none());

        txn.set_current("ctx-a", Some("b"), true).unwrap();
        assert_eq!(txn.current("elsewhere").unwrap().unwrap().name, "b");
        txn.set_current("ctx-a", Some("a"), false).unwrap();
        assert!(txn.current("elsewhere").unwrap().is_none());

        txn.set_current("ctx-a", None, false).unwrap();
        assert!(txn.current("ctx-a").unwrap().is_none());
        // A removed builder is no longer current.
        txn.remove("b").unwrap();
        assert!(txn.current("ctx-b").unwrap().is_none());
    }

    #[test]
    fn write_atomic_replaces_whole_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("iid");
        write_atomic(&path, b"sha256:1").unwrap();
        write_atomic(&path, b"sha256:2").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"sha256:2");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(write_atomic(&dir.path().join("missing/iid"), b"x").is_err());
    }

    #[test]
    fn timestamps_round_trip() {
        let t = Timestamp(1_763_913_480);
        assert_eq!(t.rfc3339(), "2025-11-23T15:58:00Z");
        assert_eq!(t.go_display(), "2025-11-23 15:58:00 +0000 UTC");
        assert_eq!(Timestamp::parse_rfc3339(&t.rfc3339()), Some(t));
        assert_eq!(Timestamp(0).rfc3339(), "1970-01-01T00:00:00Z");
        assert_eq!(
            Timestamp::parse_rfc3339("2000-02-29T00:00:00Z")
                .unwrap()
                .rfc3339(),
            "2000-02-29T00:00:00Z"
        );
        assert!(Timestamp::parse_rfc3339("garbage").is_none());
    }
}
