//! The Windows side: loading WinFsp, the mounting user's identity, descriptor
//! conversion, and the host lifecycle. Type-checked on Linux with `docsrs-check`.

mod adapter;

use std::ffi::c_void;
use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use vmount_core::{Ctx, PanicGuard, Vfs};
use windows_sys::Win32::Foundation::{CloseHandle, HANDLE, LocalFree};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{
    ACL, GetAce, GetSecurityDescriptorDacl, GetSecurityDescriptorGroup, GetSecurityDescriptorOwner,
    GetTokenInformation, PSECURITY_DESCRIPTOR, PSID, TOKEN_PRIMARY_GROUP, TOKEN_QUERY, TOKEN_USER,
    TokenPrimaryGroup, TokenUser,
};
use windows_sys::Win32::System::LibraryLoader::LoadLibraryW;
use windows_sys::Win32::System::Registry::{HKEY_LOCAL_MACHINE, RRF_RT_REG_SZ, RegGetValueW};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};
use winfsp::host::{FileSystemHost, FineGuard, VolumeParams};

use self::adapter::Adapter;
use crate::ops::{Ops, Settings};
use crate::security::{Ace, Identity, SdSummary};
use crate::status::{STATUS_INVALID_PARAMETER, WinError, WinResult};
use crate::{Unavailable, WinfspError, WinfspOptions, mountpoint};

const INSTALL_FIX: &str = "install WinFsp from https://winfsp.dev/rel/ (choco install winfsp)";

fn to_wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

/// The WinFsp DLL name for this architecture.
fn dll_name() -> &'static str {
    if cfg!(target_arch = "x86") {
        "winfsp-x86.dll"
    } else if cfg!(target_arch = "aarch64") {
        "winfsp-a64.dll"
    } else {
        "winfsp-x64.dll"
    }
}

/// `InstallDir` of WinFsp from the registry (32-bit view first, where the installer
/// writes it on x64).
fn install_dir() -> Option<String> {
    for key in ["SOFTWARE\\WOW6432Node\\WinFsp", "SOFTWARE\\WinFsp"] {
        let key = to_wide(key);
        let value = to_wide("InstallDir");
        let mut buf = [0u16; 1024];
        let mut size = (buf.len() * 2) as u32;
        // SAFETY: key and value are NUL-terminated; buf holds `size` bytes and
        // RegGetValueW writes at most that many, NUL-terminated for REG_SZ.
        let rc = unsafe {
            RegGetValueW(
                HKEY_LOCAL_MACHINE,
                key.as_ptr(),
                value.as_ptr(),
                RRF_RT_REG_SZ,
                std::ptr::null_mut(),
                buf.as_mut_ptr().cast(),
                &mut size,
            )
        };
        if rc == 0 {
            let units = (size as usize / 2).min(buf.len());
            let s = String::from_utf16_lossy(&buf[..units]);
            return Some(s.trim_end_matches('\0').to_owned());
        }
    }
    None
}

/// Makes the WinFsp DLL available to the delay-loaded imports: next to the executable
/// or on PATH (what `winfsp_init` tries), else from WinFsp's install folder.
pub(crate) fn load_winfsp() -> Result<(), Unavailable> {
    if winfsp::winfsp_init().is_ok() {
        return Ok(());
    }
    let Some(dir) = install_dir() else {
        return Err(Unavailable {
            reason: "WinFsp is not installed (no InstallDir under HKLM\\SOFTWARE\\WinFsp)"
                .to_owned(),
            fix: INSTALL_FIX.to_owned(),
        });
    };
    let path = format!("{}\\bin\\{}", dir.trim_end_matches('\\'), dll_name());
    let wide = to_wide(&path);
    // SAFETY: `wide` is a NUL-terminated path; loading WinFsp's DLL runs only its
    // documented initialisation.
    let module = unsafe { LoadLibraryW(wide.as_ptr()) };
    if module.is_null() || winfsp::winfsp_init().is_err() {
        return Err(Unavailable {
            reason: format!("cannot load {path}: {}", io::Error::last_os_error()),
            fix: format!("repair or reinstall WinFsp; {INSTALL_FIX}"),
        });
    }
    Ok(())
}

/// A SID as `S-1-...`.
///
/// # Safety
/// `sid` must point to a valid SID.
unsafe fn sid_string(sid: PSID) -> io::Result<String> {
    let mut out: *mut u16 = std::ptr::null_mut();
    // SAFETY: the caller guarantees `sid`; `out` receives a LocalAlloc'ed string.
    if unsafe { ConvertSidToStringSidW(sid, &mut out) } == 0 || out.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `out` is NUL-terminated; it is freed exactly once below.
    let s = unsafe {
        let mut len = 0;
        while *out.add(len) != 0 {
            len += 1;
        }
        let s = String::from_utf16_lossy(std::slice::from_raw_parts(out, len));
        LocalFree(out.cast());
        s
    };
    Ok(s)
}

/// Reads one token information class into an aligned buffer.
fn token_info(token: HANDLE, class: i32) -> io::Result<Vec<u64>> {
    let mut needed = 0u32;
    // SAFETY: a size query with a null buffer.
    unsafe { GetTokenInformation(token, class, std::ptr::null_mut(), 0, &mut needed) };
    let mut buf = vec![0u64; (needed as usize).div_ceil(8).max(1)];
    // SAFETY: `buf` holds at least `needed` bytes.
    let ok =
        unsafe { GetTokenInformation(token, class, buf.as_mut_ptr().cast(), needed, &mut needed) };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(buf)
}

/// The mounting user's SID and primary group SID, paired with the configured uid/gid.
fn current_identity(opts: &WinfspOptions) -> io::Result<Identity> {
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: the pseudo-handle of the current process; `token` receives a handle that
    // is closed below.
    if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
        return Err(io::Error::last_os_error());
    }
    let result = (|| {
        let user = token_info(token, TokenUser)?;
        let group = token_info(token, TokenPrimaryGroup)?;
        // SAFETY: the buffers were filled by GetTokenInformation for these classes and
        // are 8-byte aligned; the SIDs they point to live inside them.
        unsafe {
            let user = &*user.as_ptr().cast::<TOKEN_USER>();
            let group = &*group.as_ptr().cast::<TOKEN_PRIMARY_GROUP>();
            Ok(Identity {
                uid: opts.uid,
                gid: opts.gid,
                user_sid: sid_string(user.User.Sid)?,
                group_sid: sid_string(group.PrimaryGroup)?,
            })
        }
    })();
    // SAFETY: `token` was opened above and is closed once.
    unsafe { CloseHandle(token) };
    result
}

/// SDDL to a self-relative security descriptor.
pub(crate) fn sddl_to_descriptor(sddl: &str) -> WinResult<Vec<u8>> {
    let wide = to_wide(sddl);
    let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
    let mut len = 0u32;
    // SAFETY: `wide` is NUL-terminated; `sd` receives a LocalAlloc'ed descriptor of
    // `len` bytes, copied and freed below.
    unsafe {
        if ConvertStringSecurityDescriptorToSecurityDescriptorW(
            wide.as_ptr(),
            SDDL_REVISION_1,
            &mut sd,
            &mut len,
        ) == 0
            || sd.is_null()
        {
            return Err(WinError::Win32(
                io::Error::last_os_error().raw_os_error().unwrap_or(0) as u32,
            ));
        }
        let bytes = std::slice::from_raw_parts(sd.cast::<u8>(), len as usize).to_vec();
        LocalFree(sd);
        Ok(bytes)
    }
}

/// Reduces a security descriptor to owner, group and DACL entries.
///
/// # Safety
/// `sd` must be null or point to a valid security descriptor.
pub(crate) unsafe fn summarize(sd: PSECURITY_DESCRIPTOR) -> WinResult<SdSummary> {
    if sd.is_null() {
        return Err(STATUS_INVALID_PARAMETER.into());
    }
    let mut defaulted = 0;
    let mut owner: PSID = std::ptr::null_mut();
    let mut group: PSID = std::ptr::null_mut();
    let mut present = 0;
    let mut dacl: *mut ACL = std::ptr::null_mut();
    // SAFETY: the caller guarantees `sd`; the out-pointers are valid locals.
    unsafe {
        GetSecurityDescriptorOwner(sd, &mut owner, &mut defaulted);
        GetSecurityDescriptorGroup(sd, &mut group, &mut defaulted);
        GetSecurityDescriptorDacl(sd, &mut present, &mut dacl, &mut defaulted);
    }
    let sid = |p: PSID| -> WinResult<Option<String>> {
        if p.is_null() {
            return Ok(None);
        }
        // SAFETY: a non-null SID pointer from the descriptor.
        unsafe { sid_string(p) }
            .map(Some)
            .map_err(|_| STATUS_INVALID_PARAMETER.into())
    };
    let mut summary = SdSummary {
        owner: sid(owner)?,
        group: sid(group)?,
        dacl: None,
    };
    if present != 0 && !dacl.is_null() {
        let mut aces = Vec::new();
        // SAFETY: `dacl` points into the descriptor; AceCount bounds the indices.
        let count = unsafe { (*dacl).AceCount };
        for i in 0..u32::from(count) {
            let mut ace: *mut c_void = std::ptr::null_mut();
            // SAFETY: index below AceCount.
            if unsafe { GetAce(dacl, i, &mut ace) } == 0 || ace.is_null() {
                continue;
            }
            // SAFETY: every ACE starts with ACE_HEADER (type, flags, size); allow and
            // deny ACEs continue with the mask and the SID at offset 8.
            let (kind, flags, mask, sid_ptr) = unsafe {
                let b = ace.cast::<u8>();
                (
                    *b,
                    *b.add(1),
                    b.add(4).cast::<u32>().read_unaligned(),
                    b.add(8).cast::<c_void>(),
                )
            };
            // ACCESS_ALLOWED_ACE_TYPE = 0, ACCESS_DENIED_ACE_TYPE = 1; others (audit,
            // object, callback ACEs) do not bear on mode bits.
            if kind > 1 {
                continue;
            }
            let Some(sid) = sid(sid_ptr)? else { continue };
            aces.push(Ace {
                allow: kind == 0,
                mask,
                sid,
                inherit_only: flags & 0x8 != 0,
            });
        }
        summary.dacl = Some(aces);
    }
    Ok(summary)
}

/// A live WinFsp mount. Dropping it unmounts and stops the dispatcher;
/// [`WinfspMount::unmount`] does the same explicitly.
pub struct WinfspMount {
    mountpoint: String,
    host: Option<FileSystemHost<Adapter, FineGuard>>,
}

impl std::fmt::Debug for WinfspMount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WinfspMount")
            .field("mountpoint", &self.mountpoint)
            .field("mounted", &self.host.is_some())
            .finish()
    }
}

impl WinfspMount {
    /// Where the filesystem is mounted (`X:` or the folder path).
    pub fn mountpoint(&self) -> &str {
        &self.mountpoint
    }

    /// Unmounts and stops serving. WinFsp's teardown cannot fail once mounted, so this
    /// only reports success; it exists so callers can end a mount explicitly.
    pub fn unmount(mut self) -> Result<(), WinfspError> {
        self.shutdown();
        Ok(())
    }

    fn shutdown(&mut self) {
        if let Some(mut host) = self.host.take() {
            host.unmount();
            host.stop();
            // Dropping the host deletes the WinFsp filesystem object and the adapter,
            // which releases every handle still open on the filesystem.
            drop(host);
        }
    }
}

impl Drop for WinfspMount {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Mounts `fs` at `opts.mountpoint` and returns once WinFsp serves it.
pub fn mount(fs: Arc<dyn Vfs>, opts: &WinfspOptions) -> Result<WinfspMount, WinfspError> {
    let mp = mountpoint::parse(&opts.mountpoint)?;
    load_winfsp()?;
    let identity = current_identity(opts).map_err(WinfspError::Identity)?;
    let caps = fs.capabilities();
    let read_only = opts.read_only || caps.read_only;
    let settings = Settings {
        case_insensitive: opts.case_insensitive,
        hide_dotfiles: opts.hide_dotfiles,
        read_only,
        symlinks: caps.symlinks,
        identity,
        cache_ttl: Duration::from_millis(u64::from(opts.file_info_timeout_ms))
            .max(Duration::from_secs(1)),
    };
    // A panic in the filesystem must cost one request, never WinFsp's dispatcher.
    let fs: Arc<dyn Vfs> = Arc::new(PanicGuard::new(fs));
    let ops = Ops::new(fs, Ctx::with_groups(opts.uid, opts.gid, &[]), settings);

    let mut vp = VolumeParams::new();
    vp.filesystem_name("vmount")
        .case_sensitive_search(!opts.case_insensitive)
        .case_preserved_names(true)
        .unicode_on_disk(true)
        .persistent_acls(true)
        .reparse_points(caps.symlinks)
        .named_streams(false)
        .extended_attributes(false)
        .read_only_volume(read_only)
        .post_cleanup_when_modified_only(true)
        .file_info_timeout(opts.file_info_timeout_ms)
        .sector_size(crate::attrs::ALLOC_UNIT as u16)
        .sectors_per_allocation_unit(1)
        .max_component_length(255)
        .volume_creation_time(crate::time::to_filetime(SystemTime::now()));
    let start_err = |e: &dyn std::fmt::Display| WinfspError::Start {
        mountpoint: mp.as_winfsp(),
        detail: e.to_string(),
    };
    let mut host =
        FileSystemHost::<Adapter, FineGuard>::new(vp, Adapter::new(ops, opts.volume_name.clone()))
            .map_err(|e| start_err(&e))?;
    host.start_with_threads(opts.threads)
        .map_err(|e| start_err(&e))?;
    // On failure `host` is dropped here, which stops the dispatcher again.
    host.mount(mp.as_winfsp()).map_err(|e| WinfspError::Mount {
        mountpoint: mp.as_winfsp(),
        detail: e.to_string(),
    })?;
    Ok(WinfspMount {
        mountpoint: mp.as_winfsp(),
        host: Some(host),
    })
}
