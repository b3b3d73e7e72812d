//! Catching a libtorch failure as a value. tch's infallible forms (`a * b`, `conv1d`, `backward`, …) panic
//! when libtorch fails; written in their fallible forms, the hundred-odd operations of the encoder, the
//! norms and the loss would no longer read as the method's mathematics. So the places that run tensor work
//! on user-sized inputs (the training step, the held-out evaluation, embedding, calibration, the probes'
//! from-scratch baseline) run it inside [`catch_libtorch_failure`] and turn a failure into their own typed
//! error. A panic that is not a libtorch failure (a bug) unwinds on.
//!
//! The panic hook still runs before the boundary sees the failure; [`report_only_unguarded_panics`], called
//! once by the binary's `main`, keeps it from printing a panic report for a failure that becomes an error.

use std::any::Any;
use std::cell::Cell;
use std::panic::AssertUnwindSafe;

thread_local! {
    /// Whether this thread is inside [`catch_libtorch_failure`].
    static GUARDED: Cell<bool> = const { Cell::new(false) };
}

/// What tch's infallible forms panic with: `called `Result::unwrap()` on an `Err` value: Torch("…")`.
const TORCH_ERROR: &str = "`Err` value: Torch(\"";

/// A failure of libtorch inside [`catch_libtorch_failure`]: the first line of its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibtorchFailure {
    /// What libtorch said (its C++ backtrace dropped).
    pub message: String,
}

impl LibtorchFailure {
    /// Whether libtorch ran out of memory: CUDA's caching allocator says "out of memory", the CPU
    /// allocator "not enough memory", or "can't allocate memory … (Cannot allocate memory)" when the
    /// system refuses.
    pub fn is_out_of_memory(&self) -> bool {
        let lowered = self.message.to_lowercase();
        [
            "out of memory",
            "not enough memory",
            "can't allocate memory",
            "cannot allocate memory",
        ]
        .iter()
        .any(|sign| lowered.contains(sign))
    }
}

impl std::fmt::Display for LibtorchFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Runs `work`, returning libtorch's failure inside it as a value. After a failure the state `work` was
/// changing may be part-way through: callers end what they were doing with an error.
pub fn catch_libtorch_failure<R>(work: impl FnOnce() -> R) -> Result<R, LibtorchFailure> {
    let outer = GUARDED.replace(true);
    // The work's state is not used after a failure (see above), so observing it part-way cannot happen.
    let result = std::panic::catch_unwind(AssertUnwindSafe(work));
    GUARDED.set(outer);
    result.map_err(|payload| match libtorch_message(payload.as_ref()) {
        Some(message) => LibtorchFailure { message },
        None => std::panic::resume_unwind(payload),
    })
}

/// Replaces the panic hook with one that stays silent for libtorch failures inside
/// [`catch_libtorch_failure`] (they become errors, reported once by the caller) and reports every other
/// panic as before.
pub fn report_only_unguarded_panics() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let becomes_an_error = GUARDED.get() && libtorch_message(info.payload()).is_some();
        if !becomes_an_error {
            report(info);
        }
    }));
}

/// libtorch's message, when a panic payload is a tch failure.
fn libtorch_message(payload: &(dyn Any + Send)) -> Option<String> {
    let text =
        (payload.downcast_ref::<String>().map(String::as_str)).or_else(|| payload.downcast_ref::<&str>().copied())?;
    let start = text.find(TORCH_ERROR)? + TORCH_ERROR.len();
    let quoted = text[start..].strip_suffix("\")").unwrap_or(&text[start..]);
    let message = quoted.replace("\\n", "\n").replace("\\\"", "\"");
    // libtorch appends a C++ backtrace ("Exception raised from …"): the first line says what happened.
    Some(message.lines().next().unwrap_or_default().trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_libtorch_failures_are_read_as_such() {
        let payload: Box<dyn Any + Send> = Box::new(String::from(
            "called `Result::unwrap()` on an `Err` value: Torch(\"DefaultCPUAllocator: not enough memory: \
             you tried to allocate 8 bytes.\\nException raised from …\")",
        ));
        let message = libtorch_message(payload.as_ref());
        assert_eq!(
            message.as_deref(),
            Some("DefaultCPUAllocator: not enough memory: you tried to allocate 8 bytes.")
        );
        assert!(
            LibtorchFailure {
                message: message.unwrap()
            }
            .is_out_of_memory()
        );
        let bug: Box<dyn Any + Send> = Box::new("index out of bounds: the len is 3 but the index is 7");
        assert_eq!(libtorch_message(bug.as_ref()), None);
    }

    #[test]
    fn a_failing_operation_becomes_a_value_and_a_bug_still_panics() {
        // Adding tensors of sizes 2 and 3 is refused by libtorch.
        let failed = catch_libtorch_failure(|| {
            (tch::Tensor::zeros([2], tch::kind::FLOAT_CPU) + tch::Tensor::zeros([3], tch::kind::FLOAT_CPU)).size()
        });
        let failure = failed.expect_err("libtorch refuses the sum");
        assert!(failure.message.contains("size of tensor a (2)"), "{failure}");
        assert!(!failure.is_out_of_memory());
        let bug = std::panic::catch_unwind(|| catch_libtorch_failure(|| panic!("a bug")));
        assert!(bug.is_err(), "a panic that is not libtorch's unwinds on");
        assert!(!GUARDED.get(), "the guard is lifted after an unwinding bug too");
    }
}
