//! k-mer frequency features (k = 3…6), the sequence-only baseline of the probes (issue 6). Knows no tensors:
//! features are written into plain `f32` buffers.
//!
//! Layout of one transcript's vector: the 4^3 frequencies of 3-mers, then 4^4 of 4-mers, up to 4^6 of 6-mers
//! (5,440 values). Within one k, a k-mer's index is its 2-bit code read 5'→3' with the first base in the high
//! bits (A=0, C=1, G=2, T=3: `AAA` is 0, `AAC` is 1, `TTT` is 63). Each block holds counts divided by the
//! number of k-mers counted, so it sums to 1 (all zeros when the transcript has none, e.g. shorter than k).
//! k-mers that touch a non-ACGT letter are skipped.

use crate::data::Transcript;

/// Smallest k.
pub const K_MIN: usize = 3;
/// Largest k.
pub const K_MAX: usize = 6;
/// Features per transcript: 4^3 + 4^4 + 4^5 + 4^6.
pub const KMER_FEATURES: usize = 64 + 256 + 1024 + 4096;

/// Offset of the block of `k`-mers in a feature vector.
const fn block_offset(k: usize) -> usize {
    // Sum of 4^j for j in K_MIN..k = (4^k − 4^K_MIN) / 3.
    ((1 << (2 * k)) - (1 << (2 * K_MIN))) / 3
}

/// Writes the k-mer frequencies of `transcript` into `out` (length [`KMER_FEATURES`]), overwriting it.
///
/// Panics if `out` is not [`KMER_FEATURES`] long — a caller's sizing bug, not user input.
pub fn write_kmer_frequencies(transcript: &Transcript, out: &mut [f32]) {
    assert_eq!(out.len(), KMER_FEATURES, "k-mer buffer has the wrong length");
    // Speed: one count per position, for the longest k-mer ending there (the 6-mer once a run of ACGT bases
    // is 6 long); the shorter k-mers ending there are its suffixes, so their counts are summed from the
    // longer blocks afterwards (4^6 + 4^5 + 4^4 additions) instead of four increments per position.
    let mut counts = [0u32; KMER_FEATURES];
    let len = transcript.len();
    let mut ambiguous = transcript.ambiguous.iter().map(|&(p, _)| p as usize).peekable();
    // `code` holds the last K_MAX bases (2 bits each); `run` counts consecutive ACGT bases ending here.
    let (mut code, mut run) = (0usize, 0usize);
    for pos in 0..len {
        if ambiguous.peek() == Some(&pos) {
            ambiguous.next();
            run = 0;
            continue;
        }
        let base = usize::from((transcript.packed[pos / 4] >> (2 * (pos % 4))) & 3);
        code = ((code << 2) | base) & ((1 << (2 * K_MAX)) - 1);
        run += 1;
        if run >= K_MIN {
            let k = run.min(K_MAX);
            counts[block_offset(k) + (code & ((1 << (2 * k)) - 1))] += 1;
        }
    }
    for k in (K_MIN..K_MAX).rev() {
        let (shorter, longer) = counts.split_at_mut(block_offset(k + 1));
        let shorter = &mut shorter[block_offset(k)..];
        let mask = (1 << (2 * k)) - 1;
        for (y, &c) in longer[..1 << (2 * (k + 1))].iter().enumerate() {
            shorter[y & mask] += c;
        }
    }
    for k in K_MIN..=K_MAX {
        let block = block_offset(k)..block_offset(k + 1);
        let total: u64 = counts[block.clone()].iter().map(|&c| u64::from(c)).sum();
        let scale = if total > 0 { 1.0 / total as f64 } else { 0.0 };
        for (o, &c) in out[block.clone()].iter_mut().zip(&counts[block]) {
            *o = (f64::from(c) * scale) as f32;
        }
    }
}

/// The k-mer frequencies of every transcript, row-major: `transcripts.len() × KMER_FEATURES` `f32` values.
///
/// Uses all available cores (each transcript is independent); the result does not depend on their number.
pub fn kmer_features(transcripts: &[&Transcript]) -> Vec<f32> {
    let mut out = vec![0.0f32; transcripts.len() * KMER_FEATURES];
    if transcripts.is_empty() {
        return out;
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(transcripts.len());
    let per_thread = transcripts.len().div_ceil(threads);
    std::thread::scope(|scope| {
        for (chunk, rows) in transcripts
            .chunks(per_thread)
            .zip(out.chunks_mut(per_thread * KMER_FEATURES))
        {
            scope.spawn(move || {
                for (t, row) in chunk.iter().zip(rows.chunks_exact_mut(KMER_FEATURES)) {
                    write_kmer_frequencies(t, row);
                }
            });
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(seq: &[u8]) -> Transcript {
        Transcript::new("t", "g", 0, seq, vec![seq.len().max(1) as u32 - 1], None).unwrap()
    }

    fn index(kmer: &[u8]) -> usize {
        let code = kmer.iter().fold(0, |c, &b| {
            (c << 2)
                | match b {
                    b'A' => 0,
                    b'C' => 1,
                    b'G' => 2,
                    _ => 3,
                }
        });
        block_offset(kmer.len()) + code
    }

    /// Counting every window directly, for comparison.
    fn naive(seq: &[u8]) -> Vec<f32> {
        let mut out = vec![0.0f32; KMER_FEATURES];
        for k in K_MIN..=K_MAX {
            let windows: Vec<&[u8]> = seq
                .windows(k)
                .filter(|w| w.iter().all(|b| b"ACGT".contains(b)))
                .collect();
            for w in &windows {
                out[index(w)] += 1.0 / windows.len() as f32;
            }
        }
        out
    }

    #[test]
    fn layout_and_counts() {
        assert_eq!(block_offset(K_MAX + 1), KMER_FEATURES);
        assert_eq!(KMER_FEATURES, 5440);
        let mut out = vec![1.0; KMER_FEATURES];
        write_kmer_frequencies(&tx(b"AAAC"), &mut out);
        // 3-mers AAA, AAC; one 4-mer AAAC; no 5- or 6-mers.
        assert_eq!(out[index(b"AAA")], 0.5);
        assert_eq!(out[index(b"AAC")], 0.5);
        assert_eq!(out[index(b"AAAC")], 1.0);
        assert_eq!(out.iter().sum::<f32>(), 2.0);
        assert_eq!(index(b"TTT"), 63);
    }

    #[test]
    fn matches_naive_counting_with_ambiguous_letters_and_u() {
        let seq = b"ACGTTGCANNACGUACGGGTTTACGATCGATCGATNACGTACGTAAAAAACCCCCGGGGTTTT";
        let t = tx(seq);
        let mut out = vec![0.0; KMER_FEATURES];
        write_kmer_frequencies(&t, &mut out);
        let want = naive(&t.sequence());
        for (i, (a, b)) in out.iter().zip(&want).enumerate() {
            assert!((a - b).abs() < 1e-6, "feature {i}: {a} vs {b}");
        }
        for k in K_MIN..=K_MAX {
            let sum: f32 = out[block_offset(k)..block_offset(k + 1)].iter().sum();
            assert!((sum - 1.0).abs() < 1e-5, "k={k}: {sum}");
        }
    }

    #[test]
    fn short_or_all_ambiguous_sequences_give_zeros() {
        let mut out = vec![1.0; KMER_FEATURES];
        write_kmer_frequencies(&tx(b"AC"), &mut out);
        assert!(out.iter().all(|&v| v == 0.0));
        write_kmer_frequencies(&tx(b"NNNNNNNN"), &mut out);
        assert!(out.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn batch_rows_match_single_transcripts() {
        let ts: Vec<Transcript> = (0..37).map(|i| tx(&b"ACGTTGCAAGT".repeat(i + 1))).collect();
        let all = kmer_features(&ts.iter().collect::<Vec<_>>());
        assert_eq!(all.len(), ts.len() * KMER_FEATURES);
        let mut one = vec![0.0; KMER_FEATURES];
        for (i, t) in ts.iter().enumerate() {
            write_kmer_frequencies(t, &mut one);
            assert_eq!(&all[i * KMER_FEATURES..(i + 1) * KMER_FEATURES], &one[..]);
        }
        assert!(kmer_features(&[]).is_empty());
    }

    /// 10^4 transcripts of 3 kb; prints the time (run with `--nocapture`). Asserts a loose bound so a slow CI
    /// machine does not fail it; the measured figure goes into the commit and docs.
    #[test]
    fn speed_ten_thousand_3kb_transcripts() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let ts: Vec<Transcript> = (0..10_000)
            .map(|_| {
                let seq: Vec<u8> = (0..3000)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        b"ACGT"[(state >> 33) as usize & 3]
                    })
                    .collect();
                tx(&seq)
            })
            .collect();
        let start = std::time::Instant::now();
        let features = kmer_features(&ts.iter().collect::<Vec<_>>());
        let elapsed = start.elapsed();
        println!(
            "k-mer features: 10^4 x 3 kb in {:.3} s on {} threads",
            elapsed.as_secs_f64(),
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        assert_eq!(features.len(), 10_000 * KMER_FEATURES);
        assert!(elapsed.as_secs_f64() < 10.0);
    }
}
