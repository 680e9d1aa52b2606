//! `vmount`: mount one filesystem through FUSE, NFS or WinFsp, as a config file says.
//!
//! # Design decisions
//! - **Two stages.** [`config`] turns TOML into a [`config::RawConfig`] (serde,
//!   `deny_unknown_fields`, every error located at a line); [`plan`] turns that into a
//!   [`plan::MountPlan`] checked against the machine (paths exist, backend usable). The
//!   run code in [`run`] only ever sees a plan.
//! - **Exit codes say whose fault it is:** 0 success, 1 runtime failure (mount failed,
//!   backend unavailable, mountpoint missing), 2 a bad config file or bad usage. A config
//!   error is the [`config::ConfigError`] type, so `main` finds it by downcasting.
//! - **One line per error** on stderr, `error: ...`, never a panic or backtrace; logs go
//!   to stderr too, so stdout carries only results (`mounted ... via fuse`, the plan).
//! - **Foreground daemon.** `vmount CONFIG` stays in the foreground until SIGINT, SIGTERM
//!   or SIGHUP, then unmounts; supervisors and tests manage it like any process.

use vmount::{config, plan, platform, run};

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{BackendChoice, ConfigError, Source};
use crate::plan::MountPlan;
use crate::platform::Backend;

/// Mount a filesystem through FUSE, NFS or WinFsp.
///
/// `vmount CONFIG` mounts in the foreground and prints `mounted <name> at <mountpoint>
/// via <backend>` once the mount is usable; Ctrl-C (SIGINT), SIGTERM or SIGHUP unmount
/// and exit. Exit codes: 0 success, 1 runtime failure, 2 bad config or usage.
#[derive(Debug, Parser)]
#[command(
    name = "vmount",
    version,
    subcommand_negates_reqs = true,
    after_help = "See examples/memfs.toml for every config key with its default."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    mount: MountArgs,

    /// Log more to stderr: -v info, -vv debug, -vvv trace (default: warnings; RUST_LOG
    /// is used when no -v is given).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
}

#[derive(Debug, Args)]
struct MountArgs {
    /// Backend to use instead of the config's `backend`.
    #[arg(long, value_enum, value_name = "BACKEND")]
    backend: Option<BackendChoice>,

    /// The config file (TOML).
    #[arg(value_name = "CONFIG", required = true)]
    config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Mount in the foreground until interrupted (the same as `vmount CONFIG`).
    Mount(MountArgs),
    /// Validate a config and print the resolved plan without mounting.
    Check(MountArgs),
    /// List the backends, whether each is usable here and why not, and what `auto` picks.
    Backends,
    /// Unmount a vmount mount, including a dead one left by a killed daemon.
    Unmount {
        /// The mountpoint.
        #[arg(value_name = "MOUNTPOINT")]
        mountpoint: PathBuf,
    },
    /// Mount in the background; returns once the mount is usable (or with the reason it
    /// failed). The daemon logs to a file in the state directory (`status --verbose`).
    Start(MountArgs),
    /// Unmount a mount made by `start` (or a foreground one) and stop its daemon.
    Stop {
        /// The mountpoint, or the mount's name.
        #[arg(value_name = "MOUNTPOINT|NAME")]
        target: String,
    },
    /// List the running mounts with their operation counters; with -v/--verbose also
    /// each mount's files, metrics address and per-operation counts, errors and
    /// p50/p90/p99 latencies.
    Status,
    /// Write a commented config with every key and its default.
    ///
    /// To stdout, or to the --output file.
    Init {
        /// The filesystem the config mounts.
        #[arg(value_enum, default_value = "memfs")]
        filesystem: InitFs,
        /// Write the config to this file instead of stdout.
        #[arg(long, short, value_name = "PATH")]
        output: Option<PathBuf>,
        /// Replace the --output file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Print a shell completion script.
    ///
    /// For example: `vmount completions bash > /etc/bash_completion.d/vmount`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff).
    ///
    /// For example: `vmount man | man -l -`.
    Man {
        /// Write vmount.1 and a page per subcommand (vmount-check.1, ...) into this
        /// directory instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Start a mount at login: a systemd user unit, a launchd agent or a scheduled task.
    #[command(subcommand)]
    Service(ServiceCommand),
}

/// The filesystems `vmount init` writes a config for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum InitFs {
    /// In memory.
    Memfs,
    /// A mirror of a host directory.
    Loopback,
}

#[derive(Debug, Subcommand)]
enum ServiceCommand {
    /// Install a service that runs `vmount CONFIG` at login, and print how to enable it.
    Install {
        /// The config file; its path is made absolute.
        #[arg(value_name = "CONFIG")]
        config: PathBuf,
        /// The service's name (default: the config file's name without `.toml`).
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// Print the service definition instead of installing it.
        #[arg(long)]
        print: bool,
        /// Replace an installed service of that name.
        #[arg(long)]
        force: bool,
    },
    /// Remove a service installed by `vmount service install`.
    Uninstall {
        /// The service's name.
        #[arg(value_name = "NAME")]
        name: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Not clap's `args_conflicts_with_subcommands`: that also rejects `-v` before a
    // subcommand (`vmount -v check CONFIG`).
    if cli.command.is_some() && (cli.mount.config.is_some() || cli.mount.backend.is_some()) {
        use clap::CommandFactory as _;
        Cli::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "CONFIG and --backend go after the subcommand (vmount check --backend fuse CONFIG)",
            )
            .exit();
    }
    init_logging(cli.verbose);
    let result = match cli.command {
        None => mount(&cli.mount),
        Some(Command::Mount(args)) => mount(&args),
        Some(Command::Check(args)) => check(&args),
        Some(Command::Backends) => {
            backends();
            Ok(())
        }
        Some(Command::Unmount { mountpoint }) => run::unmount(&mountpoint),
        Some(Command::Start(args)) => {
            vmount::daemon::start(args.config.as_deref(), args.backend, cli.verbose)
        }
        Some(Command::Stop { target }) => vmount::daemon::stop(&target),
        Some(Command::Status) => vmount::daemon::status(cli.verbose > 0),
        Some(Command::Init {
            filesystem,
            output,
            force,
        }) => {
            let kind = match filesystem {
                InitFs::Memfs => config::FsType::Memfs,
                InitFs::Loopback => config::FsType::Loopback,
            };
            vmount::init::run(kind, output.as_deref(), force)
        }
        Some(Command::Completions { shell }) => {
            use clap::CommandFactory as _;
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "vmount", &mut std::io::stdout());
            Ok(())
        }
        Some(Command::Man { dir }) => {
            use anyhow::Context as _;
            use clap::CommandFactory as _;
            match dir {
                Some(dir) => clap_mangen::generate_to(Cli::command(), &dir)
                    .with_context(|| format!("cannot write the pages into {}", dir.display())),
                None => clap_mangen::Man::new(Cli::command())
                    .render(&mut std::io::stdout())
                    .context("cannot write to stdout"),
            }
        }
        Some(Command::Service(ServiceCommand::Install {
            config,
            name,
            print,
            force,
        })) => vmount::service::install(&config, name.as_deref(), print, force),
        Some(Command::Service(ServiceCommand::Uninstall { name })) => {
            vmount::service::uninstall(&name)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = if e.downcast_ref::<ConfigError>().is_some() {
                2
            } else {
                1
            };
            // `{:#}` prints the whole context chain on one line, separated by ": ".
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            ExitCode::from(code)
        }
    }
}

/// Logs to stderr. `-v` flags win; without them `RUST_LOG` applies; the default shows
/// warnings only, so a healthy mount prints nothing but its `mounted` line.
fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if verbose == 0 && !spec.trim().is_empty() => {
            EnvFilter::try_new(spec).unwrap_or_else(|_| EnvFilter::new(level))
        }
        _ => EnvFilter::new(level),
    };
    use std::io::IsTerminal as _;
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    vmount::logging::init(filter, color);
}

/// Reads, parses and validates the config named in `args`.
fn load_plan(args: &MountArgs) -> anyhow::Result<MountPlan> {
    // clap requires CONFIG unless a subcommand is given, and every subcommand that takes
    // MountArgs declares it required too.
    let Some(path) = &args.config else {
        anyhow::bail!("no config file given");
    };
    let src = Source::read(path)?;
    let raw = src.parse()?;
    let plan = MountPlan::build(raw, &src, args.backend)?;
    tracing::debug!(?plan, "validated");
    Ok(plan)
}

fn mount(args: &MountArgs) -> anyhow::Result<()> {
    let plan = load_plan(args)?;
    run::mount_and_wait(&plan)
}

fn check(args: &MountArgs) -> anyhow::Result<()> {
    let plan = load_plan(args)?;
    let mut out = std::io::stdout().lock();
    write!(out, "{plan}").and_then(|()| out.flush())?;
    Ok(())
}

fn backends() {
    let mut out = String::new();
    for backend in Backend::ALL {
        match platform::status(backend) {
            Ok(()) => out.push_str(&format!("{backend:<8}usable\n")),
            Err(why) => {
                out.push_str(&format!("{backend:<8}not usable: {}\n", why.reason));
                if let Some(fix) = why.fix {
                    out.push_str(&format!("{:<8}fix: {fix}\n", ""));
                }
            }
        }
    }
    let order: Vec<String> = platform::auto_order()
        .iter()
        .map(|b| b.to_string())
        .collect();
    out.push_str(&format!(
        "{:<8}tries {} (the next one also when a mount fails)\n",
        "auto",
        order.join(", then ")
    ));
    match platform::resolve(BackendChoice::Auto) {
        Ok(b) => out.push_str(&format!("{:<8}chooses {b}\n", "auto")),
        Err(_) => out.push_str(&format!(
            "{:<8}chooses nothing: no backend is usable here\n",
            "auto"
        )),
    }
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush());
}
