//! The error boundary of a step's tensor work. tch's infallible forms (`a * b`, `conv1d`, `backward`, …)
//! panic when libtorch fails; written in their fallible forms, the hundred-odd operations of the encoder,
//! the norms and the loss would no longer read as the method's mathematics. So the step and the held-out
//! evaluation run inside [`guarded`], which turns a libtorch failure anywhere in them into a typed error:
//! [`TrainError::OutOfMemory`] naming the largest micro-batch and what to lower, or
//! [`TrainError::Tensor`]. A panic that is not a libtorch failure (a bug) unwinds on as before.
//!
//! The panic hook still runs before the boundary sees the failure; [`report_only_unguarded_panics`], called
//! once by the binary's `main`, keeps it from printing a panic report for a failure that becomes an error.

use std::any::Any;
use std::cell::Cell;
use std::panic::AssertUnwindSafe;

use crate::data::StepBatch;

use super::TrainError;

thread_local! {
    /// Whether this thread is inside [`guarded`].
    static GUARDED: Cell<bool> = const { Cell::new(false) };
}

/// What tch's infallible forms panic with: `called `Result::unwrap()` on an `Err` value: Torch("…")`.
const TORCH_ERROR: &str = "`Err` value: Torch(\"";

/// Runs `work`, the tensor work on `batch` (`what`: "training step", "held-out evaluation"), returning
/// libtorch's failure inside it as an error. After such an error the model and optimiser may be part-way
/// through the step: the run ends with the error.
pub fn guarded<R>(
    what: &'static str,
    batch: &StepBatch,
    positions_per_pass: usize,
    work: impl FnOnce() -> Result<R, TrainError>,
) -> Result<R, TrainError> {
    let outer = GUARDED.replace(true);
    // The work's state is not used after a failure (see above), so observing it part-way cannot happen.
    let result = std::panic::catch_unwind(AssertUnwindSafe(work));
    GUARDED.set(outer);
    match result {
        Ok(result) => result,
        Err(payload) => match libtorch_message(payload.as_ref()) {
            Some(message) => Err(classify(what, batch, positions_per_pass, message)),
            None => std::panic::resume_unwind(payload),
        },
    }
}

/// Replaces the panic hook with one that stays silent for libtorch failures inside [`guarded`] (they
/// become errors, reported once by the caller) and reports every other panic as before.
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

fn classify(what: &'static str, batch: &StepBatch, positions_per_pass: usize, message: String) -> TrainError {
    let step = batch.step;
    let lowered = message.to_lowercase();
    // CUDA's caching allocator: "out of memory"; the CPU allocator: "not enough memory", or "can't allocate
    // memory … (Cannot allocate memory)" when the system refuses.
    let signs = [
        "out of memory",
        "not enough memory",
        "can't allocate memory",
        "cannot allocate memory",
    ];
    if signs.iter().any(|sign| lowered.contains(sign)) {
        let largest = (batch.micro.iter())
            .max_by_key(|m| m.lines * m.padded_len)
            .map_or((0, 0), |m| (m.lines, m.padded_len));
        return TrainError::OutOfMemory {
            what,
            step,
            lines: largest.0,
            padded_len: largest.1,
            positions_per_pass,
            message,
        };
    }
    TrainError::Tensor {
        what: format!("step {step}: {what}"),
        source: tch::TchError::Torch(message),
    }
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
        assert_eq!(
            libtorch_message(payload.as_ref()).as_deref(),
            Some("DefaultCPUAllocator: not enough memory: you tried to allocate 8 bytes.")
        );
        let bug: Box<dyn Any + Send> = Box::new("index out of bounds: the len is 3 but the index is 7");
        assert_eq!(libtorch_message(bug.as_ref()), None);
    }

    #[test]
    fn a_failing_operation_becomes_an_error_and_a_bug_still_panics() {
        let batch = StepBatch {
            step: 4,
            offset: 0,
            global_pairs: 0,
            pairs: Vec::new(),
            micro: Vec::new(),
        };
        let failed = guarded("training step", &batch, 1024, || {
            // Adding tensors of sizes 2 and 3 is refused by libtorch.
            let sum = tch::Tensor::zeros([2], tch::kind::FLOAT_CPU) + tch::Tensor::zeros([3], tch::kind::FLOAT_CPU);
            Ok(sum.size())
        });
        match failed {
            Err(TrainError::Tensor { what, source }) => {
                assert_eq!(what, "step 4: training step");
                assert!(source.to_string().contains("size of tensor a (2)"), "{source}");
            }
            other => panic!("expected a tensor error, got {other:?}"),
        }
        let bug = std::panic::catch_unwind(|| {
            guarded("training step", &batch, 1024, || -> Result<(), TrainError> {
                panic!("a bug")
            })
        });
        assert!(
            bug.is_err(),
            "a panic that is not libtorch's is not turned into an error"
        );
        assert!(!GUARDED.get(), "the guard is lifted after a panic");
    }
}
