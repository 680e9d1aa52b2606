//! Delay-loads the WinFsp DLL on MSVC targets (WinFsp supports only delay-loading).
//!
//! Checks the *target* through `CARGO_CFG_*` (a build script's own `cfg!` describes the
//! host) and does not build-depend on winfsp: that would compile winfsp, winfsp-sys and
//! bindgen a second time for the host just to print these two lines. Cargo applies
//! `rustc-link-arg` only to this package's tests; the `vmount` binary emits its own
//! `/DELAYLOAD` (`delayimp` propagates as a link library).

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
    println!("cargo:rustc-link-lib=dylib=delayimp");
    println!("cargo:rustc-link-arg=/DELAYLOAD:{dll}");
}
