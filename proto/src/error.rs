//! The one place where error kinds meet gRPC status codes: the coordinator turns its errors into a
//! [`tonic::Status`] with [`status`], and a worker reads the kind back with [`ErrorKind::of`].

use tonic::{Code, Status};

/// What went wrong, in terms both sides can match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is malformed: a rank outside the world, a step past the end (INVALID_ARGUMENT).
    InvalidArgument,
    /// The call came out of order: streaming before the rendezvous, registering after it (FAILED_PRECONDITION).
    FailedPrecondition,
    /// A rank requested twice, or a second batch stream for one rank (ALREADY_EXISTS).
    AlreadyExists,
    /// A deadline passed: the rendezvous did not complete, an RPC timed out (DEADLINE_EXCEEDED).
    Timeout,
    /// The peer cannot be reached or is shutting down (UNAVAILABLE).
    Unavailable,
    /// The job was aborted; the message says why and names the worker (ABORTED).
    Aborted,
    /// The job token is missing or wrong (UNAUTHENTICATED).
    Unauthenticated,
    /// The caller gave up (CANCELLED).
    Cancelled,
    /// A malformed message or a bug on the other side (INTERNAL, DATA_LOSS and every other code).
    Internal,
}

impl ErrorKind {
    /// The gRPC status code of this kind.
    pub fn code(self) -> Code {
        match self {
            ErrorKind::InvalidArgument => Code::InvalidArgument,
            ErrorKind::FailedPrecondition => Code::FailedPrecondition,
            ErrorKind::AlreadyExists => Code::AlreadyExists,
            ErrorKind::Timeout => Code::DeadlineExceeded,
            ErrorKind::Unavailable => Code::Unavailable,
            ErrorKind::Aborted => Code::Aborted,
            ErrorKind::Unauthenticated => Code::Unauthenticated,
            ErrorKind::Cancelled => Code::Cancelled,
            ErrorKind::Internal => Code::Internal,
        }
    }

    /// The kind of a gRPC status code (codes without a kind of their own are [`ErrorKind::Internal`]).
    pub fn from_code(code: Code) -> Self {
        match code {
            Code::InvalidArgument | Code::OutOfRange | Code::NotFound => ErrorKind::InvalidArgument,
            Code::FailedPrecondition => ErrorKind::FailedPrecondition,
            Code::AlreadyExists => ErrorKind::AlreadyExists,
            Code::DeadlineExceeded => ErrorKind::Timeout,
            Code::Unavailable | Code::ResourceExhausted => ErrorKind::Unavailable,
            Code::Aborted => ErrorKind::Aborted,
            Code::Unauthenticated | Code::PermissionDenied => ErrorKind::Unauthenticated,
            Code::Cancelled => ErrorKind::Cancelled,
            _ => ErrorKind::Internal,
        }
    }

    /// The kind of a status a call returned.
    pub fn of(status: &Status) -> Self {
        Self::from_code(status.code())
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            ErrorKind::InvalidArgument => "invalid argument",
            ErrorKind::FailedPrecondition => "failed precondition",
            ErrorKind::AlreadyExists => "already exists",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Aborted => "aborted",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Internal => "internal",
        };
        f.write_str(name)
    }
}

/// A status of the given kind with a message.
pub fn status(kind: ErrorKind, message: impl Into<String>) -> Status {
    Status::new(kind.code(), message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_survives_the_round_trip_through_its_code() {
        for kind in [
            ErrorKind::InvalidArgument,
            ErrorKind::FailedPrecondition,
            ErrorKind::AlreadyExists,
            ErrorKind::Timeout,
            ErrorKind::Unavailable,
            ErrorKind::Aborted,
            ErrorKind::Unauthenticated,
            ErrorKind::Cancelled,
            ErrorKind::Internal,
        ] {
            assert_eq!(ErrorKind::from_code(kind.code()), kind);
            assert_eq!(ErrorKind::of(&status(kind, "x")), kind);
        }
        assert_eq!(ErrorKind::from_code(Code::DataLoss), ErrorKind::Internal);
    }
}
