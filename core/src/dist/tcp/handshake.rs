//! The connection handshake of a ring member: connect to the next rank (with retries), accept the previous
//! one, and check ranks, world size and job token both ways.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use super::{
    HELLO_MAGIC, HELLO_WAIT, Link, MAX_TOKEN, PROTOCOL_VERSION, RingConfig, positive, remaining, u32_at, u64_at,
};
use crate::dist::{DistError, Result};

/// The hello a connecting rank sends: magic, version, its rank, the rank it expects, world size, token.
pub(super) fn hello(from: usize, to: usize, world: usize, token: &[u8]) -> Vec<u8> {
    let mut h = Vec::with_capacity(40 + token.len());
    h.extend_from_slice(HELLO_MAGIC);
    h.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    for v in [from, to, world] {
        h.extend_from_slice(&(v as u64).to_le_bytes());
    }
    h.extend_from_slice(&(token.len() as u32).to_le_bytes());
    h.extend_from_slice(token);
    h
}

/// Connects to the next rank at `addr`, retrying with back-off (10 ms doubling to 500 ms) until `deadline`.
pub(super) fn connect_with_retry(peer: usize, addr: SocketAddr, deadline: Instant, total: Duration) -> Result<Link> {
    let mut backoff = Duration::from_millis(10);
    loop {
        let Some(left) = remaining(deadline) else {
            return Err(DistError::Timeout {
                op: "connect",
                peer,
                addr: addr.to_string(),
                timeout: total,
            });
        };
        match TcpStream::connect_timeout(&addr, left.min(Duration::from_secs(5))) {
            Ok(stream) => {
                let link = Link { stream, peer, addr };
                link.stream
                    .set_nodelay(true)
                    .map_err(|e| link.error("connect", total, e))?;
                link.set_timeouts(positive(left))
                    .map_err(|e| link.error("connect", total, e))?;
                return Ok(link);
            }
            Err(_) => {
                thread::sleep(backoff.min(remaining(deadline).unwrap_or_default()));
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
        }
    }
}

/// Accepts connections until one from `prev` completes the handshake. Connections that do not speak the
/// protocol are dropped; one that speaks it with the wrong token, rank or world size is refused (the peer
/// is told why) and fails the connect.
#[allow(clippy::too_many_arguments)]
pub(super) fn accept_from(
    listener: &TcpListener,
    prev: usize,
    prev_addr: SocketAddr,
    rank: usize,
    world: usize,
    token: &[u8],
    deadline: Instant,
    config: &RingConfig,
) -> Result<Link> {
    let timeout = config.connect_timeout;
    let io_err = |e: io::Error| DistError::Connection {
        op: "connect",
        peer: prev,
        addr: prev_addr.to_string(),
        source: e,
    };
    listener.set_nonblocking(true).map_err(io_err)?;
    loop {
        let Some(left) = remaining(deadline) else {
            return Err(DistError::Timeout {
                op: "connect",
                peer: prev,
                addr: prev_addr.to_string(),
                timeout,
            });
        };
        let (stream, from) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => {
                thread::sleep(Duration::from_millis(2).min(left));
                continue;
            }
            Err(e) => return Err(io_err(e)),
        };
        let link = Link {
            stream,
            peer: prev,
            addr: prev_addr,
        };
        let setup = link
            .stream
            .set_nonblocking(false)
            .and_then(|()| link.stream.set_nodelay(true))
            .and_then(|()| link.set_timeouts(positive(left.min(HELLO_WAIT))));
        if setup.is_err() {
            continue;
        }
        let Ok(fixed) = read_exact_vec(&link.stream, 40) else {
            continue;
        };
        if &fixed[..8] != HELLO_MAGIC {
            continue;
        }
        let (version, claimed, to, their_world) = (
            u32_at(&fixed, 8),
            u64_at(&fixed, 12),
            u64_at(&fixed, 20),
            u64_at(&fixed, 28),
        );
        let token_len = u32_at(&fixed, 36) as usize;
        let refusal = if version != PROTOCOL_VERSION {
            Some(format!("protocol version {version}, expected {PROTOCOL_VERSION}"))
        } else if token_len > MAX_TOKEN {
            Some(format!("job token of {token_len} bytes"))
        } else {
            let Ok(their_token) = read_exact_vec(&link.stream, token_len) else {
                continue;
            };
            if their_token != token {
                Some("job token mismatch (a connection from another job?)".to_owned())
            } else if claimed != prev as u64 || to != rank as u64 || their_world != world as u64 {
                Some(format!(
                    "rank {claimed} of {their_world} connected expecting rank {to}; this is rank {rank} of {world}, \
                     expecting rank {prev}"
                ))
            } else {
                None
            }
        };
        let mut ack = Vec::new();
        let message = refusal.clone().unwrap_or_default();
        ack.push(u8::from(refusal.is_some()));
        ack.extend_from_slice(&(message.len() as u32).to_le_bytes());
        ack.extend_from_slice(message.as_bytes());
        let acked = (&link.stream).write_all(&ack);
        if let Some(why) = refusal {
            return Err(DistError::Invalid {
                op: "connect",
                why: format!("refused a connection from {from} (expected rank {prev} at {prev_addr}): {why}"),
            });
        }
        acked.map_err(|e| link.error("connect", timeout, e))?;
        return Ok(link);
    }
}

fn read_exact_vec(mut stream: &TcpStream, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf)?;
    Ok(buf)
}

/// Reads the next rank's answer to this rank's hello.
pub(super) fn read_ack(next: &Link, deadline: Instant, timeout: Duration) -> Result<()> {
    let left = remaining(deadline).unwrap_or(Duration::from_millis(1));
    next.set_timeouts(left).map_err(|e| next.error("connect", timeout, e))?;
    let head = read_exact_vec(&next.stream, 5).map_err(|e| next.error("connect", timeout, e))?;
    if head[0] == 0 {
        return Ok(());
    }
    let len = (u32_at(&head, 1) as usize).min(64 * 1024);
    let why = read_exact_vec(&next.stream, len)
        .map(|m| String::from_utf8_lossy(&m).into_owned())
        .unwrap_or_default();
    Err(DistError::Invalid {
        op: "connect",
        why: format!("rank {} ({}) refused this rank: {why}", next.peer, next.addr),
    })
}
