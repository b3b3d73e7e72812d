//! The isoclr coordinator's gRPC API: the code tonic and prost generate from `isoclr.proto` (package
//! `isoclr.v1`), and the hand-written glue both sides share that needs no isoclr types: the job token and
//! its interceptors ([`auth`]) and the one mapping between error kinds and gRPC status codes ([`error`]).
//!
//! Must not depend on the isoclr crate (which depends on this one), tch or any training code.

pub mod auth;
pub mod error;

/// Generated messages, the `coordinator_client` and the `coordinator_server` of `isoclr.v1`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("isoclr.v1");
}

/// Largest message either side accepts: a shard of 512 views of 12,288 nt is about 4 MB, tonic's default
/// limit, so both sides raise it.
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;

pub use auth::{ClientAuth, ServerAuth, TOKEN_ENV, Token, TokenError};
pub use error::{ErrorKind, status};
pub use v1::coordinator_client::CoordinatorClient;
pub use v1::coordinator_server::{Coordinator, CoordinatorServer};

impl v1::Action {
    /// Lower-case name for logs and messages (`continue`, `checkpoint`, `stop`, `abort`, `suspend`).
    pub fn name(self) -> &'static str {
        match self {
            v1::Action::Unspecified => "unspecified",
            v1::Action::Continue => "continue",
            v1::Action::Checkpoint => "checkpoint",
            v1::Action::Stop => "stop",
            v1::Action::Abort => "abort",
            v1::Action::Suspend => "suspend",
        }
    }
}

impl std::fmt::Display for v1::Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
