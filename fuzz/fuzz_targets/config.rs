//! A config file as `vmount check` reads it: the bytes are written to `config.toml` in a
//! temporary directory holding the directories `mnt` and `src` (so that relative paths in
//! a config resolve there, as they resolve against the config's own directory), then read,
//! parsed, planned against this machine and printed, exactly as `vmount check` does.
//! Errors are expected; panics are crashes. Non-UTF-8 input is refused by `Source::read`
//! like an unreadable file, so it is exercised too.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vmount::config::Source;
use vmount::plan::MountPlan;

/// The config file's path, in a directory created once per process (under `$TMPDIR`, which
/// `.ci/fuzz` points at a directory it removes afterwards).
fn config_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("vmount-fuzz-config-")
            .tempdir()
            .expect("temp dir")
            .keep();
        std::fs::create_dir(dir.join("mnt")).expect("mkdir mnt");
        std::fs::create_dir(dir.join("src")).expect("mkdir src");
        dir.join("config.toml")
    })
}

fuzz_target!(|data: &[u8]| {
    let path = config_path();
    std::fs::write(path, data).expect("write config");
    let Ok(src) = Source::read(path) else {
        return;
    };
    // Every error message is built and printed, as main does with `{:#}`.
    let raw = match src.parse() {
        Ok(raw) => raw,
        Err(e) => {
            std::hint::black_box(e.to_string());
            return;
        }
    };
    match MountPlan::build(raw, &src, None) {
        Ok(plan) => {
            std::hint::black_box(plan.to_string());
        }
        Err(e) => {
            std::hint::black_box(format!("{e:#}"));
        }
    }
});
