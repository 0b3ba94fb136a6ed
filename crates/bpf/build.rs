//! Builds the kernel programs in `src/bpf/` with clang (`-target bpf`); the object is embedded
//! in the crate and loaded at run time by libbpf. Needs clang and the kernel's UAPI headers
//! plus libbpf's (`scripts/install-deps.sh`: clang, libbpf-dev, linux-libc-dev).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let src = PathBuf::from("src/bpf/lvs.bpf.c");
    println!("cargo:rerun-if-changed=src/bpf/lvs.bpf.c");
    println!("cargo:rerun-if-changed=src/bpf/lvs.h");
    println!("cargo:rerun-if-env-changed=CLANG");
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    // `asm/types.h` lives under the multiarch directory; -target bpf does not look there.
    let arch = match std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => "x86_64-linux-gnu",
        Ok("aarch64") => "aarch64-linux-gnu",
        Ok("riscv64") => "riscv64-linux-gnu",
        Ok(other) => panic!("lvs-bpf: no multiarch include directory known for {other}"),
        Err(_) => "x86_64-linux-gnu",
    };
    let obj = out.join("lvs.bpf.o");
    let status = Command::new(&clang)
        // The default CPU: -mcpu=v3 (32-bit ALU) made the established-flow path some 25 %
        // slower (benches/bpf.rs, the same program built both ways); clang emits the 64-bit
        // fetch-and-add a sequence position needs without it.
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"])
        .arg(format!("-I/usr/include/{arch}"))
        .arg("-c")
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("lvs-bpf: {clang} failed on {} ({s})", src.display()),
        Err(e) => panic!(
            "lvs-bpf: cannot run {clang} ({e}): install clang and libbpf-dev \
             (scripts/install-deps.sh does) or set CLANG"
        ),
    }
}
