//! Tests of the TCP ring: threads on 127.0.0.1, one ring member per thread.

use super::*;

fn config(op_secs: f64) -> RingConfig {
    RingConfig {
        connect_timeout: Duration::from_secs(10),
        op_timeout: Duration::from_secs_f64(op_secs),
    }
}

/// Connects a world of `p` rings on loopback; `tokens[r]` is rank r's token.
fn connect_world(tokens: &[&[u8]], cfg: RingConfig) -> Vec<Result<TcpRing>> {
    let listeners: Vec<_> = tokens
        .iter()
        .map(|_| TcpRing::bind("127.0.0.1:0".parse().unwrap()).unwrap())
        .collect();
    let peers: Vec<_> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    thread::scope(|s| {
        let handles: Vec<_> = listeners
            .into_iter()
            .enumerate()
            .map(|(r, l)| {
                let (peers, token) = (peers.clone(), tokens[r]);
                s.spawn(move || TcpRing::connect(l, r, peers, token, cfg))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn world(p: usize, cfg: RingConfig) -> Vec<TcpRing> {
    connect_world(&vec![b"job-1".as_slice(); p], cfg)
        .into_iter()
        .map(|r| r.unwrap())
        .collect()
}

/// Runs `f` on every rank in its own thread; returns the ranks' results in rank order.
fn run<T: Send>(rings: &mut [TcpRing], f: impl Fn(&mut TcpRing) -> T + Sync) -> Vec<T> {
    thread::scope(|s| {
        let handles: Vec<_> = rings.iter_mut().map(|ring| s.spawn(|| f(ring))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// A deterministic value of rank `r` at index `i`, mixed signs and magnitudes.
fn value(r: usize, i: usize) -> f32 {
    let h = (r as u64 * 0x9E37_79B9_7F4A_7C15) ^ (i as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let h = (h ^ (h >> 31)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((h >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * (1.0 + (i % 7) as f32 * 10.0)
}

#[test]
fn all_reduce_matches_f64_reference_and_is_identical_on_every_rank() {
    for p in 1..=4 {
        let mut rings = world(p, config(10.0));
        for len in [0usize, 1, 3, 1000, 100_003] {
            for op in [ReduceOp::Sum, ReduceOp::Mean] {
                let results = run(&mut rings, |ring| {
                    let mut buf: Vec<f32> = (0..len).map(|i| value(ring.rank(), i)).collect();
                    ring.all_reduce(&mut buf, op).unwrap();
                    buf
                });
                for other in &results[1..] {
                    let same = other.iter().zip(&results[0]).all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "p={p} len={len} {op:?}: ranks differ");
                }
                let div = if op == ReduceOp::Mean { p as f64 } else { 1.0 };
                for (i, got) in results[0].iter().enumerate() {
                    let exact: f64 = (0..p).map(|r| f64::from(value(r, i))).sum::<f64>() / div;
                    let scale: f64 = (0..p).map(|r| f64::from(value(r, i)).abs()).sum::<f64>() / div;
                    let err = (f64::from(*got) - exact).abs();
                    assert!(
                        err <= 1e-5 * scale + 1e-30,
                        "p={p} len={len} {op:?} i={i}: {got} vs {exact}"
                    );
                }
            }
        }
    }
}

#[test]
fn all_gather_concatenates_in_rank_order() {
    let mut rings = world(3, config(10.0));
    for len in [0usize, 5, 70_001] {
        let results = run(&mut rings, |ring| {
            let local: Vec<f32> = (0..len).map(|i| value(ring.rank(), i)).collect();
            let mut out = vec![f32::NAN; 3 * len];
            ring.all_gather(&local, &mut out).unwrap();
            out
        });
        let expected: Vec<f32> = (0..3).flat_map(|r| (0..len).map(move |i| value(r, i))).collect();
        for out in results {
            assert_eq!(out, expected);
        }
    }
}

#[test]
fn broadcast_from_a_non_zero_root() {
    let mut rings = world(3, config(10.0));
    for len in [0usize, 1, 600_001] {
        let results = run(&mut rings, |ring| {
            let mut buf: Vec<f32> = (0..len).map(|i| value(ring.rank(), i)).collect();
            ring.broadcast(&mut buf, 2).unwrap();
            buf
        });
        let expected: Vec<f32> = (0..len).map(|i| value(2, i)).collect();
        for buf in results {
            assert_eq!(buf, expected);
        }
    }
    let errors = run(&mut world(2, config(2.0)), |ring| {
        ring.broadcast(&mut [1.0], 5).is_err()
    });
    assert_eq!(errors, [true, true]);
}

#[test]
fn barrier_waits_for_the_last_rank() {
    let mut rings = world(4, config(10.0));
    let waited = run(&mut rings, |ring| {
        let start = Instant::now();
        if ring.rank() == 3 {
            thread::sleep(Duration::from_millis(300));
        }
        ring.barrier().unwrap();
        start.elapsed()
    });
    assert!(waited.iter().all(|w| *w >= Duration::from_millis(290)), "{waited:?}");
}

#[test]
fn world_of_one_needs_no_socket() {
    let listener = TcpRing::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut ring = TcpRing::connect(listener, 0, vec![addr], b"t", config(1.0)).unwrap();
    let mut buf = [1.0, 2.0];
    ring.all_reduce(&mut buf, ReduceOp::Mean).unwrap();
    assert_eq!(buf, [1.0, 2.0]);
    let mut out = [0.0; 2];
    ring.all_gather(&buf, &mut out).unwrap();
    assert_eq!(out, buf);
    ring.barrier().unwrap();
    assert!(ring.broadcast(&mut buf, 1).is_err());
}

#[test]
fn a_wrong_token_is_refused() {
    let results = connect_world(&[b"job-1", b"job-2"], config(1.0));
    for result in results {
        match result {
            Err(DistError::Invalid { why, .. }) => assert!(why.contains("token"), "{why}"),
            other => panic!("expected a token refusal, got {other:?}"),
        }
    }
    let bad_rank = TcpRing::connect(
        TcpRing::bind("127.0.0.1:0".parse().unwrap()).unwrap(),
        2,
        vec!["127.0.0.1:1".parse().unwrap(); 2],
        b"t",
        config(1.0),
    );
    assert!(matches!(bad_rank, Err(DistError::Invalid { .. })));
}

fn assert_peer_failure(result: &Result<()>, started: Instant) {
    assert!(
        matches!(result, Err(DistError::Timeout { .. } | DistError::Connection { .. })),
        "expected a timeout or connection error, got {result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_dead_peer_fails_the_others_without_hanging() {
    let mut rings = world(3, config(1.0));
    let dead = rings.pop();
    let started = Instant::now();
    let results = thread::scope(|s| {
        let survivors: Vec<_> = rings
            .iter_mut()
            .map(|ring| {
                s.spawn(move || {
                    let mut buf = vec![1.0f32; 3_000_000];
                    ring.all_reduce(&mut buf, ReduceOp::Sum)
                })
            })
            .collect();
        thread::sleep(Duration::from_millis(50));
        drop(dead);
        survivors.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>()
    });
    for result in &results {
        assert_peer_failure(result, started);
    }
    // The rings are broken now and say so.
    assert!(matches!(rings[0].barrier(), Err(DistError::Invalid { .. })));
}

#[test]
fn a_peer_dying_mid_operation_fails_the_others_without_hanging() {
    let mut rings = world(3, config(1.0));
    // Closing rank 2's sockets from outside, as the kernel does when its process dies.
    let wire = rings[2].wire.as_ref().unwrap();
    let sockets = [
        wire.next.stream.try_clone().unwrap(),
        wire.prev.stream.try_clone().unwrap(),
    ];
    let started = Instant::now();
    let results = thread::scope(|s| {
        let handles: Vec<_> = rings
            .iter_mut()
            .map(|ring| {
                s.spawn(move || {
                    let mut buf = vec![1.0f32; 20_000_000];
                    ring.all_reduce(&mut buf, ReduceOp::Sum)
                })
            })
            .collect();
        thread::sleep(Duration::from_millis(30));
        for socket in &sockets {
            socket.shutdown(Shutdown::Both).unwrap();
        }
        handles.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>()
    });
    for result in &results {
        assert_peer_failure(result, started);
    }
}

#[test]
fn a_stalled_peer_times_out() {
    let mut rings = world(3, config(10.0));
    rings.iter_mut().for_each(|r| r.set_op_timeout(Duration::from_secs(1)));
    let started = Instant::now();
    let results = run(&mut rings, |ring| {
        if ring.rank() == 2 {
            thread::sleep(Duration::from_secs(3));
            return Ok(());
        }
        ring.all_reduce(&mut [1.0, 2.0, 3.0], ReduceOp::Sum)
    });
    assert_peer_failure(&results[0], started);
    assert_peer_failure(&results[1], started);
    assert!(
        results
            .iter()
            .any(|r| matches!(r, Err(DistError::Timeout { peer: 2, .. }))),
        "{results:?}"
    );
}

#[test]
fn mismatched_lengths_and_ops_are_invalid() {
    let mut rings = world(2, config(2.0));
    let results = run(&mut rings, |ring| {
        let mut buf = vec![1.0f32; 10 + ring.rank()];
        ring.all_reduce(&mut buf, ReduceOp::Sum)
    });
    assert!(results.iter().all(|r| r.is_err()), "{results:?}");
    assert!(
        results
            .iter()
            .any(|r| matches!(r, Err(DistError::Invalid { why, .. }) if why.contains("buffer")))
    );

    let mut rings = world(2, config(2.0));
    let results = run(&mut rings, |ring| {
        if ring.rank() == 0 {
            ring.barrier()
        } else {
            ring.all_reduce(&mut [1.0], ReduceOp::Sum)
        }
    });
    assert!(
        results
            .iter()
            .any(|r| matches!(r, Err(DistError::Invalid { why, .. }) if why.contains("while")))
    );

    let mut rings = world(2, config(2.0));
    let results = run(&mut rings, |ring| ring.all_gather(&[1.0], &mut [0.0; 3]));
    assert!(results.iter().all(|r| r.is_err()), "{results:?}");
}

#[test]
fn chunks_partition_any_length() {
    for n in [0usize, 1, 3, 4, 10, 1001] {
        for p in 1..=5 {
            let ranges: Vec<_> = (0..p).map(|i| chunk(n, p, i)).collect();
            assert_eq!(ranges[0].start, 0);
            assert_eq!(ranges[p - 1].end, n);
            assert!(ranges.windows(2).all(|w| w[0].end == w[1].start));
        }
    }
}
