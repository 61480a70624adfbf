//! Link flags for the `hoist` binary only (the library and its dependencies are unaffected).
//!
//! `-z pack-relative-relocs` stores the binary's relative relocations as DT_RELR (a few KB
//! instead of a megabyte of RELA entries): every hoist process starts faster, which counts for the
//! runner (one per container start) and for short commands. glibc ≥ 2.36 reads it; the linker
//! is asked only when it is GNU ld ≥ 2.38 or lld, which know the flag.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.contains("linux-gnu") && linker_knows_relr() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether `cc` links a program with the flag (a tiny probe, so an older toolchain builds as before).
fn linker_knows_relr() -> bool {
    let Ok(out) = std::env::var("OUT_DIR") else { return false };
    let dir = std::path::Path::new(&out);
    let src = dir.join("relr-probe.c");
    if std::fs::write(&src, "int main(void) { return 0; }\n").is_err() {
        return false;
    }
    std::process::Command::new("cc")
        .arg(&src)
        .arg("-o")
        .arg(dir.join("relr-probe"))
        .arg("-Wl,-z,pack-relative-relocs")
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
