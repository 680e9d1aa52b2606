//! Serving and mounting: [`mount`] starts the server, runs the OS mount command, and
//! returns the [`NfsMount`] guard that undoes both.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use vmount_core::Vfs;

use crate::os::{self, Command};
use crate::{EXPORT_NAME, NfsError, NfsOptions, NfsServer, ServeOptions, serve};

/// A served, and usually mounted, filesystem. Dropping it unmounts (forcibly or lazily
/// if the mount is busy) and then stops the server; [`NfsMount::unmount`] does the same
/// and reports errors.
pub struct NfsMount {
    mountpoint: PathBuf,
    port: u16,
    /// Whether we ran the mount command and still own the mount.
    mounted: bool,
    mount_cmd: Command,
    unmount_cmd: Command,
    /// `None` once stopped.
    server: Option<NfsServer>,
}

impl std::fmt::Debug for NfsMount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NfsMount")
            .field("mountpoint", &self.mountpoint)
            .field("port", &self.port)
            .field("mounted", &self.mounted)
            .finish()
    }
}

impl NfsMount {
    /// The mountpoint (canonical form, as the mount table shows it).
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// The server's TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The export path clients mount: `/vmount`.
    pub fn export_path(&self) -> String {
        format!("/{EXPORT_NAME}")
    }

    /// Whether we ran the OS mount command (false in serve-only mode).
    pub fn is_mounted_by_us(&self) -> bool {
        self.mounted
    }

    /// The exact command that mounts this server at the mountpoint on this OS, as a
    /// shell line (with `sudo` on Linux when not root).
    pub fn mount_command(&self) -> String {
        self.mount_cmd.to_string()
    }

    /// The exact command that unmounts it again.
    pub fn unmount_command(&self) -> String {
        self.unmount_cmd.to_string()
    }

    /// False once the mount has gone from the mount table, i.e. it was unmounted from
    /// outside. In serve-only mode there is no mount of ours to lose, so it stays true.
    pub fn is_alive(&self) -> bool {
        !self.mounted || os::is_our_mount(&self.mountpoint)
    }

    /// Unmounts, then stops the server, reporting what went wrong.
    pub fn unmount(mut self) -> Result<(), NfsError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), NfsError> {
        let result = if self.mounted && os::is_our_mount(&self.mountpoint) {
            os::unmount(&self.mountpoint)
        } else {
            Ok(())
        };
        self.mounted = false;
        // Only after the OS let go: a mount whose server has gone answers every access
        // with EIO (soft) until someone unmounts it.
        if let Some(server) = self.server.take() {
            server.stop();
        }
        result
    }
}

impl Drop for NfsMount {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!("{e}");
        }
    }
}

/// Serves `fs` on 127.0.0.1 and, unless `opts.mount` is false, mounts it at `mountpoint`
/// with the OS's NFS client. The server is listening before the mount command runs.
pub fn mount(fs: Arc<dyn Vfs>, mountpoint: &Path, opts: &NfsOptions) -> Result<NfsMount, NfsError> {
    let mountpoint = os::check_mountpoint(mountpoint)?;
    if opts.mount {
        // Before serving, so that a machine without a client fails with the fix rather
        // than after binding a port.
        crate::available()?;
        os::check_port(opts.port)?;
    }
    let server = serve(
        fs,
        &ServeOptions {
            port: opts.port,
            export_name: EXPORT_NAME.to_owned(),
            allowed_uids: os::allowed_uids(opts.allow_other),
            read_only: opts.read_only,
            no_apple_double: opts.no_apple_double,
            ..ServeOptions::default()
        },
    )?;
    let port = server.port();
    let mut guard = NfsMount {
        mount_cmd: os::mount_command(port, &mountpoint),
        unmount_cmd: os::unmount_command(&mountpoint),
        mountpoint,
        port,
        mounted: false,
        server: Some(server),
    };
    if opts.mount {
        // On failure the guard's Drop stops the server.
        os::run(&guard.mount_cmd).map_err(|(cmd, stderr)| NfsError::MountFailed { cmd, stderr })?;
        guard.mounted = true;
        if !os::is_our_mount(&guard.mountpoint) {
            return Err(NfsError::NotReady {
                path: guard.mountpoint.clone(),
                detail: format!(
                    "`{}` succeeded, but no NFS mount of 127.0.0.1:/{EXPORT_NAME} is there",
                    guard.mount_cmd
                ),
            });
        }
        tracing::info!(
            "mounted 127.0.0.1:/{EXPORT_NAME} (port {port}) at {}",
            guard.mountpoint.display()
        );
    }
    Ok(guard)
}

/// Unmounts the vmount NFS mount at `mountpoint`, including one whose daemon was killed:
/// the plain unmount first, then the forced or lazy one. Errors with
/// [`NfsError::NotMounted`] when no NFS mount of vmount's export is there.
pub fn unmount_path(mountpoint: &Path) -> Result<(), NfsError> {
    let mp = os::absolute(mountpoint);
    if !os::is_our_mount(&mp) {
        return Err(NfsError::NotMounted(mp));
    }
    os::unmount(&mp)
}
