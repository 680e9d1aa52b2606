//! The smallest useful filesystem: a read-only root holding one file, `hello.txt`.
//!
//! ```text
//! mkdir -p /tmp/hello && cargo run --example hello_vfs -- /tmp/hello
//! cat /tmp/hello/hello.txt      # in another shell; Ctrl-C unmounts
//! ```
//!
//! It implements only the required methods of [`Vfs`]; the optional ones (symlinks,
//! xattrs, ...) keep the trait's defaults, and every change is refused with `ReadOnly`.
//! Permission checks are left to the kernel (`enforces_permissions: false`).

use std::ffi::OsStr;
use std::time::SystemTime;

use vmount::core::{
    AccessMask, Attr, Capabilities, Ctx, DirEntry, DirSink, Fh, FileType, Ino, OpenFlags, Opened,
    RenameFlags, SetAttr, StatFs, Vfs, VfsError, VfsResult,
};

/// The file's fixed content.
pub const HELLO: &[u8] = b"Hello from a filesystem written in 100 lines of Rust!\n";

const FILE: Ino = Ino(2);
const NAME: &str = "hello.txt";

/// A root directory with `hello.txt` in it.
pub struct HelloFs {
    /// One time for everything: nothing here ever changes.
    born: SystemTime,
}

impl Default for HelloFs {
    fn default() -> Self {
        HelloFs {
            born: SystemTime::now(),
        }
    }
}

impl HelloFs {
    fn attr(&self, ino: Ino) -> VfsResult<Attr> {
        let (kind, perm, nlink, size) = match ino {
            Ino::ROOT => (FileType::Directory, 0o555, 2, 0),
            FILE => (FileType::RegularFile, 0o444, 1, HELLO.len() as u64),
            _ => return Err(VfsError::Stale),
        };
        Ok(Attr {
            ino,
            kind,
            perm,
            nlink,
            uid: 0,
            gid: 0,
            size,
            blocks: size.div_ceil(512),
            blksize: 4096,
            rdev: 0,
            atime: self.born,
            mtime: self.born,
            ctime: self.born,
            crtime: self.born,
        })
    }
}

impl Vfs for HelloFs {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            xattrs: false,
            hard_links: false,
            symlinks: false,
            special_files: false,
            case_sensitive: true,
            read_only: true,
            sparse_files: false,
            enforces_permissions: false,
            kills_privileges: false,
            max_name_len: 255,
        }
    }

    fn lookup(&self, _ctx: &Ctx, parent: Ino, name: &OsStr) -> VfsResult<Attr> {
        match parent {
            Ino::ROOT if name == NAME => self.attr(FILE),
            Ino::ROOT => Err(VfsError::NotFound),
            FILE => Err(VfsError::NotDir),
            _ => Err(VfsError::Stale),
        }
    }

    fn getattr(&self, _ctx: &Ctx, ino: Ino, _fh: Option<Fh>) -> VfsResult<Attr> {
        self.attr(ino)
    }

    fn setattr(&self, _: &Ctx, ino: Ino, set: &SetAttr, _: Option<Fh>) -> VfsResult<Attr> {
        // An empty change is a "touch ctime" probe, which a read-only fs may answer.
        if set.is_empty() {
            return self.attr(ino);
        }
        Err(VfsError::ReadOnly)
    }

    fn mkdir(&self, _: &Ctx, _: Ino, _: &OsStr, _: u32) -> VfsResult<Attr> {
        Err(VfsError::ReadOnly)
    }

    fn unlink(&self, _: &Ctx, _: Ino, _: &OsStr) -> VfsResult<()> {
        Err(VfsError::ReadOnly)
    }

    fn rmdir(&self, _: &Ctx, _: Ino, _: &OsStr) -> VfsResult<()> {
        Err(VfsError::ReadOnly)
    }

    fn rename(
        &self,
        _: &Ctx,
        _: Ino,
        _: &OsStr,
        _: Ino,
        _: &OsStr,
        _: RenameFlags,
    ) -> VfsResult<()> {
        Err(VfsError::ReadOnly)
    }

    fn open(&self, _ctx: &Ctx, ino: Ino, flags: OpenFlags) -> VfsResult<Opened> {
        match ino {
            FILE if flags.intersects(OpenFlags::WRITE | OpenFlags::TRUNCATE) => {
                Err(VfsError::ReadOnly)
            }
            // No per-open state, so every handle is the same number.
            FILE => Ok(Opened::cached(Fh(0))),
            Ino::ROOT => Err(VfsError::IsDir),
            _ => Err(VfsError::Stale),
        }
    }

    fn create(
        &self,
        _: &Ctx,
        _: Ino,
        _: &OsStr,
        _: u32,
        _: OpenFlags,
    ) -> VfsResult<(Attr, Opened)> {
        Err(VfsError::ReadOnly)
    }

    fn read(
        &self,
        _: &Ctx,
        ino: Ino,
        _: Option<Fh>,
        offset: u64,
        buf: &mut [u8],
    ) -> VfsResult<usize> {
        match ino {
            FILE => {
                // An offset past the end (even past usize) reads nothing.
                let start = usize::try_from(offset).map_or(HELLO.len(), |o| o.min(HELLO.len()));
                let n = buf.len().min(HELLO.len() - start);
                buf[..n].copy_from_slice(&HELLO[start..start + n]);
                Ok(n)
            }
            Ino::ROOT => Err(VfsError::IsDir),
            _ => Err(VfsError::Stale),
        }
    }

    fn write(&self, _: &Ctx, _: Ino, _: Option<Fh>, _: u64, _: &[u8]) -> VfsResult<u32> {
        Err(VfsError::ReadOnly)
    }

    fn release(&self, _: &Ctx, _: Ino, _: Fh) -> VfsResult<()> {
        Ok(())
    }

    fn opendir(&self, _: &Ctx, ino: Ino, _: OpenFlags) -> VfsResult<Fh> {
        match ino {
            Ino::ROOT => Ok(Fh(0)),
            FILE => Err(VfsError::NotDir),
            _ => Err(VfsError::Stale),
        }
    }

    fn readdir(
        &self,
        _: &Ctx,
        ino: Ino,
        _: Option<Fh>,
        after: u64,
        sink: &mut dyn DirSink,
    ) -> VfsResult<()> {
        match ino {
            Ino::ROOT => {}
            FILE => return Err(VfsError::NotDir),
            _ => return Err(VfsError::Stale),
        }
        // One entry, cookie 1: after cookie 1 (or any later one) the listing is done.
        if after == 0 {
            let attr = if sink.wants_attr() {
                Some(self.attr(FILE)?)
            } else {
                None
            };
            let entry = DirEntry {
                name: OsStr::new(NAME),
                ino: FILE,
                kind: FileType::RegularFile,
                cookie: 1,
                attr,
            };
            let _full = sink.add(&entry);
        }
        Ok(())
    }

    fn releasedir(&self, _: &Ctx, _: Ino, _: Fh) -> VfsResult<()> {
        Ok(())
    }

    fn statfs(&self, _: &Ctx, _: Ino) -> VfsResult<StatFs> {
        Ok(StatFs {
            blocks: 1,
            bfree: 0,
            bavail: 0,
            files: 2,
            ffree: 0,
            bsize: 4096,
            frsize: 4096,
            namelen: 255,
        })
    }

    fn access(&self, _: &Ctx, ino: Ino, mask: AccessMask) -> VfsResult<()> {
        self.attr(ino)?;
        if mask.contains(AccessMask::WRITE) {
            return Err(VfsError::ReadOnly);
        }
        Ok(())
    }
}

#[allow(dead_code)] // The tests include this file for `HelloFs` only.
fn main() -> anyhow::Result<()> {
    let Some(mountpoint) = std::env::args_os().nth(1) else {
        anyhow::bail!("usage: hello_vfs MOUNTPOINT");
    };
    let plan = vmount::MountPlan::builder(mountpoint)
        .name("hello")
        .read_only(true)
        .build()?;
    let mount = vmount::mount(HelloFs::default(), &plan)?;
    println!(
        "mounted hello at {} via {}; Ctrl-C unmounts",
        mount.mountpoint().display(),
        mount.backend()
    );
    mount.wait()
}
