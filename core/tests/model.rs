//! Property tests: random operation sequences applied to memfs, to loopback (over a temp
//! dir) and to a reference model of a POSIX tree, compared op by op and tree by tree.
//!
//! # Decisions
//! - **The model is a plain tree of nodes** (`BTreeMap` of ids to files, directories and
//!   symlinks; hard links are several entries naming one id), with Linux's error
//!   semantics, errno for errno: where memfs and loopback disagree with it, one of them is
//!   wrong, and loopback reports what the host kernel said.
//! - **Paths, not inodes, in the operations.** Each operation names its objects by paths
//!   over a pool of four names, so that collisions (existing targets, renames over
//!   files and directories, into their own subtree) are common. The harness resolves a
//!   path with `lookup`, exactly as the model does, so lookups are tested on every step.
//! - **Compared after every step** (the exact result, or the exact `VfsError` variant),
//!   and **the whole tree at the end of a case**: kinds, permission bits, sizes, contents,
//!   symlink targets, link counts, and which names share an inode.
//! - **proptest strategies throughout**, so a failure shrinks to a short sequence.
//!   `PROPTEST_CASES` (default 256 here, a quarter of it for the threaded property)
//!   runs more; the defaults take about two seconds.
//! - **The concurrent property** gives each thread its own directory and its own model
//!   (results there must still match exactly) plus one shared directory where all threads
//!   rename, create and remove at once; afterwards every name must resolve and read, and
//!   link counts must equal the names found.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError};
use vmount_core::memfs::{MemFs, MemFsOptions};
use vmount_core::{Ctx, FileType, Ino, OpenFlags, RenameFlags, SetAttr, VecSink, Vfs, VfsError};

// ---------------------------------------------------------------------------------------
// Operations

/// A path below some base directory, as a list of names.
type Path = Vec<&'static str>;

/// The name pool: small, so that operations collide.
const NAMES: [&str; 4] = ["a", "b", "c", "d"];

#[derive(Debug, Clone)]
enum Op {
    Create(Path, &'static str),
    Mkdir(Path, &'static str),
    Symlink(Path, &'static str, &'static str),
    Write(Path, u64, Vec<u8>),
    Truncate(Path, u64),
    Read(Path, u64, usize),
    Rename(Path, &'static str, Path, &'static str, bool),
    Link(Path, Path, &'static str),
    Unlink(Path, &'static str),
    Rmdir(Path, &'static str),
    Readlink(Path),
    Chmod(Path, u16),
    Readdir(Path),
}

fn name() -> impl Strategy<Value = &'static str> {
    prop::sample::select(&NAMES[..])
}

fn path() -> impl Strategy<Value = Path> {
    prop::collection::vec(name(), 0..3)
}

fn op() -> impl Strategy<Value = Op> {
    let data = prop::collection::vec(prop::sample::select(&b"xyz\0"[..]), 0..48);
    prop_oneof![
        3 => (path(), name()).prop_map(|(p, n)| Op::Create(p, n)),
        3 => (path(), name()).prop_map(|(p, n)| Op::Mkdir(p, n)),
        1 => (path(), name(), prop::sample::select(&["a", "../b", "/x/y", ""][..]))
            .prop_map(|(p, n, t)| Op::Symlink(p, n, t)),
        3 => (path(), prop_oneof![0..8u64, 0..200u64, Just(4096u64), Just(65530u64)], data)
            .prop_map(|(p, o, d)| Op::Write(p, o, d)),
        2 => (path(), prop_oneof![0..8u64, 0..300u64, Just(70000u64)])
            .prop_map(|(p, s)| Op::Truncate(p, s)),
        2 => (path(), 0..100u64, 0..200usize).prop_map(|(p, o, l)| Op::Read(p, o, l)),
        4 => (path(), name(), path(), name(), prop::bool::weighted(0.2))
            .prop_map(|(p, n, q, m, noreplace)| Op::Rename(p, n, q, m, noreplace)),
        2 => (path(), path(), name()).prop_map(|(p, q, n)| Op::Link(p, q, n)),
        2 => (path(), name()).prop_map(|(p, n)| Op::Unlink(p, n)),
        2 => (path(), name()).prop_map(|(p, n)| Op::Rmdir(p, n)),
        1 => path().prop_map(Op::Readlink),
        1 => (path(), prop::sample::select(&[0o644u16, 0o600, 0o755, 0o4711, 0o1777][..]))
            .prop_map(|(p, m)| Op::Chmod(p, m)),
        1 => path().prop_map(Op::Readdir),
    ]
}

/// What an operation gave: the comparable part of a result.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Ok,
    Data(Vec<u8>),
    Names(Vec<String>),
    Err(&'static str),
}

/// The variant name of an error: what the comparison is exact on.
fn err_name(e: &VfsError) -> &'static str {
    match e {
        VfsError::NotFound => "NotFound",
        VfsError::Exists => "Exists",
        VfsError::NotDir => "NotDir",
        VfsError::IsDir => "IsDir",
        VfsError::NotEmpty => "NotEmpty",
        VfsError::PermissionDenied => "PermissionDenied",
        VfsError::NotPermitted => "NotPermitted",
        VfsError::ReadOnly => "ReadOnly",
        VfsError::InvalidArgument => "InvalidArgument",
        VfsError::NameTooLong => "NameTooLong",
        VfsError::NoSpace => "NoSpace",
        VfsError::CrossDevice => "CrossDevice",
        VfsError::Stale => "Stale",
        VfsError::BadHandle => "BadHandle",
        VfsError::FileTooLarge => "FileTooLarge",
        VfsError::TooManyLinks => "TooManyLinks",
        VfsError::NoAttribute => "NoAttribute",
        VfsError::Range => "Range",
        VfsError::Busy => "Busy",
        VfsError::Loop => "Loop",
        VfsError::NoDataAtOffset => "NoDataAtOffset",
        VfsError::Unimplemented => "Unimplemented",
        VfsError::NotSupported => "NotSupported",
        VfsError::Io(_) => "Io",
    }
}

fn err(e: VfsError) -> Outcome {
    Outcome::Err(err_name(&e))
}

// ---------------------------------------------------------------------------------------
// The reference model

type Id = u64;

#[derive(Debug, Clone)]
enum Node {
    File {
        data: Vec<u8>,
        perm: u16,
    },
    Dir {
        entries: BTreeMap<&'static str, Id>,
        perm: u16,
    },
    Symlink {
        target: &'static str,
    },
}

#[derive(Debug, Clone)]
struct Model {
    nodes: BTreeMap<Id, Node>,
    next: Id,
}

const MROOT: Id = 0;

impl Model {
    fn new() -> Model {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            MROOT,
            Node::Dir {
                entries: BTreeMap::new(),
                perm: 0o755,
            },
        );
        Model { nodes, next: 1 }
    }

    fn entries(&self, dir: Id) -> Option<&BTreeMap<&'static str, Id>> {
        match &self.nodes[&dir] {
            Node::Dir { entries, .. } => Some(entries),
            _ => None,
        }
    }

    fn entries_mut(&mut self, dir: Id) -> &mut BTreeMap<&'static str, Id> {
        match self.nodes.get_mut(&dir) {
            Some(Node::Dir { entries, .. }) => entries,
            _ => unreachable!("not a directory"),
        }
    }

    fn is_dir(&self, id: Id) -> bool {
        matches!(self.nodes[&id], Node::Dir { .. })
    }

    /// Resolves a path like a chain of `lookup`s from `base`.
    fn resolve(&self, base: Id, path: &[&'static str]) -> Result<Id, &'static str> {
        let mut cur = base;
        for n in path {
            let entries = self.entries(cur).ok_or("NotDir")?;
            cur = *entries.get(n).ok_or("NotFound")?;
        }
        Ok(cur)
    }

    /// The directory a path names (for name-taking operations).
    fn dir(&self, base: Id, path: &[&'static str]) -> Result<Id, &'static str> {
        let id = self.resolve(base, path)?;
        if self.is_dir(id) {
            Ok(id)
        } else {
            Err("NotDir")
        }
    }

    fn add(&mut self, node: Node) -> Id {
        let id = self.next;
        self.next += 1;
        self.nodes.insert(id, node);
        id
    }

    /// Whether `anc` is `id` or one of its ancestors.
    fn is_ancestor(&self, anc: Id, id: Id) -> bool {
        if anc == id {
            return true;
        }
        let Some(entries) = self.entries(anc) else {
            return false;
        };
        entries
            .values()
            .filter(|c| self.is_dir(**c))
            .any(|c| self.is_ancestor(*c, id))
    }

    fn names_of(&self, id: Id) -> usize {
        self.nodes
            .values()
            .filter_map(|n| match n {
                Node::Dir { entries, .. } => Some(entries.values().filter(|c| **c == id).count()),
                _ => None,
            })
            .sum()
    }

    /// Drops nodes no entry names any more (the root excepted).
    fn collect(&mut self, id: Id) {
        if id != MROOT && self.names_of(id) == 0 {
            self.nodes.remove(&id);
        }
    }

    fn apply(&mut self, base: Id, op: &Op) -> Outcome {
        match self.apply_inner(base, op) {
            Ok(o) => o,
            Err(e) => Outcome::Err(e),
        }
    }

    fn apply_inner(&mut self, base: Id, op: &Op) -> Result<Outcome, &'static str> {
        match op {
            Op::Create(p, n) | Op::Mkdir(p, n) | Op::Symlink(p, n, _) => {
                let d = self.dir(base, p)?;
                // symlink(2) refuses an empty target with ENOENT before anything else.
                if matches!(op, Op::Symlink(_, _, "")) {
                    return Err("NotFound");
                }
                if self.entries(d).is_some_and(|e| e.contains_key(n)) {
                    return Err("Exists");
                }
                let node = match op {
                    Op::Create(..) => Node::File {
                        data: Vec::new(),
                        perm: 0o644,
                    },
                    Op::Mkdir(..) => Node::Dir {
                        entries: BTreeMap::new(),
                        perm: 0o755,
                    },
                    Op::Symlink(_, _, t) => Node::Symlink { target: t },
                    _ => unreachable!(),
                };
                let id = self.add(node);
                self.entries_mut(d).insert(n, id);
                Ok(Outcome::Ok)
            }
            Op::Write(p, off, bytes) => {
                let id = self.resolve(base, p)?;
                match self.nodes.get_mut(&id) {
                    Some(Node::File { data, .. }) => {
                        if !bytes.is_empty() {
                            let end = *off as usize + bytes.len();
                            if data.len() < end {
                                data.resize(end, 0);
                            }
                            data[*off as usize..end].copy_from_slice(bytes);
                        }
                        Ok(Outcome::Data(vec![bytes.len() as u8]))
                    }
                    Some(Node::Dir { .. }) => Err("IsDir"),
                    _ => Err("InvalidArgument"),
                }
            }
            Op::Truncate(p, size) => {
                let id = self.resolve(base, p)?;
                match self.nodes.get_mut(&id) {
                    Some(Node::File { data, .. }) => {
                        data.resize(*size as usize, 0);
                        Ok(Outcome::Ok)
                    }
                    Some(Node::Dir { .. }) => Err("IsDir"),
                    _ => Err("InvalidArgument"),
                }
            }
            Op::Read(p, off, len) => {
                let id = self.resolve(base, p)?;
                match &self.nodes[&id] {
                    Node::File { data, .. } => {
                        let start = (*off as usize).min(data.len());
                        let end = (start + len).min(data.len());
                        Ok(Outcome::Data(data[start..end].to_vec()))
                    }
                    Node::Dir { .. } => Err("IsDir"),
                    Node::Symlink { .. } => Err("InvalidArgument"),
                }
            }
            Op::Readlink(p) => {
                let id = self.resolve(base, p)?;
                match &self.nodes[&id] {
                    Node::Symlink { target } => Ok(Outcome::Data(target.as_bytes().to_vec())),
                    _ => Err("InvalidArgument"),
                }
            }
            Op::Readdir(p) => {
                let d = self.dir(base, p)?;
                let names = self.entries(d).into_iter().flatten();
                Ok(Outcome::Names(names.map(|(n, _)| n.to_string()).collect()))
            }
            Op::Chmod(p, mode) => {
                let id = self.resolve(base, p)?;
                match self.nodes.get_mut(&id) {
                    Some(Node::File { perm, .. } | Node::Dir { perm, .. }) => *perm = *mode,
                    // Linux has no symlink modes: fchmodat(AT_SYMLINK_NOFOLLOW) is
                    // EOPNOTSUPP. The harness does not send it (see `run_op`).
                    _ => unreachable!("chmod of a symlink is filtered"),
                }
                Ok(Outcome::Ok)
            }
            Op::Unlink(p, n) => {
                let d = self.dir(base, p)?;
                let id = *self.entries(d).and_then(|e| e.get(n)).ok_or("NotFound")?;
                if self.is_dir(id) {
                    return Err("IsDir");
                }
                self.entries_mut(d).remove(n);
                self.collect(id);
                Ok(Outcome::Ok)
            }
            Op::Rmdir(p, n) => {
                let d = self.dir(base, p)?;
                let id = *self.entries(d).and_then(|e| e.get(n)).ok_or("NotFound")?;
                match self.entries(id) {
                    None => return Err("NotDir"),
                    Some(e) if !e.is_empty() => return Err("NotEmpty"),
                    Some(_) => {}
                }
                self.entries_mut(d).remove(n);
                self.collect(id);
                Ok(Outcome::Ok)
            }
            Op::Link(src, p, n) => {
                let id = self.resolve(base, src)?;
                let d = self.dir(base, p)?;
                // Both filesystems refuse a directory source before looking at the target
                // name (Linux's VFS checks the name first; POSIX leaves the order open).
                if self.is_dir(id) {
                    return Err("NotPermitted");
                }
                if self.entries(d).is_some_and(|e| e.contains_key(n)) {
                    return Err("Exists");
                }
                self.entries_mut(d).insert(n, id);
                Ok(Outcome::Ok)
            }
            Op::Rename(p, n, q, m, noreplace) => {
                let from = self.dir(base, p)?;
                let to = self.dir(base, q)?;
                let src = *self
                    .entries(from)
                    .and_then(|e| e.get(n))
                    .ok_or("NotFound")?;
                let dst = self.entries(to).and_then(|e| e.get(m)).copied();
                // Linux's order (do_renameat2, then vfs_rename).
                if *noreplace && dst.is_some() {
                    return Err("Exists");
                }
                if self.is_dir(src) && self.is_ancestor(src, to) {
                    return Err("InvalidArgument");
                }
                if let Some(dst) = dst {
                    if self.is_dir(dst) && self.is_ancestor(dst, from) {
                        return Err("NotEmpty");
                    }
                    if dst == src {
                        return Ok(Outcome::Ok);
                    }
                    match (self.is_dir(src), self.entries(dst)) {
                        (true, None) => return Err("NotDir"),
                        (false, Some(_)) => return Err("IsDir"),
                        (true, Some(e)) if !e.is_empty() => return Err("NotEmpty"),
                        _ => {}
                    }
                }
                self.entries_mut(from).remove(n);
                self.entries_mut(to).insert(m, src);
                if let Some(dst) = dst {
                    self.collect(dst);
                }
                Ok(Outcome::Ok)
            }
        }
    }

    /// The canonical state of the tree below `base` (see [`State`]).
    fn state(&self, base: Id) -> State {
        let mut objects = BTreeMap::new();
        let mut groups: BTreeMap<Id, BTreeSet<String>> = BTreeMap::new();
        self.walk(base, String::new(), &mut objects, &mut groups);
        State {
            objects,
            groups: groups.into_values().filter(|g| g.len() > 1).collect(),
        }
    }

    fn walk(
        &self,
        dir: Id,
        prefix: String,
        objects: &mut BTreeMap<String, Object>,
        groups: &mut BTreeMap<Id, BTreeSet<String>>,
    ) {
        for (n, id) in self.entries(dir).into_iter().flatten() {
            let path = format!("{prefix}/{n}");
            groups.entry(*id).or_default().insert(path.clone());
            let obj = match &self.nodes[id] {
                Node::File { data, perm } => Object::File {
                    perm: *perm,
                    nlink: self.names_of(*id) as u32,
                    data: data.clone(),
                },
                Node::Dir { entries, perm } => Object::Dir {
                    perm: *perm,
                    nlink: 2 + entries.values().filter(|c| self.is_dir(**c)).count() as u32,
                },
                Node::Symlink { target } => Object::Symlink {
                    nlink: self.names_of(*id) as u32,
                    target: target.as_bytes().to_vec(),
                },
            };
            objects.insert(path.clone(), obj);
            if self.is_dir(*id) {
                self.walk(*id, path, objects, groups);
            }
        }
    }
}

/// What the end-of-case comparison looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Object {
    File {
        perm: u16,
        nlink: u32,
        data: Vec<u8>,
    },
    Dir {
        perm: u16,
        nlink: u32,
    },
    Symlink {
        nlink: u32,
        target: Vec<u8>,
    },
}

/// Every path below a base with its object, and the sets of paths naming one inode.
#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    objects: BTreeMap<String, Object>,
    groups: BTreeSet<BTreeSet<String>>,
}

// ---------------------------------------------------------------------------------------
// Running operations against a real filesystem

fn ctx() -> Ctx {
    Ctx::root()
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// Resolves `path` below `base` with `lookup`.
fn resolve(fs: &dyn Vfs, base: Ino, path: &[&str]) -> Result<Ino, VfsError> {
    let mut cur = base;
    for n in path {
        cur = fs.lookup(&ctx(), cur, os(n))?.ino;
    }
    Ok(cur)
}

/// Resolves the parent directory of a name-taking call as the kernel's path walk does
/// before any filesystem sees the call: a last component that is not a directory is
/// ENOTDIR. (Which error a filesystem gives for a non-directory parent *and* a bad name is
/// its own business; the kernel never asks.)
fn resolve_dir(fs: &dyn Vfs, base: Ino, path: &[&str]) -> Result<Ino, VfsError> {
    let ino = resolve(fs, base, path)?;
    if fs.getattr(&ctx(), ino, None)?.kind != FileType::Directory {
        return Err(VfsError::NotDir);
    }
    Ok(ino)
}

fn run_op(fs: &dyn Vfs, base: Ino, op: &Op) -> Outcome {
    match run_inner(fs, base, op) {
        Ok(o) => o,
        Err(e) => err(e),
    }
}

fn run_inner(fs: &dyn Vfs, base: Ino, op: &Op) -> Result<Outcome, VfsError> {
    let c = ctx();
    Ok(match op {
        Op::Create(p, n) => {
            let d = resolve_dir(fs, base, p)?;
            let flags = OpenFlags::WRITE | OpenFlags::EXCLUSIVE;
            let (a, o) = fs.create(&c, d, os(n), 0o644, flags)?;
            fs.release(&c, a.ino, o.fh)?;
            Outcome::Ok
        }
        Op::Mkdir(p, n) => {
            let d = resolve_dir(fs, base, p)?;
            fs.mkdir(&c, d, os(n), 0o755)?;
            Outcome::Ok
        }
        Op::Symlink(p, n, t) => {
            let d = resolve_dir(fs, base, p)?;
            fs.symlink(&c, d, os(n), os(t))?;
            Outcome::Ok
        }
        Op::Write(p, off, data) => {
            let i = resolve(fs, base, p)?;
            let n = fs.write(&c, i, None, *off, data)?;
            Outcome::Data(vec![n as u8])
        }
        Op::Truncate(p, size) => {
            let i = resolve(fs, base, p)?;
            let set = SetAttr {
                size: Some(*size),
                ..SetAttr::default()
            };
            fs.setattr(&c, i, &set, None)?;
            Outcome::Ok
        }
        Op::Read(p, off, len) => {
            let i = resolve(fs, base, p)?;
            let mut buf = vec![0u8; *len];
            let n = fs.read(&c, i, None, *off, &mut buf)?;
            buf.truncate(n);
            Outcome::Data(buf)
        }
        Op::Readlink(p) => {
            let i = resolve(fs, base, p)?;
            Outcome::Data(fs.readlink(&c, i)?)
        }
        Op::Readdir(p) => {
            let i = resolve(fs, base, p)?;
            Outcome::Names(list(fs, i, false)?.into_iter().map(|(n, _)| n).collect())
        }
        Op::Chmod(p, mode) => {
            let i = resolve(fs, base, p)?;
            if fs.getattr(&c, i, None)?.kind == FileType::Symlink {
                // The model filters these (see `applicable`): reaching one here means the
                // trees already differ, which the comparison then reports.
                return Ok(Outcome::Err("chmod of a symlink"));
            }
            let set = SetAttr {
                mode: Some(u32::from(*mode)),
                ..SetAttr::default()
            };
            fs.setattr(&c, i, &set, None)?;
            Outcome::Ok
        }
        Op::Unlink(p, n) => {
            let d = resolve_dir(fs, base, p)?;
            fs.unlink(&c, d, os(n))?;
            Outcome::Ok
        }
        Op::Rmdir(p, n) => {
            let d = resolve_dir(fs, base, p)?;
            fs.rmdir(&c, d, os(n))?;
            Outcome::Ok
        }
        Op::Link(src, p, n) => {
            let i = resolve(fs, base, src)?;
            let d = resolve_dir(fs, base, p)?;
            fs.link(&c, i, d, os(n))?;
            Outcome::Ok
        }
        Op::Rename(p, n, q, m, noreplace) => {
            let from = resolve_dir(fs, base, p)?;
            let to = resolve_dir(fs, base, q)?;
            let flags = if *noreplace {
                RenameFlags::NOREPLACE
            } else {
                RenameFlags::empty()
            };
            fs.rename(&c, from, os(n), to, os(m), flags)?;
            Outcome::Ok
        }
    })
}

/// Whether the model can judge `op` in its current state: chmod of a symlink has no
/// POSIX answer a model could give (Linux refuses it, other systems allow it).
fn applicable(model: &Model, base: Id, op: &Op) -> bool {
    match op {
        Op::Chmod(p, _) => !matches!(
            model.resolve(base, p).map(|id| &model.nodes[&id]),
            Ok(Node::Symlink { .. })
        ),
        _ => true,
    }
}

/// The sorted (name, inode) entries of directory `dir`, read in small batches so that
/// resuming from cookies is exercised too. Only listings with attributes (`plus`, as
/// READDIRPLUS and NFS READDIR ask) promise the inode numbers `lookup` gives: without,
/// loopback may report a synthetic number for an entry it has not registered.
fn list(fs: &dyn Vfs, dir: Ino, plus: bool) -> Result<Vec<(String, Ino)>, VfsError> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let mut sink = VecSink {
            limit: Some(3),
            plus,
            ..VecSink::default()
        };
        fs.readdir(&ctx(), dir, None, after, &mut sink)?;
        let Some(last) = sink.entries.last() else {
            break;
        };
        after = last.cookie;
        out.extend(
            sink.entries
                .iter()
                .map(|e| (e.name.to_string_lossy().into_owned(), e.ino)),
        );
    }
    out.sort();
    Ok(out)
}

/// The canonical state of the real tree below `base`, read with readdir, lookup,
/// getattr, read and readlink. Also checks that readdir's inode and kind match lookup's.
fn real_state(fs: &dyn Vfs, base: Ino) -> Result<State, String> {
    let mut objects = BTreeMap::new();
    let mut groups: BTreeMap<Ino, BTreeSet<String>> = BTreeMap::new();
    let mut todo = vec![(base, String::new())];
    while let Some((dir, prefix)) = todo.pop() {
        let entries = list(fs, dir, true).map_err(|e| format!("readdir {prefix:?}: {e:?}"))?;
        let bare: Vec<String> = list(fs, dir, false)
            .map_err(|e| format!("readdir {prefix:?}: {e:?}"))?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        if bare != entries.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>() {
            return Err(format!(
                "{prefix:?}: listings with and without attributes differ"
            ));
        }
        let mut seen = BTreeSet::new();
        for (n, ino) in entries {
            let path = format!("{prefix}/{n}");
            if !seen.insert(n.clone()) {
                return Err(format!("{path} listed twice"));
            }
            let a = fs
                .lookup(&ctx(), dir, os(&n))
                .map_err(|e| format!("lookup {path}: {e:?}"))?;
            if a.ino != ino {
                return Err(format!("{path}: readdir says {ino:?}, lookup {:?}", a.ino));
            }
            groups.entry(a.ino).or_default().insert(path.clone());
            let obj = match a.kind {
                FileType::RegularFile => {
                    let mut data = vec![0u8; a.size as usize + 1];
                    let got = fs
                        .read(&ctx(), a.ino, None, 0, &mut data)
                        .map_err(|e| format!("read {path}: {e:?}"))?;
                    data.truncate(got);
                    if got as u64 != a.size {
                        return Err(format!("{path}: size {} but {got} bytes read", a.size));
                    }
                    Object::File {
                        perm: a.perm,
                        nlink: a.nlink,
                        data,
                    }
                }
                FileType::Directory => {
                    todo.push((a.ino, path.clone()));
                    Object::Dir {
                        perm: a.perm,
                        nlink: a.nlink,
                    }
                }
                FileType::Symlink => Object::Symlink {
                    nlink: a.nlink,
                    target: fs
                        .readlink(&ctx(), a.ino)
                        .map_err(|e| format!("readlink {path}: {e:?}"))?,
                },
                other => return Err(format!("{path}: unexpected kind {other:?}")),
            };
            objects.insert(path, obj);
        }
    }
    Ok(State {
        objects,
        groups: groups.into_values().filter(|g| g.len() > 1).collect(),
    })
}

// ---------------------------------------------------------------------------------------
// Filesystems under test

/// A fresh filesystem and whatever must outlive it.
struct Subject {
    name: &'static str,
    fs: Arc<dyn Vfs>,
    _dir: Option<tempfile::TempDir>,
}

fn subjects() -> Vec<Subject> {
    #[cfg_attr(not(unix), allow(unused_mut))] // loopback is pushed on unix only
    let mut v = vec![Subject {
        name: "memfs",
        fs: Arc::new(MemFs::new(MemFsOptions::default())),
        _dir: None,
    }];
    // memfs with kernel-held contents, where this process may make its tmpfs (root).
    let kernel = MemFs::new(MemFsOptions {
        kernel_data: true,
        ..MemFsOptions::default()
    });
    if kernel.kernel_data() {
        v.push(Subject {
            name: "memfs-kernel",
            fs: Arc::new(kernel),
            _dir: None,
        });
    }
    #[cfg(unix)]
    {
        use vmount_core::loopback::{Loopback, LoopbackOptions};
        let dir = tempfile::tempdir().expect("temp dir");
        let lo = Loopback::new(LoopbackOptions {
            source: dir.path().to_path_buf(),
            read_only: false,
        })
        .expect("loopback");
        v.push(Subject {
            name: "loopback",
            fs: Arc::new(lo),
            _dir: Some(dir),
        });
    }
    v
}

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Applies `ops` to the model and to `fs` below `base`, comparing every step; returns
/// the model for the end-of-case comparison.
fn check_sequence(name: &str, fs: &dyn Vfs, base: Ino, ops: &[Op]) -> Result<Model, TestCaseError> {
    let mut model = Model::new();
    for (i, op) in ops.iter().enumerate() {
        if !applicable(&model, MROOT, op) {
            continue;
        }
        let want = model.apply(MROOT, op);
        let got = run_op(fs, base, op);
        prop_assert_eq!(&got, &want, "{}: step {} {:?}", name, i, op);
    }
    Ok(model)
}

proptest! {
    #![proptest_config(Config {
        cases: cases(256),
        failure_persistence: None,
        ..Config::default()
    })]

    #[test]
    fn sequences_match_the_model(ops in prop::collection::vec(op(), 1..40)) {
        for s in subjects() {
            let model = check_sequence(s.name, &*s.fs, Ino::ROOT, &ops)?;
            let real = real_state(&*s.fs, Ino::ROOT).map_err(TestCaseError::fail)?;
            prop_assert_eq!(&real, &model.state(MROOT), "{}: final tree", s.name);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The concurrent property

const THREADS: usize = 4;
const SHARED: [&str; 6] = ["s0", "s1", "s2", "s3", "s4", "s5"];

/// An operation on the shared directory, whose result depends on the interleaving.
#[derive(Debug, Clone)]
enum SharedOp {
    Create(&'static str),
    Write(&'static str, Vec<u8>),
    Rename(&'static str, &'static str),
    Link(&'static str, &'static str),
    Unlink(&'static str),
    Mkdir(&'static str),
    Rmdir(&'static str),
    List,
}

fn shared_op() -> impl Strategy<Value = SharedOp> {
    let n = || prop::sample::select(&SHARED[..]);
    prop_oneof![
        2 => n().prop_map(SharedOp::Create),
        2 => (n(), prop::collection::vec(any::<u8>(), 0..32)).prop_map(|(a, d)| SharedOp::Write(a, d)),
        4 => (n(), n()).prop_map(|(a, b)| SharedOp::Rename(a, b)),
        1 => (n(), n()).prop_map(|(a, b)| SharedOp::Link(a, b)),
        2 => n().prop_map(SharedOp::Unlink),
        1 => n().prop_map(SharedOp::Mkdir),
        1 => n().prop_map(SharedOp::Rmdir),
        1 => Just(SharedOp::List),
    ]
}

/// Runs one shared-directory operation; any error is fine (the interleaving decides),
/// but it must be one a POSIX filesystem can give there.
fn run_shared(fs: &dyn Vfs, dir: Ino, op: &SharedOp) -> Result<(), String> {
    let c = ctx();
    let r = match op {
        SharedOp::Create(n) => fs
            .create(&c, dir, os(n), 0o644, OpenFlags::WRITE)
            .and_then(|(a, o)| fs.release(&c, a.ino, o.fh)),
        SharedOp::Write(n, d) => fs
            .lookup(&c, dir, os(n))
            .and_then(|a| fs.write(&c, a.ino, None, 0, d).map(drop)),
        SharedOp::Rename(a, b) => fs.rename(&c, dir, os(a), dir, os(b), RenameFlags::empty()),
        SharedOp::Link(a, b) => fs
            .lookup(&c, dir, os(a))
            .and_then(|x| fs.link(&c, x.ino, dir, os(b)).map(drop)),
        SharedOp::Unlink(n) => fs.unlink(&c, dir, os(n)),
        SharedOp::Mkdir(n) => fs.mkdir(&c, dir, os(n), 0o755).map(drop),
        SharedOp::Rmdir(n) => fs.rmdir(&c, dir, os(n)),
        SharedOp::List => list(fs, dir, false).map(drop),
    };
    match r {
        Ok(())
        | Err(
            VfsError::NotFound
            | VfsError::Exists
            | VfsError::IsDir
            | VfsError::NotDir
            | VfsError::NotEmpty
            | VfsError::NotPermitted
            // A name removed between the lookup and the call on its inode.
            | VfsError::Stale,
        ) => Ok(()),
        Err(e) => Err(format!("{op:?}: {e:?}")),
    }
}

/// Every name below `dir` resolves and reads, and link counts equal the names found
/// (files) or 2 plus subdirectories (directories).
fn check_invariants(fs: &dyn Vfs) -> Result<(), String> {
    let state = real_state(fs, Ino::ROOT)?;
    let mut names: BTreeMap<String, u32> = BTreeMap::new();
    for g in &state.groups {
        for p in g {
            names.insert(p.clone(), g.len() as u32);
        }
    }
    for (path, obj) in &state.objects {
        match obj {
            Object::File { nlink, .. } | Object::Symlink { nlink, .. } => {
                let want = names.get(path).copied().unwrap_or(1);
                if *nlink != want {
                    return Err(format!("{path}: nlink {nlink} but {want} names"));
                }
            }
            Object::Dir { nlink, .. } => {
                let prefix = format!("{path}/");
                let subdirs = state
                    .objects
                    .iter()
                    .filter(|(p, o)| {
                        matches!(o, Object::Dir { .. })
                            && p.strip_prefix(&prefix).is_some_and(|r| !r.contains('/'))
                    })
                    .count() as u32;
                if *nlink != 2 + subdirs {
                    return Err(format!(
                        "{path}: nlink {nlink} with {subdirs} subdirectories"
                    ));
                }
            }
        }
    }
    Ok(())
}

type ThreadOps = (Vec<Op>, Vec<SharedOp>);

proptest! {
    #![proptest_config(Config {
        cases: cases(256) / 4,
        failure_persistence: None,
        ..Config::default()
    })]

    #[test]
    fn concurrent_sequences_keep_the_invariants(
        per_thread in prop::collection::vec(
            (prop::collection::vec(op(), 1..25), prop::collection::vec(shared_op(), 1..25)),
            THREADS,
        ),
    ) {
        for s in subjects() {
            let c = ctx();
            let shared = s.fs.mkdir(&c, Ino::ROOT, os("shared"), 0o777).unwrap().ino;
            let bases: Vec<Ino> = (0..THREADS)
                .map(|t| s.fs.mkdir(&c, Ino::ROOT, os(&format!("t{t}")), 0o755).unwrap().ino)
                .collect();
            let results: Vec<Result<(Model, Ino), String>> = std::thread::scope(|scope| {
                let handles: Vec<_> = per_thread
                    .iter()
                    .zip(&bases)
                    .map(|((own, shared_ops), &base): (&ThreadOps, &Ino)| {
                        let fs = &*s.fs;
                        scope.spawn(move || {
                            let mut model = Model::new();
                            let mut shared_iter = shared_ops.iter();
                            for (i, op) in own.iter().enumerate() {
                                if applicable(&model, MROOT, op) {
                                    let want = model.apply(MROOT, op);
                                    let got = run_op(fs, base, op);
                                    if got != want {
                                        return Err(format!(
                                            "step {i} {op:?}: got {got:?}, model {want:?}"
                                        ));
                                    }
                                }
                                // Interleave the shared operations with the own ones.
                                if let Some(sop) = shared_iter.next() {
                                    run_shared(fs, shared, sop)?;
                                }
                            }
                            for sop in shared_iter {
                                run_shared(fs, shared, sop)?;
                            }
                            Ok((model, base))
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|_| Err("thread panicked".into())))
                    .collect()
            });
            for r in results {
                let (model, base) = r.map_err(|e| TestCaseError::fail(format!("{}: {e}", s.name)))?;
                let real = real_state(&*s.fs, base).map_err(TestCaseError::fail)?;
                prop_assert_eq!(&real, &model.state(MROOT), "{}: a thread's own tree", s.name);
            }
            check_invariants(&*s.fs).map_err(|e| TestCaseError::fail(format!("{}: {e}", s.name)))?;
        }
    }
}

#[test]
fn the_model_knows_linux_rename_rules() {
    // A few fixed sequences whose answers are known from Linux, so that the model is
    // checked against something other than the filesystems it judges.
    let mut m = Model::new();
    let ops = [
        (Op::Mkdir(vec![], "a"), Outcome::Ok),
        (Op::Mkdir(vec!["a"], "b"), Outcome::Ok),
        (Op::Create(vec!["a", "b"], "c"), Outcome::Ok),
        // Into its own subtree.
        (
            Op::Rename(vec![], "a", vec!["a", "b"], "d", false),
            Outcome::Err("InvalidArgument"),
        ),
        // Over an ancestor of the source.
        (
            Op::Rename(vec!["a", "b"], "c", vec![], "a", false),
            Outcome::Err("NotEmpty"),
        ),
        // A directory over a file and the reverse.
        (
            Op::Rename(vec!["a"], "b", vec!["a", "b"], "c", false),
            Outcome::Err("InvalidArgument"),
        ),
        (Op::Create(vec![], "f"), Outcome::Ok),
        (
            Op::Rename(vec![], "a", vec![], "f", false),
            Outcome::Err("NotDir"),
        ),
        (
            Op::Rename(vec![], "f", vec![], "a", false),
            Outcome::Err("IsDir"),
        ),
        (Op::Rmdir(vec![], "a"), Outcome::Err("NotEmpty")),
        (Op::Unlink(vec![], "a"), Outcome::Err("IsDir")),
        (
            Op::Link(vec!["a"], vec![], "x"),
            Outcome::Err("NotPermitted"),
        ),
        (Op::Link(vec!["f"], vec!["a"], "f2"), Outcome::Ok),
        // Hard links of one file: rename is a no-op.
        (Op::Rename(vec![], "f", vec!["a"], "f2", false), Outcome::Ok),
        (
            Op::Rename(vec![], "f", vec!["a"], "f2", true),
            Outcome::Err("Exists"),
        ),
    ];
    for (i, (op, want)) in ops.iter().enumerate() {
        assert_eq!(&m.apply(MROOT, op), want, "step {i} {op:?}");
    }
    let st = m.state(MROOT);
    assert_eq!(st.groups.len(), 1);
    assert!(matches!(st.objects["/f"], Object::File { nlink: 2, .. }));
    // And the same sequence through memfs (loopback runs it in the property).
    let fs = MemFs::new(MemFsOptions::default());
    let mut m = Model::new();
    for (op, _) in &ops {
        assert_eq!(run_op(&fs, Ino::ROOT, op), m.apply(MROOT, op), "{op:?}");
    }
}
