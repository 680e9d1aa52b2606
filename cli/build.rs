//! Delay-loads the WinFsp DLL into the `vmount` binary on Windows/MSVC targets.
//!
//! WinFsp is only ever delay-loaded: its DLL lives in WinFsp's install folder, not on the
//! search path, and `vmount_backend_winfsp::available` loads it from there before the
//! first call, so a machine without WinFsp still starts vmount (and `auto` picks NFS).
//! The backend crate's build script cannot do this for us: cargo applies
//! `rustc-link-arg` only to the package that prints it. The *target* is read from
//! `CARGO_CFG_*`, since a build script's own `cfg!` describes the host.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os != "windows" || env != "msvc" {
        return;
    }
    let dll = match std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86") => "winfsp-x86.dll",
        Ok("aarch64") => "winfsp-a64.dll",
        _ => "winfsp-x64.dll",
    };
    println!("cargo:rustc-link-arg-bins=/DELAYLOAD:{dll}");
}
