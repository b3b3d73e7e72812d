//! The batch receiver: opens the rank's stream on the client's runtime, then a background thread takes
//! each message, checks that it is the next step and a valid shard, converts it (e.g. `Shard::encode`), and
//! hands it to the training thread through a bounded channel, so the training thread never decodes or waits
//! on the network in steady state.
//!
//! Must not import tch, the model or train modules, or the coordinator.

use std::sync::mpsc;

use isoclr_proto::v1::StreamBatchesRequest;
use tracing::debug;

use super::wire::{WireError, shard_from_message};
use super::{Result, WorkerClient, WorkerError};
use crate::data::batch::Shard;

/// Opens `rank`'s stream from `from_step` and starts the thread that feeds the returned channel.
pub(super) fn spawn<T: Send + 'static>(
    client: &WorkerClient,
    rank: usize,
    from_step: u64,
    prefetch: usize,
    convert: impl Fn(Shard) -> T + Send + 'static,
) -> Result<mpsc::Receiver<Result<T>>> {
    let timeout = client.rpc_timeout;
    let mut rpc = client.client.clone();
    let mut stream = client.runtime.block_on(async move {
        let request = tonic::Request::new(StreamBatchesRequest {
            rank: rank as u32,
            from_step,
        });
        // No gRPC deadline: the stream lives as long as the job. Opening it and each message are timed here.
        match tokio::time::timeout(timeout, rpc.stream_batches(request)).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(WorkerError::from_status("stream_batches", status)),
            Err(_) => Err(WorkerError::Timeout {
                call: "stream_batches",
                after: timeout,
            }),
        }
    })?;
    let (sender, receiver) = mpsc::sync_channel(prefetch.max(1));
    let runtime = client.runtime.clone();
    std::thread::Builder::new()
        .name(format!("isoclr-batches-{rank}"))
        .spawn(move || {
            let mut expected = from_step;
            loop {
                let next = runtime.block_on(async { tokio::time::timeout(timeout, stream.message()).await });
                let item = match next {
                    Ok(Ok(Some(message))) if message.step != expected => Err(WorkerError::Malformed(WireError {
                        step: message.step,
                        field: "step".into(),
                        why: format!("expected step {expected}"),
                    })),
                    Ok(Ok(Some(message))) => shard_from_message(message).map(&convert).map_err(WorkerError::from),
                    Ok(Ok(None)) => {
                        debug!(rank, next_step = expected, "batch stream ended");
                        return;
                    }
                    Ok(Err(status)) => Err(WorkerError::from_status("stream_batches", status)),
                    Err(_) => Err(WorkerError::Timeout {
                        call: "stream_batches (next message)",
                        after: timeout,
                    }),
                };
                let failed = item.is_err();
                if sender.send(item).is_err() || failed {
                    return; // the training thread stopped listening, or the stream is unusable
                }
                expected += 1;
            }
        })
        .map_err(|e| WorkerError::Runtime(format!("cannot start the batch thread: {e}")))?;
    Ok(receiver)
}
