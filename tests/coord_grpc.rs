//! The coordinator and its workers over real gRPC on 127.0.0.1:0 (no libtorch): shards equal
//! `plan_shard` for every rank and step and partition the global batch, metrics and STOP at the end, the
//! job token refused when missing or wrong, a silent worker aborting the job by name, a broken stream,
//! workers leaving on SUSPEND with batches still to stream, a late rendezvous, and TLS.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use isoclr::config::Config;
use isoclr::coord::{CoordError, Coordinator, CoordinatorHandle, CoordinatorOptions, CoordinatorOutcome, Progress};
use isoclr::data::batch::{Shard, plan_shard};
use isoclr::data::prep::{PrepInput, PrepOptions, prep};
use isoclr::data::synth::{SynthOptions, synth};
use isoclr::data::{Augment, Dataset, PassLayout, Sampler};
use isoclr::metrics::StepMetrics;
use isoclr::worker::{Action, ClientTls, ErrorKind, Registration, Token, WorkerClient};
use isoclr_proto::CoordinatorClient;
use isoclr_proto::v1::{RegisterRequest, StreamBatchesRequest};

const STEPS: u64 = 4;
const BATCH: usize = 6;

fn dataset(dir: &Path) -> Arc<Dataset> {
    let summary = synth(&SynthOptions {
        out: dir.join("synth"),
        genes: 40,
        seed: 3,
        length_scale: 0.2,
        ..Default::default()
    })
    .unwrap();
    prep(&PrepOptions {
        homology: Some(summary.homology),
        ..PrepOptions::new(
            PrepInput::Genome {
                annotation: summary.gtf,
                genome: summary.genome,
            },
            dir.join("ds"),
        )
    })
    .unwrap();
    Arc::new(Dataset::open(&dir.join("ds")).unwrap())
}

fn config(extra: &[&str]) -> Config {
    let mut overrides: Vec<String> = [
        format!("train.steps={STEPS}"),
        format!("train.batch_size={BATCH}"),
        "train.seed=11".into(),
        "dist.prefetch=2".into(),
        "dist.heartbeat_interval_s=0.2".into(),
        "dist.heartbeat_timeout_s=2".into(),
        "dist.rendezvous_timeout_s=20".into(),
        "dist.rpc_timeout_s=5".into(),
    ]
    .into();
    overrides.extend(extra.iter().map(|s| s.to_string()));
    Config::load(None, &overrides).unwrap()
}

fn token() -> Token {
    Token::new("test-token-0123456789abcdef", "test").unwrap()
}

struct Running {
    addr: SocketAddr,
    handle: CoordinatorHandle,
    done: mpsc::Receiver<Result<CoordinatorOutcome, CoordError>>,
}

impl Running {
    /// The coordinator's result, which must come within `limit`.
    fn result(&self, limit: Duration) -> Result<CoordinatorOutcome, CoordError> {
        self.done
            .recv_timeout(limit)
            .expect("the coordinator did not end in time")
    }
}

/// Starts a coordinator on its own runtime thread.
fn start(config: Config, data: Arc<Dataset>, world: usize, out: &Path) -> Running {
    let mut opts = CoordinatorOptions::new(config, data, world, token(), out.to_owned());
    opts.progress = Progress::Off;
    opts.addr_file = Some(out.join("addr"));
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done) = mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let coordinator = Coordinator::bind(opts).await.unwrap();
            ready_tx.send((coordinator.local_addr(), coordinator.handle())).unwrap();
            let _ = done_tx.send(coordinator.serve().await);
        });
    });
    let (addr, handle) = ready_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    let written = std::fs::read_to_string(out.join("addr")).unwrap();
    assert_eq!(
        written.trim(),
        addr.to_string(),
        "the address file names the bound address"
    );
    Running { addr, handle, done }
}

fn connect(addr: SocketAddr, tls: Option<ClientTls>) -> WorkerClient {
    WorkerClient::connect(&addr.to_string(), &token(), tls, Duration::from_secs(5)).unwrap()
}

/// One worker's whole run: register, heart-beat, take every shard, report, shut down.
fn worker(addr: SocketAddr, local_rank: u32, tls: Option<ClientTls>) -> (usize, Vec<Shard>, Vec<Action>) {
    let client = connect(addr, tls);
    let rendezvous = client
        .register(
            &Registration::this_process(local_rank, "cpu", ""),
            Duration::from_secs(20),
        )
        .unwrap();
    let rank = rendezvous.rank;
    assert_eq!(rendezvous.config.train.steps, STEPS);
    let heartbeat = client.start_heartbeat(rank, Duration::from_millis(200), Duration::from_secs(2));
    let shards = client.shards(rank, rendezvous.start_step, 2).unwrap();
    let mut got = Vec::new();
    let mut actions = Vec::new();
    for step in 0..STEPS {
        heartbeat.check().unwrap();
        heartbeat.set_step(step);
        let shard = shards.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
        let metrics = StepMetrics {
            step,
            loss: 1.0 / (step + 1) as f64 + rank as f64,
            accuracy: 0.5,
            seq_per_s: 100.0,
            lr: 0.01,
            pad_fraction: 0.25,
            ..Default::default()
        };
        actions.push(client.report(rank, &metrics, false).unwrap().action);
        got.push(shard);
    }
    assert!(
        shards.recv_timeout(Duration::from_secs(10)).is_err(),
        "the stream ends after the last step"
    );
    client.shutdown(rank, "done", 0).unwrap();
    (rank, got, actions)
}

fn planned(data: &Dataset, config: &Config, step: u64, rank: usize, world: usize) -> Shard {
    let t = &config.train;
    let sampler = Sampler::new(t.seed, t.batch_size, data.groups.len()).unwrap();
    let augment = Augment {
        mask_fraction: t.mask_fraction,
        max_shift: t.max_shift,
        max_len: data.manifest.max_len,
    };
    plan_shard(data, &sampler, &augment, t.seed, step, rank, world).unwrap()
}

#[test]
fn workers_receive_exactly_their_shards_report_and_stop() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    for world in [2usize, 3] {
        let out = dir.path().join(format!("out{world}"));
        let config = config(&[]);
        let running = start(config.clone(), data.clone(), world, &out);
        let workers: Vec<_> = (0..world as u32)
            .map(|local| {
                let addr = running.addr;
                std::thread::spawn(move || worker(addr, local, None))
            })
            .collect();
        let mut results: Vec<_> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        results.sort_by_key(|(rank, _, _)| *rank);
        let outcome = running.result(Duration::from_secs(20)).unwrap();
        assert_eq!(outcome.steps, STEPS);
        for (rank, shards, actions) in &results {
            let expected: Vec<Action> = (0..STEPS)
                .map(|s| if s + 1 == STEPS { Action::Stop } else { Action::Continue })
                .collect();
            assert_eq!(actions, &expected, "rank {rank}: CONTINUE then STOP at the last step");
            for (step, shard) in shards.iter().enumerate() {
                assert_eq!(
                    shard,
                    &planned(&data, &config, step as u64, *rank, world),
                    "rank {rank} step {step}"
                );
            }
        }
        for step in 0..STEPS as usize {
            let whole = planned(&data, &config, step as u64, 0, 1);
            let pairs: Vec<_> = results.iter().flat_map(|(_, s, _)| s[step].pairs.clone()).collect();
            assert_eq!(pairs, whole.pairs, "the ranks' pairs are the global batch, in order");
            let n = BATCH / world;
            for view in 0..2 {
                let views: Vec<_> = results
                    .iter()
                    .flat_map(|(_, s, _)| s[step].views[view * n..(view + 1) * n].to_vec())
                    .collect();
                assert_eq!(views, whole.views[view * BATCH..(view + 1) * BATCH]);
            }
        }
        let metrics = std::fs::read_to_string(&outcome.metrics_path).unwrap();
        let lines: Vec<serde_json::Value> = metrics.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), STEPS as usize, "{metrics}");
        for (step, line) in lines.iter().enumerate() {
            assert_eq!(line["step"], step as u64);
            assert_eq!(line["loss"], 1.0 / (step + 1) as f64, "rank 0's loss");
            assert_eq!(line["seq_per_s"], 100.0 * world as f64, "summed over ranks");
            for key in ["accuracy", "lr", "pad_fraction", "elapsed_s"] {
                assert!(line[key].is_number(), "{key} in {line}");
            }
        }
    }
}

#[test]
fn batches_arrive_encoded_as_the_one_process_trainer_builds_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let config = config(&["train.steps=2"]);
    let running = start(config.clone(), data.clone(), 1, &dir.path().join("out"));
    let client = connect(running.addr, None);
    let rendezvous = client
        .register(
            &Registration::this_process(0, "cpu", "127.0.0.1:9"),
            Duration::from_secs(20),
        )
        .unwrap();
    assert_eq!((rendezvous.rank, rendezvous.world_size), (0, 1));
    assert_eq!(rendezvous.ring_addresses, vec!["127.0.0.1:9".to_string()]);
    let sampler = Sampler::new(config.train.seed, BATCH, data.groups.len()).unwrap();
    assert_eq!(rendezvous.steps_per_epoch, sampler.steps_per_epoch());
    // Packed passes (the default layout with batch norm), as `isoclr train` cuts them.
    let layout = PassLayout {
        position_budget: 4096,
        packing_gap: Some(config.model.shape().packing_gap()),
    };
    let batches = client.batches(0, 0, layout, 2).unwrap();
    for step in 0..2u64 {
        let batch = batches.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
        let expected = planned(&data, &config, step, 0, 1).encode(layout);
        assert_eq!((batch.step, batch.offset, batch.global_pairs), (step, 0, BATCH));
        assert_eq!(batch.pairs, expected.pairs);
        assert_eq!(batch.micro, expected.micro);
        let control = client
            .report(
                0,
                &StepMetrics {
                    step,
                    ..Default::default()
                },
                false,
            )
            .unwrap();
        assert_eq!(control.action, if step == 1 { Action::Stop } else { Action::Continue });
    }
    client.shutdown(0, "done", 0).unwrap();
    running.result(Duration::from_secs(20)).unwrap();
}

/// Calls without the token, or with a wrong one, through the raw generated client.
#[test]
fn calls_without_the_right_token_are_refused_and_get_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let running = start(config(&[]), data, 1, &dir.path().join("out"));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", running.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut raw = CoordinatorClient::new(channel);
        let register = || RegisterRequest {
            host: "intruder".into(),
            pid: 1,
            ..Default::default()
        };
        for header in [
            None,
            Some("Bearer wrong-token-0123456789abcdef"),
            Some("test-token-0123456789abcdef"),
        ] {
            let mut request = tonic::Request::new(register());
            if let Some(value) = header {
                request.metadata_mut().insert("authorization", value.parse().unwrap());
            }
            let status = raw.register(request).await.unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{header:?}: {status}");

            let mut request = tonic::Request::new(StreamBatchesRequest { rank: 0, from_step: 0 });
            if let Some(value) = header {
                request.metadata_mut().insert("authorization", value.parse().unwrap());
            }
            match raw.stream_batches(request).await {
                Err(status) => assert_eq!(status.code(), tonic::Code::Unauthenticated),
                Ok(response) => {
                    let first = response.into_inner().message().await;
                    panic!("an unauthenticated stream yielded {first:?}");
                }
            }
        }
    });
    // The refused registration did not count: a real worker still completes the rendezvous of one as rank 0.
    let client = connect(running.addr, None);
    let rendezvous = client
        .register(&Registration::this_process(0, "cpu", ""), Duration::from_secs(20))
        .unwrap();
    assert_eq!((rendezvous.rank, rendezvous.world_size), (0, 1));
    let wrong = WorkerClient::connect(
        &running.addr.to_string(),
        &Token::new("another-token-0123456789", "test").unwrap(),
        None,
        Duration::from_secs(5),
    )
    .unwrap();
    let err = wrong.heartbeat(0, 0).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
    running.handle.abort("test over");
    let err = running.result(Duration::from_secs(20)).unwrap_err();
    assert!(err.to_string().contains("test over"), "{err}");
}

#[test]
fn a_silent_worker_aborts_the_job_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let running = start(config(&[]), data, 2, &dir.path().join("out"));
    let addr = running.addr;
    let silent = std::thread::spawn(move || {
        let client = connect(addr, None);
        let mut me = Registration::this_process(1, "cpu", "");
        me.requested_rank = Some(1);
        me.pid = 4242;
        client.register(&me, Duration::from_secs(20)).unwrap().rank
        // The client is dropped here: no heartbeat ever again.
    });
    let client = connect(addr, None);
    let mut me = Registration::this_process(0, "cpu", "");
    me.requested_rank = Some(0);
    let rendezvous = client.register(&me, Duration::from_secs(20)).unwrap();
    assert_eq!(rendezvous.rank, 0);
    assert_eq!(silent.join().unwrap(), 1);
    assert_eq!(rendezvous.peers[1].pid, 4242);
    let heartbeat = client.start_heartbeat(0, Duration::from_millis(200), Duration::from_secs(2));
    let start = Instant::now();
    while !heartbeat.signal().is_set() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no ABORT within the heartbeat timeout"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let reason = heartbeat.signal().reason().unwrap();
    assert!(
        reason.contains("rank 1") && reason.contains("pid 4242") && reason.contains("no heartbeat"),
        "{reason}"
    );
    let err = heartbeat.check().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Aborted);
    match running.result(Duration::from_secs(10)) {
        Err(CoordError::WorkerLost { rank: 1, pid: 4242, .. }) => {}
        other => panic!("expected the lost worker rank 1, got {other:?}"),
    }
}

#[test]
fn a_broken_stream_aborts_the_job_and_a_late_rendezvous_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let running = start(config(&["train.steps=50"]), data.clone(), 1, &dir.path().join("out"));
    let client = connect(running.addr, None);
    client
        .register(&Registration::this_process(0, "cpu", ""), Duration::from_secs(20))
        .unwrap();
    let heartbeat = client.start_heartbeat(0, Duration::from_millis(200), Duration::from_secs(2));
    let shards = client.shards(0, 0, 1).unwrap();
    shards.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
    drop(shards); // the worker stops listening mid-run: its stream breaks
    match running.result(Duration::from_secs(10)) {
        Err(CoordError::WorkerLost { rank: 0, why, .. }) => assert!(why.contains("stream broke"), "{why}"),
        other => panic!("expected a broken stream, got {other:?}"),
    }
    drop(heartbeat);

    let running = start(
        config(&["dist.rendezvous_timeout_s=1"]),
        data,
        2,
        &dir.path().join("late"),
    );
    let client = connect(running.addr, None);
    let err = client
        .register(&Registration::this_process(0, "cpu", ""), Duration::from_secs(1))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.to_string().contains("1 of 2 workers"), "{err}");
    assert!(matches!(
        running.result(Duration::from_secs(10)),
        Err(CoordError::RendezvousTimeout { .. })
    ));
}

/// Pre-emption mid-run: a stop signal suspends the job at a step boundary while the batch streams still have
/// steps to send. The workers close their streams as they leave after SUSPEND, before they call Shutdown (a
/// worker's process ends its stream first); that is an orderly suspension, not a lost worker.
#[test]
fn workers_leaving_on_suspend_with_batches_still_to_stream_suspend_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let running = start(config(&["train.steps=50"]), data, 2, &dir.path().join("out"));
    // Real ranks move in step through their collectives: neither starts a step before both reported the last.
    let lockstep = Arc::new(std::sync::Barrier::new(2));
    let workers: Vec<_> = (0..2u32)
        .map(|local| {
            let addr = running.addr;
            let lockstep = lockstep.clone();
            std::thread::spawn(move || {
                let client = connect(addr, None);
                let rank = client
                    .register(&Registration::this_process(local, "cpu", ""), Duration::from_secs(20))
                    .unwrap()
                    .rank;
                let heartbeat = client.start_heartbeat(rank, Duration::from_millis(200), Duration::from_secs(2));
                let shards = client.shards(rank, 0, 1).unwrap();
                let mut actions = Vec::new();
                for step in 0..4u64 {
                    shards.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
                    let metrics = StepMetrics {
                        step,
                        ..Default::default()
                    };
                    // Rank 0's process received the scheduler's warning signal during step 1.
                    let action = client.report(rank, &metrics, rank == 0 && step == 1).unwrap().action;
                    actions.push(action);
                    lockstep.wait();
                    if action == Action::Suspend {
                        break;
                    }
                }
                drop(shards);
                // The coordinator sees the closed stream well before this worker's Shutdown.
                std::thread::sleep(Duration::from_millis(600));
                heartbeat.check().unwrap();
                client.shutdown(rank, "suspended", 0).unwrap();
                (rank, actions)
            })
        })
        .collect();
    let actions: Vec<Vec<Action>> = workers.into_iter().map(|w| w.join().unwrap().1).collect();
    assert_eq!(actions[0], actions[1], "every rank gets each boundary's one decision");
    assert_eq!(actions[0].last(), Some(&Action::Suspend), "{actions:?}");
    // The signal came with rank 0's report of step 1: SUSPEND after step 1, or after step 2 when rank 1's
    // report had already decided step 1.
    match running.result(Duration::from_secs(20)) {
        Ok(outcome) => assert!(
            matches!(outcome.suspended_after, Some(2 | 3)) && outcome.suspended_after == Some(actions[0].len() as u64),
            "suspended after {:?} steps, actions {actions:?}",
            outcome.suspended_after
        ),
        Err(e) => panic!("an orderly suspension failed the job: {e}"),
    }
}

#[test]
fn tls_with_a_self_signed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let config = config(&[
        &format!("dist.tls_cert={}", cert.display()),
        &format!("dist.tls_key={}", key.display()),
    ]);
    let running = start(config.clone(), data.clone(), 1, &dir.path().join("out"));
    let tls = ClientTls::from_config(&config.dist, &running.addr.to_string()).unwrap();
    assert_eq!(tls.as_ref().unwrap().domain, "127.0.0.1");
    let (rank, shards, actions) = worker(running.addr, 0, tls);
    assert_eq!(rank, 0);
    assert_eq!(shards[2], planned(&data, &config, 2, 0, 1));
    assert_eq!(actions.last(), Some(&Action::Stop));
    running.result(Duration::from_secs(20)).unwrap();

    // A client speaking plain HTTP/2 to the TLS port gets nowhere.
    let running = start(config, data, 1, &dir.path().join("plain"));
    let plain = WorkerClient::connect(&running.addr.to_string(), &token(), None, Duration::from_secs(2));
    let refused = match plain {
        Err(e) => e,
        Ok(client) => client.heartbeat(0, 0).unwrap_err(),
    };
    assert!(
        matches!(
            refused.kind(),
            ErrorKind::Unavailable | ErrorKind::Internal | ErrorKind::Timeout | ErrorKind::Cancelled
        ),
        "{refused}"
    );
    running.handle.abort("test over");
    assert!(running.result(Duration::from_secs(20)).is_err());
}
