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

/// A child's stderr, read on a thread as the child writes it. A piped stderr that nobody reads fills its
/// buffer (64 KiB on Linux) and then blocks the child at its next log line, which stalls it in ways a test
/// would misread (a trainer that seems to wait on storage is waiting on its own log).
pub struct StderrReader {
    text: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StderrReader {
    /// Starts reading `child`'s stderr (spawned with `Stdio::piped()`; otherwise there is nothing to read).
    pub fn start(child: &mut std::process::Child) -> Self {
        let text = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let thread = child.stderr.take().map(|mut pipe| {
            let text = text.clone();
            std::thread::spawn(move || {
                use std::io::Read;
                let mut chunk = [0u8; 8192];
                while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                    text.lock().unwrap().extend_from_slice(&chunk[..n]);
                }
            })
        });
        Self { text, thread }
    }

    /// What the child has written so far.
    pub fn so_far(&self) -> String {
        String::from_utf8_lossy(&self.text.lock().unwrap()).into_owned()
    }

    /// Everything the child wrote. Call it once the child has exited: it waits (at most 60 s, since a
    /// grandchild may still hold the pipe open) for the pipe to close.
    pub fn finish(mut self) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        if let Some(thread) = self.thread.take() {
            while !thread.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            if !thread.is_finished() {
                return self.so_far() + "\n(stderr still open 60 s after the child ended)";
            }
            let _ = thread.join();
        }
        self.so_far()
    }
}

/// Waits at most `limit` for `child` to exit and returns its status; `None` (after killing it, so that no
/// test leaves a process behind) when it is still running then.
pub fn exit_within(child: &mut std::process::Child, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
