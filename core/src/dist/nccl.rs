//! [`NcclComm`]: collectives on CUDA device memory through NCCL (cargo feature `nccl`).
//!
//! Trainers should use the device methods ([`NcclComm::all_reduce_device`], [`NcclComm::all_gather_device`],
//! [`NcclComm::broadcast_device`]) on tensor data pointers: they enqueue on the legacy default stream
//! (stream = null), the stream libtorch uses, so they order with the surrounding kernels without any
//! synchronisation. The [`Collective`] implementation on host slices copies through a device staging buffer
//! and waits for the result: correct, but slow (two PCIe copies and a host wait per call).
//!
//! ## Which libnccl, and how it is loaded
//! Two different libnccl builds in one process corrupt each other ("corrupted comm object detected"), so
//! this module must use the libnccl that libtorch uses. cudarc's own loader is not usable for that: it
//! `dlopen`s bare names (`libnccl.so`, `libnccl.so.13`, …, never `libnccl.so.2`, the SONAME of the NCCL
//! wheel), and glibc resolves a bare name against already-loaded libraries only by the name they were
//! loaded under or their SONAME, else through LD_LIBRARY_PATH as it was at process start, the caller's
//! RUNPATH and the system cache. So neither a prior `RTLD_GLOBAL` load of a private `libnccl.so` symlink
//! nor setting LD_LIBRARY_PATH at run time makes cudarc find torch's NCCL (both checked). cudarc's loader
//! also panics when the library is missing. This module therefore opens libnccl itself by absolute path
//! with `dlopen(RTLD_NOW | RTLD_GLOBAL)` and resolves the dozen NCCL functions it calls with `dlsym` on
//! that handle; it uses cudarc only for the CUDA driver API and the `ncclConfig_t` layout. It never calls
//! `cudarc::nccl`. The library is the first of:
//! 1. the file named by the environment variable `ISOCLR_NCCL_LIBRARY`;
//! 2. `libnccl.so.2` when already loaded (`RTLD_NOLOAD`): libtorch_cuda loads its own NCCL through its
//!    RPATH, so after `device::init` this is libtorch's NCCL, exactly;
//! 3. `<torch>/../nvidia/nccl/lib/libnccl.so.2` for the torch directory of `LIBTORCH` at run time, then of
//!    `LIBTORCH` at build time (.cargo/config.toml sets it).
//!
//! When libtorch loads later, its `libnccl.so.2` dependency resolves by SONAME to the library already
//! loaded here. When none is found, [`DistError::Unavailable`] names every path tried.
//!
//! Every wait is bounded: the communicator is created in non-blocking mode and polled until ready, and
//! host waits poll a CUDA event; on a timeout the communicator is aborted and the call fails.
//!
//! Must not depend on the model or on tch.

use std::ffi::{CStr, CString, OsString, c_char, c_int, c_void};
use std::path::PathBuf;
use std::ptr;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use cudarc::driver::{result as cu, sys as cusys};
use cudarc::nccl::sys::ncclConfig_t;

use super::{Collective, DeviceCollective, DistError, ReduceOp, Result};

/// `LIBTORCH` at build time: the libtorch the project was built against (.cargo/config.toml sets it).
const BUILD_LIBTORCH: Option<&str> = option_env!("LIBTORCH");
/// NCCL below the torch directory of a PyTorch wheel install.
const WHEEL_NCCL: &str = "../nvidia/nccl/lib/libnccl.so.2";

const NCCL_SUCCESS: c_int = 0;
const NCCL_INVALID_ARGUMENT: c_int = 4;
const NCCL_INVALID_USAGE: c_int = 5;
const NCCL_IN_PROGRESS: c_int = 7;
const NCCL_FLOAT32: c_int = 7;
const NCCL_SUM: c_int = 0;
const NCCL_AVG: c_int = 4;
/// `ncclCommInitRankConfig` (2.14) is the newest function used.
const MIN_NCCL_VERSION: c_int = 21400;

/// `ncclUniqueId`: 128 opaque bytes.
#[repr(C)]
#[derive(Clone, Copy)]
struct UniqueId {
    internal: [u8; 128],
}

type RawComm = *mut c_void;

/// The NCCL functions used, resolved from one libnccl.
struct Api {
    path: String,
    version: c_int,
    get_unique_id: unsafe extern "C" fn(*mut UniqueId) -> c_int,
    init_rank_config: unsafe extern "C" fn(*mut RawComm, c_int, UniqueId, c_int, *mut ncclConfig_t) -> c_int,
    async_error: unsafe extern "C" fn(RawComm, *mut c_int) -> c_int,
    abort: unsafe extern "C" fn(RawComm) -> c_int,
    destroy: unsafe extern "C" fn(RawComm) -> c_int,
    error_string: unsafe extern "C" fn(c_int) -> *const c_char,
    last_error: unsafe extern "C" fn(RawComm) -> *const c_char,
    all_reduce: unsafe extern "C" fn(*const c_void, *mut c_void, usize, c_int, c_int, RawComm, *mut c_void) -> c_int,
    all_gather: unsafe extern "C" fn(*const c_void, *mut c_void, usize, c_int, RawComm, *mut c_void) -> c_int,
    broadcast: unsafe extern "C" fn(*const c_void, *mut c_void, usize, c_int, c_int, RawComm, *mut c_void) -> c_int,
}

/// Where to look for libnccl.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Candidate {
    /// A file, opened by absolute path.
    File(PathBuf),
    /// A library already loaded in the process, by SONAME.
    Loaded(&'static str),
}

impl std::fmt::Display for Candidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Candidate::File(path) => write!(f, "{}", path.display()),
            Candidate::Loaded(name) => write!(f, "{name} already loaded (e.g. by libtorch_cuda)"),
        }
    }
}

/// The places to look for libnccl, in order (see the module docs).
fn candidates(
    explicit: Option<OsString>,
    runtime_libtorch: Option<OsString>,
    build_libtorch: Option<&str>,
) -> Vec<Candidate> {
    let mut out = Vec::new();
    if let Some(path) = explicit.filter(|p| !p.is_empty()) {
        out.push(Candidate::File(path.into()));
    }
    out.push(Candidate::Loaded("libnccl.so.2"));
    let torch_dirs = [
        runtime_libtorch.filter(|d| !d.is_empty()).map(PathBuf::from),
        build_libtorch.filter(|d| !d.is_empty()).map(PathBuf::from),
    ];
    for torch in torch_dirs.into_iter().flatten() {
        let candidate = Candidate::File(torch.join(WHEEL_NCCL));
        if !out.contains(&candidate) {
            out.push(candidate);
        }
    }
    out
}

/// Opens the first candidate that loads; returns the handle and the path it came from.
fn open_first(candidates: &[Candidate]) -> std::result::Result<(*mut c_void, String), String> {
    let mut tried = Vec::new();
    for candidate in candidates {
        let (name, flags) = match candidate {
            Candidate::File(path) => (
                path.as_os_str().to_string_lossy().into_owned(),
                libc::RTLD_NOW | libc::RTLD_GLOBAL,
            ),
            Candidate::Loaded(soname) => (
                (*soname).to_owned(),
                libc::RTLD_NOW | libc::RTLD_GLOBAL | libc::RTLD_NOLOAD,
            ),
        };
        let Ok(c_name) = CString::new(name.clone()) else {
            tried.push(format!("{candidate} (not a valid path)"));
            continue;
        };
        // SAFETY: `c_name` is a NUL-terminated string alive across the call; a null result is handled. The
        // handle is never closed: NCCL stays loaded for the life of the process.
        let handle = unsafe { libc::dlopen(c_name.as_ptr(), flags) };
        if !handle.is_null() {
            return Ok((handle, name));
        }
        let why = last_dl_error();
        tried.push(match candidate {
            Candidate::File(_) if why.contains(&name) => why,
            Candidate::File(_) => format!("{name}: {why}"),
            Candidate::Loaded(_) => format!("{candidate}: not loaded in this process"),
        });
    }
    Err(format!(
        "NCCL is unavailable: no libnccl could be loaded; looked for: {}. Load libtorch_cuda first (device::init), \
         or set LIBTORCH to the torch directory, or ISOCLR_NCCL_LIBRARY to the libnccl.so.2 libtorch uses",
        tried.join("; ")
    ))
}

fn last_dl_error() -> String {
    // SAFETY: dlerror returns null or a NUL-terminated thread-local string valid until the next dl call,
    // which is copied at once.
    let message = unsafe { libc::dlerror() };
    if message.is_null() {
        return "not found".to_owned();
    }
    // SAFETY: non-null, NUL-terminated, see above.
    unsafe { CStr::from_ptr(message) }.to_string_lossy().into_owned()
}

/// Resolves `name` in `handle` as a function pointer of type `F`.
///
/// # Safety
/// `F` must be an `unsafe extern "C" fn` type matching the C declaration of `name`.
unsafe fn symbol<F: Copy>(handle: *mut c_void, path: &str, name: &str) -> std::result::Result<F, String> {
    let Ok(c_name) = CString::new(name) else {
        return Err(format!("bad symbol name {name}"));
    };
    // SAFETY: `handle` came from a successful dlopen and is never closed; `c_name` is NUL-terminated.
    let address = unsafe { libc::dlsym(handle, c_name.as_ptr()) };
    if address.is_null() {
        return Err(format!("NCCL at {path} lacks {name} (NCCL older than 2.14?)"));
    }
    debug_assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<*mut c_void>());
    // SAFETY: the caller guarantees `F` is the function-pointer type of `name`; a non-null symbol address
    // of a function is a valid value of it, and both are pointer-sized.
    Ok(unsafe { std::mem::transmute_copy::<*mut c_void, F>(&address) })
}

fn load_api() -> std::result::Result<Api, String> {
    let places = candidates(
        std::env::var_os("ISOCLR_NCCL_LIBRARY"),
        std::env::var_os("LIBTORCH"),
        BUILD_LIBTORCH,
    );
    let (handle, path) = open_first(&places)?;
    // SAFETY (for every `symbol` call below): each type is the C signature of the NCCL function of that
    // name in nccl.h (2.14 and later), with enums as c_int and handles as pointers.
    let get_version: unsafe extern "C" fn(*mut c_int) -> c_int = unsafe { symbol(handle, &path, "ncclGetVersion")? };
    let mut version = 0;
    // SAFETY: ncclGetVersion writes one int through the valid pointer.
    let code = unsafe { get_version(&mut version) };
    if code != NCCL_SUCCESS || version < MIN_NCCL_VERSION {
        return Err(format!("NCCL at {path} is version {version}; 2.14 or later is needed"));
    }
    // SAFETY: see above.
    unsafe {
        Ok(Api {
            version,
            get_unique_id: symbol(handle, &path, "ncclGetUniqueId")?,
            init_rank_config: symbol(handle, &path, "ncclCommInitRankConfig")?,
            async_error: symbol(handle, &path, "ncclCommGetAsyncError")?,
            abort: symbol(handle, &path, "ncclCommAbort")?,
            destroy: symbol(handle, &path, "ncclCommDestroy")?,
            error_string: symbol(handle, &path, "ncclGetErrorString")?,
            last_error: symbol(handle, &path, "ncclGetLastError")?,
            all_reduce: symbol(handle, &path, "ncclAllReduce")?,
            all_gather: symbol(handle, &path, "ncclAllGather")?,
            broadcast: symbol(handle, &path, "ncclBroadcast")?,
            path,
        })
    }
}

/// The process's NCCL, loaded once.
fn api() -> Result<&'static Api> {
    static API: OnceLock<std::result::Result<Api, String>> = OnceLock::new();
    API.get_or_init(load_api)
        .as_ref()
        .map_err(|why| DistError::Unavailable(why.clone()))
}

fn c_text(text: *const c_char) -> String {
    if text.is_null() {
        return String::new();
    }
    // SAFETY: NCCL returns null or a NUL-terminated string that lives at least until the next NCCL call.
    unsafe { CStr::from_ptr(text) }.to_string_lossy().into_owned()
}

/// `NCCL_CONFIG_INITIALIZER` with `blocking = 0`: every other field "undefined" (INT_MIN / null).
fn nonblocking_config() -> ncclConfig_t {
    const UNDEF: c_int = c_int::MIN;
    ncclConfig_t {
        size: std::mem::size_of::<ncclConfig_t>(),
        magic: 0xcafe_beef,
        version: 22800, // NCCL_VERSION(2, 28, 0): the layout of cudarc's `nccl-02028` bindings.
        blocking: 0,
        cgaClusterSize: UNDEF,
        minCTAs: UNDEF,
        maxCTAs: UNDEF,
        netName: ptr::null(),
        splitShare: UNDEF,
        trafficClass: UNDEF,
        commName: ptr::null(),
        collnetEnable: UNDEF,
        CTAPolicy: UNDEF,
        shrinkShare: UNDEF,
        nvlsCTAs: UNDEF,
        nChannelsPerNetPeer: UNDEF,
        nvlinkCentricSched: UNDEF,
    }
}

/// A CUDA driver failure as an unavailable backend.
fn cuda_error(what: &str, device: usize, e: cu::DriverError) -> DistError {
    DistError::Unavailable(format!("CUDA: {what} on cuda:{device} failed: {e}"))
}

/// An NCCL communicator of one rank on one CUDA device; implements [`Collective`] by staging host buffers
/// through device memory (slow: use the `*_device` methods in trainers).
pub struct NcclComm {
    api: &'static Api,
    /// Null once destroyed or aborted.
    comm: RawComm,
    rank: usize,
    world: usize,
    device: usize,
    cu_device: cusys::CUdevice,
    ctx: cusys::CUcontext,
    event: cusys::CUevent,
    /// Device staging buffer of the host-slice collectives and its size in bytes.
    staging: Option<(cusys::CUdeviceptr, usize)>,
    op_timeout: Duration,
    broken: Option<String>,
}

// SAFETY: an NCCL communicator and a CUDA primary context may be used from any thread as long as calls are
// not concurrent; every method takes `&mut self` (or `&self` for plain getters), and each call that uses the
// communicator first makes the context current on the calling thread.
unsafe impl Send for NcclComm {}

impl std::fmt::Debug for NcclComm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NcclComm")
            .field("rank", &self.rank)
            .field("world", &self.world)
            .field("device", &self.device)
            .field("library", &self.api.path)
            .field("broken", &self.broken)
            .finish()
    }
}

impl NcclComm {
    /// A fresh NCCL unique id, made on rank 0 and handed to every rank by the coordinator. Needs libnccl
    /// but no GPU.
    pub fn unique_id() -> Result<[u8; 128]> {
        let api = api()?;
        let mut id = UniqueId { internal: [0; 128] };
        // SAFETY: ncclGetUniqueId writes one ncclUniqueId through the valid pointer.
        let code = unsafe { (api.get_unique_id)(&mut id) };
        if code != NCCL_SUCCESS {
            // SAFETY: ncclGetErrorString accepts any code and returns a static string.
            let why = c_text(unsafe { (api.error_string)(code) });
            return Err(DistError::Unavailable(format!("ncclGetUniqueId failed: {why}")));
        }
        Ok(id.internal)
    }

    /// The libnccl in use (path and version code, e.g. 22809 for 2.28.9), loading it if needed.
    pub fn library() -> Result<(String, i32)> {
        api().map(|api| (api.path.clone(), api.version))
    }

    /// Joins the communicator `unique_id` as `rank` of `world_size` on CUDA device `device`. Returns once
    /// every rank has joined, or fails after `timeout` (which also bounds every later wait; see
    /// [`NcclComm::set_op_timeout`]). Without libnccl or CUDA it fails with [`DistError::Unavailable`].
    pub fn new(
        unique_id: &[u8; 128],
        rank: usize,
        world_size: usize,
        device: usize,
        timeout: Duration,
    ) -> Result<Self> {
        if rank >= world_size {
            return Err(DistError::Invalid {
                op: "nccl_init",
                why: format!("rank {rank} outside a world of {world_size}"),
            });
        }
        let (Ok(c_rank), Ok(c_world), Ok(c_device)) = (
            c_int::try_from(rank),
            c_int::try_from(world_size),
            c_int::try_from(device),
        ) else {
            return Err(DistError::Invalid {
                op: "nccl_init",
                why: "rank, world size or device too large".to_owned(),
            });
        };
        let api = api()?;
        // SAFETY: probes for the driver library with a plain dlopen; no preconditions. cudarc's driver calls
        // below would panic without it.
        if !unsafe { cusys::is_culib_present() } {
            return Err(DistError::Unavailable(
                "NCCL needs CUDA, but the CUDA driver library (libcuda.so / libcuda.so.1) is not present".to_owned(),
            ));
        }
        cu::init().map_err(|e| cuda_error("cuInit", device, e))?;
        let count = cu::device::get_count().map_err(|e| cuda_error("counting devices", device, e))?;
        if c_device >= count {
            return Err(DistError::Unavailable(format!(
                "cuda:{device} requested but {count} CUDA device(s) visible"
            )));
        }
        let cu_device = cu::device::get(c_device).map_err(|e| cuda_error("cuDeviceGet", device, e))?;
        // SAFETY: `cu_device` is a valid device handle; the retained context is released in `Drop` (or below).
        let ctx = unsafe { cu::primary_ctx::retain(cu_device) }.map_err(|e| cuda_error("retaining", device, e))?;
        let release = |e: DistError| {
            // SAFETY: releases the retain above; nothing uses the context afterwards.
            let _ = unsafe { cu::primary_ctx::release(cu_device) };
            e
        };
        // SAFETY: `ctx` is the live primary context just retained.
        unsafe { cu::ctx::set_current(ctx) }.map_err(|e| release(cuda_error("cuCtxSetCurrent", device, e)))?;
        let event = cu::event::create(cusys::CUevent_flags::CU_EVENT_DISABLE_TIMING)
            .map_err(|e| release(cuda_error("cuEventCreate", device, e)))?;
        let mut this = NcclComm {
            api,
            comm: ptr::null_mut(),
            rank,
            world: world_size,
            device,
            cu_device,
            ctx,
            event,
            staging: None,
            op_timeout: timeout,
            broken: None,
        };
        let mut config = nonblocking_config();
        let id = UniqueId { internal: *unique_id };
        // SAFETY: `this.comm` and `config` are valid for writes/reads; the id is passed by value as in the C
        // declaration; the context of `device` is current, which is how NCCL picks the device.
        let code = unsafe { (api.init_rank_config)(&mut this.comm, c_world, id, c_rank, &mut config) };
        this.settle("nccl_init", code)?;
        Ok(this)
    }

    /// This rank's CUDA device ordinal.
    pub fn device(&self) -> usize {
        self.device
    }

    /// Changes the longest wait of later operations.
    pub fn set_op_timeout(&mut self, t: Duration) {
        self.op_timeout = t;
    }

    /// Sums or averages `len` f32 values in place at device address `ptr` across ranks. Enqueues on the
    /// legacy default stream and returns without waiting for the GPU (call [`NcclComm::synchronize`] to
    /// wait).
    ///
    /// # Safety
    /// `ptr` must be the address of at least `len` f32 values of device memory on this comm's device (e.g.
    /// a contiguous f32 CUDA tensor's `data_ptr()`), alive and not written by anyone else until the
    /// operation has completed on the stream.
    pub unsafe fn all_reduce_device(&mut self, ptr: u64, len: usize, op: ReduceOp) -> Result<()> {
        self.enter("all_reduce")?;
        let red = if op == ReduceOp::Mean { NCCL_AVG } else { NCCL_SUM };
        let buf = ptr as *mut c_void;
        // SAFETY: the caller guarantees `ptr`; the communicator is live; stream null = legacy default stream.
        let code = unsafe { (self.api.all_reduce)(buf, buf, len, NCCL_FLOAT32, red, self.comm, ptr::null_mut()) };
        self.settle("all_reduce", code)
    }

    /// Gathers every rank's `len` values at `send` into `recv` (`world_size · len` values, rank order).
    /// Enqueues on the legacy default stream without waiting.
    ///
    /// # Safety
    /// `send` (`len` f32) and `recv` (`world_size · len` f32) must be device memory on this comm's device,
    /// alive until the operation has completed; `recv` must not overlap `send` except exactly as NCCL's
    /// in-place form (`send == recv + rank · len · 4`).
    pub unsafe fn all_gather_device(&mut self, send: u64, recv: u64, len: usize) -> Result<()> {
        self.enter("all_gather")?;
        let (src, dst) = (send as *const c_void, recv as *mut c_void);
        // SAFETY: the caller guarantees both buffers; stream null = legacy default stream.
        let code = unsafe { (self.api.all_gather)(src, dst, len, NCCL_FLOAT32, self.comm, ptr::null_mut()) };
        self.settle("all_gather", code)
    }

    /// Copies `root`'s `len` values at `ptr` to every rank's `ptr`. Enqueues without waiting.
    ///
    /// # Safety
    /// As for [`NcclComm::all_reduce_device`].
    pub unsafe fn broadcast_device(&mut self, ptr: u64, len: usize, root: usize) -> Result<()> {
        self.enter("broadcast")?;
        if root >= self.world {
            return Err(DistError::Invalid {
                op: "broadcast",
                why: format!("root {root} outside a world of {}", self.world),
            });
        }
        let buf = ptr as *mut c_void;
        // SAFETY: the caller guarantees `ptr`; `root` < world fits in c_int as world does.
        let code =
            unsafe { (self.api.broadcast)(buf, buf, len, NCCL_FLOAT32, root as c_int, self.comm, ptr::null_mut()) };
        self.settle("broadcast", code)
    }

    /// Waits until everything enqueued so far on the legacy default stream has finished (NCCL operations
    /// included), for at most the op timeout; on a timeout or an NCCL error the communicator is aborted.
    pub fn synchronize(&mut self) -> Result<()> {
        self.enter("synchronize")?;
        self.wait_stream("synchronize")
    }

    /// Makes the context current and refuses a broken communicator.
    fn enter(&mut self, op: &'static str) -> Result<()> {
        if let Some(why) = &self.broken {
            return Err(DistError::Invalid {
                op,
                why: format!("NCCL communicator unusable after an earlier error: {why}"),
            });
        }
        // SAFETY: `self.ctx` is the primary context retained in `new` and released only in `Drop`.
        unsafe { cu::ctx::set_current(self.ctx) }
            .map_err(|e| self.fail(op, cuda_error("cuCtxSetCurrent", self.device, e)))
    }

    /// Handles an NCCL return code: polls a non-blocking communicator until the call has been taken up.
    fn settle(&mut self, op: &'static str, code: c_int) -> Result<()> {
        match code {
            NCCL_SUCCESS => Ok(()),
            NCCL_IN_PROGRESS => {
                let deadline = Instant::now() + self.op_timeout;
                loop {
                    let state = self.async_state(op)?;
                    if state != NCCL_IN_PROGRESS {
                        return Ok(());
                    }
                    if Instant::now() >= deadline {
                        return Err(self.timeout(op));
                    }
                    thread::sleep(Duration::from_micros(200));
                }
            }
            code => Err(self.nccl_error(op, code)),
        }
    }

    /// The communicator's asynchronous state; an error state fails (and aborts) it.
    fn async_state(&mut self, op: &'static str) -> Result<c_int> {
        let mut state = NCCL_SUCCESS;
        // SAFETY: the communicator is live (non-null until aborted/destroyed); `state` is a valid int.
        let code = unsafe { (self.api.async_error)(self.comm, &mut state) };
        if code != NCCL_SUCCESS {
            return Err(self.nccl_error(op, code));
        }
        if state != NCCL_SUCCESS && state != NCCL_IN_PROGRESS {
            return Err(self.nccl_error(op, state));
        }
        Ok(state)
    }

    /// Polls an event recorded on the legacy default stream until it completes, checking NCCL's
    /// asynchronous errors meanwhile.
    fn wait_stream(&mut self, op: &'static str) -> Result<()> {
        // SAFETY: the event was created in `new` in the current context; stream null = legacy stream.
        unsafe { cu::event::record(self.event, ptr::null_mut()) }
            .map_err(|e| self.fail(op, cuda_error("cuEventRecord", self.device, e)))?;
        let deadline = Instant::now() + self.op_timeout;
        let mut pause = Duration::from_micros(20);
        loop {
            // SAFETY: a live event of the current context.
            match unsafe { cu::event::query(self.event) } {
                Ok(()) => return Ok(()),
                Err(cu::DriverError(cusys::CUresult::CUDA_ERROR_NOT_READY)) => {}
                Err(e) => return Err(self.fail(op, cuda_error("cuEventQuery", self.device, e))),
            }
            self.async_state(op)?;
            if Instant::now() >= deadline {
                return Err(self.timeout(op));
            }
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(1));
        }
    }

    /// Aborts the communicator (so no NCCL kernel waits forever) and marks it broken.
    fn fail(&mut self, op: &'static str, error: DistError) -> DistError {
        self.broken = Some(format!("{op}: {error}"));
        if !self.comm.is_null() {
            // SAFETY: a live communicator, aborted once and then forgotten.
            unsafe { (self.api.abort)(self.comm) };
            self.comm = ptr::null_mut();
        }
        error
    }

    fn timeout(&mut self, op: &'static str) -> DistError {
        let error = DistError::Timeout {
            op,
            peer: self.rank,
            addr: format!(
                "this rank's NCCL communicator on cuda:{}; NCCL does not say which peer stalled",
                self.device
            ),
            timeout: self.op_timeout,
        };
        self.fail(op, error)
    }

    fn nccl_error(&mut self, op: &'static str, code: c_int) -> DistError {
        // SAFETY: ncclGetErrorString takes any code; ncclGetLastError takes a communicator or null.
        let (name, last) = unsafe {
            (
                c_text((self.api.error_string)(code)),
                c_text((self.api.last_error)(self.comm)),
            )
        };
        let why = format!("NCCL error {code} ({name}): {last}");
        let error = if code == NCCL_INVALID_ARGUMENT || code == NCCL_INVALID_USAGE {
            DistError::Invalid { op, why }
        } else {
            DistError::Unavailable(format!("{op} on rank {} (cuda:{}): {why}", self.rank, self.device))
        };
        self.fail(op, error)
    }

    /// A device staging buffer of at least `bytes` bytes.
    fn stage(&mut self, op: &'static str, bytes: usize) -> Result<cusys::CUdeviceptr> {
        let bytes = bytes.max(4);
        if let Some((ptr, size)) = self.staging {
            if size >= bytes {
                return Ok(ptr);
            }
            self.staging = None;
            // SAFETY: `ptr` was allocated by cuMemAlloc in this context; the stream is idle (every staged
            // operation waits for completion), so nothing uses it.
            let _ = unsafe { cu::free_sync(ptr) };
        }
        // SAFETY: a plain device allocation in the current context.
        let ptr =
            unsafe { cu::malloc_sync(bytes) }.map_err(|e| self.fail(op, cuda_error("cuMemAlloc", self.device, e)))?;
        self.staging = Some((ptr, bytes));
        Ok(ptr)
    }

    fn upload(&mut self, op: &'static str, dst: cusys::CUdeviceptr, src: &[f32]) -> Result<()> {
        if src.is_empty() {
            return Ok(());
        }
        // SAFETY: `dst` has room for `src` (sized by `stage`); synchronous copy in the current context.
        unsafe { cu::memcpy_htod_sync(dst, src) }.map_err(|e| self.fail(op, cuda_error("cuMemcpyHtoD", self.device, e)))
    }

    fn download(&mut self, op: &'static str, dst: &mut [f32], src: cusys::CUdeviceptr) -> Result<()> {
        if dst.is_empty() {
            return Ok(());
        }
        // SAFETY: `src` holds at least `dst.len()` values; synchronous copy on the legacy stream, after
        // `wait_stream` saw the collective finish.
        unsafe { cu::memcpy_dtoh_sync(dst, src) }.map_err(|e| self.fail(op, cuda_error("cuMemcpyDtoH", self.device, e)))
    }
}

impl Collective for NcclComm {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world
    }

    fn all_reduce(&mut self, buffer: &mut [f32], op: ReduceOp) -> Result<()> {
        self.enter("all_reduce")?;
        let dev = self.stage("all_reduce", std::mem::size_of_val(buffer))?;
        self.upload("all_reduce", dev, buffer)?;
        // SAFETY: `dev` holds `buffer.len()` f32 of this device and is only reused after the wait below.
        unsafe { self.all_reduce_device(dev, buffer.len(), op)? };
        self.wait_stream("all_reduce")?;
        self.download("all_reduce", buffer, dev)
    }

    fn all_gather(&mut self, local: &[f32], out: &mut [f32]) -> Result<()> {
        self.enter("all_gather")?;
        if out.len() != self.world * local.len() {
            return Err(DistError::Invalid {
                op: "all_gather",
                why: format!(
                    "output holds {} values, expected {} × {}",
                    out.len(),
                    self.world,
                    local.len()
                ),
            });
        }
        let send_bytes = std::mem::size_of_val(local);
        let dev = self.stage("all_gather", send_bytes + std::mem::size_of_val(out))?;
        let recv = dev + send_bytes as u64;
        self.upload("all_gather", dev, local)?;
        // SAFETY: `dev` holds `local.len()` values followed by `out.len()` values, disjoint.
        unsafe { self.all_gather_device(dev, recv, local.len())? };
        self.wait_stream("all_gather")?;
        self.download("all_gather", out, recv)
    }

    fn broadcast(&mut self, buffer: &mut [f32], root: usize) -> Result<()> {
        self.enter("broadcast")?;
        let dev = self.stage("broadcast", std::mem::size_of_val(buffer))?;
        self.upload("broadcast", dev, buffer)?;
        // SAFETY: as in `all_reduce`.
        unsafe { self.broadcast_device(dev, buffer.len(), root)? };
        self.wait_stream("broadcast")?;
        self.download("broadcast", buffer, dev)
    }

    fn barrier(&mut self) -> Result<()> {
        self.all_reduce(&mut [0.0], ReduceOp::Sum)
    }

    fn device_collective(&mut self) -> Option<&mut dyn DeviceCollective> {
        Some(self)
    }
}

impl DeviceCollective for NcclComm {
    unsafe fn all_reduce_device(&mut self, ptr: u64, len: usize, op: ReduceOp) -> Result<()> {
        // SAFETY: the caller upholds the trait's contract, which is the inherent method's.
        unsafe { NcclComm::all_reduce_device(self, ptr, len, op) }
    }

    unsafe fn all_gather_device(&mut self, send: u64, recv: u64, len: usize) -> Result<()> {
        // SAFETY: as above.
        unsafe { NcclComm::all_gather_device(self, send, recv, len) }
    }
}

impl Drop for NcclComm {
    fn drop(&mut self) {
        // SAFETY (whole function): the context, event, staging buffer and communicator were created in `new`
        // and are released exactly once here; errors cannot be reported from a destructor and are ignored.
        unsafe {
            let _ = cu::ctx::set_current(self.ctx);
            if !self.comm.is_null() {
                if self.wait_stream("drop").is_ok() && !self.comm.is_null() {
                    (self.api.destroy)(self.comm);
                    self.comm = ptr::null_mut();
                } else if !self.comm.is_null() {
                    (self.api.abort)(self.comm);
                    self.comm = ptr::null_mut();
                }
            }
            if let Some((ptr, _)) = self.staging.take() {
                let _ = cu::free_sync(ptr);
            }
            let _ = cu::event::destroy(self.event);
            let _ = cu::primary_ctx::release(self.cu_device);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_follow_the_documented_order() {
        let found = candidates(
            Some("/x/libnccl.so.2".into()),
            Some("/other/torch".into()),
            Some("/venv/torch"),
        );
        let expected = [
            Candidate::File("/x/libnccl.so.2".into()),
            Candidate::Loaded("libnccl.so.2"),
            Candidate::File(PathBuf::from("/other/torch").join(WHEEL_NCCL)),
            Candidate::File(PathBuf::from("/venv/torch").join(WHEEL_NCCL)),
        ];
        assert_eq!(found, expected);
        let same = candidates(None, Some("/venv/torch".into()), Some("/venv/torch"));
        assert_eq!(same.len(), 2, "one torch directory is tried once: {same:?}");
        assert_eq!(candidates(None, None, None), [Candidate::Loaded("libnccl.so.2")]);
    }

    #[test]
    fn a_missing_library_names_every_place_tried() {
        let places = [
            Candidate::File("/nonexistent/libnccl.so.2".into()),
            Candidate::Loaded("libnccl-nope.so.9"),
        ];
        let why = open_first(&places).err().unwrap_or_default();
        assert!(
            why.contains("/nonexistent/libnccl.so.2") && why.contains("libnccl-nope.so.9"),
            "{why}"
        );
    }

    #[test]
    fn unique_id_works_or_is_cleanly_unavailable() {
        match NcclComm::unique_id() {
            Ok(id) => assert!(id.iter().any(|&b| b != 0)),
            Err(DistError::Unavailable(why)) => assert!(why.contains("looked for"), "{why}"),
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }

    #[test]
    fn bad_ranks_are_invalid() {
        let result = NcclComm::new(&[0; 128], 2, 2, 0, Duration::from_secs(1));
        assert!(matches!(result, Err(DistError::Invalid { .. })), "{result:?}");
    }

    /// Without CUDA (or NCCL) creating a communicator fails with `Unavailable`; with a GPU, a world of one
    /// runs every collective.
    #[test]
    fn creating_a_comm_is_unavailable_without_cuda_and_works_with_it() {
        // SAFETY: a plain probe for the driver library.
        let cuda = unsafe { cusys::is_culib_present() };
        let id = match NcclComm::unique_id() {
            Ok(id) => id,
            Err(e) => {
                let result = NcclComm::new(&[0; 128], 0, 1, 0, Duration::from_secs(5));
                assert!(matches!(result, Err(DistError::Unavailable(_))), "{e}: {result:?}");
                return;
            }
        };
        let result = NcclComm::new(&id, 0, 1, 0, Duration::from_secs(60));
        if !cuda {
            match result {
                Err(DistError::Unavailable(why)) => assert!(why.contains("CUDA"), "{why}"),
                other => panic!("expected Unavailable without CUDA, got {other:?}"),
            }
            return;
        }
        let Ok(mut comm) = result else {
            // A driver without a usable device (e.g. no GPU visible): must still be a clean error.
            assert!(matches!(result, Err(DistError::Unavailable(_))), "{result:?}");
            return;
        };
        let mut buf = vec![1.0f32, 2.0, 3.0];
        comm.all_reduce(&mut buf, ReduceOp::Sum).unwrap();
        assert_eq!(buf, [1.0, 2.0, 3.0]);
        comm.all_reduce(&mut buf, ReduceOp::Mean).unwrap();
        assert_eq!(buf, [1.0, 2.0, 3.0]);
        let mut out = [0.0f32; 3];
        comm.all_gather(&buf, &mut out).unwrap();
        assert_eq!(out, [1.0, 2.0, 3.0]);
        comm.broadcast(&mut buf, 0).unwrap();
        comm.barrier().unwrap();
        assert!(matches!(comm.broadcast(&mut buf, 1), Err(DistError::Invalid { .. })));
        let big: Vec<f32> = (0..1_000_000).map(|i| i as f32).collect();
        let mut back = big.clone();
        comm.all_reduce(&mut back, ReduceOp::Sum).unwrap();
        assert_eq!(back, big);
        comm.synchronize().unwrap();
    }
}
