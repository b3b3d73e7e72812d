//! [`TcpRing`]: the CPU collective backend over TCP, with the bandwidth-optimal ring algorithms.
//!
//! Rank `r` holds two connections: one it opened to rank `r+1` (only sent on) and one it accepted from
//! rank `r−1` (only received on). All-reduce is a reduce-scatter followed by an all-gather over `p` chunks
//! (`2(p−1)` steps, each moving `1/p` of the buffer per link); all-gather passes blocks round the ring;
//! broadcast pipelines 1 MiB pieces down the chain that starts at the root; barrier is an all-gather of
//! empty blocks. Each chunk's sum is computed once, on the rank that owns it after the reduce-scatter, and
//! then copied, so every rank ends with bit-for-bit the same result.
//!
//! Every message carries a 32-byte header (magic, op code, sequence number, the op's total length, payload
//! bytes) that the receiver checks, so ranks that call different collectives or pass buffers of different
//! lengths get [`DistError::Invalid`] naming the peer instead of garbage. Sockets have read and write
//! timeouts (the op timeout); a timeout gives [`DistError::Timeout`], a closed peer
//! [`DistError::Connection`]. After any error the ring is broken: its sockets are shut down (so the
//! neighbours fail at once instead of waiting for their timeout) and every later call fails.
//!
//! Must not depend on the model or on tch.

use std::borrow::Cow;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::ops::Range;
use std::sync::atomic::{AtomicU8, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::{Collective, DistError, ReduceOp, Result};

mod handshake;
use handshake::{accept_from, connect_with_retry, hello, read_ack};

/// First bytes of a connection's hello.
const HELLO_MAGIC: &[u8; 8] = b"ISOCLR-R";
/// Version of the wire protocol; both ends must agree.
const PROTOCOL_VERSION: u32 = 1;
/// Longest job token accepted.
const MAX_TOKEN: usize = 4096;
/// First field of every frame header.
const FRAME_MAGIC: u32 = 0x5249_4e47;
/// Bytes of a frame header: magic u32, op u32, sequence u64, total values u64, payload bytes u64.
const HEADER_BYTES: usize = 32;
/// Payloads up to this size are written before reading, on the calling thread: with at most two frames in
/// flight per link they fit in the kernel's socket buffers, so no rank's write can block on a reader.
const SMALL_BYTES: usize = 4 * 1024;
/// Values per broadcast piece (1 MiB).
const BROADCAST_PIECE: usize = (1 << 20) / 4;
/// Longest wait for a stray connection's hello before it is dropped.
const HELLO_WAIT: Duration = Duration::from_secs(10);

/// The collective a frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    AllReduce = 1,
    AllGather = 2,
    Broadcast = 3,
    Barrier = 4,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::AllReduce => "all_reduce",
            Op::AllGather => "all_gather",
            Op::Broadcast => "broadcast",
            Op::Barrier => "barrier",
        }
    }

    fn name_of(code: u32) -> Cow<'static, str> {
        match code {
            1 => Op::AllReduce.name().into(),
            2 => Op::AllGather.name().into(),
            3 => Op::Broadcast.name().into(),
            4 => Op::Barrier.name().into(),
            other => format!("unknown op {other}").into(),
        }
    }
}

/// Timeouts of a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingConfig {
    /// Total time allowed to connect to the next rank and accept the previous one, handshakes included.
    pub connect_timeout: Duration,
    /// Longest wait for any single send or receive of a collective.
    pub op_timeout: Duration,
}

impl Default for RingConfig {
    /// 60 s to connect, 300 s per operation (generous for start-up; tighten with
    /// [`TcpRing::set_op_timeout`] once the first step has run).
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(60),
            op_timeout: Duration::from_secs(300),
        }
    }
}

/// The bound listening socket of a ring member, made before the rendezvous so its address can be published.
#[derive(Debug)]
pub struct RingListener {
    listener: TcpListener,
}

impl RingListener {
    /// The address the listener is bound to (with the actual port when bound to port 0). When bound to an
    /// unspecified address (0.0.0.0), publish a routable address of this host instead.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener
            .local_addr()
            .map_err(|e| DistError::Unavailable(format!("cannot read the ring listener's address: {e}")))
    }
}

/// One direction of the ring: the connection to or from one peer.
#[derive(Debug)]
struct Link {
    stream: TcpStream,
    peer: usize,
    addr: SocketAddr,
}

impl Link {
    /// Maps an I/O error on this link to a timeout or a connection error naming the peer.
    fn error(&self, op: &'static str, timeout: Duration, e: io::Error) -> DistError {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => DistError::Timeout {
                op,
                peer: self.peer,
                addr: self.addr.to_string(),
                timeout,
            },
            _ => DistError::Connection {
                op,
                peer: self.peer,
                addr: self.addr.to_string(),
                source: e,
            },
        }
    }

    fn invalid(&self, op: Op, why: impl std::fmt::Display) -> DistError {
        DistError::Invalid {
            op: op.name(),
            why: format!("rank {} ({}): {why}", self.peer, self.addr),
        }
    }

    fn set_timeouts(&self, t: Duration) -> io::Result<()> {
        self.stream.set_read_timeout(Some(t))?;
        self.stream.set_write_timeout(Some(t))
    }

    fn shutdown(&self) {
        // The peer may already be gone; there is nothing to do about a failed shutdown.
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// The two links of a ring member of a world of at least 2, with the per-direction sequence numbers.
#[derive(Debug)]
struct Wire {
    next: Link,
    prev: Link,
    send_seq: u64,
    recv_seq: u64,
    timeout: Duration,
    small: Vec<u8>,
}

impl Wire {
    /// One ring step: sends `send` to the next rank while receiving `recv` from the previous one. Either may
    /// be absent (broadcast chain ends). Large sends run on a scoped helper thread so both directions move at
    /// once; if either half fails, both sockets are shut down so the other half returns at once.
    fn exchange(&mut self, op: Op, total: u64, send: Option<&[f32]>, recv: Option<&mut [f32]>) -> Result<()> {
        let (send_seq, recv_seq) = (self.send_seq, self.recv_seq);
        self.send_seq += u64::from(send.is_some());
        self.recv_seq += u64::from(recv.is_some());
        let timeout = self.timeout;
        match (send, recv) {
            (None, None) => Ok(()),
            (Some(s), None) => write_frame(&self.next, timeout, op, send_seq, total, s, &mut self.small),
            (None, Some(r)) => read_frame(&self.prev, timeout, op, recv_seq, total, r),
            (Some(s), Some(r)) if std::mem::size_of_val(s) <= SMALL_BYTES => {
                write_frame(&self.next, timeout, op, send_seq, total, s, &mut self.small)?;
                read_frame(&self.prev, timeout, op, recv_seq, total, r)
            }
            (Some(s), Some(r)) => {
                let (next, prev) = (&self.next, &self.prev);
                // 0: no failure yet; 1: the send failed first; 2: the receive failed first. The first half to
                // fail shuts the other half's socket down so that it returns at once.
                let first_failure = AtomicU8::new(0);
                let claim = |who: u8| {
                    first_failure
                        .compare_exchange(0, who, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                };
                let (sent, received) = thread::scope(|scope| {
                    let sender = thread::Builder::new()
                        .name("ring-send".to_owned())
                        .spawn_scoped(scope, || {
                            let sent = write_frame(next, timeout, op, send_seq, total, s, &mut Vec::new());
                            if sent.is_err() && claim(1) {
                                prev.shutdown();
                            }
                            sent
                        });
                    let sender = match sender {
                        Ok(handle) => handle,
                        Err(e) => return (Err(next.error(op.name(), timeout, e)), Ok(())),
                    };
                    let received = read_frame(prev, timeout, op, recv_seq, total, r);
                    if received.is_err() && claim(2) {
                        next.shutdown();
                    }
                    let panicked = || DistError::Invalid {
                        op: op.name(),
                        why: "the send thread panicked".to_owned(),
                    };
                    (sender.join().unwrap_or_else(|_| Err(panicked())), received)
                });
                match (sent, received) {
                    (Ok(()), Ok(())) => Ok(()),
                    (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
                    (Err(s), Err(r)) => Err(if first_failure.load(Ordering::SeqCst) == 1 {
                        s
                    } else {
                        r
                    }),
                }
            }
        }
    }

    fn shutdown(&self) {
        self.next.shutdown();
        self.prev.shutdown();
    }
}

/// Views `f32`s as their in-memory bytes.
fn bytes_of(values: &[f32]) -> &[u8] {
    // SAFETY: the pointer and byte length describe exactly the memory of `values`, which stays borrowed for
    // the returned lifetime; f32 has no padding bytes and u8 has alignment 1.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values)) }
}

/// Views `f32`s as their in-memory bytes, for receiving into them.
fn bytes_of_mut(values: &mut [f32]) -> &mut [u8] {
    // SAFETY: as in `bytes_of`, and the exclusive borrow is moved into the result; every bit pattern is a
    // valid f32, so any bytes written through the view leave valid values.
    unsafe { std::slice::from_raw_parts_mut(values.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(values)) }
}

/// The little-endian wire bytes of `values`: borrowed on little-endian targets, converted elsewhere.
fn wire_bytes(values: &[f32]) -> Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        Cow::Borrowed(bytes_of(values))
    } else {
        Cow::Owned(values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }
}

/// Turns little-endian wire bytes received in place into native values (nothing to do on little-endian).
fn from_wire(values: &mut [f32]) {
    if cfg!(target_endian = "big") {
        for v in values {
            *v = f32::from_bits(u32::from_le(v.to_bits()));
        }
    }
}

fn header(op: Op, seq: u64, total: u64, payload_bytes: usize) -> [u8; HEADER_BYTES] {
    let mut h = [0u8; HEADER_BYTES];
    h[0..4].copy_from_slice(&FRAME_MAGIC.to_le_bytes());
    h[4..8].copy_from_slice(&(op as u32).to_le_bytes());
    h[8..16].copy_from_slice(&seq.to_le_bytes());
    h[16..24].copy_from_slice(&total.to_le_bytes());
    h[24..32].copy_from_slice(&(payload_bytes as u64).to_le_bytes());
    h
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(v)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

/// Writes one frame; small frames go out in a single write through `small`.
fn write_frame(
    link: &Link,
    timeout: Duration,
    op: Op,
    seq: u64,
    total: u64,
    payload: &[f32],
    small: &mut Vec<u8>,
) -> Result<()> {
    let bytes = wire_bytes(payload);
    let head = header(op, seq, total, bytes.len());
    let mut stream = &link.stream;
    let written = if bytes.len() <= SMALL_BYTES {
        small.clear();
        small.extend_from_slice(&head);
        small.extend_from_slice(&bytes);
        stream.write_all(small)
    } else {
        stream.write_all(&head).and_then(|()| stream.write_all(&bytes))
    };
    written.map_err(|e| link.error(op.name(), timeout, e))
}

/// Reads one frame into `dst`, checking its header against what this rank expects.
fn read_frame(link: &Link, timeout: Duration, op: Op, seq: u64, total: u64, dst: &mut [f32]) -> Result<()> {
    let mut stream = &link.stream;
    let mut h = [0u8; HEADER_BYTES];
    stream
        .read_exact(&mut h)
        .map_err(|e| link.error(op.name(), timeout, e))?;
    if u32_at(&h, 0) != FRAME_MAGIC {
        return Err(link.invalid(op, "sent a malformed frame (bad magic)"));
    }
    let got_op = u32_at(&h, 4);
    if got_op != op as u32 {
        return Err(link.invalid(
            op,
            format!("is in {} while this rank is in {}", Op::name_of(got_op), op.name()),
        ));
    }
    let got_seq = u64_at(&h, 8);
    if got_seq != seq {
        return Err(link.invalid(
            op,
            format!("sent message {got_seq}, expected {seq}: the ranks' calls differ"),
        ));
    }
    let got_total = u64_at(&h, 16);
    if got_total != total {
        return Err(link.invalid(
            op,
            format!("has a buffer of {got_total} values, this rank one of {total}"),
        ));
    }
    let got_bytes = u64_at(&h, 24);
    let want = std::mem::size_of_val(dst) as u64;
    if got_bytes != want {
        return Err(link.invalid(op, format!("sent a payload of {got_bytes} bytes, expected {want}")));
    }
    stream
        .read_exact(bytes_of_mut(dst))
        .map_err(|e| link.error(op.name(), timeout, e))?;
    from_wire(dst);
    Ok(())
}

/// Chunk `i` of `n` values split into `p` nearly equal chunks (the first `n % p` one value longer).
fn chunk(n: usize, p: usize, i: usize) -> Range<usize> {
    let (base, extra) = (n / p, n % p);
    let start = i * base + i.min(extra);
    start..start + base + usize::from(i < extra)
}

/// Splits `buf` into a shared view of `send` and a mutable view of `recv`, two disjoint ranges of an ordered
/// partition; `send_first` says which comes first.
fn split_pair(buf: &mut [f32], send: Range<usize>, recv: Range<usize>, send_first: bool) -> (&[f32], &mut [f32]) {
    if send_first {
        let (lo, hi) = buf.split_at_mut(recv.start);
        (&lo[send], &mut hi[..recv.len()])
    } else {
        let (lo, hi) = buf.split_at_mut(send.start);
        (&hi[..send.len()], &mut lo[recv])
    }
}

fn remaining(deadline: Instant) -> Option<Duration> {
    deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())
}

/// Socket timeouts may not be zero.
fn positive(t: Duration) -> Duration {
    t.max(Duration::from_millis(1))
}

/// A member of a ring of processes connected over TCP; implements [`Collective`] on host buffers.
#[derive(Debug)]
pub struct TcpRing {
    rank: usize,
    world: usize,
    /// `None` in a world of one.
    wire: Option<Wire>,
    /// Receive buffer of the reduce-scatter, one chunk long.
    scratch: Vec<f32>,
    /// Why the ring is unusable, after an error.
    broken: Option<String>,
}

impl TcpRing {
    /// Binds a listener for the ring (call before rendezvous so the address can be published).
    pub fn bind(addr: SocketAddr) -> Result<RingListener> {
        let listener = TcpListener::bind(addr)
            .map_err(|e| DistError::Unavailable(format!("cannot bind the ring listener to {addr}: {e}")))?;
        Ok(RingListener { listener })
    }

    /// Connects rank `rank` of `peers.len()` ranks: connects to `peers[(rank+1)%p]` and accepts from
    /// `(rank-1)%p`, with a handshake exchanging ranks, world size and the job `token` (a mismatch on either
    /// side fails both with [`DistError::Invalid`]). Connecting retries with back-off until
    /// `config.connect_timeout`; connections that do not speak the protocol are dropped and ignored. A
    /// world of one opens no socket.
    pub fn connect(
        listener: RingListener,
        rank: usize,
        peers: Vec<SocketAddr>,
        token: &[u8],
        config: RingConfig,
    ) -> Result<TcpRing> {
        let p = peers.len();
        let invalid = |why: String| DistError::Invalid { op: "connect", why };
        if rank >= p {
            return Err(invalid(format!("rank {rank} outside a world of {p}")));
        }
        if token.len() > MAX_TOKEN {
            return Err(invalid(format!(
                "job token of {} bytes (at most {MAX_TOKEN})",
                token.len()
            )));
        }
        if p == 1 {
            return Ok(TcpRing {
                rank,
                world: 1,
                wire: None,
                scratch: Vec::new(),
                broken: None,
            });
        }
        let deadline = Instant::now() + config.connect_timeout;
        let (next_rank, prev_rank) = ((rank + 1) % p, (rank + p - 1) % p);
        let next = connect_with_retry(next_rank, peers[next_rank], deadline, config.connect_timeout)?;
        let greeting = hello(rank, next_rank, p, token);
        (&next.stream)
            .write_all(&greeting)
            .map_err(|e| next.error("connect", config.connect_timeout, e))?;
        let prev = accept_from(
            &listener.listener,
            prev_rank,
            peers[prev_rank],
            rank,
            p,
            token,
            deadline,
            &config,
        )?;
        read_ack(&next, deadline, config.connect_timeout)?;
        let op_timeout = positive(config.op_timeout);
        for link in [&next, &prev] {
            link.set_timeouts(op_timeout)
                .map_err(|e| link.error("connect", config.connect_timeout, e))?;
        }
        let wire = Wire {
            next,
            prev,
            send_seq: 0,
            recv_seq: 0,
            timeout: op_timeout,
            small: Vec::new(),
        };
        Ok(TcpRing {
            rank,
            world: p,
            wire: Some(wire),
            scratch: Vec::new(),
            broken: None,
        })
    }

    /// Changes the per-operation timeout (generous during start-up, tightened after the first step). A
    /// zero timeout is taken as 1 ms.
    pub fn set_op_timeout(&mut self, t: Duration) {
        let t = positive(t);
        if let Some(wire) = &mut self.wire {
            wire.timeout = t;
            for link in [&wire.next, &wire.prev] {
                if let Err(e) = link.set_timeouts(t) {
                    self.broken = Some(format!(
                        "setting the timeout on the link to rank {} failed: {e}",
                        link.peer
                    ));
                }
            }
        }
    }

    /// Fails when an earlier error broke the ring.
    fn check(&self, op: Op) -> Result<()> {
        match &self.broken {
            Some(why) => Err(DistError::Invalid {
                op: op.name(),
                why: format!("ring unusable after an earlier error: {why}"),
            }),
            None => Ok(()),
        }
    }

    /// Breaks the ring on an error: remembers why and shuts the sockets down so the neighbours fail too.
    fn settle(&mut self, result: Result<()>) -> Result<()> {
        if let Err(e) = &result {
            self.broken = Some(e.to_string());
            if let Some(wire) = &self.wire {
                wire.shutdown();
            }
        }
        result
    }

    fn ring_all_reduce(&mut self, buf: &mut [f32], op: ReduceOp) -> Result<()> {
        let (p, r, n) = (self.world, self.rank, buf.len());
        let Some(wire) = self.wire.as_mut() else { return Ok(()) };
        let total = n as u64;
        let longest = n.div_ceil(p);
        if self.scratch.len() < longest {
            self.scratch.resize(longest, 0.0);
        }
        // Reduce-scatter: at step s rank r sends chunk r−s and adds chunk r−s−1 from rank r−1; afterwards it
        // holds the full sum of chunk r+1.
        for s in 0..p - 1 {
            let (send_i, recv_i) = ((r + p - s) % p, (r + 2 * p - s - 1) % p);
            let recv = chunk(n, p, recv_i);
            let incoming = &mut self.scratch[..recv.len()];
            wire.exchange(
                Op::AllReduce,
                total,
                Some(&buf[chunk(n, p, send_i)]),
                Some(&mut *incoming),
            )?;
            for (x, y) in buf[recv].iter_mut().zip(incoming.iter()) {
                *x += *y;
            }
        }
        let own = chunk(n, p, (r + 1) % p);
        if op == ReduceOp::Mean {
            let scale = 1.0 / p as f32;
            buf[own].iter_mut().for_each(|x| *x *= scale);
        }
        // All-gather of the finished chunks: at step s rank r sends chunk r+1−s and receives chunk r−s.
        for s in 0..p - 1 {
            let (send_i, recv_i) = ((r + 1 + p - s) % p, (r + p - s) % p);
            let (src, dst) = split_pair(buf, chunk(n, p, send_i), chunk(n, p, recv_i), send_i < recv_i);
            wire.exchange(Op::AllReduce, total, Some(src), Some(dst))?;
        }
        Ok(())
    }

    fn ring_all_gather(&mut self, local: &[f32], out: &mut [f32]) -> Result<()> {
        let (p, r, len) = (self.world, self.rank, local.len());
        if out.len() != p * len {
            return Err(DistError::Invalid {
                op: "all_gather",
                why: format!("output holds {} values, expected {p} × {len}", out.len()),
            });
        }
        out[r * len..(r + 1) * len].copy_from_slice(local);
        let Some(wire) = self.wire.as_mut() else { return Ok(()) };
        for s in 0..p - 1 {
            let (send_i, recv_i) = ((r + p - s) % p, (r + 2 * p - s - 1) % p);
            let block = |i: usize| i * len..(i + 1) * len;
            let (src, dst) = split_pair(out, block(send_i), block(recv_i), send_i < recv_i);
            wire.exchange(Op::AllGather, len as u64, Some(src), Some(dst))?;
        }
        Ok(())
    }

    fn ring_broadcast(&mut self, buf: &mut [f32], root: usize) -> Result<()> {
        let (p, r, n) = (self.world, self.rank, buf.len());
        if root >= p {
            return Err(DistError::Invalid {
                op: "broadcast",
                why: format!("root {root} outside a world of {p}"),
            });
        }
        let Some(wire) = self.wire.as_mut() else { return Ok(()) };
        // Position in the chain root → root+1 → … → root−1; at least one (maybe empty) piece, so that the
        // lengths are always checked.
        let position = (r + p - root) % p;
        let pieces = n.div_ceil(BROADCAST_PIECE).max(1);
        let piece = |k: usize| (k * BROADCAST_PIECE).min(n)..((k + 1) * BROADCAST_PIECE).min(n);
        let total = n as u64;
        for k in 0..=pieces {
            // Forward piece k−1 while receiving piece k.
            let send = (position < p - 1 && k >= 1).then(|| piece(k - 1));
            let recv = (position > 0 && k < pieces).then(|| piece(k));
            match (send, recv) {
                (Some(s), Some(rv)) => {
                    let (src, dst) = split_pair(buf, s, rv, true);
                    wire.exchange(Op::Broadcast, total, Some(src), Some(dst))?;
                }
                (Some(s), None) => wire.exchange(Op::Broadcast, total, Some(&buf[s]), None)?,
                (None, Some(rv)) => wire.exchange(Op::Broadcast, total, None, Some(&mut buf[rv]))?,
                (None, None) => {}
            }
        }
        Ok(())
    }

    fn ring_barrier(&mut self) -> Result<()> {
        let Some(wire) = self.wire.as_mut() else { return Ok(()) };
        // An all-gather of empty blocks: after p−1 steps every rank has heard from every other.
        for _ in 0..self.world - 1 {
            wire.exchange(Op::Barrier, 0, Some(&[][..]), Some(&mut [][..]))?;
        }
        Ok(())
    }
}

impl Collective for TcpRing {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world
    }

    fn all_reduce(&mut self, buffer: &mut [f32], op: ReduceOp) -> Result<()> {
        self.check(Op::AllReduce)?;
        let result = self.ring_all_reduce(buffer, op);
        self.settle(result)
    }

    fn all_gather(&mut self, local: &[f32], out: &mut [f32]) -> Result<()> {
        self.check(Op::AllGather)?;
        let result = self.ring_all_gather(local, out);
        self.settle(result)
    }

    fn broadcast(&mut self, buffer: &mut [f32], root: usize) -> Result<()> {
        self.check(Op::Broadcast)?;
        let result = self.ring_broadcast(buffer, root);
        self.settle(result)
    }

    fn barrier(&mut self) -> Result<()> {
        self.check(Op::Barrier)?;
        let result = self.ring_barrier();
        self.settle(result)
    }
}

#[cfg(test)]
mod tests;
