//! `vmount init`: a commented config with every key and its default.
//!
//! The text is one template ([`TEMPLATE`]) with a few per-filesystem slots. It cannot
//! drift from the parser: the tests parse it with the real parser for both filesystem
//! types, and compare the keys it mentions, table by table, with the keys the `Raw*`
//! structs accept (read from serde's own "expected one of" list, so a field added to
//! `RawConfig`, `RawFilesystem`, `RawFuse`, `RawNfs` or `RawWinfsp` fails the test until
//! the template documents it).

use std::io::Write as _;
use std::path::Path;

use anyhow::{Context as _, bail};

use crate::config::{self, FsType};

/// The config text; `@TYPE@`, `@FILESYSTEM@` and `@TIMEOUT@` are filled in by
/// [`template`]. A key is documented either set to its default or, when its default
/// cannot be written (unset, or not allowed for this filesystem), commented out as
/// `# key = example`.
pub const TEMPLATE: &str = r#"# vmount config (written by `vmount init @TYPE@`).
#
#   vmount check THIS_FILE     shows what it resolves to, without mounting
#   vmount THIS_FILE           mounts in the foreground; Ctrl-C unmounts
#
# Every key is listed with its default; delete what you do not change. Unknown keys are
# errors, so a typo never goes unnoticed.

# Directory to mount on (required). It must exist. `~` and `~/...` mean your home directory;
# a relative path is relative to the directory of this file. On Windows: a drive letter
# ("X:"), or for WinFsp a folder that does not exist yet.
mountpoint = "/tmp/vmount"

# Kernel bridge: "auto" (default), "fuse", "nfs" or "winfsp". "auto" takes the first usable
# one: fuse then nfs on Linux and macOS, winfsp then nfs on Windows. `vmount backends` shows
# which are usable here; `--backend` on the command line overrides this.
backend = "auto"

# Mount read-only (default false).
read_only = false

# Label shown in the mount table and in the "mounted" line (default: the filesystem type).
# 1 to 64 characters from A-Z a-z 0-9 . _ + -
name = "@TYPE@"

[filesystem]
@FILESYSTEM@
[fuse]
# Used by the fuse backend only.

# Worker threads serving requests; 0 = the number of CPUs (default 0, at most 1024).
threads = 0

# How long the kernel may cache attributes and name lookups: seconds as an integer or
# float, or a string with a unit such as "1s", "500ms", "2m" (at most a day). Unset, 3600
# for memfs (it changes only through its mount, so nothing stale is ever served); for
# loopback 3600 where vmount is told of changes made directly in the source and tells the
# kernel at once (Linux, as root: fanotify), else 1 (such changes show within a second).
# attr_timeout = @TIMEOUT@
# entry_timeout = @TIMEOUT@

# Linux: how long the kernel may remember that a name does not exist, so that a create
# after a failed stat, or a path looked for again, costs no round trip; same forms. Unset:
# entry_timeout, but at most @TIMEOUT@ (a loopback keeps misses a second even where names
# live an hour: a file created in the source while the same name was being looked up
# shows within that second).
# negative_timeout = @TIMEOUT@

# Let the kernel buffer writes and send them later, in larger pieces (default false).
writeback_cache = false

# Let users other than the one who mounted use the mount (default false). A non-root user
# needs `user_allow_other` in /etc/fuse.conf for this.
allow_other = false

# Let the kernel check permission bits before calling the filesystem. Unset (the default):
# off when the filesystem checks them itself (memfs; loopback run as root on Linux), on
# otherwise.
# default_permissions = true

# FUSE passthrough of file data (loopback; Linux 6.9+, root): "auto" (default), "on" or
# "off". "auto" leaves writeback_cache off where passthrough is used; memfs never uses it.
passthrough = "auto"

# Linux only: carry requests over FUSE-over-io_uring, one queue per CPU, which makes every
# file operation's round trip about half as costly: "auto" (default: when the kernel has it
# turned on, Linux 6.14+ with `echo Y > /sys/module/fuse/parameters/enable_uring`), "on"
# (required; as root vmount turns the kernel's switch on) or "off" (/dev/fuse).
io_uring = "auto"

# macOS (macFUSE) only: the volume name Finder shows (default: the mount's name), whether to
# refuse the `._*` Apple Double files (default true), and whether to refuse `com.apple.*`
# extended attributes (default false).
# volume_name = "vmount"
noappledouble = true
noapplexattr = false

[nfs]
# Used by the nfs backend only: an NFSv3 server on 127.0.0.1, mounted with the OS's client
# (Linux: needs nfs-common and root; macOS: mount_nfs as you; Windows: Client for NFS).

# TCP port on 127.0.0.1; 0 = any free port (default 0). Windows' Client for NFS asks port
# 111 only, so set port = 111 there and run as an administrator.
port = 0

# Run the OS mount command (default true); false serves only and prints the exact mount and
# unmount commands.
mount = true

# Let local users other than root and the one running vmount use the mount (default false).
allow_other = false

# Refuse to create `._*` (Apple Double) files and hide them from lookups, so Finder does not
# scatter them over the filesystem (default true on macOS, false elsewhere).
# noappledouble = false

[winfsp]
# Used by the winfsp backend only (Windows).

# The volume label Explorer shows (default: the mount's name).
# volume_name = "vmount"

# Find names regardless of case, as Windows programs expect (default true); names keep the
# case they were created with.
case_insensitive = true

# Give names starting with "." the hidden attribute (default false).
hide_dotfiles = false

# How long Windows may cache file information; same forms and defaults as attr_timeout.
file_info_timeout = @TIMEOUT@

[metrics]
# Serve Prometheus metrics at http://ADDRESS/metrics: a loopback address and port such as
# "127.0.0.1:9101" or "[::1]:9101" (port 0 picks a free one). Default: no endpoint.
# listen = "127.0.0.1:9101"
"#;

/// The `[filesystem]` body for memfs.
const MEMFS: &str = r#"# "memfs" (in memory, gone when unmounted) or "loopback" (mirrors a host directory).
type = "memfs"

# loopback only (and required there): the host directory to mirror.
# source = "/srv/data"

# The most bytes of file data memfs holds (default: no limit); writes past it fail with
# "No space left on device". "2GiB", "512MiB", "1.5GiB", "1G" (K, M, G, T, P, E and KiB,
# MiB, ... are powers of 1024), "100KB", "10MB" (powers of 1000), or a number of bytes.
# size_limit = "1GiB"

# The most files, directories and links memfs holds, an integer > 0 (default: no limit).
# max_inodes = 1000000

# Where file contents live: "auto" (default) keeps them in the kernel, in a private tmpfs
# no path leads to, when the daemon may make one (Linux, root), so FUSE passthrough serves
# reads and writes at tmpfs speed; else on the daemon's heap. "heap" or "kernel" (required).
# data = "auto"
"#;

/// The `[filesystem]` body for loopback.
const LOOPBACK: &str = r#"# "memfs" (in memory, gone when unmounted) or "loopback" (mirrors a host directory).
type = "loopback"

# The host directory to mirror (required for loopback). It must exist and must not contain
# the mountpoint. `~` and relative paths work as for mountpoint.
source = "/srv/data"

# memfs only (not allowed here): the most bytes of file data, the most inodes, and where
# file contents live.
# size_limit = "1GiB"
# max_inodes = 1000000
# data = "auto"
"#;

/// The config text for a filesystem type.
pub fn template(kind: FsType) -> String {
    let timeout = config::default_timeout(kind).as_secs();
    let body = match kind {
        FsType::Memfs => MEMFS,
        FsType::Loopback => LOOPBACK,
    };
    TEMPLATE
        .replace("@TYPE@", kind.as_str())
        .replace("@FILESYSTEM@", body)
        .replace("@TIMEOUT@", &timeout.to_string())
}

/// `vmount init`: writes the template to `output` (refusing to replace a file unless
/// `force`), or to stdout.
pub fn run(kind: FsType, output: Option<&Path>, force: bool) -> anyhow::Result<()> {
    let text = template(kind);
    let Some(path) = output else {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .context("cannot write to stdout")?;
        return Ok(());
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = match options.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!(
            "{} already exists; choose another --output, or add --force to replace it",
            path.display()
        ),
        Err(e) => bail!("cannot write {}: {}", path.display(), config::io_reason(&e)),
    };
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    let _ = writeln!(
        std::io::stderr(),
        "wrote {}; set `mountpoint`{}, then run `vmount check {0}`",
        path.display(),
        if kind == FsType::Loopback {
            " and `source`"
        } else {
            ""
        }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde::Deserialize;

    use super::*;
    use crate::config::{RawConfig, RawFilesystem, RawFuse, RawMetrics, RawNfs, RawWinfsp, Source};

    /// The keys a table type accepts, from serde's error for an unknown key.
    fn schema<T: for<'de> Deserialize<'de> + std::fmt::Debug>() -> BTreeSet<String> {
        let e = toml::from_str::<T>("zz_not_a_key = 1\n")
            .expect_err("an unknown key must be refused")
            .to_string();
        // "expected one of `a`, `b`", or "expected `a`" for a table of one key.
        let list = e
            .split("expected one of ")
            .nth(1)
            .or_else(|| e.split("expected ").nth(1))
            .unwrap_or_else(|| panic!("no key list in: {e}"));
        let list = list.lines().next().unwrap_or_default();
        list.split(", ")
            .map(|k| k.trim().trim_matches('`').to_owned())
            .collect()
    }

    /// `(table, key)` for every `key = ` and `# key = ` line of `text`, and `("", table)`
    /// for every `[table]` header.
    fn documented(text: &str) -> BTreeSet<(String, String)> {
        let mut table = String::new();
        let mut keys = BTreeSet::new();
        for line in text.lines() {
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                table = name.to_owned();
                keys.insert((String::new(), table.clone()));
                continue;
            }
            let line = line.strip_prefix("# ").unwrap_or(line);
            if let Some((key, _)) = line.split_once(" = ")
                && !key.is_empty()
                && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            {
                keys.insert((table.clone(), key.to_owned()));
            }
        }
        keys
    }

    #[test]
    fn every_key_is_documented_and_nothing_else() {
        let mut want = BTreeSet::new();
        for (table, keys) in [
            ("", schema::<RawConfig>()),
            ("filesystem", schema::<RawFilesystem>()),
            ("fuse", schema::<RawFuse>()),
            ("nfs", schema::<RawNfs>()),
            ("winfsp", schema::<RawWinfsp>()),
            ("metrics", schema::<RawMetrics>()),
        ] {
            assert!(!keys.is_empty(), "{table}: {keys:?}");
            for key in keys {
                want.insert((table.to_owned(), key));
            }
        }
        for kind in [FsType::Memfs, FsType::Loopback] {
            let got = documented(&template(kind));
            assert_eq!(
                got, want,
                "{kind:?}: the template and the Raw* structs differ"
            );
        }
    }

    #[test]
    fn the_template_parses_and_sets_only_defaults() {
        for kind in [FsType::Memfs, FsType::Loopback] {
            let text = template(kind);
            assert!(!text.contains('@'), "unfilled slot in {text}");
            let c: RawConfig = Source::from_text(&text)
                .parse()
                .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            assert_eq!(*c.filesystem.kind.get_ref(), kind);
            assert_eq!(c.backend.map(|b| b.into_inner()), Some(Default::default()));
            assert!(!c.read_only);
            assert_eq!(c.name.map(|n| n.0).as_deref(), Some(kind.as_str()));
            assert!(c.filesystem.size_limit.is_none() && c.filesystem.max_inodes.is_none());
            let (fuse, def) = (c.fuse, RawFuse::default());
            let timeout = Some(config::default_timeout(kind));
            assert_eq!(fuse.threads, def.threads);
            // Unset, so that loopback may cache longer where it watches its source.
            assert!(fuse.attr_timeout.is_none() && fuse.entry_timeout.is_none());
            assert_eq!(fuse.writeback_cache, def.writeback_cache);
            assert_eq!(fuse.allow_other, def.allow_other);
            assert_eq!(fuse.default_permissions, def.default_permissions);
            assert_eq!(
                fuse.passthrough.map(|p| p.into_inner()),
                Some(Default::default())
            );
            assert_eq!(fuse.io_uring, def.io_uring);
            assert_eq!(fuse.volume_name, def.volume_name);
            assert_eq!(fuse.noappledouble, def.noappledouble);
            assert_eq!(fuse.noapplexattr, def.noapplexattr);
            let (nfs, def) = (c.nfs, RawNfs::default());
            assert_eq!(
                (nfs.port, nfs.mount, nfs.allow_other, nfs.noappledouble),
                (def.port, def.mount, def.allow_other, def.noappledouble)
            );
            let (w, def) = (c.winfsp, RawWinfsp::default());
            assert_eq!(w.volume_name, def.volume_name);
            assert_eq!(w.case_insensitive, def.case_insensitive);
            assert_eq!(w.hide_dotfiles, def.hide_dotfiles);
            assert_eq!(w.file_info_timeout.map(|s| s.0), timeout);
            assert!(c.metrics.listen.is_none());
        }
    }
}
