//! What differs per OS: whether a client is installed, the mount and unmount commands,
//! and how to tell that our mount is (still) in the mount table.
//!
//! The command builders for every OS are plain string functions compiled everywhere, so
//! their unit tests run on any host; only the choice among them, the probes and the
//! mount-table readers are `cfg`-gated.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::{EXPORT_NAME, NfsError, Unavailable};

/// The server's address as clients name it.
const HOST: &str = "127.0.0.1";

/// A command to run: a program and its arguments. Displayed as a shell line a user can
/// paste (arguments quoted where needed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    program: OsString,
    args: Vec<OsString>,
    /// Run through `sudo -n` (shown as `sudo`): Linux mounts as a non-root user.
    sudo: bool,
}

impl Command {
    fn new(
        program: impl Into<OsString>,
        args: impl IntoIterator<Item = impl Into<OsString>>,
    ) -> Self {
        Command {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            sudo: false,
        }
    }

    fn with_sudo(mut self, sudo: bool) -> Self {
        self.sudo = sudo;
        self
    }

    /// The same command with `args` inserted after the program (e.g. `-l` for lazy).
    fn with_flag(&self, flag: &str) -> Self {
        let mut c = self.clone();
        c.args.insert(0, flag.into());
        c
    }

    fn process(&self) -> std::process::Command {
        if self.sudo {
            let mut c = std::process::Command::new("sudo");
            c.arg("-n").arg(&self.program).args(&self.args);
            c
        } else {
            let mut c = std::process::Command::new(&self.program);
            c.args(&self.args);
            c
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.sudo {
            f.write_str("sudo ")?;
        }
        f.write_str(&quote(&self.program.to_string_lossy()))?;
        for a in &self.args {
            write!(f, " {}", quote(&a.to_string_lossy()))?;
        }
        Ok(())
    }
}

/// Quotes `s` for a POSIX shell when it holds anything but safe characters. Windows
/// paths (`\\127.0.0.1\vmount`, `X:`) are shown as they are, since cmd.exe does not
/// unquote single quotes.
fn quote(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c);
    if cfg!(windows) || (!s.is_empty() && s.chars().all(safe)) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `127.0.0.1:/vmount`, as mount tables show the source.
fn source() -> String {
    format!("{HOST}:/{EXPORT_NAME}")
}

/// Linux: NFSv3 over TCP on one port for NFS and MOUNT (no portmapper query), no lock
/// manager and no NFSACL side protocol (we serve neither), and a soft mount with short
/// timeouts (`timeo` is in tenths of a second), so that a daemon that died leaves EIO
/// rather than processes hung in the kernel. `actimeo=1` matches FUSE's default caching.
pub(crate) fn linux_mount(port: u16, mountpoint: &Path) -> Command {
    let opts = format!(
        "vers=3,proto=tcp,port={port},mountport={port},mountproto=tcp,nolock,noacl,soft,\
         timeo=50,retrans=2,actimeo=1,rsize=1048576,wsize=1048576,sec=sys"
    );
    Command::new(
        "mount",
        [
            OsString::from("-t"),
            "nfs".into(),
            "-o".into(),
            opts.into(),
            source().into(),
            mountpoint.as_os_str().to_owned(),
        ],
    )
}

/// Linux unmount; the lazy fallback is this with `-l`.
pub(crate) fn linux_unmount(mountpoint: &Path) -> Command {
    Command::new("umount", [mountpoint.as_os_str()])
}

/// macOS: as the user (mount_nfs needs no root for a mountpoint the user owns); locks are
/// local (`locallocks`: we serve no lock manager); `nobrowse` keeps the mount out of the
/// Finder sidebar and Spotlight.
pub(crate) fn macos_mount(port: u16, mountpoint: &Path) -> Command {
    let opts = format!(
        "vers=3,tcp,port={port},mountport={port},locallocks,nobrowse,soft,timeo=50,retrans=2,\
         actimeo=1,rsize=1048576,wsize=1048576"
    );
    Command::new(
        "/sbin/mount_nfs",
        [
            OsString::from("-o"),
            opts.into(),
            source().into(),
            mountpoint.as_os_str().to_owned(),
        ],
    )
}

/// macOS unmount; the forced fallback is `diskutil unmount force`.
pub(crate) fn macos_unmount(mountpoint: &Path) -> Command {
    Command::new("/sbin/umount", [mountpoint.as_os_str()])
}

fn macos_force_unmount(mountpoint: &Path) -> Command {
    Command::new(
        "/usr/sbin/diskutil",
        [
            OsString::from("unmount"),
            "force".into(),
            mountpoint.as_os_str().to_owned(),
        ],
    )
}

/// Windows: Client for NFS's `mount.exe` (not a Unix `mount` earlier on PATH), anonymous
/// (uid/gid -2, so no identity mapping service is needed), no NLM, soft, case-sensitive
/// like the filesystems we serve. It asks the portmapper on port 111, so the port is not
/// part of the command.
pub(crate) fn windows_mount(mountpoint: &Path) -> Command {
    Command::new(
        windows_system32("mount.exe"),
        [
            OsString::from("-o"),
            "anon,nolock,mtype=soft,casesensitive=yes".into(),
            format!(r"\\{HOST}\{EXPORT_NAME}").into(),
            mountpoint.as_os_str().to_owned(),
        ],
    )
}

/// Windows unmount, forced (`-f`) so that open files do not keep the drive mapped.
pub(crate) fn windows_unmount(mountpoint: &Path) -> Command {
    Command::new(
        windows_system32("umount.exe"),
        [OsString::from("-f"), mountpoint.as_os_str().to_owned()],
    )
}

/// `%SystemRoot%\System32\NAME` (default `C:\Windows`).
fn windows_system32(name: &str) -> PathBuf {
    let root = std::env::var_os("SystemRoot")
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| r"C:\Windows".into());
    // Joined by hand: on a Unix host (tests), `Path::join` would use `/`.
    let mut p = root;
    p.push(r"\System32\");
    p.push(name);
    PathBuf::from(p)
}

/// The mount command for this OS.
pub(crate) fn mount_command(port: u16, mountpoint: &Path) -> Command {
    cfg_if_os(
        || linux_mount(port, mountpoint).with_sudo(!is_root()),
        || macos_mount(port, mountpoint),
        || windows_mount(mountpoint),
    )
}

/// The unmount command for this OS.
pub(crate) fn unmount_command(mountpoint: &Path) -> Command {
    cfg_if_os(
        || linux_unmount(mountpoint).with_sudo(!is_root()),
        || macos_unmount(mountpoint),
        || windows_unmount(mountpoint),
    )
}

/// Picks the Linux, macOS or Windows arm; other Unixes use the Linux form (`mount -t
/// nfs`), which is what the BSDs' and illumos' `mount` accept too.
fn cfg_if_os<T>(
    linux: impl FnOnce() -> T,
    macos: impl FnOnce() -> T,
    windows: impl FnOnce() -> T,
) -> T {
    if cfg!(target_os = "macos") {
        macos()
    } else if cfg!(windows) {
        windows()
    } else {
        linux()
    }
}

/// Runs `cmd` to completion; on failure, the command line and what it printed.
pub(crate) fn run(cmd: &Command) -> Result<(), (String, String)> {
    tracing::debug!("running {cmd}");
    let out = cmd
        .process()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| (cmd.to_string(), format!("could not run it: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let mut said = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if said.is_empty() {
        said = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    }
    if said.is_empty() {
        said = format!("nothing ({})", out.status);
    }
    // One line: the messages of mount helpers span several.
    Err((
        cmd.to_string(),
        said.lines().collect::<Vec<_>>().join(" / "),
    ))
}

/// Unmounts our mount at `mp`: the plain unmount, then the lazy (Linux) or forced
/// (macOS) one when the first fails, e.g. because the mount is busy.
pub(crate) fn unmount(mp: &Path) -> Result<(), NfsError> {
    let first = unmount_command(mp);
    let Err((cmd, stderr)) = run(&first) else {
        return Ok(());
    };
    tracing::debug!("`{cmd}` failed ({stderr}); trying harder");
    let second = if cfg!(target_os = "macos") {
        macos_force_unmount(mp)
    } else if cfg!(windows) {
        return Err(NfsError::UnmountFailed { cmd, stderr });
    } else {
        first.with_flag("-l")
    };
    run(&second).map_err(|(cmd, stderr)| NfsError::UnmountFailed { cmd, stderr })
}

/// Whether this machine can mount NFS: the OS's client is installed, and on Linux we are
/// root or may use `sudo` without a password.
pub fn available() -> Result<(), Unavailable> {
    if cfg!(target_os = "macos") {
        if Path::new("/sbin/mount_nfs").exists() {
            return Ok(());
        }
        return Err(Unavailable {
            reason: "/sbin/mount_nfs is missing".to_owned(),
            fix: "it is part of macOS; reinstall or repair the system".to_owned(),
        });
    }
    if cfg!(windows) {
        if windows_system32("mount.exe").exists() {
            return Ok(());
        }
        return Err(Unavailable {
            reason: "Client for NFS is not installed (no mount.exe in System32)".to_owned(),
            fix: "install it (Windows Pro/Enterprise: `Enable-WindowsOptionalFeature -Online \
                  -FeatureName ServicesForNFS-ClientOnly,ClientForNFS-Infrastructure`) or use \
                  backend = \"winfsp\""
                .to_owned(),
        });
    }
    if find_mount_nfs().is_none() {
        return Err(Unavailable {
            reason: "mount.nfs is not installed".to_owned(),
            fix: "install nfs-common (`apt install nfs-common`, `dnf install nfs-utils`) and run \
                  as root"
                .to_owned(),
        });
    }
    if !kernel_has_nfs_client() {
        return Err(Unavailable {
            reason: "this kernel has no NFS client (no nfs in /proc/filesystems and no nfs \
                     module for it)"
                .to_owned(),
            fix: "load it (`modprobe nfs`), use a kernel with NFS client support, or use \
                  backend = \"fuse\""
                .to_owned(),
        });
    }
    if !is_root() && !sudo_works() {
        return Err(Unavailable {
            reason: "mounting NFS needs root, and this user is neither root nor allowed \
                     passwordless sudo"
                .to_owned(),
            fix: "run vmount as root (e.g. with sudo)".to_owned(),
        });
    }
    Ok(())
}

/// Whether `mount -t nfs` can work with this kernel: NFS is registered in
/// /proc/filesystems, or an nfs module exists that mount.nfs would load.
#[cfg(target_os = "linux")]
fn kernel_has_nfs_client() -> bool {
    if std::fs::read_to_string("/proc/filesystems").is_ok_and(|t| {
        t.lines()
            .any(|l| l.split_whitespace().last() == Some("nfs"))
    }) {
        return true;
    }
    let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") else {
        return false;
    };
    Path::new("/lib/modules")
        .join(release.trim())
        .join("kernel/fs/nfs")
        .is_dir()
}

#[cfg(not(target_os = "linux"))]
fn kernel_has_nfs_client() -> bool {
    true
}

/// `mount.nfs` on PATH or in /sbin, /usr/sbin.
fn find_mount_nfs() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(["/sbin".into(), "/usr/sbin".into()])
        .map(|d| d.join("mount.nfs"))
        .find(|p| p.is_file())
}

fn sudo_works() -> bool {
    std::process::Command::new("sudo")
        .args(["-n", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Refuses a port the OS's client cannot use before anything is served.
pub(crate) fn check_port(port: u16) -> Result<(), NfsError> {
    if cfg!(windows) && port != 111 {
        return Err(NfsError::WindowsNeedsPort111 { port });
    }
    Ok(())
}

/// The users, besides root and the daemon's own, who may use the mount.
///
/// Without `allow_other`: nobody else. With it: every account the system knows when the
/// server starts (the server takes a list and refuses any uid outside it), read from the
/// user database the way the OS's tools see it (`getent passwd` includes NSS sources such
/// as LDAP; macOS keeps its users in Directory Services, not /etc/passwd). Windows sends
/// no meaningful uids and the server does not check them there.
pub(crate) fn allowed_uids(allow_other: bool) -> Vec<u32> {
    if !allow_other || cfg!(windows) {
        return Vec::new();
    }
    let listed = |program: &str, args: &[&str]| {
        std::process::Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let mut uids = if cfg!(target_os = "macos") {
        listed("/usr/bin/dscl", &[".", "-list", "/Users", "UniqueID"])
            .map(|text| dscl_uids(&text))
            .unwrap_or_default()
    } else {
        listed("getent", &["passwd"])
            .map(|text| passwd_uids(&text))
            .unwrap_or_default()
    };
    if uids.is_empty() {
        uids = std::fs::read_to_string("/etc/passwd")
            .map(|text| passwd_uids(&text))
            .unwrap_or_default();
    }
    if uids.is_empty() {
        tracing::warn!(
            "allow_other: could not read the user database; only root and this user may use \
             the mount"
        );
    }
    uids.sort_unstable();
    uids.dedup();
    uids
}

/// The uid column of an /etc/passwd text (or `getent passwd` output).
fn passwd_uids(text: &str) -> Vec<u32> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(':').nth(2)?.parse().ok())
        .collect()
}

/// The uids of `dscl . -list /Users UniqueID` output (`name   uid` per line; negative
/// ids, e.g. nobody's -2, are the 32-bit two's complement the kernel sends).
fn dscl_uids(text: &str) -> Vec<u32> {
    text.lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|id| {
            id.parse::<u32>()
                .ok()
                .or_else(|| id.parse::<i32>().ok().map(|v| v as u32))
        })
        .collect()
}

/// `path` made absolute without resolving symlinks or touching a possibly dead mount.
pub(crate) fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// The canonical mountpoint, checked: it exists, is a directory and is not already a
/// mount point (on Windows: a drive letter).
pub(crate) fn check_mountpoint(path: &Path) -> Result<PathBuf, NfsError> {
    if cfg!(windows) {
        let s = path.to_string_lossy();
        let b = s.trim_end_matches(['\\', '/']).as_bytes();
        if b.len() == 2 && b[0].is_ascii_alphabetic() && b[1] == b':' {
            return Ok(PathBuf::from(s.trim_end_matches(['\\', '/'])));
        }
        return Err(NfsError::NeedsDriveLetter(path.to_owned()));
    }
    let abs = absolute(path);
    match std::fs::metadata(&abs) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(NfsError::NotADirectory(abs)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(NfsError::MountpointMissing(abs));
        }
        Err(e) => {
            return Err(NfsError::Io {
                context: format!("cannot use the mountpoint {}", abs.display()),
                source: e,
            });
        }
    }
    let canon = std::fs::canonicalize(&abs).map_err(|e| NfsError::Io {
        context: format!("cannot resolve the mountpoint {}", abs.display()),
        source: e,
    })?;
    if mount_entry(&canon).is_some() {
        return Err(NfsError::AlreadyMounted(canon));
    }
    Ok(canon)
}

/// Whether the topmost mount at `mp` is an NFS mount of our export.
pub(crate) fn is_our_mount(mp: &Path) -> bool {
    if cfg!(windows) {
        // Client for NFS maps a drive: it is ours while its root answers.
        return std::fs::metadata(format!("{}\\", mp.display())).is_ok();
    }
    mount_entry(mp).is_some_and(|(fstype, src)| fstype.starts_with("nfs") && src == source())
}

/// The type and source of the topmost mount at `mp`, from the mount table.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn mount_entry(mp: &Path) -> Option<(String, String)> {
    vmount_core::mounts::lookup(mp).map(|e| (e.fstype, e.source))
}

/// The type and source of the topmost mount at `mp`, from the kernel's mount list (not
/// `statfs` on the path, which would wait on a mount whose server is gone).
#[cfg(target_os = "macos")]
fn mount_entry(mp: &Path) -> Option<(String, String)> {
    use std::ffi::CStr;
    use std::os::unix::ffi::OsStrExt as _;

    let mut buf: *mut libc::statfs = std::ptr::null_mut();
    // SAFETY: `buf` is a valid out-pointer; with MNT_NOWAIT the kernel answers from its
    // cached list without contacting any file server.
    let n = unsafe { libc::getmntinfo(&mut buf, libc::MNT_NOWAIT) };
    if n <= 0 || buf.is_null() {
        return None;
    }
    // SAFETY: getmntinfo returned `n` entries at `buf`, valid until the next call on this
    // thread; they are copied out before returning.
    let entries = unsafe { std::slice::from_raw_parts(buf, usize::try_from(n).ok()?) };
    let want = mp.as_os_str().as_bytes();
    let mut found = None;
    for st in entries {
        // SAFETY: the kernel fills these arrays with NUL-terminated strings.
        let (on, from, fstype) = unsafe {
            (
                CStr::from_ptr(st.f_mntonname.as_ptr()),
                CStr::from_ptr(st.f_mntfromname.as_ptr()),
                CStr::from_ptr(st.f_fstypename.as_ptr()),
            )
        };
        if on.to_bytes() == want {
            found = Some((
                fstype.to_string_lossy().into_owned(),
                from.to_string_lossy().into_owned(),
            ));
        }
    }
    found
}

/// Other systems: a directory whose device differs from its parent's is a mount point;
/// its type is unknown, so it never counts as ours.
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "macos")))]
fn mount_entry(mp: &Path) -> Option<(String, String)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        let dev = std::fs::metadata(mp).ok()?.dev();
        let parent = std::fs::metadata(mp.parent()?).ok()?.dev();
        (dev != parent).then(|| (String::new(), String::new()))
    }
    #[cfg(not(unix))]
    {
        let _ = mp;
        None
    }
}

fn is_root() -> bool {
    #[cfg(unix)]
    {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() == 0 }
    }
    #[cfg(not(unix))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_command_line() {
        let c = linux_mount(20049, Path::new("/mnt/my data"));
        assert!(!c.sudo);
        assert_eq!(
            c.to_string(),
            "mount -t nfs -o vers=3,proto=tcp,port=20049,mountport=20049,mountproto=tcp,nolock,\
             noacl,soft,timeo=50,retrans=2,actimeo=1,rsize=1048576,wsize=1048576,sec=sys \
             127.0.0.1:/vmount '/mnt/my data'"
        );
        assert_eq!(
            c.clone().with_sudo(true).to_string(),
            format!("sudo {c}"),
            "the shown command uses plain sudo"
        );
        let p = c.with_sudo(true).process();
        let args: Vec<_> = p.get_args().collect();
        assert_eq!(p.get_program(), "sudo");
        assert_eq!(args[..3], ["-n", "mount", "-t"], "runs non-interactively");
        assert_eq!(
            args.last().copied(),
            Some(std::ffi::OsStr::new("/mnt/my data"))
        );
        let u = linux_unmount(Path::new("/mnt/x"));
        assert_eq!(u.to_string(), "umount /mnt/x");
        assert_eq!(u.with_flag("-l").to_string(), "umount -l /mnt/x");
    }

    #[test]
    fn macos_command_line() {
        let c = macos_mount(4000, Path::new("/Users/me/v"));
        assert_eq!(
            c.to_string(),
            "/sbin/mount_nfs -o vers=3,tcp,port=4000,mountport=4000,locallocks,nobrowse,soft,\
             timeo=50,retrans=2,actimeo=1,rsize=1048576,wsize=1048576 127.0.0.1:/vmount \
             /Users/me/v"
        );
        assert_eq!(
            macos_unmount(Path::new("/v")).to_string(),
            "/sbin/umount /v"
        );
        assert_eq!(
            macos_force_unmount(Path::new("/v")).to_string(),
            "/usr/sbin/diskutil unmount force /v"
        );
    }

    #[test]
    fn windows_command_line() {
        let c = windows_mount(Path::new("X:"));
        let args: Vec<String> = c
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(
            c.program
                .to_string_lossy()
                .ends_with(r"\System32\mount.exe")
        );
        assert_eq!(
            args,
            [
                "-o",
                "anon,nolock,mtype=soft,casesensitive=yes",
                r"\\127.0.0.1\vmount",
                "X:"
            ]
        );
        let u = windows_unmount(Path::new("X:"));
        assert!(
            u.program
                .to_string_lossy()
                .ends_with(r"\System32\umount.exe")
        );
        assert_eq!(u.args, [OsString::from("-f"), "X:".into()]);
    }

    #[test]
    fn quoting() {
        if cfg!(windows) {
            return;
        }
        assert_eq!(quote("/a/b-c_d.e"), "/a/b-c_d.e");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
    }

    #[test]
    fn passwd_parsing() {
        let uids = passwd_uids("root:x:0:0::/root:/bin/sh\n# c\nbad\nme:x:1000:1000::/h:/bin/sh\n");
        assert_eq!(uids, [0, 1000]);
        let uids = dscl_uids("_www        70\nnobody     -2\nme       501\nbroken\n");
        assert_eq!(uids, [70, u32::MAX - 1, 501]);
        assert!(allowed_uids(false).is_empty());
        if cfg!(target_os = "linux") {
            let all = allowed_uids(true);
            assert!(all.contains(&0) && all.contains(&65534), "{all:?}");
        }
    }

    #[test]
    fn port_rule() {
        let r = check_port(2049);
        if cfg!(windows) {
            let e = r.unwrap_err().to_string();
            assert!(
                e.contains("port 111") && e.contains("[nfs] port = 111"),
                "{e}"
            );
        } else {
            assert!(r.is_ok());
        }
    }

    #[test]
    fn mountpoint_checks() {
        if cfg!(windows) {
            assert!(check_mountpoint(Path::new("X:")).is_ok());
            assert!(matches!(
                check_mountpoint(Path::new(r"C:\mnt")),
                Err(NfsError::NeedsDriveLetter(_))
            ));
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let e = check_mountpoint(&missing).unwrap_err();
        assert!(matches!(e, NfsError::MountpointMissing(_)), "{e}");
        assert!(e.to_string().contains("mkdir -p"), "{e}");
        let file = dir.path().join("f");
        std::fs::write(&file, b"").unwrap();
        assert!(matches!(
            check_mountpoint(&file),
            Err(NfsError::NotADirectory(_))
        ));
        let ok = check_mountpoint(dir.path()).unwrap();
        assert_eq!(ok, dir.path().canonicalize().unwrap());
        if cfg!(target_os = "linux") {
            assert!(matches!(
                check_mountpoint(Path::new("/proc")),
                Err(NfsError::AlreadyMounted(_))
            ));
        }
        assert!(!is_our_mount(dir.path()));
    }
}
