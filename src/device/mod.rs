//! libtorch start-up: make CUDA visible to tch and keep libtorch's warning flood away from users.
//!
//! Call [`init`] first thing in `main`, before any tch call.

use std::ffi::CString;

/// Where the build found libtorch (scripts/setup.sh sets LIBTORCH); empty when it was not set.
const LIBTORCH_LIB: &str = match option_env!("ISOCLR_LIBTORCH_LIB") {
    Some(dir) => dir,
    None => "",
};

/// Environment variable libtorch reads once, when it loads, for its minimum log level.
const LOG_LEVEL_VAR: &str = "TORCH_CPP_LOG_LEVEL";

/// Re-executes the current process with `TORCH_CPP_LOG_LEVEL=ERROR` unless the user set it.
///
/// libtorch reads the level when the library loads — before `main` — so setting it later is too late;
/// without it, `autocast` prints a deprecation warning on every call. Returns only when no re-exec was
/// needed or possible.
pub fn quiet_libtorch_or_reexec() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os(LOG_LEVEL_VAR).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else { return };
    let err = std::process::Command::new(exe).args(std::env::args_os().skip(1)).env(LOG_LEVEL_VAR, "ERROR").exec();
    // exec only returns on failure; carry on with libtorch's default verbosity.
    eprintln!("warning: could not re-execute with {LOG_LEVEL_VAR}=ERROR: {err}");
}

/// Loads `libtorch_cuda.so` so libtorch registers its CUDA backend.
///
/// rustc links with `--as-needed`, which drops libtorch_cuda (no symbol of it is referenced directly), and
/// `tch::Cuda::is_available()` would then be false even on a GPU machine. On a CPU-only libtorch the load
/// fails harmlessly. Returns whether the library is loaded.
pub fn load_cuda_backend() -> bool {
    let mut candidates = Vec::new();
    if !LIBTORCH_LIB.is_empty() {
        candidates.push(format!("{LIBTORCH_LIB}/libtorch_cuda.so"));
    }
    candidates.push("libtorch_cuda.so".to_owned());
    candidates.into_iter().any(|name| {
        let Ok(name) = CString::new(name) else { return false };
        // SAFETY: `name` is a valid NUL-terminated string that outlives the call; dlopen has no other
        // preconditions, and a null return (library absent) is handled. The handle is deliberately never
        // closed: the CUDA backend must stay registered for the life of the process.
        let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        !handle.is_null()
    })
}

/// Quiets libtorch (possibly by re-executing) and loads the CUDA backend when present.
pub fn init() -> bool {
    quiet_libtorch_or_reexec();
    load_cuda_backend()
}
