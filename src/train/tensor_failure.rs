//! The error boundary of a step's tensor work: the step and the held-out evaluation run inside [`guarded`],
//! which turns a libtorch failure anywhere in them (see [`crate::device::failure`]) into a typed error:
//! [`TrainError::OutOfMemory`] naming the largest micro-batch and what to lower, or [`TrainError::Tensor`].

use crate::data::StepBatch;
use crate::device::failure::{LibtorchFailure, catch_libtorch_failure};

use super::TrainError;

/// Runs `work`, the tensor work on `batch` (`what`: "training step", "held-out evaluation"), returning
/// libtorch's failure inside it as an error. After such an error the model and optimiser may be part-way
/// through the step: the run ends with the error.
pub fn guarded<R>(
    what: &'static str,
    batch: &StepBatch,
    positions_per_pass: usize,
    work: impl FnOnce() -> Result<R, TrainError>,
) -> Result<R, TrainError> {
    catch_libtorch_failure(work).unwrap_or_else(|failure| Err(classify(what, batch, positions_per_pass, failure)))
}

fn classify(what: &'static str, batch: &StepBatch, positions_per_pass: usize, failure: LibtorchFailure) -> TrainError {
    let step = batch.step;
    if failure.is_out_of_memory() {
        let largest = (batch.micro.iter())
            .max_by_key(|m| m.lines * m.padded_len)
            .map_or((0, 0), |m| (m.lines, m.padded_len));
        return TrainError::OutOfMemory {
            what,
            step,
            lines: largest.0,
            padded_len: largest.1,
            positions_per_pass,
            message: failure.message,
        };
    }
    TrainError::Tensor {
        what: format!("step {step}: {what}"),
        source: tch::TchError::Torch(failure.message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_operation_becomes_an_error_naming_the_step() {
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
    }
}
