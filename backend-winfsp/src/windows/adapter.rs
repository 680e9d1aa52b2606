//! The thin `FileSystemContext` shim: converts WinFsp's arguments and results and calls
//! the neutral [`Ops`].

use std::ffi::c_void;

use winfsp::constants::FspCleanupFlags;
use winfsp::filesystem::{
    DirBuffer, DirInfo, DirMarker, FileInfo, FileSecurity, FileSystemContext,
    ModificationDescriptor, OpenFileInfo, VolumeInfo, WideNameInfo,
};
use winfsp::{FspError, U16CStr};

use crate::attrs::{FileMeta, copy_out};
use crate::names::wide;
use crate::ops::{Handle, OpenResult, Ops};
use crate::status::{STATUS_ACCESS_DENIED, WinError};

/// The filesystem WinFsp calls.
pub(crate) struct Adapter {
    ops: Ops,
    label: String,
}

impl Adapter {
    pub(crate) fn new(ops: Ops, label: String) -> Adapter {
        Adapter { ops, label }
    }
}

/// WinFsp's file context: the neutral handle plus the directory listing buffer.
pub(crate) struct FileCtx {
    handle: Handle,
    dir: DirBuffer,
}

fn err(e: WinError) -> FspError {
    match e {
        WinError::Status(s) => FspError::NTSTATUS(s),
        WinError::Win32(c) => FspError::WIN32(c),
    }
}

fn fill(fi: &mut FileInfo, m: &FileMeta) {
    fi.file_attributes = m.attributes;
    fi.reparse_tag = m.reparse_tag;
    fi.allocation_size = m.allocation_size;
    fi.file_size = m.file_size;
    fi.creation_time = m.creation_time;
    fi.last_access_time = m.last_access_time;
    fi.last_write_time = m.last_write_time;
    fi.change_time = m.change_time;
    fi.index_number = m.index_number;
    fi.hard_links = 0;
    fi.ea_size = 0;
}

/// Copies a descriptor into WinFsp's buffer when it fits; returns its size either way
/// (WinFsp retries with a larger buffer when the size exceeds what it passed).
fn put_descriptor(sddl: &str, out: Option<&mut [c_void]>) -> winfsp::Result<u64> {
    let bytes = super::sddl_to_descriptor(sddl).map_err(err)?;
    if let Some(out) = out
        && out.len() >= bytes.len()
    {
        // SAFETY: `out` has room for `bytes.len()` bytes (c_void slices count bytes) and
        // does not overlap the freshly allocated `bytes`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                out.as_mut_ptr().cast::<u8>(),
                bytes.len(),
            );
        }
    }
    Ok(bytes.len() as u64)
}

fn finish_open(r: OpenResult, file_info: &mut OpenFileInfo) -> FileCtx {
    fill(file_info.as_mut(), &r.meta);
    if let Some(name) = r.normalized {
        let name = wide(&name);
        // WinFsp's buffer is `normalized_name_size` bytes; a longer name keeps the
        // requested spelling rather than overflowing it.
        if name.len() * 2 <= usize::from(file_info.normalized_name_size()) {
            file_info.set_normalized_name(&name, None);
        }
    }
    FileCtx {
        handle: r.handle,
        dir: DirBuffer::new(),
    }
}

impl FileSystemContext for Adapter {
    type FileContext = FileCtx;

    fn get_security_by_name(
        &self,
        file_name: &U16CStr,
        security_descriptor: Option<&mut [c_void]>,
        reparse_point_resolver: impl FnOnce(&U16CStr) -> Option<FileSecurity>,
    ) -> winfsp::Result<FileSecurity> {
        if self.ops.settings().symlinks
            && let Some(found) = reparse_point_resolver(file_name)
        {
            return Ok(found);
        }
        let (attributes, sddl) = self
            .ops
            .security_by_name(file_name.as_slice())
            .map_err(err)?;
        let size = put_descriptor(&sddl, security_descriptor)?;
        Ok(FileSecurity {
            reparse: false,
            sz_security_descriptor: size,
            attributes,
        })
    }

    fn open(
        &self,
        file_name: &U16CStr,
        create_options: u32,
        granted_access: u32,
        file_info: &mut OpenFileInfo,
    ) -> winfsp::Result<FileCtx> {
        let r = self
            .ops
            .open(file_name.as_slice(), create_options, granted_access)
            .map_err(err)?;
        Ok(finish_open(r, file_info))
    }

    fn close(&self, context: FileCtx) {
        self.ops.close(context.handle);
    }

    fn create(
        &self,
        file_name: &U16CStr,
        create_options: u32,
        granted_access: u32,
        file_attributes: u32,
        _security_descriptor: Option<&[c_void]>,
        _allocation_size: u64,
        extra_buffer: Option<&[u8]>,
        extra_buffer_is_reparse_point: bool,
        file_info: &mut OpenFileInfo,
    ) -> winfsp::Result<FileCtx> {
        let reparse = extra_buffer.filter(|_| extra_buffer_is_reparse_point);
        let r = self
            .ops
            .create(
                file_name.as_slice(),
                create_options,
                granted_access,
                file_attributes,
                reparse,
            )
            .map_err(err)?;
        Ok(finish_open(r, file_info))
    }

    fn cleanup(&self, context: &FileCtx, file_name: Option<&U16CStr>, flags: u32) {
        let delete = FspCleanupFlags::FspCleanupDelete.is_flagged(flags);
        self.ops
            .cleanup(&context.handle, file_name.map(U16CStr::as_slice), delete);
    }

    fn flush(&self, context: Option<&FileCtx>, file_info: &mut FileInfo) -> winfsp::Result<()> {
        if let Some(m) = self.ops.flush(context.map(|c| &c.handle)).map_err(err)? {
            fill(file_info, &m);
        }
        Ok(())
    }

    fn get_file_info(&self, context: &FileCtx, file_info: &mut FileInfo) -> winfsp::Result<()> {
        let m = self.ops.file_info(&context.handle).map_err(err)?;
        fill(file_info, &m);
        Ok(())
    }

    fn get_security(
        &self,
        context: &FileCtx,
        security_descriptor: Option<&mut [c_void]>,
    ) -> winfsp::Result<u64> {
        let sddl = self.ops.security(&context.handle).map_err(err)?;
        put_descriptor(&sddl, security_descriptor)
    }

    fn set_security(
        &self,
        context: &FileCtx,
        security_information: u32,
        modification_descriptor: ModificationDescriptor,
    ) -> winfsp::Result<()> {
        // SAFETY: WinFsp passes a valid descriptor (or null, which `summarize` refuses).
        let sd = unsafe { super::summarize(modification_descriptor.as_mut_ptr()) }.map_err(err)?;
        self.ops
            .set_security(&context.handle, security_information, &sd)
            .map_err(err)
    }

    fn overwrite(
        &self,
        context: &FileCtx,
        file_attributes: u32,
        replace_file_attributes: bool,
        _allocation_size: u64,
        _extra_buffer: Option<&[u8]>,
        file_info: &mut FileInfo,
    ) -> winfsp::Result<()> {
        let m = self
            .ops
            .overwrite(&context.handle, file_attributes, replace_file_attributes)
            .map_err(err)?;
        fill(file_info, &m);
        Ok(())
    }

    fn read_directory(
        &self,
        context: &FileCtx,
        _pattern: Option<&U16CStr>,
        marker: DirMarker<'_>,
        buffer: &mut [u8],
    ) -> winfsp::Result<u32> {
        // A restart (no marker) refills the buffer from the filesystem; continuations
        // are served from it, WinFsp resuming after the marker name.
        if let Ok(lock) = context.dir.acquire(marker.is_none(), None) {
            let mut info: DirInfo = DirInfo::new();
            let mut failed = None;
            self.ops
                .list_dir(&context.handle, &mut |name, meta| {
                    info.reset();
                    fill(info.file_info_mut(), meta);
                    if info.set_name_raw(wide(name).as_slice()).is_err() {
                        // Longer than a DirInfo holds (255 UTF-16 units): not listable.
                        return true;
                    }
                    match lock.write(&mut info) {
                        Ok(()) => true,
                        Err(e) => {
                            failed = Some(e);
                            false
                        }
                    }
                })
                .map_err(err)?;
            drop(lock);
            if let Some(e) = failed {
                return Err(e);
            }
        }
        Ok(context.dir.read(marker, buffer))
    }

    fn rename(
        &self,
        context: &FileCtx,
        file_name: &U16CStr,
        new_file_name: &U16CStr,
        replace_if_exists: bool,
    ) -> winfsp::Result<()> {
        self.ops
            .rename(
                &context.handle,
                file_name.as_slice(),
                new_file_name.as_slice(),
                replace_if_exists,
            )
            .map_err(err)
    }

    fn set_basic_info(
        &self,
        context: &FileCtx,
        file_attributes: u32,
        _creation_time: u64,
        last_access_time: u64,
        last_write_time: u64,
        last_change_time: u64,
        file_info: &mut FileInfo,
    ) -> winfsp::Result<()> {
        let m = self
            .ops
            .set_basic_info(
                &context.handle,
                file_attributes,
                last_access_time,
                last_write_time,
                last_change_time,
            )
            .map_err(err)?;
        fill(file_info, &m);
        Ok(())
    }

    fn set_delete(
        &self,
        context: &FileCtx,
        file_name: &U16CStr,
        delete_file: bool,
    ) -> winfsp::Result<()> {
        self.ops
            .set_delete(&context.handle, file_name.as_slice(), delete_file)
            .map_err(err)
    }

    fn set_file_size(
        &self,
        context: &FileCtx,
        new_size: u64,
        set_allocation_size: bool,
        file_info: &mut FileInfo,
    ) -> winfsp::Result<()> {
        let m = self
            .ops
            .set_file_size(&context.handle, new_size, set_allocation_size)
            .map_err(err)?;
        fill(file_info, &m);
        Ok(())
    }

    fn read(&self, context: &FileCtx, buffer: &mut [u8], offset: u64) -> winfsp::Result<u32> {
        self.ops.read(&context.handle, buffer, offset).map_err(err)
    }

    fn write(
        &self,
        context: &FileCtx,
        buffer: &[u8],
        offset: u64,
        write_to_eof: bool,
        constrained_io: bool,
        file_info: &mut FileInfo,
    ) -> winfsp::Result<u32> {
        let (n, m) = self
            .ops
            .write(
                &context.handle,
                buffer,
                offset,
                write_to_eof,
                constrained_io,
            )
            .map_err(err)?;
        fill(file_info, &m);
        Ok(n)
    }

    fn get_volume_info(&self, out_volume_info: &mut VolumeInfo) -> winfsp::Result<()> {
        let (total, free) = self.ops.volume().map_err(err)?;
        out_volume_info.total_size = total;
        out_volume_info.free_size = free;
        out_volume_info.set_volume_label(&self.label);
        Ok(())
    }

    fn set_volume_label(
        &self,
        _volume_label: &U16CStr,
        _volume_info: &mut VolumeInfo,
    ) -> winfsp::Result<()> {
        // The label comes from the configuration; there is nowhere to store another.
        Err(err(STATUS_ACCESS_DENIED.into()))
    }

    fn get_reparse_point_by_name(
        &self,
        file_name: &U16CStr,
        _is_directory: bool,
        buffer: &mut [u8],
    ) -> winfsp::Result<u64> {
        let data = self
            .ops
            .reparse_by_name(file_name.as_slice())
            .map_err(err)?;
        copy_out(&data, buffer).map_err(err)
    }

    fn get_reparse_point(
        &self,
        context: &FileCtx,
        _file_name: &U16CStr,
        buffer: &mut [u8],
    ) -> winfsp::Result<u64> {
        let data = self.ops.reparse(&context.handle).map_err(err)?;
        copy_out(&data, buffer).map_err(err)
    }

    fn set_reparse_point(
        &self,
        context: &FileCtx,
        file_name: &U16CStr,
        buffer: &[u8],
    ) -> winfsp::Result<()> {
        self.ops
            .set_reparse(&context.handle, file_name.as_slice(), buffer)
            .map_err(err)
    }
}
