//! Kernel-held contents exist on Linux only (see `host.rs` there); elsewhere memfs keeps
//! every byte on its heap, and these types cannot be made.

use std::io;
#[cfg(unix)]
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::SystemTime;

pub(crate) use super::HostStat;
use crate::VfsResult;
use crate::types::Whence;

/// Never made: [`HostStore::new`] always fails here.
#[derive(Debug)]
pub(crate) enum HostStore {}

/// Never made.
#[derive(Debug)]
pub(crate) enum HostFile {}

impl HostStore {
    pub(crate) fn new(_size: Option<u64>, _inodes: Option<u64>) -> io::Result<Arc<HostStore>> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
    pub(crate) fn file(self: &Arc<Self>) -> Option<HostFile> {
        match **self {}
    }
    pub(crate) fn used(&self) -> u64 {
        match *self {}
    }
    #[cfg(unix)]
    #[allow(dead_code)]
    pub(crate) fn use_registry(&self, _registry: Arc<dyn crate::BackingRegistry>) -> bool {
        match *self {}
    }
}

impl HostFile {
    pub(crate) fn stat(&self) -> io::Result<HostStat> {
        match *self {}
    }
    pub(crate) fn read(&self, _off: u64, _buf: &mut [u8]) -> VfsResult<usize> {
        match *self {}
    }
    pub(crate) fn write(&self, _off: u64, _data: &[u8]) -> VfsResult<usize> {
        match *self {}
    }
    pub(crate) fn set_len(&self, _size: u64) -> VfsResult<()> {
        match *self {}
    }
    #[allow(dead_code)] // memfs calls it on Linux only
    pub(crate) fn fallocate(&self, _mode: i32, _off: u64, _len: u64) -> VfsResult<()> {
        match *self {}
    }
    pub(crate) fn seek(&self, _off: u64, _whence: Whence) -> VfsResult<u64> {
        match *self {}
    }
    pub(crate) fn copy_to(&self, _i: u64, _dst: &HostFile, _o: u64, _n: u64) -> VfsResult<u64> {
        match *self {}
    }
    pub(crate) fn set_mtime(&self, _mtime: SystemTime) {
        match *self {}
    }
    #[cfg(unix)]
    #[allow(dead_code)]
    pub(crate) fn duplicate(&self) -> Option<OwnedFd> {
        match *self {}
    }
    #[cfg(unix)]
    #[allow(dead_code)]
    pub(crate) fn backing_id(&self) -> Option<u32> {
        match *self {}
    }
}
