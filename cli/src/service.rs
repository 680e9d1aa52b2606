//! `vmount service install|uninstall`: start a mount at login.
//!
//! Linux gets a systemd user unit, macOS a launchd agent, Windows a scheduled task. Each
//! runs `vmount CONFIG` in the foreground, the way supervisors want a daemon: the
//! supervisor's stop signal (SIGTERM) is what unmounts, and a failed mount is restarted.
//! Paths are made absolute at install time, since a unit runs from another directory
//! with another environment. vmount writes the file and prints the commands that enable
//! and remove it; it does not run `systemctl`/`launchctl` itself, so `--print` and
//! install have no effect on the running system beyond one file (Windows has no file to
//! write: there install runs `schtasks` unless `--print`).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};

use crate::config::{Source, expand_tilde};

/// The kind of service definition, one per OS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A systemd user unit (Linux).
    Systemd,
    /// A launchd agent (macOS).
    Launchd,
    /// A scheduled task run at logon (Windows).
    Schtasks,
}

impl Kind {
    /// The kind for the OS vmount was built for.
    pub fn native() -> Kind {
        if cfg!(target_os = "macos") {
            Kind::Launchd
        } else if cfg!(windows) {
            Kind::Schtasks
        } else {
            Kind::Systemd
        }
    }
}

/// What a service runs.
#[derive(Debug, Clone)]
pub struct Service {
    /// The service's short name (`vmount-NAME.service`, `dev.vmount.NAME`).
    pub name: String,
    /// The vmount executable, absolute.
    pub exe: PathBuf,
    /// The config file, absolute.
    pub config: PathBuf,
    /// The config's mountpoint, absolute (for `vmount unmount` on stop).
    pub mountpoint: PathBuf,
}

impl Service {
    /// Reads `config` (which must parse) and names the service `name`, or after the
    /// config file (`data.toml` -> `data`).
    pub fn from_config(config: &Path, name: Option<&str>) -> anyhow::Result<Service> {
        let src = Source::read(config)?;
        let raw = src.parse()?;
        let config = std::path::absolute(config)
            .with_context(|| format!("cannot make {} absolute", config.display()))?;
        let config = std::fs::canonicalize(&config).unwrap_or(config);
        let name = match name {
            Some(n) => n.to_owned(),
            None => config
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        check_name(&name)?;
        let base = config.parent().unwrap_or(Path::new("/"));
        let text = raw.mountpoint.get_ref();
        let expanded = expand_tilde(text).unwrap_or_else(|| PathBuf::from(text));
        let joined = base.join(expanded);
        let mountpoint = std::path::absolute(&joined).unwrap_or(joined);
        let exe = std::env::current_exe().context("cannot find the vmount executable")?;
        let exe = std::fs::canonicalize(&exe).unwrap_or(exe);
        Ok(Service {
            name,
            exe,
            config,
            mountpoint,
        })
    }

    /// The service definition's text for `kind`.
    pub fn text(&self, kind: Kind) -> String {
        match kind {
            Kind::Systemd => self.systemd_unit(),
            Kind::Launchd => self.launchd_plist(),
            Kind::Schtasks => self
                .schtasks_args()
                .iter()
                .map(|a| cmd_quote(a))
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    fn systemd_unit(&self) -> String {
        let exe = systemd_quote(&self.exe.to_string_lossy());
        let config = systemd_quote(&self.config.to_string_lossy());
        let mp = systemd_quote(&self.mountpoint.to_string_lossy());
        format!(
            "# Written by `vmount service install`; remove with `vmount service uninstall {name}`.\n\
             [Unit]\n\
             Description=vmount: mount {desc}\n\
             Documentation=man:vmount(1)\n\
             \n\
             [Service]\n\
             Type=exec\n\
             ExecStart={exe} {config}\n\
             ExecStop={exe} unmount {mp}\n\
             Restart=on-failure\n\
             RestartSec=5\n\
             \n\
             [Install]\n\
             WantedBy=default.target\n",
            name = self.name,
            desc = self.config.display().to_string().replace('%', "%%"),
        )
    }

    /// The launchd label.
    fn label(&self) -> String {
        format!("dev.vmount.{}", self.name)
    }

    fn launchd_plist(&self) -> String {
        let s = |p: &Path| format!("<string>{}</string>", xml_escape(&p.to_string_lossy()));
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \
             \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
             <!-- Written by `vmount service install`; remove with `vmount service uninstall \
             {name}`. -->\n\
             <plist version=\"1.0\">\n\
             <dict>\n\
             \t<key>Label</key>\n\t<string>{label}</string>\n\
             \t<key>ProgramArguments</key>\n\t<array>\n\t\t{exe}\n\t\t{config}\n\t</array>\n\
             \t<key>RunAtLoad</key>\n\t<true/>\n\
             \t<key>KeepAlive</key>\n\t<dict>\n\t\t<key>SuccessfulExit</key>\n\t\t<false/>\n\t</dict>\n\
             \t<key>ProcessType</key>\n\t<string>Background</string>\n\
             \t<key>StandardErrorPath</key>\n\t<string>/tmp/{label}.log</string>\n\
             </dict>\n\
             </plist>\n",
            name = xml_escape(&self.name),
            label = xml_escape(&self.label()),
            exe = s(&self.exe),
            config = s(&self.config),
        )
    }

    /// The task name on Windows.
    fn task(&self) -> String {
        format!("vmount-{}", self.name)
    }

    /// `schtasks` and its arguments, unquoted (`Command` quotes them; [`cmd_quote`] for
    /// printing). `/TR` is the task's own command line, with both paths quoted.
    fn schtasks_args(&self) -> Vec<String> {
        let tr = format!(
            "\"{}\" \"{}\"",
            self.exe.to_string_lossy(),
            self.config.to_string_lossy()
        );
        [
            "schtasks",
            "/Create",
            "/TN",
            &self.task(),
            "/SC",
            "ONLOGON",
            "/RL",
            "LIMITED",
            "/TR",
            &tr,
            "/F",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}

/// A service name: 1 to 64 of `A-Z a-z 0-9 . _ + -`, so it is safe in a unit name, a
/// launchd label and a task name alike.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(anyhow!(
            "\"{name}\" is not a valid service name: use 1 to 64 characters from A-Z, a-z, 0-9, \
             '.', '_', '+', '-' (give one with --name)"
        ))
    }
}

/// One word of a systemd command line: bare when safe, else quoted with `\` escapes.
/// `%` is a specifier and `$` a variable in both forms, so they are doubled.
fn systemd_quote(word: &str) -> String {
    let word = word.replace('%', "%%").replace('$', "$$");
    let safe = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._+-,:=@%$".contains(&b));
    if safe {
        return word;
    }
    let mut out = String::from("\"");
    for c in word.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One argument as the Windows C runtime reads it back (what `Command` does itself):
/// quoted when it has spaces or quotes, inner quotes escaped.
fn cmd_quote(arg: &str) -> String {
    if !arg.is_empty() && !arg.contains([' ', '\t', '"']) {
        return arg.to_owned();
    }
    format!("\"{}\"", arg.replace('"', "\\\""))
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The home directory, from `$HOME` (`%USERPROFILE%` on Windows).
fn home() -> anyhow::Result<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var_os("USERPROFILE").filter(|h| !h.is_empty()))
        .map(PathBuf::from)
        .ok_or_else(|| anyhow!("cannot find your home directory: HOME is not set"))
}

/// Where the definition of service `name` lives (`None`: Windows, no file).
fn definition_path(kind: Kind, name: &str) -> anyhow::Result<Option<PathBuf>> {
    Ok(match kind {
        Kind::Systemd => {
            let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
                Some(dir) => PathBuf::from(dir),
                None => home()?.join(".config"),
            };
            Some(
                base.join("systemd/user")
                    .join(format!("vmount-{name}.service")),
            )
        }
        Kind::Launchd => Some(
            home()?
                .join("Library/LaunchAgents")
                .join(format!("dev.vmount.{name}.plist")),
        ),
        Kind::Schtasks => None,
    })
}

fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// `vmount service install CONFIG [--name N] [--print] [--force]`.
pub fn install(config: &Path, name: Option<&str>, print: bool, force: bool) -> anyhow::Result<()> {
    let kind = Kind::native();
    let svc = Service::from_config(config, name)?;
    let text = svc.text(kind);
    if print {
        say(&text);
        if kind == Kind::Schtasks {
            say("\n");
        }
        return Ok(());
    }
    let name = &svc.name;
    let Some(path) = definition_path(kind, name)? else {
        let args = svc.schtasks_args();
        let status = std::process::Command::new(&args[0])
            .args(&args[1..])
            .status()
            .context("cannot run schtasks")?;
        if !status.success() {
            bail!("schtasks /Create failed ({status})");
        }
        say(&format!(
            "installed the scheduled task {task}: it runs `vmount {config}` at logon\n\
             start it now: schtasks /Run /TN {task}\n\
             remove it:    vmount service uninstall {name}\n",
            task = svc.task(),
            config = svc.config.display()
        ));
        return Ok(());
    };
    if path.exists() && !force {
        bail!(
            "{} already exists; remove it with `vmount service uninstall {name}` or add --force",
            path.display()
        );
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    let how = match kind {
        Kind::Systemd => format!(
            "enable and start it:  systemctl --user daemon-reload && systemctl --user enable --now \
             vmount-{name}.service\n\
             see its log:          journalctl --user -u vmount-{name}.service\n\
             start it before login (at boot): loginctl enable-linger $USER\n\
             remove it:            systemctl --user disable --now vmount-{name}.service && vmount \
             service uninstall {name}\n"
        ),
        _ => format!(
            "load and start it: launchctl bootstrap gui/$(id -u) {path}\n\
             see its log:       /tmp/dev.vmount.{name}.log\n\
             remove it:         launchctl bootout gui/$(id -u)/dev.vmount.{name} && vmount \
             service uninstall {name}\n",
            path = path.display()
        ),
    };
    say(&format!(
        "installed {} (runs {} {})\n{how}",
        path.display(),
        svc.exe.display(),
        svc.config.display()
    ));
    Ok(())
}

/// `vmount service uninstall NAME`.
pub fn uninstall(name: &str) -> anyhow::Result<()> {
    check_name(name)?;
    let kind = Kind::native();
    let Some(path) = definition_path(kind, name)? else {
        let status = std::process::Command::new("schtasks")
            .args(["/Delete", "/TN", &format!("vmount-{name}"), "/F"])
            .status()
            .context("cannot run schtasks")?;
        if !status.success() {
            bail!("schtasks /Delete failed ({status})");
        }
        say(&format!("removed the scheduled task vmount-{name}\n"));
        return Ok(());
    };
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!(
                "no vmount service named {name}: {} does not exist",
                path.display()
            )
        }
        Err(e) => return Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
    let mut text = format!("removed {}\n", path.display());
    if kind == Kind::Systemd {
        // `enable` links the unit here; a dangling link would make systemd complain.
        if let Some(dir) = path.parent() {
            let link = dir
                .join("default.target.wants")
                .join(format!("vmount-{name}.service"));
            if std::fs::symlink_metadata(&link).is_ok() && std::fs::remove_file(&link).is_ok() {
                text.push_str(&format!("removed {}\n", link.display()));
            }
        }
        text.push_str(&format!(
            "if it is running, stop it: systemctl --user stop vmount-{name}.service; then \
             systemctl --user daemon-reload\n"
        ));
    } else {
        text.push_str(&format!(
            "if it is loaded, unload it: launchctl bootout gui/$(id -u)/dev.vmount.{name}\n"
        ));
    }
    say(&text);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc() -> Service {
        Service {
            name: "data".into(),
            exe: PathBuf::from("/usr/local/bin/vmount"),
            config: PathBuf::from("/etc/vmount/my data.toml"),
            mountpoint: PathBuf::from("/mnt/data"),
        }
    }

    #[test]
    fn systemd_unit() {
        let t = svc().text(Kind::Systemd);
        assert!(
            t.contains("\nExecStart=/usr/local/bin/vmount \"/etc/vmount/my data.toml\"\n"),
            "{t}"
        );
        assert!(t.contains("\nExecStop=/usr/local/bin/vmount unmount /mnt/data\n"));
        assert!(t.contains("\nRestart=on-failure\n") && t.contains("WantedBy=default.target"));
        assert_eq!(systemd_quote("/a/b%c$d"), "/a/b%%c$$d");
        assert_eq!(systemd_quote("a \"b\"\\"), "\"a \\\"b\\\"\\\\\"");
    }

    #[test]
    fn launchd_plist() {
        let mut s = svc();
        s.config = PathBuf::from("/Users/me/a&b.toml");
        let t = s.text(Kind::Launchd);
        assert!(t.contains("<string>dev.vmount.data</string>"), "{t}");
        assert!(t.contains(
            "<array>\n\t\t<string>/usr/local/bin/vmount</string>\n\t\t\
             <string>/Users/me/a&amp;b.toml</string>\n\t</array>"
        ));
        assert!(t.contains("<key>RunAtLoad</key>\n\t<true/>"));
    }

    #[test]
    fn schtasks_command() {
        let mut s = svc();
        s.exe = PathBuf::from(r"C:\Program Files\vmount\vmount.exe");
        s.config = PathBuf::from(r"C:\Users\me\data.toml");
        assert_eq!(
            s.text(Kind::Schtasks),
            r#"schtasks /Create /TN vmount-data /SC ONLOGON /RL LIMITED /TR "\"C:\Program Files\vmount\vmount.exe\" \"C:\Users\me\data.toml\"" /F"#
        );
    }

    #[test]
    fn names() {
        assert!(check_name("data-1.x").is_ok());
        for bad in ["", ".x", "a b", "a/b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
