//! What the benchmark programs read from their environment alike: numeric settings and the device. Each
//! bench that uses it includes this file with `mod common;`.

use tch::Device;

/// `key` parsed from the environment, or `default` when unset; an unparsable value stops the bench, naming
/// the key.
pub fn setting<T: std::str::FromStr>(key: &str, default: T) -> T {
    match std::env::var(key) {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| panic!("{key}={v:?} is not valid")),
        Err(_) => default,
    }
}

/// The device of `ISOCLR_BENCH_DEVICE` (`cpu`, the default, or `cuda`: GPU 0). For CUDA it loads libtorch's
/// CUDA backend first (rustc drops libtorch_cuda at link time, so without it the first CUDA tensor fails;
/// `isoclr` itself does the same at start-up), and stops the bench when no GPU is seen.
pub fn device() -> Device {
    let device = match std::env::var("ISOCLR_BENCH_DEVICE").as_deref() {
        Err(_) | Ok("cpu") => Device::Cpu,
        Ok("cuda") => Device::Cuda(0),
        Ok(other) => panic!("ISOCLR_BENCH_DEVICE={other:?} is not valid (cpu or cuda)"),
    };
    if device.is_cuda() {
        isoclr::device::init();
        assert!(
            tch::Cuda::is_available(),
            "ISOCLR_BENCH_DEVICE=cuda but libtorch sees no CUDA device (is torch's lib directory on LD_LIBRARY_PATH?)"
        );
    }
    device
}
