//! The job's secret token and the interceptors that carry and check it.
//!
//! Every RPC carries `authorization: Bearer <token>`. The server interceptor compares the whole header in
//! constant time and refuses a missing or different token with UNAUTHENTICATED before any handler runs, so
//! an unauthenticated caller receives no data at all. Tokens come from the environment ([`TOKEN_ENV`]) or a
//! file, never from the command line (where `ps` would show them), and never appear in `Debug` output.

use std::path::{Path, PathBuf};

use rand::RngCore;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Environment variable holding the job token.
pub const TOKEN_ENV: &str = "ISOCLR_TOKEN";
/// Shortest token accepted, in characters.
pub const MIN_TOKEN_LEN: usize = 16;
/// The metadata key the token travels in.
const AUTHORIZATION: &str = "authorization";

/// Why a token could not be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Neither a token file nor the environment variable was given.
    #[error("no job token: set {TOKEN_ENV} or give a token file")]
    Missing,
    /// The token file could not be read.
    #[error("job token file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The token is too short or holds characters a header cannot carry.
    #[error("job token from {origin}: {why}")]
    Invalid {
        /// Where it came from (the variable or the file).
        origin: String,
        /// What is wrong.
        why: String,
    },
}

/// The job's shared secret. `Debug` prints it redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// Checks a token: at least [`MIN_TOKEN_LEN`] visible ASCII characters, no spaces.
    pub fn new(secret: impl Into<String>, origin: &str) -> Result<Self, TokenError> {
        let secret = secret.into();
        let invalid = |why: &str| TokenError::Invalid {
            origin: origin.to_owned(),
            why: why.to_owned(),
        };
        if secret.len() < MIN_TOKEN_LEN {
            return Err(invalid(&format!("shorter than {MIN_TOKEN_LEN} characters")));
        }
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid("only visible ASCII characters are allowed, no spaces"));
        }
        Ok(Self(secret))
    }

    /// A fresh random token (256 bits, hex), for a launcher to hand its coordinator and workers.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The token in [`TOKEN_ENV`]. Errors with [`TokenError::Missing`] when the variable is unset.
    pub fn from_env() -> Result<Self, TokenError> {
        match std::env::var(TOKEN_ENV) {
            Ok(value) => Self::new(value.trim(), TOKEN_ENV),
            Err(_) => Err(TokenError::Missing),
        }
    }

    /// The token in a file (surrounding whitespace ignored).
    pub fn from_file(path: &Path) -> Result<Self, TokenError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::new(text.trim(), &path.display().to_string())
    }

    /// The token from `file` when given, else from [`TOKEN_ENV`].
    pub fn load(file: Option<&Path>) -> Result<Self, TokenError> {
        match file {
            Some(path) => Self::from_file(path),
            None => Self::from_env(),
        }
    }

    /// The secret itself, to pass on to a child process's environment. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The `authorization` header value, `Bearer <token>`.
    fn header(&self) -> String {
        format!("Bearer {}", self.0)
    }
}

/// Equality of two byte strings in time that depends on their lengths only.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keep the comparison from being short-circuited by the optimiser.
    std::hint::black_box(diff) == 0
}

/// Server side: refuses every request whose `authorization` header is not `Bearer <the job token>`.
#[derive(Clone)]
pub struct ServerAuth {
    expected: Vec<u8>,
}

impl ServerAuth {
    /// Checks requests against `token`.
    pub fn new(token: &Token) -> Self {
        Self {
            expected: token.header().into_bytes(),
        }
    }
}

impl Interceptor for ServerAuth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        match request.metadata().get(AUTHORIZATION) {
            None => Err(Status::unauthenticated("missing job token")),
            Some(value) if constant_time_eq(value.as_bytes(), &self.expected) => Ok(request),
            Some(_) => Err(Status::unauthenticated("wrong job token")),
        }
    }
}

/// Client side: adds `authorization: Bearer <token>` to every request.
#[derive(Clone)]
pub struct ClientAuth {
    header: AsciiMetadataValue,
}

impl ClientAuth {
    /// Sends `token` with every request.
    pub fn new(token: &Token) -> Result<Self, TokenError> {
        let header = MetadataValue::try_from(token.header()).map_err(|_| TokenError::Invalid {
            origin: "token".into(),
            why: "not a valid header value".into(),
        })?;
        Ok(Self { header })
    }
}

impl Interceptor for ClientAuth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request.metadata_mut().insert(AUTHORIZATION, self.header.clone());
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_redacted_and_compared_whole() {
        assert!(Token::new("short", "test").is_err());
        assert!(Token::new("has a space in the middle", "test").is_err());
        let token = Token::generate();
        assert_eq!(token.expose().len(), 64);
        assert!(!format!("{token:?}").contains(token.expose()));
        assert_ne!(Token::generate(), token);

        let mut server = ServerAuth::new(&token);
        let mut client = ClientAuth::new(&token).unwrap();
        let sent = client.call(Request::new(())).unwrap();
        assert!(server.call(sent).is_ok());
        let status = server.call(Request::new(())).unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        let other = Token::new("0123456789abcdef-other", "test").unwrap();
        let wrong = ClientAuth::new(&other).unwrap().call(Request::new(())).unwrap();
        assert_eq!(server.call(wrong).unwrap_err().code(), tonic::Code::Unauthenticated);
        assert!(
            constant_time_eq(b"abc", b"abc") && !constant_time_eq(b"abc", b"abd") && !constant_time_eq(b"a", b"ab")
        );
    }

    #[test]
    fn tokens_load_from_a_file() {
        let dir = std::env::temp_dir().join(format!("isoclr-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "0123456789abcdef0123\n").unwrap();
        assert_eq!(Token::load(Some(&path)).unwrap().expose(), "0123456789abcdef0123");
        assert!(matches!(
            Token::from_file(&dir.join("missing")),
            Err(TokenError::Read { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
