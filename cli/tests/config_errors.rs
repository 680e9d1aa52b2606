//! Config and usage errors: exit code 2 and one line naming the key and its line; and
//! the shipped examples validate.

mod common;

use common::{Setup, assert_fails, config_file, example, stdout, vmount};

/// `vmount check` and `vmount` (mount) on `text` both fail with exit 2, and the message
/// names `key` at `path:LINE:`.
#[track_caller]
fn assert_config_error(text: &str, line: usize, key: &str) -> String {
    let (_dir, path) = config_file(text);
    let path = path.to_str().expect("utf-8 temp path");
    let mut msg = String::new();
    for args in [vec!["check", path], vec![path], vec!["mount", path]] {
        let out = vmount(&args);
        let location = format!("error: {path}:{line}:");
        msg = assert_fails(&out, 2, &[&location, key]);
        assert!(
            stdout(&out).is_empty(),
            "nothing on stdout: {}",
            stdout(&out)
        );
    }
    msg
}

const MP: &str = "mountpoint = \"/nonexistent/but/never/reached\"\n";

#[test]
fn toml_syntax_error() {
    let msg = assert_config_error(&format!("{MP}[filesystem]\ntype = \"memfs\n"), 3, "");
    assert!(msg.contains("invalid TOML"), "{msg}");
    assert_config_error(
        &format!("{MP}[filesystem\ntype = \"memfs\"\n"),
        2,
        "invalid TOML",
    );
}

#[test]
fn unknown_key() {
    let msg = assert_config_error(
        &format!("{MP}[filesystem]\ntype = \"memfs\"\nsizelimit = 5\n"),
        4,
        "",
    );
    assert!(
        msg.contains(
            ":4:1: unknown key `sizelimit` in [filesystem], expected one of: type, source, \
             size_limit, max_inodes"
        ),
        "{msg}"
    );
    assert_config_error(
        &format!("{MP}readonly = true\n[filesystem]\ntype = \"memfs\"\n"),
        2,
        "`readonly`",
    );
    assert_config_error(
        &format!("{MP}[filesystem]\ntype = \"memfs\"\n[fuse]\nthread = 1\n"),
        5,
        "`thread` in [fuse]",
    );
    assert_config_error(
        &format!("{MP}[filesystem]\ntype = \"memfs\"\n[nfs]\nprot = 1\n"),
        5,
        "`prot` in [nfs]",
    );
    assert_config_error(
        &format!("{MP}[filesystem]\ntype = \"memfs\"\n[fusee]\n"),
        4,
        "`fusee`",
    );
}

#[test]
fn wrong_type() {
    let msg = assert_config_error(
        &format!("{MP}read_only = \"yes\"\n[filesystem]\ntype = \"memfs\"\n"),
        2,
        "`read_only`",
    );
    assert!(msg.contains("expected a boolean"), "{msg}");
    assert_config_error(
        "mountpoint = 7\n[filesystem]\ntype = \"memfs\"\n",
        1,
        "`mountpoint`",
    );
    assert_config_error(
        &format!("{MP}[filesystem]\ntype = \"memfs\"\nmax_inodes = \"many\"\n"),
        4,
        "`max_inodes`",
    );
    assert_config_error(
        &format!("{MP}[filesystem]\ntype = \"memfs\"\n[fuse]\nthreads = 1.5\n"),
        5,
        "`threads`",
    );
    assert_config_error(
        &format!("{MP}[filesystem]\ntype = \"memfs\"\n[nfs]\nmount = 1\n"),
        5,
        "`mount` in [nfs]",
    );
    assert_config_error(&format!("{MP}filesystem = \"memfs\"\n"), 2, "`filesystem`");
}

#[test]
fn bad_sizes_and_numbers() {
    for bad in [
        "\"lots\"",
        "\"0\"",
        "0",
        "-1",
        "\"-1GiB\"",
        "\"12XB\"",
        "\"99999999999PiB\"",
        "\"1.2.3G\"",
    ] {
        let text = format!("{MP}[filesystem]\ntype = \"memfs\"\nsize_limit = {bad}\n");
        assert_config_error(&text, 4, "`size_limit` in [filesystem]");
    }
    assert_config_error(
        &format!("{MP}[filesystem]\ntype = \"memfs\"\nmax_inodes = 0\n"),
        4,
        "`max_inodes`",
    );
    for bad in ["-1", "\"-1s\"", "\"10 parsecs\"", "\"5\"", "1e12"] {
        let text = format!("{MP}[filesystem]\ntype = \"memfs\"\n[fuse]\nattr_timeout = {bad}\n");
        assert_config_error(&text, 5, "`attr_timeout` in [fuse]");
    }
    assert_config_error(
        &format!("{MP}[filesystem]\ntype = \"memfs\"\n[nfs]\nport = 65536\n"),
        5,
        "`port` in [nfs]",
    );
    assert_config_error(
        &format!("{MP}[filesystem]\ntype = \"memfs\"\n[nfs]\nport = -1\n"),
        5,
        "`port` in [nfs]",
    );
    assert_config_error(
        &format!("{MP}[filesystem]\ntype = \"memfs\"\n[fuse]\nthreads = -2\n"),
        5,
        "`threads` in [fuse]",
    );
}

#[test]
fn missing_required_keys() {
    assert_config_error(
        "[filesystem]\ntype = \"memfs\"\n",
        1,
        "missing required key `mountpoint`",
    );
    assert_config_error(MP, 1, "missing required key `filesystem`");
    assert_config_error(
        &format!("{MP}[filesystem]\nsize_limit = 5\n"),
        2,
        "missing required key `type` in [filesystem]",
    );
}

#[test]
fn loopback_needs_source_and_memfs_refuses_it() {
    let msg = assert_config_error(
        &format!("{MP}[filesystem]\ntype = \"loopback\"\n"),
        3,
        "`source`",
    );
    assert!(
        msg.contains("missing required key `source` in [filesystem]"),
        "{msg}"
    );
    let text = format!("{MP}[filesystem]\ntype = \"memfs\"\nsource = \"/tmp\"\n");
    let msg = assert_config_error(&text, 4, "`source`");
    assert!(msg.contains("only for type = \"loopback\""), "{msg}");
    let text =
        format!("{MP}[filesystem]\ntype = \"loopback\"\nsource = \"/tmp\"\nsize_limit = \"1G\"\n");
    assert_config_error(&text, 5, "`size_limit`");
}

#[test]
fn unknown_backend_and_type_values() {
    let msg = assert_config_error(
        &format!("{MP}backend = \"fusee\"\n[filesystem]\ntype = \"memfs\"\n"),
        2,
        "`backend`",
    );
    assert!(msg.contains("`auto`, `fuse`, `nfs`, `winfsp`"), "{msg}");
    let msg = assert_config_error(
        &format!("{MP}[filesystem]\ntype = \"ramfs\"\n"),
        3,
        "`type` in [filesystem]",
    );
    assert!(msg.contains("`memfs` or `loopback`"), "{msg}");
}

#[test]
fn unreadable_config_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let out = vmount(&["check", missing.to_str().unwrap()]);
    assert_fails(&out, 2, &["missing.toml", "cannot read the config file"]);
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["--backend", "zfs", "x.toml"],
        &["check"],
        &["unmount"],
        &["frobnicate", "x", "y"],
        &["--bogus"],
        &["x.toml", "check"],
        &["--backend", "fuse", "check", "x.toml"],
    ] {
        let out = vmount(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            common::stderr(&out)
        );
        assert!(!common::stderr(&out).contains("panicked"));
    }
    for args in [
        &["--help"][..],
        &["--version"],
        &["check", "--help"],
        &["unmount", "--help"],
        &["backends", "--help"],
        &["mount", "--help"],
    ] {
        let out = vmount(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            common::stderr(&out)
        );
        assert!(!stdout(&out).is_empty());
    }
    let out = vmount(&["--version"]);
    assert_eq!(
        stdout(&out).trim(),
        format!("vmount {}", env!("CARGO_PKG_VERSION"))
    );
}

/// The example memfs config with its mountpoint pointed at a temp dir validates, and
/// `check` shows every resolved value.
#[test]
fn memfs_example_checks() {
    let setup = Setup::memfs();
    let text = example("memfs.toml");
    assert!(
        text.contains("\nmountpoint = \"/tmp/vmount\"\n"),
        "the README's mountpoint"
    );
    let text = text.replace("\"/tmp/vmount\"", &format!("{:?}", setup.mountpoint_str()));
    std::fs::write(&setup.config, text).unwrap();
    let out = vmount(&["check", setup.config_str()]);
    if !common::fuse_or_skip("memfs_example_checks") {
        return;
    }
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        common::stderr(&out)
    );
    let plan = stdout(&out);
    for want in [
        format!("mountpoint:             {}", setup.mountpoint.display()),
        "backend:                fuse (chosen by auto, from config)".to_owned(),
        "size_limit:           1 GiB (1073741824 bytes)".to_owned(),
        "max_inodes:           none".to_owned(),
        "name:                   memfs".to_owned(),
        "read_only:              no".to_owned(),
        "attr_timeout:         3600 s".to_owned(),
        "default_permissions:  auto (no: memfs checks permissions itself)".to_owned(),
        "port:                 0 (any free port on 127.0.0.1)".to_owned(),
    ] {
        assert!(plan.contains(&want), "missing {want:?} in:\n{plan}");
    }
}

/// Every key of the memfs example is documented and set (so the file lists them all).
#[test]
fn memfs_example_lists_every_key() {
    let text = example("memfs.toml");
    for key in [
        "mountpoint",
        "backend",
        "read_only",
        "name",
        "type",
        "source",
        "size_limit",
        "max_inodes",
        "threads",
        "attr_timeout",
        "entry_timeout",
        "negative_timeout",
        "writeback_cache",
        "allow_other",
        "default_permissions",
        "passthrough",
        "volume_name",
        "noappledouble",
        "noapplexattr",
        "port",
        "mount",
        "noappledouble",
        "case_insensitive",
        "hide_dotfiles",
        "file_info_timeout",
    ] {
        let present = text.lines().any(|l| {
            let l = l.trim_start_matches(['#', ' ']);
            l.starts_with(&format!("{key} = "))
        });
        assert!(present, "examples/memfs.toml should show `{key} = ...`");
    }
}

#[test]
fn loopback_example_checks() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&src).unwrap();
    std::fs::create_dir(&mnt).unwrap();
    let text = example("loopback.toml");
    assert!(text.contains("\"/tmp/vmount-src\"") && text.contains("\"/tmp/vmount-loop\""));
    let text = text
        .replace(
            "\"/tmp/vmount-src\"",
            &format!("{:?}", src.to_str().unwrap()),
        )
        .replace(
            "\"/tmp/vmount-loop\"",
            &format!("{:?}", mnt.to_str().unwrap()),
        );
    let config = dir.path().join("loopback.toml");
    std::fs::write(&config, text).unwrap();
    let out = vmount(&["check", config.to_str().unwrap()]);
    if !common::fuse_or_skip("loopback_example_checks") {
        return;
    }
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        common::stderr(&out)
    );
    let plan = stdout(&out);
    let src = src.canonicalize().unwrap();
    assert!(
        plan.contains(&format!("source:               {}", src.display())),
        "{plan}"
    );
    assert!(plan.contains("name:                   loopback"), "{plan}");
}

/// Relative paths in a config are relative to the config file, not the working dir.
#[test]
fn relative_mountpoint_is_relative_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("mnt")).unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        "mountpoint = \"mnt\"\n[filesystem]\ntype = \"memfs\"\n",
    )
    .unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    let out = common::vmount_in(&["check", config.to_str().unwrap()], Some(elsewhere.path()));
    if !common::fuse_or_skip("relative_mountpoint_is_relative_to_the_config") {
        return;
    }
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        common::stderr(&out)
    );
    let mnt = dir.path().join("mnt").canonicalize().unwrap();
    assert!(stdout(&out).contains(&format!("mountpoint:             {}\n", mnt.display())));
}

/// `-v` goes before or after the subcommand; `-vv` logs to stderr, never stdout.
#[test]
fn verbose_flags_work_everywhere() {
    for args in [&["-v", "backends"][..], &["backends", "-vv"]] {
        let out = vmount(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            common::stderr(&out)
        );
        assert!(
            stdout(&out).contains("auto    chooses"),
            "{args:?}: {}",
            stdout(&out)
        );
    }
    let setup = Setup::memfs();
    let quiet = vmount(&["check", setup.config_str()]);
    let loud = vmount(&["-vv", "check", setup.config_str()]);
    if !common::fuse_or_skip("verbose_flags_work_everywhere") {
        return;
    }
    assert_eq!(loud.status.code(), Some(0), "{}", common::stderr(&loud));
    assert!(
        common::stderr(&quiet).is_empty(),
        "{}",
        common::stderr(&quiet)
    );
    assert!(
        common::stderr(&loud).contains("DEBUG"),
        "{}",
        common::stderr(&loud)
    );
    assert_eq!(stdout(&quiet), stdout(&loud));
}

/// `[fuse] passthrough` takes exactly "auto", "on" or "off"; "on" needs host files
/// (loopback) and excludes the writeback cache, which the kernel does not combine with it.
#[test]
fn passthrough_values() {
    let msg = assert_config_error(
        &format!(
            "{MP}[filesystem]\ntype = \"loopback\"\nsource = \"/tmp\"\n[fuse]\n\
             passthrough = \"yes\"\n"
        ),
        6,
        "`passthrough` in [fuse]",
    );
    assert!(
        msg.contains("auto") && msg.contains("on") && msg.contains("off"),
        "{msg}"
    );
    let msg = assert_config_error(
        &format!(
            "{MP}[filesystem]\ntype = \"memfs\"\ndata = \"heap\"\n[fuse]\npassthrough = \"on\"\n"
        ),
        6,
        "`passthrough = \"on\"`",
    );
    assert!(msg.contains("data = \"auto\""), "{msg}");
    let msg = assert_config_error(
        &format!(
            "{MP}[filesystem]\ntype = \"loopback\"\nsource = \"/tmp\"\n[fuse]\n\
             writeback_cache = true\npassthrough = \"on\"\n"
        ),
        7,
        "`passthrough = \"on\"`",
    );
    assert!(msg.contains("writeback_cache"), "{msg}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    std::fs::create_dir(dir.path().join("mnt")).unwrap();
    for (kind, good) in [
        ("loopback", "auto"),
        ("loopback", "on"),
        ("loopback", "off"),
        ("memfs", "auto"),
        ("memfs", "off"),
    ] {
        let source = if kind == "loopback" {
            "source = \"src\"\n"
        } else {
            ""
        };
        let config = dir.path().join("c.toml");
        std::fs::write(
            &config,
            format!(
                "mountpoint = \"mnt\"\n[filesystem]\ntype = \"{kind}\"\n{source}[fuse]\n\
                 passthrough = \"{good}\"\n"
            ),
        )
        .unwrap();
        let out = vmount(&["check", config.to_str().unwrap()]);
        // Exit 2 is a config error; whether this machine can mount it is not this test's.
        assert_ne!(
            out.status.code(),
            Some(2),
            "{kind} with passthrough = \"{good}\" must parse: {}",
            common::stderr(&out)
        );
    }
}
