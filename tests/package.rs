//! The Debian package: `scripts/build-deb.sh` builds it, `dpkg --root` installs it into a
//! scratch root (the machine's own dpkg database and files are not touched), every file the
//! package should hold is there and runs, every `/usr` path the documentation names exists,
//! and `dpkg --root -r` removes every file again. Needs root and dpkg (a failure under
//! CI=true, else a counted skip).
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Absolute `/usr/...` paths named in the README, the guides and the man pages (man
/// escapes undone), less examples of the operator's own files.
fn documented_paths(repo: &Path) -> Vec<String> {
    let mut files = vec![repo.join("README.md")];
    for dir in ["docs", "docs/man"] {
        for e in std::fs::read_dir(repo.join(dir)).expect("docs") {
            let p = e.expect("entry").path();
            if p.is_file() {
                files.push(p);
            }
        }
    }
    let mut paths = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f)
            .unwrap_or_default()
            .replace("\\-", "-");
        for (i, _) in text.match_indices("/usr/") {
            // The start of a path, not the middle of a longer one or of a URL.
            if i > 0 && !matches!(text.as_bytes()[i - 1], b' ' | b'`' | b'(' | b'\n' | b'=') {
                continue;
            }
            let p: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "/._-".contains(*c))
                .collect();
            let p = p.trim_end_matches(['.', '/']).to_string();
            if !p.starts_with("/usr/local/") && p.len() > "/usr/".len() {
                paths.push(p);
            }
        }
    }
    paths.sort();
    paths.dedup();
    paths
}

#[test]
fn debian_package_installs_and_removes_cleanly() {
    let test = "debian_package_installs_and_removes_cleanly";
    if !lvs_testkit::is_root() {
        lvs_testkit::skip(test, "needs root (dpkg --root keeps file owners)");
        return;
    }
    if !lvs_testkit::runs("dpkg-deb", &["--version"]) {
        lvs_testkit::skip(test, "dpkg-deb not found (Debian's dpkg package)");
        return;
    }
    let repo = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let scratch = std::env::temp_dir().join(format!("lvs-deb-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let root = scratch.join("root");
    let out = scratch.join("out");
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();

    let deb = run(Command::new(repo.join("scripts/build-deb.sh")).args([
        "--profile",
        "dev",
        "--no-compress",
        "--out",
        out.to_str().unwrap(),
    ]));
    let deb = deb
        .lines()
        .last()
        .expect("the package path")
        .trim()
        .to_string();
    let info = run(Command::new("dpkg-deb").args(["--field", &deb, "Package", "Depends"]));
    assert!(info.contains("Package: lvs-rs"), "{info}");
    assert!(info.contains("nftables"), "{info}");

    // Installed where it must not touch the machine: dependencies are the machine's, not
    // the scratch root's, hence --force-depends.
    let dpkg = |args: &[&str]| {
        let mut c = Command::new("dpkg");
        c.arg(format!("--root={}", root.display()))
            .args(["--force-depends", "--force-script-chrootless"])
            .args(args);
        run(&mut c)
    };
    dpkg(&["--install", &deb]);
    let listed = dpkg(&["--listfiles", "lvs-rs"]);
    let want = [
        "/usr/sbin/lvsd",
        "/usr/sbin/lvsadm",
        "/usr/sbin/lvs-realserver",
        "/usr/lib/systemd/system/lvsd.service",
        "/usr/share/man/man8/lvsd.8.gz",
        "/usr/share/man/man8/lvsadm.8.gz",
        "/usr/share/man/man8/lvs-realserver.8.gz",
        "/usr/share/doc/lvs-rs/examples/lvsd.toml.example",
        "/usr/share/doc/lvs-rs/operator-guide.md",
        "/usr/share/bash-completion/completions/lvsd",
        "/usr/share/bash-completion/completions/lvsadm",
    ];
    for p in want {
        assert!(
            listed.lines().any(|l| l == p),
            "{p} not in the package:\n{listed}"
        );
        assert!(root.join(&p[1..]).is_file(), "{p} not installed");
    }
    // The binaries run; the unit starts the installed lvsd; the example configuration is
    // one lvsd accepts.
    let v = run(Command::new(root.join("usr/sbin/lvsadm")).arg("--version"));
    assert!(v.starts_with("lvsadm v"), "{v}");
    run(Command::new(root.join("usr/sbin/lvs-realserver")).arg("--help"));
    let unit = std::fs::read_to_string(root.join("usr/lib/systemd/system/lvsd.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/sbin/lvsd "), "{unit}");
    run(Command::new(root.join("usr/sbin/lvsd")).args([
        "--check-config",
        root.join("usr/share/doc/lvs-rs/examples/lvsd.toml.example")
            .to_str()
            .unwrap(),
    ]));
    let completion =
        std::fs::read_to_string(root.join("usr/share/bash-completion/completions/lvsd")).unwrap();
    assert!(
        completion.contains("--keep-forwarding-on-exit"),
        "{completion}"
    );
    let man = run(Command::new("gzip").args([
        "-dc",
        root.join("usr/share/man/man8/lvsd.8.gz").to_str().unwrap(),
    ]));
    assert!(
        man.starts_with(".TH LVSD 8"),
        "{}",
        &man[..40.min(man.len())]
    );

    // Every /usr path the documentation names is one the package installed.
    let documented = documented_paths(&repo);
    assert!(
        documented.iter().any(|p| p.ends_with("lvsd.toml.example")),
        "{documented:?}"
    );
    for p in &documented {
        assert!(
            root.join(&p[1..]).exists(),
            "the documentation names {p}, which the package does not install"
        );
    }

    dpkg(&["--remove", "lvs-rs"]);
    let mut left = Vec::new();
    let mut stack = vec![root.join("usr")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                left.push(p);
            }
        }
    }
    assert!(left.is_empty(), "files left after dpkg -r: {left:?}");
    let status = std::fs::read_to_string(root.join("var/lib/dpkg/status")).unwrap();
    assert!(
        !status.contains("Status: install ok installed"),
        "still installed:\n{status}"
    );
    eprintln!(
        "{deb}: installed {} files, {} documented paths present, removed cleanly",
        want.len(),
        documented.len()
    );
    std::fs::remove_dir_all(&scratch).unwrap();
}
