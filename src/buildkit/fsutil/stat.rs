//! The fsutil `Stat` record for one path: Go `os.FileMode` bits (what fsutil puts on the wire,
//! not a raw unix `st_mode`), owner, size, nanosecond mtime, symlink target, device numbers and
//! extended attributes, plus the conversions back to unix modes for the receiver.

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use bollard_buildkit_proto::fsutil::types::Stat;

/// Go's `os.FileMode` bits, as fsutil encodes them in `Stat.mode`.
pub mod mode {
    pub const DIR: u32 = 1 << 31;
    pub const SYMLINK: u32 = 1 << 27;
    pub const DEVICE: u32 = 1 << 26;
    pub const NAMED_PIPE: u32 = 1 << 25;
    pub const SOCKET: u32 = 1 << 24;
    pub const SETUID: u32 = 1 << 23;
    pub const SETGID: u32 = 1 << 22;
    pub const CHAR_DEVICE: u32 = 1 << 21;
    pub const STICKY: u32 = 1 << 20;
    pub const IRREGULAR: u32 = 1 << 19;
    pub const PERM: u32 = 0o777;
    /// Bits that make an entry something other than a regular file.
    pub const TYPE: u32 = DIR | SYMLINK | NAMED_PIPE | SOCKET | DEVICE | CHAR_DEVICE | IRREGULAR;
}

/// Translates a unix `st_mode` into Go's `os.FileMode` bits.
pub fn go_mode(st_mode: u32) -> u32 {
    let mut m = st_mode & mode::PERM;
    m |= match st_mode & libc::S_IFMT {
        libc::S_IFBLK => mode::DEVICE,
        libc::S_IFCHR => mode::DEVICE | mode::CHAR_DEVICE,
        libc::S_IFDIR => mode::DIR,
        libc::S_IFIFO => mode::NAMED_PIPE,
        libc::S_IFLNK => mode::SYMLINK,
        libc::S_IFSOCK => mode::SOCKET,
        _ => 0,
    };
    if st_mode & libc::S_ISUID != 0 {
        m |= mode::SETUID;
    }
    if st_mode & libc::S_ISGID != 0 {
        m |= mode::SETGID;
    }
    if st_mode & libc::S_ISVTX != 0 {
        m |= mode::STICKY;
    }
    m
}

/// The permission and special bits of a Go mode as a unix mode for `chmod`/`mknod`.
pub fn unix_perm(go: u32) -> u32 {
    let mut m = go & mode::PERM;
    if go & mode::SETUID != 0 {
        m |= libc::S_ISUID;
    }
    if go & mode::SETGID != 0 {
        m |= libc::S_ISGID;
    }
    if go & mode::STICKY != 0 {
        m |= libc::S_ISVTX;
    }
    m
}

pub fn is_dir(go: u32) -> bool {
    go & mode::DIR != 0
}

pub fn is_symlink(go: u32) -> bool {
    go & mode::SYMLINK != 0
}

/// Whether the receiver may ask for this entry's contents. Both ends must agree on this, since
/// it decides which ids are valid in a REQ.
pub fn carries_data(go: u32) -> bool {
    go & mode::TYPE == 0
}

/// Go's `unix.Major`/`Minor` as fsutil uses them (the old 8+12/20-bit split, not glibc's).
fn dev_major(rdev: u64) -> i64 {
    ((rdev >> 8) & 0xfff) as i64
}

fn dev_minor(rdev: u64) -> i64 {
    ((rdev & 0xff) | ((rdev >> 12) & 0xfff00)) as i64
}

/// Builds the stat fsutil would send for `abs`, recorded under the slash-separated `rel`.
/// Hardlink detection needs the whole walk and is done by the caller.
pub fn stat_path(abs: &Path, rel: &str, md: &std::fs::Metadata) -> io::Result<Stat> {
    let st_mode = md.mode();
    let go = go_mode(st_mode);
    let mut stat = Stat {
        path: rel.to_string(),
        mode: go,
        uid: md.uid(),
        gid: md.gid(),
        mod_time: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
        ..Default::default()
    };
    if !is_dir(go) {
        // fsutil tests the type with bitwise ANDs rather than comparing S_IFMT, so symlinks and
        // sockets also take their (zero) rdev here; keep the same test for identical stats.
        let ifmt = st_mode & libc::S_IFMT;
        if ifmt & libc::S_IFBLK != 0 || ifmt & libc::S_IFCHR != 0 {
            stat.devmajor = dev_major(md.rdev());
            stat.devminor = dev_minor(md.rdev());
        }
        stat.size = md.size() as i64;
        if is_symlink(go) {
            stat.linkname = std::fs::read_link(abs)?.to_string_lossy().into_owned();
        }
    }
    stat.xattrs = read_xattrs(abs)?;
    // Sockets cannot be archived; fsutil drops the bit and the entry travels as a plain file.
    stat.mode &= !mode::SOCKET;
    Ok(stat)
}

fn c_path(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

/// Extended attributes of `path` itself (not a symlink's target), minus macOS bookkeeping ones.
/// A filesystem without xattr support yields none.
pub fn read_xattrs(path: &Path) -> io::Result<HashMap<String, Vec<u8>>> {
    let cpath = c_path(path)?;
    let mut out = HashMap::new();
    let names = loop {
        // SAFETY: a null buffer with size 0 only asks for the needed length.
        let len = unsafe { libc::llistxattr(cpath.as_ptr(), std::ptr::null_mut(), 0) };
        if len < 0 {
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::ENOTSUP) => Ok(out),
                _ => Err(io::Error::new(
                    err.kind(),
                    format!("failed to xattr {}: {err}", path.display()),
                )),
            };
        }
        if len == 0 {
            return Ok(out);
        }
        let mut buf = vec![0u8; len as usize];
        // SAFETY: buf is valid for buf.len() bytes.
        let got = unsafe { libc::llistxattr(cpath.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if got >= 0 {
            buf.truncate(got as usize);
            break buf;
        }
        // The list grew between the two calls; ask again.
        if io::Error::last_os_error().raw_os_error() != Some(libc::ERANGE) {
            return Ok(out);
        }
    };
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let key = String::from_utf8_lossy(name).into_owned();
        if key.starts_with("com.apple.") {
            continue;
        }
        let Ok(cname) = CString::new(name) else {
            continue;
        };
        // A value that vanished or cannot be read is skipped, as fsutil does.
        if let Some(value) = get_xattr(&cpath, &cname) {
            out.insert(key, value);
        }
    }
    Ok(out)
}

fn get_xattr(path: &CString, name: &CString) -> Option<Vec<u8>> {
    for _ in 0..4 {
        // SAFETY: size query with a null buffer.
        let len = unsafe { libc::lgetxattr(path.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) };
        if len < 0 {
            return None;
        }
        let mut buf = vec![0u8; len as usize];
        // SAFETY: buf is valid for buf.len() bytes.
        let got = unsafe {
            libc::lgetxattr(
                path.as_ptr(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if got >= 0 {
            buf.truncate(got as usize);
            return Some(buf);
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::ERANGE) {
            return None;
        }
    }
    None
}

/// Sets extended attributes on `path` itself; failures are ignored, as fsutil does, because
/// many destinations (tmpfs, other users' security namespaces) refuse some of them.
pub fn write_xattrs(path: &Path, xattrs: &HashMap<String, Vec<u8>>) {
    let Ok(cpath) = c_path(path) else { return };
    for (key, value) in xattrs {
        let Ok(cname) = CString::new(key.as_bytes()) else {
            continue;
        };
        // SAFETY: all pointers are valid for the given lengths.
        unsafe {
            libc::lsetxattr(
                cpath.as_ptr(),
                cname.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            );
        }
    }
}

/// Sets both atime and mtime of `path` (not a symlink's target) to `nanos` since the epoch.
pub fn set_times(path: &Path, nanos: i64) -> io::Result<()> {
    let cpath = c_path(path)?;
    let ts = libc::timespec {
        tv_sec: nanos.div_euclid(1_000_000_000) as libc::time_t,
        tv_nsec: nanos.rem_euclid(1_000_000_000) as _,
    };
    let times = [ts, ts];
    // SAFETY: cpath is a valid C string and times has two entries.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            cpath.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        let err = io::Error::last_os_error();
        return Err(io::Error::new(
            err.kind(),
            format!("setting times on {}: {err}", path.display()),
        ));
    }
    Ok(())
}

/// Creates a device node or fifo described by a Go mode.
pub fn make_node(path: &Path, go: u32, major: i64, minor: i64) -> io::Result<()> {
    let cpath = c_path(path)?;
    let kind = if go & mode::CHAR_DEVICE != 0 {
        libc::S_IFCHR
    } else if go & mode::NAMED_PIPE != 0 {
        libc::S_IFIFO
    } else {
        libc::S_IFBLK
    };
    let dev = libc::makedev(major as u32, minor as u32);
    // SAFETY: cpath is a valid C string.
    let rc = unsafe { libc::mknod(cpath.as_ptr(), (unix_perm(go) & 0o7777) | kind, dev) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_modes_become_go_file_modes() {
        assert_eq!(go_mode(libc::S_IFREG | 0o644), 0o644);
        assert_eq!(go_mode(libc::S_IFREG | 0o755), 0o755);
        assert_eq!(go_mode(libc::S_IFDIR | 0o755), mode::DIR | 0o755);
        assert_eq!(go_mode(libc::S_IFLNK | 0o777), mode::SYMLINK | 0o777);
        assert_eq!(
            go_mode(libc::S_IFREG | libc::S_ISUID | 0o755),
            mode::SETUID | 0o755
        );
        assert_eq!(
            go_mode(libc::S_IFDIR | libc::S_ISGID | libc::S_ISVTX | 0o1777),
            mode::DIR | mode::SETGID | mode::STICKY | 0o777
        );
        assert_eq!(
            go_mode(libc::S_IFCHR | 0o666),
            mode::DEVICE | mode::CHAR_DEVICE | 0o666
        );
        assert_eq!(go_mode(libc::S_IFIFO | 0o600), mode::NAMED_PIPE | 0o600);
        // Go prints these as the familiar constants; spot-check the raw values.
        assert_eq!(mode::DIR | 0o755, 2147484141);
        assert_eq!(mode::SYMLINK | 0o777, 134218239);
    }

    #[test]
    fn go_modes_round_trip_to_unix_permissions() {
        assert_eq!(
            unix_perm(mode::SETUID | mode::DIR | 0o755),
            libc::S_ISUID | 0o755
        );
        assert_eq!(unix_perm(mode::STICKY | 0o777), libc::S_ISVTX | 0o777);
        assert!(carries_data(0o644));
        assert!(carries_data(mode::SETUID | 0o755));
        assert!(!carries_data(mode::DIR | 0o755));
        assert!(!carries_data(mode::SYMLINK | 0o777));
    }

    #[test]
    fn device_numbers_use_gos_split() {
        // makedev(1, 3) is /dev/null.
        let rdev = libc::makedev(1, 3);
        assert_eq!((dev_major(rdev), dev_minor(rdev)), (1, 3));
        let rdev = libc::makedev(8, 300);
        assert_eq!((dev_major(rdev), dev_minor(rdev)), (8, 300));
    }
}
