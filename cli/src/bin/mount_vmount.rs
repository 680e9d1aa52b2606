//! `mount.vmount`: the mount(8) helper that lets `/etc/fstab` mount a vmount config.
//!
//! ```text
//! # /etc/fstab
//! /etc/vmount/data.toml  /mnt/data  vmount  defaults,_netdev,nofail  0  0
//! ```
//!
//! Built as `mount_vmount` (Cargo allows no dot in a binary name) and installed as
//! `/sbin/mount.vmount` (`install -m 755 target/release/mount_vmount /sbin/mount.vmount`).
//! mount(8) runs `mount.vmount SOURCE MOUNTPOINT [-sfnv] [-o OPTIONS]` with the config
//! file as SOURCE. The mountpoint from fstab wins over the config's `mountpoint`, and
//! `-o ro` over its `read_only`; `defaults`, `rw`, `auto`, `noauto`, `user`, `users`,
//! `nouser`, `owner`, `group`, `nofail`, `_netdev`, `comment=...` and `x-...` are for
//! mount(8) and systemd and are ignored here; anything else is refused (ignored with -s).
//!
//! mount(8) expects the helper to return once the filesystem is mounted, so the helper
//! starts itself again as a detached daemon (`--foreground`, in a session of its own,
//! which runs the same code as `vmount CONFIG`), waits for its `mounted ...` line, and
//! exits 0, or relays the daemon's error and exits 32 ("mount failure"). `umount
//! MOUNTPOINT` or `vmount unmount MOUNTPOINT` ends the daemon, which exits when it sees its
//! mount gone. Exit codes follow mount(8): 0 mounted, 1 bad usage or config, 32 mount
//! failure.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail};
use vmount::config::Source;
use vmount::{MountPlan, run};

/// How long the daemon may take to mount before the helper gives up on it.
#[cfg(unix)]
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The command line, as mount(8) passes it.
#[derive(Debug, Default)]
struct Args {
    source: PathBuf,
    mountpoint: PathBuf,
    read_only: bool,
    /// `-f`: check everything, mount nothing.
    fake: bool,
    verbose: bool,
    /// Run the daemon in this process (the detached child).
    foreground: bool,
}

/// Options mount(8), systemd and the fstab format use themselves.
fn ignored(opt: &str) -> bool {
    matches!(
        opt,
        "defaults"
            | "rw"
            | "auto"
            | "noauto"
            | "user"
            | "users"
            | "nouser"
            | "owner"
            | "group"
            | "nofail"
            | "_netdev"
    ) || opt.starts_with("x-")
        || opt.starts_with("comment=")
}

fn parse_args(argv: &[String]) -> anyhow::Result<Args> {
    let usage = "usage: mount.vmount CONFIG MOUNTPOINT [-sfnv] [-o OPTIONS]";
    let mut args = Args::default();
    let mut positional = Vec::new();
    let mut options = Vec::new();
    let mut sloppy = false;
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--foreground" => {
                args.foreground = true;
                continue;
            }
            "-o" => {
                let value = it
                    .next()
                    .ok_or_else(|| anyhow!("-o needs a value; {usage}"))?;
                options.push(value.clone());
                continue;
            }
            // mount(8) passes the type (`-t vmount`) and, for namespaces, `-N`.
            "-t" | "-N" => {
                it.next()
                    .ok_or_else(|| anyhow!("{arg} needs a value; {usage}"))?;
                continue;
            }
            _ => {}
        }
        if let Some(flags) = arg.strip_prefix('-').filter(|f| !f.is_empty()) {
            if let Some(value) = flags.strip_prefix('o') {
                options.push(value.to_owned());
                continue;
            }
            for flag in flags.chars() {
                match flag {
                    's' => sloppy = true,
                    'f' => args.fake = true,
                    'n' => {}
                    'v' => args.verbose = true,
                    _ => bail!("unknown flag -{flag}; {usage}"),
                }
            }
        } else {
            positional.push(arg.clone());
        }
    }
    let [source, mountpoint] = positional.as_slice() else {
        bail!("{usage}");
    };
    args.source = PathBuf::from(source);
    args.mountpoint = PathBuf::from(mountpoint);
    for opt in options.iter().flat_map(|o| o.split(',')) {
        match opt {
            "ro" => args.read_only = true,
            "" => {}
            o if ignored(o) => {}
            o if sloppy => {
                let _ = writeln!(std::io::stderr(), "mount.vmount: ignoring option {o}");
            }
            o => bail!(
                "unsupported mount option {o}: mount.vmount takes ro and the options mount(8) \
                 uses itself (defaults, noauto, user, nofail, _netdev, x-*); put vmount \
                 settings in the config file"
            ),
        }
    }
    Ok(args)
}

/// The config's plan, with fstab's mountpoint and `ro` put in place of the config's
/// before validation, so every check of `vmount check` applies to them.
fn plan(args: &Args) -> anyhow::Result<MountPlan> {
    let src = Source::read(&args.source)?;
    let mut raw = src.parse()?;
    let mp = std::path::absolute(&args.mountpoint).map_err(|e| {
        anyhow!(
            "cannot use the mountpoint {}: {e}",
            args.mountpoint.display()
        )
    })?;
    let Some(mp) = mp.to_str() else {
        bail!("the mountpoint {} is not valid UTF-8", mp.display());
    };
    raw.mountpoint = toml::Spanned::new(raw.mountpoint.span(), mp.to_owned());
    raw.read_only |= args.read_only;
    MountPlan::build(raw, &src, None)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&argv) {
        Ok(a) => a,
        Err(e) => return fail(&e, 1),
    };
    init_logging(args.verbose);
    let plan = match plan(&args) {
        Ok(p) => p,
        Err(e) => return fail(&e, 1),
    };
    if args.fake {
        return ExitCode::SUCCESS;
    }
    if args.foreground {
        return match run::mount_and_wait(&plan) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e, 32),
        };
    }
    match spawn_daemon(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e, 32),
    }
}

fn fail(e: &anyhow::Error, code: u8) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "mount.vmount: {e:#}");
    ExitCode::from(code)
}

fn init_logging(verbose: bool) {
    let level = if verbose { "info" } else { "warn" };
    vmount::logging::init(tracing_subscriber::EnvFilter::new(level), false);
}

/// Starts `mount.vmount --foreground ...` detached and waits until it has mounted.
#[cfg(unix)]
fn spawn_daemon(args: &Args) -> anyhow::Result<()> {
    use std::io::{BufRead as _, BufReader, Read as _};
    use std::os::unix::process::CommandExt as _;
    use std::process::{Command, Stdio};
    use std::sync::mpsc;

    let exe = std::env::current_exe().map_err(|e| anyhow!("cannot find myself: {e}"))?;
    let mut cmd = Command::new(exe);
    // Absolute paths: the daemon runs in `/`, so as not to keep a directory busy.
    let abs = |p: &PathBuf| std::path::absolute(p).unwrap_or_else(|_| p.clone());
    cmd.arg("--foreground")
        .arg(abs(&args.source))
        .arg(abs(&args.mountpoint));
    if args.read_only {
        cmd.args(["-o", "ro"]);
    }
    if args.verbose {
        cmd.arg("-v");
    }
    cmd.current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent; it detaches
    // the daemon from the terminal and process group of whoever ran mount(8).
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| anyhow!("cannot start the daemon: {e}"))?;
    let (tx, rx) = mpsc::channel();
    if let Some(stdout) = child.stdout.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("mounted ") || line.starts_with("serving ") {
                    let _ = tx.send(Some(line));
                    return;
                }
            }
            let _ = tx.send(None);
        });
    }
    let stderr = child.stderr.take();
    let err_thread = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut s) = stderr {
            let _ = s.read_to_string(&mut text);
        }
        text
    });
    match rx.recv_timeout(READY_TIMEOUT) {
        Ok(Some(line)) => {
            if args.verbose {
                let _ = writeln!(std::io::stderr(), "mount.vmount: {line}");
            }
            // The daemon keeps running; its later messages go nowhere once we exit.
            Ok(())
        }
        Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => {
            let status = child.wait();
            let text = err_thread.join().unwrap_or_default();
            let text = text.trim();
            let text = text.strip_prefix("mount.vmount: ").unwrap_or(text);
            match status {
                Ok(s) if !text.is_empty() => bail!("{text} (daemon {s})"),
                Ok(s) => bail!("the daemon exited without mounting ({s})"),
                Err(e) => bail!("the daemon failed: {e}"),
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the daemon did not mount {} within {} s",
                args.mountpoint.display(),
                READY_TIMEOUT.as_secs()
            )
        }
    }
}

#[cfg(not(unix))]
fn spawn_daemon(_args: &Args) -> anyhow::Result<()> {
    bail!("mount.vmount is the mount(8) helper of Linux; on Windows run `vmount CONFIG`")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<Args> {
        parse_args(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn mount_helper_arguments() {
        let a = parse(&[
            "/etc/v.toml",
            "/mnt",
            "-o",
            "defaults,_netdev,ro,x-systemd.automount",
        ])
        .unwrap();
        assert_eq!(a.source, PathBuf::from("/etc/v.toml"));
        assert_eq!(a.mountpoint, PathBuf::from("/mnt"));
        assert!(a.read_only && !a.fake && !a.foreground);
        let a = parse(&["-fnv", "c", "m", "-orw,nofail", "-t", "vmount"]).unwrap();
        assert!(a.fake && a.verbose && !a.read_only);
        let e = parse(&["c", "m", "-o", "exec"]).unwrap_err().to_string();
        assert!(e.contains("unsupported mount option exec"), "{e}");
        assert!(parse(&["-s", "c", "m", "-o", "exec"]).is_ok());
        assert!(parse(&["c"]).is_err());
        assert!(parse(&["c", "m", "-o"]).is_err());
        assert!(parse(&["c", "m", "-x"]).is_err());
    }
}
