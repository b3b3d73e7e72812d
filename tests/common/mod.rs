//! Helpers shared by the integration tests that watch processes.
// Each test crate includes this module and uses part of it.
#![allow(dead_code)]

/// Child processes of `parent`, from /proc.
pub fn children(parent: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // Fields after the parenthesised command name: state, ppid, ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        if rest.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok()) == Some(parent) {
            found.push(pid);
        }
    }
    found
}

/// Whether `pid` runs (exists and is not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
    })
}

/// The project's Python (`.venv`, made by `scripts/setup.sh`) or `$ISOCLR_PYTHON`, checked to import
/// `module`. Panics (fails the test) with set-up instructions otherwise: a silently skipped cross-check is a
/// cross-check nobody runs.
pub fn project_python(module: &str) -> std::path::PathBuf {
    let python = std::env::var_os("ISOCLR_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    let how = "run scripts/setup.sh (the full variant, not --cpu, which installs libtorch without the Python \
               packages the cross-checks use), or set ISOCLR_PYTHON to a Python 3 with torch 2.11 and pyarrow";
    assert!(python.exists(), "no Python interpreter at {}: {how}", python.display());
    let probe = std::process::Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .output();
    match probe {
        Ok(out) if out.status.success() => python,
        Ok(out) => panic!(
            "{} cannot import {module}: {}\n{how}",
            python.display(),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("cannot run {}: {e}\n{how}", python.display()),
    }
}
