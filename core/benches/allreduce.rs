//! Benchmark of the TCP ring all-reduce ([`isoclr_core::dist::TcpRing`]) among real processes on this machine,
//! next to a plain one-stream TCP loopback transfer of the same size measured in the same run.
//!
//! The binary re-invokes itself (`std::env::current_exe()`) with `ISOCLR_BENCH_ROLE` set, so every rank is
//! its own process; the parent hands out the ring addresses over the children's stdin/stdout and collects
//! their timings. Reports, per world size, the median over iterations of the slowest rank's time, the
//! algorithm bandwidth (bytes / time) and the bus bandwidth (algbw · 2(p−1)/p, the per-link traffic of the
//! ring), and the bus bandwidth over the loopback bandwidth.
//!
//! `cargo bench -p isoclr-core --bench allreduce`; `ISOCLR_BENCH_MB` (default 100),
//! `ISOCLR_BENCH_ITERS` (default 5) and `ISOCLR_BENCH_WORLDS` (default `2,4`) change the run.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use isoclr_core::dist::{Collective, ReduceOp, RingConfig, TcpRing};

const ROLE: &str = "ISOCLR_BENCH_ROLE";
const RANK: &str = "ISOCLR_BENCH_RANK";
const WORLD: &str = "ISOCLR_BENCH_WORLD";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Buffer size in bytes and iteration count, shared by parent and children through the environment.
fn sizes() -> (usize, usize) {
    let mb: usize = env_or("ISOCLR_BENCH_MB", 100);
    (mb * 1_000_000, env_or("ISOCLR_BENCH_ITERS", 5).max(1))
}

fn main() -> Result<()> {
    match std::env::var(ROLE).ok().as_deref() {
        Some("ring") => ring_child(),
        Some("sink") => sink_child(),
        Some("source") => source_child(),
        _ => parent(),
    }
}

fn read_line(reader: &mut impl BufRead) -> Result<String> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        bail!("unexpected end of input");
    }
    Ok(line.trim().to_owned())
}

fn print_times(times: &[Duration]) {
    let secs: Vec<String> = times.iter().map(|t| format!("{:.6}", t.as_secs_f64())).collect();
    println!("times {}", secs.join(" "));
}

/// A ring rank: binds, publishes its address, connects, then times `iters` all-reduces (after one warm-up).
fn ring_child() -> Result<()> {
    let rank: usize = std::env::var(RANK)?.parse()?;
    let world: usize = std::env::var(WORLD)?.parse()?;
    let (bytes, iters) = sizes();
    let listener = TcpRing::bind("127.0.0.1:0".parse()?)?;
    println!("addr {}", listener.local_addr()?);
    let line = read_line(&mut std::io::stdin().lock())?;
    let peers = line
        .strip_prefix("peers ")
        .context("expected the peer list")?
        .split(',')
        .map(|a| a.parse::<SocketAddr>())
        .collect::<Result<Vec<_>, _>>()?;
    let config = RingConfig {
        connect_timeout: Duration::from_secs(30),
        op_timeout: Duration::from_secs(60),
    };
    let mut ring = TcpRing::connect(listener, rank, peers, b"bench", config)?;
    let mut buf = vec![0.0f32; bytes / 4];
    let expected = (world * (world + 1) / 2) as f32;
    let mut times = Vec::new();
    for i in 0..=iters {
        buf.fill((rank + 1) as f32);
        ring.barrier()?;
        let start = Instant::now();
        ring.all_reduce(&mut buf, ReduceOp::Sum)?;
        let took = start.elapsed();
        if buf.iter().any(|&x| x != expected) {
            bail!("rank {rank}: wrong all-reduce result");
        }
        if i > 0 {
            times.push(took);
        }
    }
    print_times(&times);
    Ok(())
}

/// The receiving end of the loopback baseline: reads `bytes` per iteration and answers with one byte.
fn sink_child() -> Result<()> {
    let (bytes, iters) = sizes();
    let listener = TcpListener::bind("127.0.0.1:0")?;
    println!("addr {}", listener.local_addr()?);
    let (mut stream, _) = listener.accept()?;
    stream.set_nodelay(true)?;
    let mut buf = vec![0u8; bytes];
    for _ in 0..=iters {
        stream.read_exact(&mut buf)?;
        stream.write_all(&[1])?;
    }
    Ok(())
}

/// The sending end of the loopback baseline: times writing `bytes` until the sink has acknowledged them.
fn source_child() -> Result<()> {
    let (bytes, iters) = sizes();
    let line = read_line(&mut std::io::stdin().lock())?;
    let addr: SocketAddr = line.strip_prefix("peer ").context("expected the peer")?.parse()?;
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let buf = vec![7u8; bytes];
    let mut ack = [0u8; 1];
    let mut times = Vec::new();
    for i in 0..=iters {
        let start = Instant::now();
        stream.write_all(&buf)?;
        stream.read_exact(&mut ack)?;
        if i > 0 {
            times.push(start.elapsed());
        }
    }
    print_times(&times);
    Ok(())
}

/// A child process with piped stdin/stdout; killed if still running when dropped.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Worker {
    fn spawn(role: &str, rank: usize, world: usize) -> Result<Worker> {
        let mut child = Command::new(std::env::current_exe()?)
            .env(ROLE, role)
            .env(RANK, rank.to_string())
            .env(WORLD, world.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take().context("child stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("child stdout")?);
        Ok(Worker { child, stdin, stdout })
    }

    fn expect_line(&mut self, prefix: &str) -> Result<String> {
        let line = read_line(&mut self.stdout)?;
        line.strip_prefix(prefix)
            .map(str::to_owned)
            .with_context(|| format!("expected '{prefix}…', got '{line}'"))
    }

    fn times(&mut self) -> Result<Vec<f64>> {
        let times = self
            .expect_line("times ")?
            .split(' ')
            .map(|t| t.parse::<f64>())
            .collect::<Result<Vec<_>, _>>()?;
        let status = self.child.wait()?;
        if !status.success() {
            bail!("child failed: {status}");
        }
        Ok(times)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Only children still running (after an error) are killed; errors of an exited child are moot.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Median over iterations of the slowest rank's time of a ring all-reduce among `world` processes.
fn ring_time(world: usize) -> Result<f64> {
    let mut workers = (0..world)
        .map(|r| Worker::spawn("ring", r, world))
        .collect::<Result<Vec<_>>>()?;
    let addrs = workers
        .iter_mut()
        .map(|w| w.expect_line("addr "))
        .collect::<Result<Vec<_>>>()?;
    let line = format!("peers {}\n", addrs.join(","));
    for w in &mut workers {
        w.stdin.write_all(line.as_bytes())?;
        w.stdin.flush()?;
    }
    let per_rank = workers.iter_mut().map(Worker::times).collect::<Result<Vec<_>>>()?;
    let iters = per_rank[0].len();
    let slowest: Vec<f64> = (0..iters)
        .map(|i| per_rank.iter().map(|t| t[i]).fold(0.0, f64::max))
        .collect::<Vec<_>>();
    Ok(median(slowest))
}

/// Median time to move the buffer over one TCP loopback connection between two processes.
fn loopback_time() -> Result<f64> {
    let mut sink = Worker::spawn("sink", 0, 2)?;
    let addr = sink.expect_line("addr ")?;
    let mut source = Worker::spawn("source", 1, 2)?;
    source.stdin.write_all(format!("peer {addr}\n").as_bytes())?;
    source.stdin.flush()?;
    let times = source.times()?;
    if !sink.child.wait()?.success() {
        bail!("loopback sink failed");
    }
    Ok(median(times))
}

fn parent() -> Result<()> {
    let (bytes, iters) = sizes();
    let worlds: Vec<usize> = std::env::var("ISOCLR_BENCH_WORLDS")
        .unwrap_or_else(|_| "2,4".to_owned())
        .split(',')
        .map(|w| w.trim().parse())
        .collect::<Result<_, _>>()?;
    let gb = |secs: f64| bytes as f64 / secs / 1e9;
    let before = loopback_time()?;
    println!(
        "TCP ring all-reduce of {} MB f32 ({} values), median of {iters} iterations",
        bytes / 1_000_000,
        bytes / 4
    );
    let mut rows = Vec::new();
    for &p in &worlds {
        rows.push((p, ring_time(p)?));
    }
    let after = loopback_time()?;
    let loopback = (before + after) / 2.0;
    println!(
        "plain TCP loopback, one stream between two processes: {:.2} GB/s (before the rings {:.2}, after {:.2})",
        gb(loopback),
        gb(before),
        gb(after)
    );
    println!();
    println!("| processes | time per all-reduce | algbw | busbw | busbw / loopback |");
    println!("|---|---|---|---|---|");
    for (p, t) in rows {
        let busbw = gb(t) * 2.0 * (p as f64 - 1.0) / p as f64;
        println!(
            "| {p} | {:.3} s | {:.2} GB/s | {:.2} GB/s | {:.2} |",
            t,
            gb(t),
            busbw,
            busbw / gb(loopback)
        );
    }
    Ok(())
}
