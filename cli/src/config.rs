//! The raw configuration file: TOML as the user wrote it.
//!
//! Parsing is one `serde` pass with `deny_unknown_fields` on every table, so that a typo
//! is an error naming the key and its line rather than a silently ignored setting. Value
//! checks that need only the value itself (a size string, a timeout, a port) live in the
//! `Deserialize` impls of small newtypes below; `toml` attaches the value's span to any
//! error they return, so those errors name the line too. Checks across keys (a loopback
//! filesystem needs `source`, memfs must not have one) run right after parsing, on
//! [`Spanned`] values, for the same reason.
//!
//! serde's messages name neither the table nor (when a span is known) the key, so
//! [`Source::parse`] finds both again from the error's span in the parsed document and
//! rewords the message into one line: `4:1: unknown key `x` in [filesystem], ...`.
//!
//! Nothing here touches the filesystem or probes a backend: that is [`crate::plan`]'s job.
//! Every [`ConfigError`] is the user's to fix in the file and maps to exit code 2.

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use toml::Spanned;

/// A mistake in the configuration file, located at a line and column.
#[derive(Debug)]
pub struct ConfigError {
    /// The config file as the user named it, or `None` for text not read from a file.
    path: Option<PathBuf>,
    /// 1-based line and column, when the error could be located.
    position: Option<(usize, usize)>,
    message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(path) = &self.path {
            write!(f, "{}:", path.display())?;
        }
        if let Some((line, col)) = self.position {
            write!(f, "{line}:{col}:")?;
        }
        if self.path.is_some() || self.position.is_some() {
            f.write_str(" ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The text of a configuration file and the name it was read under, so that errors found
/// after parsing can still be located.
#[derive(Debug, Clone)]
pub struct Source {
    path: Option<PathBuf>,
    text: String,
}

impl Source {
    /// Reads `path`. An unreadable or non-UTF-8 file is a config error too: the command
    /// line named the wrong file, which is a usage mistake, not a machine problem.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: Some(path.to_path_buf()),
            position: None,
            message: format!("cannot read the config file: {}", io_reason(&e)),
        })?;
        Ok(Self {
            path: Some(path.to_path_buf()),
            text,
        })
    }

    /// Wraps text that did not come from a file.
    #[cfg(test)]
    pub fn from_text(text: &str) -> Self {
        Self {
            path: None,
            text: text.to_owned(),
        }
    }

    /// The file name as the user gave it.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// An error at byte `span` of the file.
    pub fn error_at(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: self.path.clone(),
            position: Some(line_col(&self.text, span.start)),
            message: message.into(),
        }
    }

    /// Parses and checks the file.
    pub fn parse(&self) -> Result<RawConfig, ConfigError> {
        let raw: RawConfig = toml::from_str(&self.text).map_err(|e| self.translate(&e))?;
        raw.check(self)?;
        Ok(raw)
    }

    /// Turns a `toml`/`serde` error into one line that names the key and its table.
    fn translate(&self, err: &toml::de::Error) -> ConfigError {
        let span = err.span();
        let position = span.as_ref().map(|s| line_col(&self.text, s.start));
        let msg = err.message().trim();
        // A syntax error comes from the parser before any key is known, and the document
        // does not parse again: then `path` is None and toml's own words are kept.
        let path = span.as_ref().and_then(|s| {
            if msg.starts_with("missing field ") {
                // serde reports a missing key at the span of the table that lacks it.
                table_with_span(&self.text, s).map(|tables| KeyPath { tables, key: None })
            } else {
                key_path_at(&self.text, s.start)
            }
        });
        let message = match path {
            None => format!("invalid TOML: {msg}"),
            Some(path) => rephrase(msg, &path),
        };
        ConfigError {
            path: self.path.clone(),
            position,
            message,
        }
    }
}

/// Where an error lies: the tables it is nested in, and the key when it is on one.
struct KeyPath {
    tables: Vec<String>,
    key: Option<String>,
}

impl KeyPath {
    /// `" in [a.b]"`, or `""` at the top level.
    fn in_table(&self) -> String {
        if self.tables.is_empty() {
            String::new()
        } else {
            format!(" in [{}]", self.tables.join("."))
        }
    }
}

/// Finds the key whose key or value span contains byte `offset`, searching nested tables
/// depth first (a `[table]`'s own span covers only its header, not its keys). `None` when
/// the document does not parse.
fn key_path_at(text: &str, offset: usize) -> Option<KeyPath> {
    fn search(
        table: &toml::de::DeTable<'_>,
        offset: usize,
        tables: &mut Vec<String>,
    ) -> Option<KeyPath> {
        for (k, v) in table.iter() {
            let name = k.get_ref().to_string();
            if k.span().contains(&offset) {
                return Some(KeyPath {
                    tables: tables.clone(),
                    key: Some(name),
                });
            }
            if let Some(inner) = v.get_ref().as_table() {
                tables.push(name);
                let found = search(inner, offset, tables);
                if found.is_some() {
                    return found;
                }
                let name = tables.pop().unwrap_or_default();
                if v.span().contains(&offset) {
                    return Some(KeyPath {
                        tables: tables.clone(),
                        key: Some(name),
                    });
                }
            } else if v.span().contains(&offset) {
                return Some(KeyPath {
                    tables: tables.clone(),
                    key: Some(name),
                });
            }
        }
        None
    }
    let root = toml::de::DeTable::parse(text).ok()?;
    let top = KeyPath {
        tables: Vec::new(),
        key: None,
    };
    Some(search(root.get_ref(), offset, &mut Vec::new()).unwrap_or(top))
}

/// The dotted name of the table whose span is exactly `span` (empty for the document
/// itself); `None` when the document does not parse or no table matches.
fn table_with_span(text: &str, span: &Range<usize>) -> Option<Vec<String>> {
    fn search(table: &toml::de::DeTable<'_>, span: &Range<usize>, path: &mut Vec<String>) -> bool {
        for (k, v) in table.iter() {
            if let Some(inner) = v.get_ref().as_table() {
                path.push(k.get_ref().to_string());
                if v.span() == *span || search(inner, span, path) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let root = toml::de::DeTable::parse(text).ok()?;
    let mut path = Vec::new();
    (root.span() == *span || search(root.get_ref(), span, &mut path)).then_some(path)
}

/// Rewords serde's messages ("unknown field", "missing field", "struct RawFuse") into
/// config language and prefixes every other message with the key it is about.
fn rephrase(msg: &str, path: &KeyPath) -> String {
    let table = path.in_table();
    if let Some(rest) = msg.strip_prefix("unknown field ") {
        // "`x`, expected one of `a`, `b`" | "`x`, expected `a`" | "`x`, there are no fields"
        let (name, expected) = rest.split_once(", ").unwrap_or((rest, ""));
        let expected = expected
            .strip_prefix("expected one of ")
            .or_else(|| expected.strip_prefix("expected "))
            .map(|list| list.replace('`', ""));
        return match expected {
            Some(list) => format!("unknown key {name}{table}, expected one of: {list}"),
            None => format!("unknown key {name}{table}"),
        };
    }
    if let Some(name) = msg.strip_prefix("missing field ") {
        return format!("missing required key {name}{table}");
    }
    // Our table types are "struct RawFuse" etc. to serde; users know them as tables.
    let msg = match msg.find("expected struct ") {
        Some(i) => format!("{}expected a table", &msg[..i]),
        None => msg.to_owned(),
    };
    match &path.key {
        Some(key) => format!("invalid value for `{key}`{table}: {msg}"),
        None => format!("{msg}{table}"),
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, col)
}

/// The short reason of an I/O error, without Rust's " (os error N)" suffix.
pub fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_lowercase(),
        None => s,
    }
}

/// Whether an error from a path means a FUSE mount whose daemon is gone (the FUSE
/// backend's list: ENOTCONN, and ECONNABORTED or ECANCELED during the teardown).
pub fn is_dead_mount_error(e: &std::io::Error) -> bool {
    #[cfg(unix)]
    {
        vmount_backend_fuse::is_dead_mount_error(e)
    }
    #[cfg(not(unix))]
    {
        e.kind() == std::io::ErrorKind::NotConnected
    }
}

/// The whole configuration file.
///
/// ```toml
/// mountpoint = "/tmp/vmount"
/// [filesystem]
/// type = "memfs"
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Directory to mount on (required). Must exist and be a directory. A leading `~` or
    /// `~/` is the user's home directory; a relative path is relative to the directory
    /// holding the config file, so a config means the same wherever it is run from.
    pub mountpoint: Spanned<String>,
    /// Which kernel bridge to use; `auto` (the default) picks the first usable one for
    /// this OS. The command line's `--backend` overrides it.
    #[serde(default)]
    pub backend: Option<Spanned<BackendChoice>>,
    /// Mount read-only (default false).
    #[serde(default)]
    pub read_only: bool,
    /// Label shown in the mount table and the `mounted ...` line; defaults to the
    /// filesystem type.
    #[serde(default)]
    pub name: Option<Label>,
    /// The filesystem to mount (required table).
    pub filesystem: RawFilesystem,
    /// FUSE options; the other backends ignore them.
    #[serde(default)]
    pub fuse: RawFuse,
    /// NFS options; the other backends ignore them.
    #[serde(default)]
    pub nfs: RawNfs,
    /// WinFsp options; the other backends ignore them.
    #[serde(default)]
    pub winfsp: RawWinfsp,
    /// The Prometheus endpoint (off unless `listen` is set).
    #[serde(default)]
    pub metrics: RawMetrics,
}

impl RawConfig {
    /// The checks that span several keys.
    fn check(&self, src: &Source) -> Result<(), ConfigError> {
        let fs = &self.filesystem;
        match fs.kind.get_ref() {
            FsType::Memfs => {
                if let Some(source) = &fs.source {
                    return Err(src.error_at(
                        source.span(),
                        "`source` in [filesystem] is only for type = \"loopback\"; memfs keeps \
                         its data in memory, so remove `source`",
                    ));
                }
            }
            FsType::Loopback => {
                if fs.source.is_none() {
                    return Err(src.error_at(
                        fs.kind.span(),
                        "missing required key `source` in [filesystem]: type = \"loopback\" \
                         needs the host directory to mirror",
                    ));
                }
                if let Some(size) = &fs.size_limit {
                    return Err(src.error_at(
                        size.span(),
                        "`size_limit` in [filesystem] is only for type = \"memfs\"; a loopback \
                         filesystem is as large as its source",
                    ));
                }
                if let Some(n) = &fs.max_inodes {
                    return Err(src.error_at(
                        n.span(),
                        "`max_inodes` in [filesystem] is only for type = \"memfs\"",
                    ));
                }
                if let Some(d) = &fs.data {
                    return Err(src.error_at(
                        d.span(),
                        "`data` in [filesystem] is only for type = \"memfs\"; loopback's data \
                         is its source directory",
                    ));
                }
            }
        }
        if let Some(mode) = &self.fuse.passthrough
            && *mode.get_ref() == Switch::On
        {
            if *fs.kind.get_ref() == FsType::Memfs
                && fs.data.as_ref().map(|d| *d.get_ref()) == Some(DataStore::Heap)
            {
                return Err(src.error_at(
                    mode.span(),
                    "`passthrough = \"on\"` in [fuse] needs file data in the kernel, and \
                     memfs has `data = \"heap\"`; set data = \"auto\" or \"kernel\", or \
                     passthrough = \"auto\" or \"off\"",
                ));
            }
            if self.fuse.writeback_cache {
                return Err(src.error_at(
                    mode.span(),
                    "`passthrough = \"on\"` in [fuse] cannot be combined with `writeback_cache = \
                     true`, because the kernel turns passthrough off on a mount with the \
                     writeback cache; set writeback_cache = false, or passthrough = \"auto\" \
                     (which then leaves the writeback cache off) or \"off\"",
                ));
            }
        }
        if let Some(listen) = &self.metrics.listen
            && let Err(problem) = parse_listen(listen.get_ref())
        {
            return Err(src.error_at(listen.span(), problem));
        }
        let paths = [
            ("`mountpoint`", Some(&self.mountpoint)),
            ("`source` in [filesystem]", fs.source.as_ref()),
        ];
        for (key, value) in paths {
            let Some(value) = value else { continue };
            let text = value.get_ref();
            let problem = if text.is_empty() {
                "is empty"
            } else if text.contains('\0') {
                "contains a NUL byte"
            } else if text.starts_with('~') && expand_tilde(text).is_none() {
                "cannot be expanded: only `~` and `~/...` (your home directory, from $HOME) \
                 are, so write the full path"
            } else {
                continue;
            };
            return Err(src.error_at(value.span(), format!("{key} {problem}")));
        }
        Ok(())
    }
}

/// `~` and `~/rest` become the home directory (`$HOME`, else `%USERPROFILE%`); a path not
/// starting with `~` is returned unchanged. `None` for `~user` forms and when the home
/// directory is unknown.
pub fn expand_tilde(path: &str) -> Option<PathBuf> {
    let Some(rest) = path.strip_prefix('~') else {
        return Some(PathBuf::from(path));
    };
    let rest = if rest.is_empty() {
        ""
    } else if let Some(r) = rest.strip_prefix('/') {
        r
    } else {
        // `~\dir` on Windows only; `~user` is never expanded.
        rest.strip_prefix('\\').filter(|_| cfg!(windows))?
    };
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var_os("USERPROFILE").filter(|h| !h.is_empty()))?;
    Some(PathBuf::from(home).join(rest))
}

/// The `backend` key and the `--backend` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// The first usable backend for this OS (Linux, macOS: fuse then nfs; Windows:
    /// winfsp then nfs).
    #[default]
    Auto,
    /// FUSE: the kernel module on Linux, macFUSE on macOS.
    Fuse,
    /// A localhost NFSv3 server mounted by the OS's NFS client.
    Nfs,
    /// WinFsp (Windows only).
    Winfsp,
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Self::Auto => "auto",
            Self::Fuse => "fuse",
            Self::Nfs => "nfs",
            Self::Winfsp => "winfsp",
        })
    }
}

/// The `[filesystem]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFilesystem {
    /// `"memfs"` (in memory) or `"loopback"` (mirror a host directory). Required.
    #[serde(rename = "type")]
    pub kind: Spanned<FsType>,
    /// loopback only, and required there: the host directory to mirror (`~` expanded,
    /// relative to the config file's directory).
    #[serde(default)]
    pub source: Option<Spanned<String>>,
    /// memfs only: the most bytes of file data it holds, e.g. `"2GiB"`, `"512MiB"`,
    /// `"1.5GiB"`, `"100KB"` (decimal), `"1G"` (= GiB) or an integer number of bytes.
    /// Writes past it fail with ENOSPC. Default: no limit.
    #[serde(default)]
    pub size_limit: Option<Spanned<ByteSize>>,
    /// memfs only: the most files, directories and links it holds (an integer > 0).
    /// Creating more fails with ENOSPC. Default: no limit.
    #[serde(default)]
    pub max_inodes: Option<Spanned<PositiveInt>>,
    /// memfs only: where regular files keep their bytes. Default `auto`.
    #[serde(default)]
    pub data: Option<Spanned<DataStore>>,
}

/// The memfs `data` key: where file contents live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataStore {
    /// In the kernel when the daemon may make its private tmpfs (Linux, root), so FUSE
    /// passthrough can serve reads and writes; else on the heap.
    #[default]
    Auto,
    /// On the daemon's heap, always.
    Heap,
    /// In the kernel, or mounting fails.
    Kernel,
}

impl fmt::Display for DataStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            DataStore::Auto => "auto",
            DataStore::Heap => "heap",
            DataStore::Kernel => "kernel",
        })
    }
}

/// The filesystem implementations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsType {
    /// `vmount_core::memfs::MemFs`.
    Memfs,
    /// `vmount_core::loopback::Loopback`: a mirror of a host directory (unix).
    Loopback,
}

impl FsType {
    /// The name used in configs and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Memfs => "memfs",
            Self::Loopback => "loopback",
        }
    }
}

/// The `[fuse]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFuse {
    /// Worker threads serving requests; 0 (the default) = the number of CPUs.
    #[serde(default)]
    pub threads: Threads,
    /// How long the kernel may cache attributes: seconds as an integer or float, or a
    /// string like `"1s"` or `"500ms"`. Default: 1 s for loopback, 1 h for memfs (see
    /// [`default_timeout`]).
    #[serde(default)]
    pub attr_timeout: Option<Seconds>,
    /// How long the kernel may cache name lookups; same forms and defaults.
    #[serde(default)]
    pub entry_timeout: Option<Seconds>,
    /// Linux: how long the kernel may remember that a name does not exist; same forms.
    /// Default: the entry lifetime, at most [`default_timeout`] (see
    /// [`default_negative_timeout`]).
    #[serde(default)]
    pub negative_timeout: Option<Seconds>,
    /// Let the kernel buffer writes and flush them later (default false).
    #[serde(default)]
    pub writeback_cache: bool,
    /// Let users other than the one who mounted use the mount (default false; a non-root
    /// user needs `user_allow_other` in /etc/fuse.conf).
    #[serde(default)]
    pub allow_other: bool,
    /// Let the kernel check permission bits before calling the filesystem. Default: off
    /// when the filesystem makes the same decisions itself (memfs; loopback run as root
    /// on Linux, where the host checks each call with the caller's credentials), on
    /// otherwise.
    #[serde(default)]
    pub default_permissions: Option<bool>,
    /// FUSE passthrough of file data (Linux 6.9+, root): `"auto"` (the default), `"on"`
    /// (required) or `"off"`.
    #[serde(default)]
    pub passthrough: Option<Spanned<Switch>>,
    /// Linux: FUSE-over-io_uring (6.14+, the `fuse` module's `enable_uring` on):
    /// `"auto"` (the default: where the kernel has it on), `"on"` (required; root turns
    /// the kernel's switch on) or `"off"`.
    #[serde(default)]
    pub io_uring: Switch,
    /// macOS (macFUSE): the volume name Finder shows; default the mount's `name`.
    #[serde(default)]
    pub volume_name: Option<String>,
    /// macOS (macFUSE): refuse Apple Double `._*` files (default true).
    #[serde(default = "default_true")]
    pub noappledouble: bool,
    /// macOS (macFUSE): refuse `com.apple.*` extended attributes (default false).
    #[serde(default)]
    pub noapplexattr: bool,
}

/// An `"auto"`/`"on"`/`"off"` key of `[fuse]`: `passthrough` (whether the kernel may read
/// and write a file's host file directly instead of asking the daemon; auto wins over
/// `writeback_cache`) and `io_uring` (whether requests travel over FUSE-over-io_uring).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Switch {
    /// Where the kernel and privileges allow it.
    #[default]
    Auto,
    /// Required: mounting fails without it.
    On,
    /// Never.
    Off,
}

impl fmt::Display for Switch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Self::Auto => "auto",
            Self::On => "on",
            Self::Off => "off",
        })
    }
}

impl Default for RawFuse {
    fn default() -> Self {
        Self {
            threads: Threads::default(),
            attr_timeout: None,
            entry_timeout: None,
            negative_timeout: None,
            writeback_cache: false,
            allow_other: false,
            default_permissions: None,
            passthrough: None,
            io_uring: Switch::Auto,
            volume_name: None,
            noappledouble: true,
            noapplexattr: false,
        }
    }
}

/// The `[nfs]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNfs {
    /// TCP port of the server on 127.0.0.1, 0..=65535; 0 (the default) picks a free port.
    #[serde(default)]
    pub port: Port,
    /// Run the OS mount command (default true); false serves only and prints the command.
    #[serde(default = "default_true")]
    pub mount: bool,
    /// Let local users other than root and the one running vmount use the mount (default
    /// false: the server refuses their requests).
    #[serde(default)]
    pub allow_other: bool,
    /// Refuse to create `._*` (Apple Double) files and hide them from lookups, so Finder
    /// does not scatter them over the filesystem. Default: true on macOS, false elsewhere.
    #[serde(default)]
    pub noappledouble: Option<bool>,
}

impl Default for RawNfs {
    fn default() -> Self {
        Self {
            port: Port::default(),
            mount: true,
            allow_other: false,
            noappledouble: None,
        }
    }
}

/// The `[winfsp]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWinfsp {
    /// The volume label Explorer shows; default the mount's `name`.
    #[serde(default)]
    pub volume_name: Option<String>,
    /// Find names regardless of case, as Windows programs expect (default true). Names
    /// keep the case they were created with.
    #[serde(default = "default_true")]
    pub case_insensitive: bool,
    /// Mark names starting with `.` hidden, as Unix tools treat them (default false).
    #[serde(default)]
    pub hide_dotfiles: bool,
    /// How long Windows may cache file information; same forms as `attr_timeout`. Default:
    /// as `attr_timeout` defaults (1 h for memfs, 1 s for loopback).
    #[serde(default)]
    pub file_info_timeout: Option<Seconds>,
}

impl Default for RawWinfsp {
    fn default() -> Self {
        Self {
            volume_name: None,
            case_insensitive: true,
            hide_dotfiles: false,
            file_info_timeout: None,
        }
    }
}

/// The `[metrics]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// Serve Prometheus metrics at `http://ADDRESS/metrics`: a loopback address and port
    /// such as `"127.0.0.1:9101"` or `"[::1]:9101"` (port 0 picks a free one, which
    /// `vmount status --verbose` shows). Default: no endpoint.
    #[serde(default)]
    pub listen: Option<Spanned<String>>,
}

impl RawMetrics {
    /// The address to listen on (checked when the config was parsed).
    pub fn address(&self) -> Option<SocketAddr> {
        self.listen
            .as_ref()
            .and_then(|l| parse_listen(l.get_ref()).ok())
    }
}

/// A `listen` value: a loopback socket address. The endpoint has no authentication, so
/// it is never offered to the network.
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = text.parse().map_err(|_| {
        format!(
            "`listen` in [metrics] must be an address and port such as \"127.0.0.1:9101\", \
             not {text:?}"
        )
    })?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "`listen` in [metrics] must be a loopback address (127.0.0.1 or [::1]), not {}: \
             the endpoint has no authentication",
            addr.ip()
        ));
    }
    Ok(addr)
}

fn default_true() -> bool {
    true
}

/// Implements `Deserialize` for a number-or-string newtype with a visitor: integers go to
/// `int` (an `i128 -> Result<Self, String>`), floats to `float` and strings to `str` when
/// given, anything else is a type error. The `String` errors become serde custom errors,
/// to which `toml` attaches the value's span.
macro_rules! visit_numbers {
    ($ty:ty, $expecting:expr, int: $int:expr $(, float: $float:expr)? $(, str: $str:expr)?) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_i64<E: de::Error>(self, v: i64) -> Result<$ty, E> {
                        ($int)(i128::from(v)).map_err(E::custom)
                    }
                    fn visit_u64<E: de::Error>(self, v: u64) -> Result<$ty, E> {
                        ($int)(i128::from(v)).map_err(E::custom)
                    }
                    $(
                    fn visit_f64<E: de::Error>(self, v: f64) -> Result<$ty, E> {
                        ($float)(v).map_err(E::custom)
                    }
                    )?
                    $(
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$ty, E> {
                        ($str)(v).map_err(E::custom)
                    }
                    )?
                }
                d.deserialize_any(V)
            }
        }
    };
}

/// A byte count given as an integer or a size string; always at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

visit_numbers!(
    ByteSize,
    "a size such as \"512MiB\", \"2GiB\" or an integer number of bytes",
    int: |v: i128| positive_u64(v, "a size").map(ByteSize),
    str: |s: &str| parse_size(s).map(ByteSize)
);

/// An integer greater than zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PositiveInt(pub u64);

visit_numbers!(
    PositiveInt,
    "an integer greater than 0",
    int: |v: i128| positive_u64(v, "the value").map(PositiveInt)
);

fn positive_u64(v: i128, what: &str) -> Result<u64, String> {
    if v <= 0 {
        return Err(format!("{what} must be greater than 0, got {v}"));
    }
    u64::try_from(v).map_err(|_| format!("{what} is too large: {v}"))
}

/// Most FUSE worker threads accepted; more only adds contention.
pub const MAX_THREADS: usize = 1024;

/// FUSE worker threads, 0 = the number of CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Threads(pub usize);

visit_numbers!(
    Threads,
    "an integer from 0 to 1024 (0 = the number of CPUs)",
    int: |v: i128| match usize::try_from(v) {
        Ok(n) if n <= MAX_THREADS => Ok(Threads(n)),
        _ => Err(format!(
            "threads must be from 0 to {MAX_THREADS} (0 = the number of CPUs), got {v}"
        )),
    }
);

/// A TCP port, 0 = pick a free one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Port(pub u16);

visit_numbers!(
    Port,
    "an integer from 0 to 65535 (0 = pick a free port)",
    int: |v: i128| u16::try_from(v)
        .map(Port)
        .map_err(|_| format!("a port must be from 0 to 65535 (0 = pick a free port), got {v}"))
);

/// Longest timeout accepted: a day. The kernel would take longer ones, but such a value
/// is almost certainly a unit mistake.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// A non-negative duration given as seconds (integer or float) or a string with a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub Duration);

/// The kernel cache lifetime used when `attr_timeout` / `entry_timeout` are not set.
///
/// memfs changes only through its mount, and the kernel drops its own cached entries and
/// attributes on every change it sends, so a long lifetime never serves stale data and
/// saves a LOOKUP or GETATTR round trip on nearly every path operation (a `stat` of
/// 10,000 files, an `rm` of each). A loopback source can change behind the kernel's back,
/// so there the cache lives a second, like FUSE's own default, unless loopback reports
/// those changes as they happen ([`watched_timeout`]).
pub fn default_timeout(fs: FsType) -> Duration {
    match fs {
        FsType::Memfs => Duration::from_secs(60 * 60),
        FsType::Loopback => Duration::from_secs(1),
    }
}

/// How long a name found missing is remembered when `negative_timeout` is not set: the
/// entry lifetime `entry`, but no more than [`default_timeout`]. memfs, which changes only
/// through its mount, keeps misses as long as names (an hour); a loopback keeps them a
/// second even when its source is watched and names live an hour: a create in the source
/// that raced with a lookup of the same name would otherwise stay hidden for that hour.
/// `entry_timeout = 0` (every lookup asks) makes it 0 too.
pub fn default_negative_timeout(fs: FsType, entry: Duration) -> Duration {
    entry.min(default_timeout(fs))
}

/// The cache lifetime used instead of [`default_timeout`] when the filesystem reports
/// changes made behind the kernel's back (loopback as root on Linux, through fanotify):
/// the kernel is told to drop exactly what changed, so it may keep the rest as long as
/// memfs's. Only when the config sets neither timeout.
pub fn watched_timeout() -> Duration {
    Duration::from_secs(60 * 60)
}

visit_numbers!(
    Seconds,
    "seconds as a number, or a string such as \"1s\" or \"500ms\"",
    int: |v: i128| {
        // Exact below 2^53; anything near that is rejected as too long anyway.
        #[allow(clippy::cast_precision_loss)]
        let secs = v as f64;
        seconds_f64(secs)
    },
    float: seconds_f64,
    str: |s: &str| parse_duration(s).map(Seconds)
);

fn seconds_f64(v: f64) -> Result<Seconds, String> {
    if v.is_nan() || v < 0.0 {
        return Err(format!("a timeout must be 0 or more seconds, got {v}"));
    }
    let d = Duration::try_from_secs_f64(v).map_err(|_| format!("timeout {v} is too long"))?;
    check_timeout(d)
}

fn check_timeout(d: Duration) -> Result<Seconds, String> {
    if d > MAX_TIMEOUT {
        return Err(format!(
            "a timeout of {} seconds is too long (at most {})",
            d.as_secs_f64(),
            MAX_TIMEOUT.as_secs()
        ));
    }
    Ok(Seconds(d))
}

/// Parses `"1s"`, `"500ms"`, `"1.5s"`, `"250us"`, `"2m"`, `"1h"`. A unit is required so
/// that `"500"` is never guessed to be seconds or milliseconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.starts_with('-') {
        return Err(format!("a timeout must not be negative, got \"{s}\""));
    }
    let bad = || {
        format!(
            "invalid duration \"{s}\": expected a number with a unit (ns, us, ms, s, m, h), \
             such as \"1s\" or \"500ms\""
        )
    };
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(bad)?;
    let (num, unit) = t.split_at(split);
    let nanos_per_unit: u128 = match unit.trim() {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" | "min" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return Err(bad()),
    };
    let nanos = scaled(num, nanos_per_unit).ok_or_else(bad)?;
    let secs = u64::try_from(nanos / 1_000_000_000);
    let sub = u32::try_from(nanos % 1_000_000_000);
    let d = match (secs, sub) {
        (Ok(secs), Ok(sub)) => Duration::new(secs, sub),
        _ => return Err(format!("duration \"{s}\" is too long")),
    };
    check_timeout(d).map(|s| s.0)
}

/// `num` (digits with at most one `.`) times `unit`, rounded down; `None` if `num` is
/// malformed or the product does not fit in `u128`.
fn scaled(num: &str, unit: u128) -> Option<u128> {
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Units are at most 2^60 or 3.6e12, so digits past the 18th cannot move the result by
    // a whole byte or nanosecond beyond the rounding; dropping them keeps u128 enough.
    let frac = &frac[..frac.len().min(18)];
    let int_value: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut value = int_value.checked_mul(unit)?;
    if !frac.is_empty() {
        let frac_value: u128 = frac.parse().ok()?;
        let denom = 10u128.checked_pow(u32::try_from(frac.len()).ok()?)?;
        value = value.checked_add(frac_value.checked_mul(unit)? / denom)?;
    }
    Some(value)
}

/// Parses a size: an integer number of bytes, or a number (a fraction allowed) with a
/// unit. `K`, `M`, `G`, `T`, `P`, `E` alone and the `KiB`.. forms are powers of 1024 (as `df
/// -h` and most tools mean them); `KB`, `MB`, ... are powers of 1000. Units are
/// case-insensitive. The result must be at least one byte and fit in 64 bits.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.starts_with('-') {
        return Err(format!("a size must not be negative, got \"{s}\""));
    }
    let bad = || {
        format!(
            "invalid size \"{s}\": expected a number with an optional unit, such as \"512MiB\", \
             \"2GiB\", \"1.5GiB\", \"100KB\" or \"4096\""
        )
    };
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: u128 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "p" | "pib" => 1 << 50,
        "e" | "eib" => 1 << 60,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "pb" => 1_000_000_000_000_000,
        "eb" => 1_000_000_000_000_000_000,
        _ => return Err(bad()),
    };
    let bytes = scaled(num, mult).ok_or_else(bad)?;
    if bytes == 0 {
        return Err(format!("a size must be at least one byte, got \"{s}\""));
    }
    u64::try_from(bytes).map_err(|_| format!("size \"{s}\" is too large (at most 16 EiB - 1)"))
}

/// Formats a byte count for people: `1 GiB (1073741824 bytes)`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 6] = [
        ("EiB", 1 << 60),
        ("PiB", 1 << 50),
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (name, size) in UNITS {
        if bytes >= size {
            let whole = bytes / size;
            let human = if bytes.is_multiple_of(size) {
                format!("{whole} {name}")
            } else {
                // Below 2^64 / 10 * 10 there is no overflow: the remainder is < size.
                let tenths = u128::from(bytes % size) * 10 / u128::from(size);
                format!("about {whole}.{tenths} {name}")
            };
            return format!("{human} ({bytes} bytes)");
        }
    }
    format!("{bytes} bytes")
}

/// A mount label: 1 to 64 characters from `A-Z a-z 0-9 . _ + -`, so that it passes
/// through mount option strings (comma-separated, escaped differently per OS) unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label(pub String);

impl<'de> Deserialize<'de> for Label {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b));
        if ok {
            Ok(Label(s))
        } else {
            Err(de::Error::custom(format!(
                "\"{s}\" is not a valid name: use 1 to 64 characters from A-Z, a-z, 0-9, '.', \
                 '_', '+', '-'"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RawConfig, String> {
        Source::from_text(text).parse().map_err(|e| e.to_string())
    }

    fn err(text: &str) -> String {
        let e = parse(text).expect_err("should fail");
        assert!(!e.contains('\n'), "one line: {e}");
        e
    }

    const MIN: &str = "mountpoint = \"/mnt\"\n[filesystem]\ntype = \"memfs\"\n";

    #[cfg(unix)]
    #[test]
    fn every_errno_of_a_dead_fuse_mount_counts_as_dead() {
        use std::io::Error;
        for errno in [libc::ENOTCONN, libc::ECONNABORTED, libc::ECANCELED] {
            assert!(
                is_dead_mount_error(&Error::from_raw_os_error(errno)),
                "{errno}"
            );
        }
        for errno in [libc::ENOENT, libc::EACCES, libc::EIO] {
            assert!(
                !is_dead_mount_error(&Error::from_raw_os_error(errno)),
                "{errno}"
            );
        }
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(MIN).unwrap();
        assert_eq!(c.mountpoint.get_ref(), "/mnt");
        assert!(c.backend.is_none());
        assert!(!c.read_only);
        assert!(c.name.is_none());
        assert_eq!(*c.filesystem.kind.get_ref(), FsType::Memfs);
        assert!(c.filesystem.size_limit.is_none() && c.filesystem.max_inodes.is_none());
        assert_eq!(c.fuse.threads, Threads(0));
        assert!(c.fuse.attr_timeout.is_none() && c.fuse.entry_timeout.is_none());
        assert!(!c.fuse.writeback_cache && !c.fuse.allow_other);
        assert!(c.fuse.default_permissions.is_none());
        assert!(c.fuse.passthrough.is_none());
        assert_eq!(c.nfs.port, Port(0));
        assert!(c.nfs.mount && !c.nfs.allow_other);
    }

    #[test]
    fn every_key_parses() {
        let c = parse(
            "mountpoint = \"~/m\"\nbackend = \"fuse\"\nread_only = true\nname = \"scratch\"\n\
             [filesystem]\ntype = \"memfs\"\nsize_limit = \"1.5GiB\"\nmax_inodes = 10\n\
             [fuse]\nthreads = 4\nattr_timeout = 0.5\nentry_timeout = \"250ms\"\n\
             writeback_cache = true\nallow_other = true\ndefault_permissions = false\n\
             passthrough = \"off\"\n[nfs]\nport = 2049\nmount = false\nallow_other = true\n",
        )
        .unwrap();
        assert_eq!(c.backend.unwrap().into_inner(), BackendChoice::Fuse);
        assert!(c.read_only);
        assert_eq!(c.name.unwrap().0, "scratch");
        assert_eq!(
            c.filesystem.size_limit.unwrap().into_inner(),
            ByteSize(3 << 29)
        );
        assert_eq!(
            c.filesystem.max_inodes.unwrap().into_inner(),
            PositiveInt(10)
        );
        assert_eq!(c.fuse.threads, Threads(4));
        assert_eq!(c.fuse.attr_timeout.unwrap().0, Duration::from_millis(500));
        assert_eq!(c.fuse.entry_timeout.unwrap().0, Duration::from_millis(250));
        assert!(c.fuse.writeback_cache && c.fuse.allow_other);
        assert_eq!(c.fuse.default_permissions, Some(false));
        assert_eq!(c.fuse.passthrough.unwrap().into_inner(), Switch::Off);
        assert_eq!(c.nfs.port, Port(2049));
        assert!(c.nfs.allow_other);
        let lo = "mountpoint = \"/m\"\n[filesystem]\ntype = \"loopback\"\nsource = \"/s\"\n";
        for (text, want) in [
            ("on", Switch::On),
            ("auto", Switch::Auto),
            ("off", Switch::Off),
        ] {
            let c = parse(&format!("{lo}[fuse]\npassthrough = \"{text}\"\n")).unwrap();
            assert_eq!(c.fuse.passthrough.unwrap().into_inner(), want);
            assert_eq!(want.to_string(), text);
        }
        assert!(!c.nfs.mount);
        let c = parse(&format!(
            "{MIN}[fuse]\nattr_timeout = 2\nentry_timeout = 0\n"
        ))
        .unwrap();
        assert_eq!(c.fuse.attr_timeout.unwrap().0, Duration::from_secs(2));
        assert_eq!(c.fuse.entry_timeout.unwrap().0, Duration::ZERO);
        let c = parse("mountpoint = \"/m\"\nfilesystem = { type = \"memfs\", size_limit = 4096 }")
            .unwrap();
        assert_eq!(
            c.filesystem.size_limit.unwrap().into_inner(),
            ByteSize(4096)
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("100KB"), Ok(100_000));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size(" 8 MiB "), Ok(8 << 20));
        assert_eq!(parse_size("16383.99999PiB"), Ok(18_446_744_062_450_552_547));
        assert_eq!(parse_size(".5K"), Ok(512));
        assert_eq!(parse_size("15EiB"), Ok(15 << 60));
        for bad in [
            "",
            "0",
            "0GiB",
            "0.0001B",
            "-1",
            "-1GiB",
            "abc",
            "1XB",
            "1.2.3G",
            "GiB",
            "1 2G",
            "16EiB",
            "16384PiB",
            "99999999999999999999999",
            "1e9",
            ".",
            "1..5G",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in [
            "",
            "1",
            "-1s",
            "1x",
            "s",
            "1.s.",
            "25h",
            "99999999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn size_formatting() {
        assert_eq!(format_size(1 << 30), "1 GiB (1073741824 bytes)");
        assert_eq!(format_size(3 << 29), "about 1.5 GiB (1610612736 bytes)");
        assert_eq!(format_size(100_000), "about 97.6 KiB (100000 bytes)");
        assert_eq!(
            format_size(u64::MAX),
            "about 15.9 EiB (18446744073709551615 bytes)"
        );
        assert_eq!(format_size(1), "1 bytes");
    }

    #[test]
    fn unknown_keys_name_table_and_line() {
        let e = err(&format!("{MIN}sizelimit = \"1GiB\"\n"));
        assert_eq!(
            e,
            "4:1: unknown key `sizelimit` in [filesystem], expected one of: type, source, \
             size_limit, max_inodes, data"
        );
        let e = err(&format!("{MIN}[fuse]\nthread = 2\n"));
        assert!(e.starts_with("5:1: unknown key `thread` in [fuse], expected one of: threads,"));
        let e = err("mountpoint = \"/m\"\nbackedn = \"x\"\n[filesystem]\ntype = \"memfs\"\n");
        assert!(
            e.starts_with("2:1: unknown key `backedn`, expected one of: mountpoint,"),
            "{e}"
        );
        let e = err(&format!("{MIN}[fusee]\n"));
        assert!(e.starts_with("4:2: unknown key `fusee`"), "{e}");
        let e = err(&format!("{MIN}[fuse.x]\n"));
        assert!(e.starts_with("4:7: unknown key `x` in [fuse]"), "{e}");
        let e = err("mountpoint = \"/m\"\nfilesystem = { type = \"memfs\", sz = 1 }\n");
        assert!(
            e.starts_with("2:32: unknown key `sz` in [filesystem]"),
            "{e}"
        );
    }

    #[test]
    fn missing_keys() {
        let e = err("[filesystem]\ntype = \"memfs\"\n");
        assert_eq!(e, "1:1: missing required key `mountpoint`");
        let e = err("mountpoint = \"/m\"\n");
        assert_eq!(e, "1:1: missing required key `filesystem`");
        let e = err("mountpoint = \"/m\"\n[filesystem]\nsize_limit = 5\n");
        assert_eq!(e, "2:1: missing required key `type` in [filesystem]");
        let e = err("mountpoint = \"/m\"\n[filesystem]\ntype = \"loopback\"\n");
        assert!(
            e.starts_with("3:8: missing required key `source` in [filesystem]"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_name_key_and_line() {
        let cases = [
            ("size_limit = \"lots\"", "size_limit", "invalid size"),
            ("size_limit = \"0\"", "size_limit", "at least one byte"),
            ("size_limit = 0", "size_limit", "greater than 0"),
            ("size_limit = -5", "size_limit", "greater than 0"),
            ("size_limit = \"-1GiB\"", "size_limit", "negative"),
            ("size_limit = \"99999999PiB\"", "size_limit", "too large"),
            ("size_limit = 1.5", "size_limit", "invalid type"),
            ("max_inodes = 0", "max_inodes", "greater than 0"),
            ("max_inodes = \"10\"", "max_inodes", "invalid type"),
        ];
        for (line, key, what) in cases {
            let e = err(&format!("{MIN}{line}\n"));
            let prefix = format!("4:14: invalid value for `{key}` in [filesystem]: ");
            assert!(e.starts_with(&prefix) && e.contains(what), "{line}: {e}");
        }
        let cases = [
            ("attr_timeout = -1", "attr_timeout", "0 or more"),
            ("attr_timeout = \"-1s\"", "attr_timeout", "negative"),
            (
                "entry_timeout = \"5 parsecs\"",
                "entry_timeout",
                "invalid duration",
            ),
            ("entry_timeout = 1e9", "entry_timeout", "too long"),
            ("threads = -1", "threads", "from 0 to 1024"),
            ("threads = 5000", "threads", "from 0 to 1024"),
            ("allow_other = \"yes\"", "allow_other", "expected a boolean"),
        ];
        for (line, key, what) in cases {
            let e = err(&format!("{MIN}[fuse]\n{line}\n"));
            let prefix = format!("5:{}: invalid value for `{key}` in [fuse]: ", key.len() + 4);
            assert!(e.starts_with(&prefix) && e.contains(what), "{line}: {e}");
        }
        let e = err(&format!("{MIN}[fuse]\npassthrough = \"yes\"\n"));
        assert_eq!(
            e,
            "5:15: invalid value for `passthrough` in [fuse]: unknown variant `yes`, expected one \
             of `auto`, `on`, `off`"
        );
        let e = err(&format!("{MIN}[fuse]\npassthrough = true\n"));
        assert!(
            e.starts_with("5:15: invalid value for `passthrough` in [fuse]"),
            "{e}"
        );
        let e = err(&format!("{MIN}[nfs]\nport = 70000\n"));
        assert!(e.starts_with("5:8: invalid value for `port` in [nfs]") && e.contains("65535"));
        let e = err("mountpoint = \"/m\"\nbackend = \"fusee\"\n[filesystem]\ntype = \"memfs\"\n");
        assert_eq!(
            e,
            "2:11: invalid value for `backend`: unknown variant `fusee`, expected one of `auto`, \
             `fuse`, `nfs`, `winfsp`"
        );
        let e = err("mountpoint = \"/m\"\n[filesystem]\ntype = \"ramfs\"\n");
        assert!(
            e.starts_with("3:8: invalid value for `type` in [filesystem]") && e.contains("memfs")
        );
        let e = err("mountpoint = 5\n[filesystem]\ntype = \"memfs\"\n");
        assert!(
            e.starts_with("1:14: invalid value for `mountpoint`: invalid type"),
            "{e}"
        );
        let e = err(&format!("name = \"a b\"\n{MIN}"));
        assert!(e.starts_with("1:8: invalid value for `name`"), "{e}");
        let e = err("mountpoint = \"/m\"\nfilesystem = 3\n");
        assert_eq!(
            e,
            "2:14: invalid value for `filesystem`: invalid type: integer `3`, expected a table"
        );
    }

    #[test]
    fn cross_key_rules() {
        let e = err(&format!("{MIN}source = \"/src\"\n"));
        assert!(e.starts_with("4:10: `source` in [filesystem] is only for type = \"loopback\""));
        let lo = "mountpoint = \"/m\"\n[filesystem]\ntype = \"loopback\"\nsource = \"/s\"\n";
        assert!(parse(lo).is_ok());
        let e = err(&format!("{lo}size_limit = 5\n"));
        assert!(
            e.starts_with("5:14: `size_limit` in [filesystem] is only for"),
            "{e}"
        );
        let e = err(&format!("{lo}max_inodes = 5\n"));
        assert!(
            e.starts_with("5:14: `max_inodes` in [filesystem] is only for"),
            "{e}"
        );
        let e = err(&format!(
            "{lo}[fuse]\nwriteback_cache = true\npassthrough = \"on\"\n"
        ));
        assert!(
            e.starts_with("7:15: `passthrough = \"on\"` in [fuse] cannot be combined with")
                && e.contains("writeback_cache = false"),
            "{e}"
        );
        assert!(
            parse(&format!(
                "{lo}[fuse]\nwriteback_cache = true\npassthrough = \"auto\"\n"
            ))
            .is_ok()
        );
        assert!(parse(&format!("{MIN}[fuse]\npassthrough = \"on\"\n")).is_ok());
        let e = err(&format!(
            "{MIN}data = \"heap\"\n[fuse]\npassthrough = \"on\"\n"
        ));
        assert!(
            e.starts_with("6:15: `passthrough = \"on\"` in [fuse] needs file data in the kernel"),
            "{e}"
        );
        let e = err(&format!("{MIN}data = \"disk\"\n"));
        assert!(e.starts_with("4:8: "), "{e}");
        assert!(
            e.contains("auto") && e.contains("heap") && e.contains("kernel"),
            "{e}"
        );
        let lo = "mountpoint = \"/mnt\"\n[filesystem]\ntype = \"loopback\"\nsource = \"/tmp\"\n";
        let e = err(&format!("{lo}data = \"heap\"\n"));
        assert!(
            e.starts_with("5:8: `data` in [filesystem] is only for"),
            "{e}"
        );
        assert!(parse(&format!("{MIN}[fuse]\npassthrough = \"off\"\n")).is_ok());
        let e = err("mountpoint = \"~bob/m\"\n[filesystem]\ntype = \"memfs\"\n");
        assert!(
            e.starts_with("1:14: `mountpoint` cannot be expanded"),
            "{e}"
        );
        let e = err("mountpoint = \"\"\n[filesystem]\ntype = \"memfs\"\n");
        assert_eq!(e, "1:14: `mountpoint` is empty");
        let e = err("mountpoint = \"/m\"\n[filesystem]\ntype = \"loopback\"\nsource = \"\"\n");
        assert_eq!(e, "4:10: `source` in [filesystem] is empty");
    }

    #[test]
    fn metrics_listen_is_loopback_only() {
        assert!(parse(MIN).unwrap().metrics.address().is_none());
        for ok in ["127.0.0.1:9101", "[::1]:0", "127.0.0.2:80"] {
            let c = parse(&format!("{MIN}[metrics]\nlisten = \"{ok}\"\n")).unwrap();
            assert_eq!(c.metrics.address(), Some(ok.parse().unwrap()));
        }
        let e = err(&format!("{MIN}[metrics]\nlisten = \"0.0.0.0:9101\"\n"));
        assert!(e.starts_with("5:10: ") && e.contains("loopback"), "{e}");
        let e = err(&format!("{MIN}[metrics]\nlisten = \"localhost:9101\"\n"));
        assert!(e.contains("address and port"), "{e}");
        let e = err(&format!("{MIN}[metrics]\nport = 1\n"));
        assert!(e.contains("unknown key `port` in [metrics]"), "{e}");
    }

    #[test]
    fn syntax_errors_are_located() {
        let e = err("mountpoint = \"/m\n[filesystem]\n");
        assert!(e.starts_with("1:") && e.contains("invalid TOML"), "{e}");
        let e = err(&format!("{MIN}[fuse]\nthreads = = 3\n"));
        assert!(e.starts_with("5:11: invalid TOML"), "{e}");
        let e = err(&format!("{MIN}[filesystem]\n"));
        assert!(e.starts_with("4:") && e.contains("invalid TOML"), "{e}");
    }

    #[test]
    fn errors_name_the_file() {
        let src = Source {
            path: Some(PathBuf::from("x/y.toml")),
            text: "a = 1\n".into(),
        };
        let e = src.parse().unwrap_err().to_string();
        assert!(e.starts_with("x/y.toml:1:1: unknown key `a`"), "{e}");
    }

    #[test]
    fn tilde() {
        if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            assert_eq!(expand_tilde("~"), Some(PathBuf::from(&home)));
            assert_eq!(
                expand_tilde("~/x/y"),
                Some(PathBuf::from(&home).join("x/y"))
            );
        }
        assert_eq!(expand_tilde("/a/~"), Some(PathBuf::from("/a/~")));
        assert_eq!(expand_tilde("rel"), Some(PathBuf::from("rel")));
        assert_eq!(expand_tilde("~bob"), None);
    }
}
