//! Coding regions inferred from sequence alone: the longest open reading frame of a transcript, for
//! annotations that carry no CDS (StringTie and other de-novo assemblies, mRNA collections), as TransDecoder
//! predicts them for such transcripts.
//!
//! Knows nothing of files or tensors.

/// The default minimum ORF length in codons, stop codon excluded: TransDecoder's default of 100 amino acids.
pub const DEFAULT_MIN_CODONS: u32 = 100;

fn codon(letters: &[u8], at: usize) -> [u8; 3] {
    let up = |b: u8| match b.to_ascii_uppercase() {
        b'U' => b'T',
        other => other,
    };
    [up(letters[at]), up(letters[at + 1]), up(letters[at + 2])]
}

fn is_stop(c: [u8; 3]) -> bool {
    matches!(&c, b"TAA" | b"TAG" | b"TGA")
}

/// The longest ATG…stop open reading frame on the forward strand of `letters` (mature RNA, 5'→3', any case,
/// U read as T), as `[start, end)` in transcript coordinates with the stop codon included, like
/// [`super::Transcript::cds`]. `None` when no frame holds an ATG followed in frame by a stop codon with at least
/// `min_codons` codons from the ATG to the stop (the ATG counted, the stop not: the protein's length).
///
/// In each of the three frames an ORF starts at the first ATG after the previous in-frame stop (so a nested
/// ATG never shortens it) and ends with the next in-frame stop; ORFs that run off the 3' end without a stop
/// are not counted. Of equally long ORFs the one nearest the 5' end wins. A codon holding a letter other than
/// A, C, G, T/U is neither a start nor a stop.
pub fn longest_orf(letters: &[u8], min_codons: u32) -> Option<(u32, u32)> {
    let mut best: Option<(usize, usize)> = None;
    for frame in 0..3 {
        let mut start: Option<usize> = None;
        let mut at = frame;
        while at + 3 <= letters.len() {
            let c = codon(letters, at);
            if start.is_none() && &c == b"ATG" {
                start = Some(at);
            } else if is_stop(c)
                && let Some(s) = start.take()
            {
                let end = at + 3;
                let longer = best.is_none_or(|(bs, be)| end - s > be - bs || (end - s == be - bs && s < bs));
                // Codons from the ATG to the stop, the stop not counted.
                if (end - s) / 3 > min_codons as usize && longer {
                    best = Some((s, end));
                }
            }
            at += 3;
        }
    }
    best.map(|(s, e)| (s as u32, e as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` sense codons that are neither ATG nor stops.
    fn filler(n: usize) -> String {
        "GCT".repeat(n)
    }

    #[test]
    fn finds_an_orf_in_each_frame_with_its_stop() {
        for frame in 0..3 {
            let seq = format!("{}ATG{}TAGCC", "C".repeat(frame), filler(4));
            assert_eq!(
                longest_orf(seq.as_bytes(), 1),
                Some((frame as u32, frame as u32 + 18)),
                "frame {frame}: {seq}"
            );
        }
    }

    #[test]
    fn no_start_no_stop_or_too_short_means_none() {
        assert_eq!(longest_orf(format!("{}TAA", filler(5)).as_bytes(), 1), None, "no ATG");
        assert_eq!(
            longest_orf(format!("ATG{}", filler(5)).as_bytes(), 1),
            None,
            "runs off the end"
        );
        // ATG + 4 codons + stop: 5 codons before the stop.
        let seq = format!("ATG{}TGA", filler(4));
        assert_eq!(longest_orf(seq.as_bytes(), 6), None, "one codon short of the minimum");
        assert_eq!(longest_orf(seq.as_bytes(), 5), Some((0, 18)), "exactly the minimum");
        assert_eq!(longest_orf(b"", 0), None);
        assert_eq!(longest_orf(b"AT", 0), None);
    }

    #[test]
    fn nested_atgs_keep_the_first_start() {
        let seq = format!("ATG{}ATG{}TAA", filler(2), filler(3));
        assert_eq!(longest_orf(seq.as_bytes(), 1), Some((0, seq.len() as u32)));
    }

    #[test]
    fn the_longest_wins_and_ties_go_to_the_5_prime_one() {
        // Frame 0: short ORF; frame 1: longer ORF further 3'.
        let short = format!("ATG{}TAA", filler(2));
        let long = format!("CATG{}TAG", filler(6));
        let seq = format!("{short}{long}");
        let start = short.len() as u32 + 1;
        assert_eq!(longest_orf(seq.as_bytes(), 1), Some((start, start + 24)));
        // Two equal ORFs in frame 0: the first one.
        let one = format!("ATG{}TAA", filler(3));
        let seq = format!("{one}{one}");
        assert_eq!(longest_orf(seq.as_bytes(), 1), Some((0, one.len() as u32)));
    }

    #[test]
    fn reads_lower_case_and_u_and_skips_ambiguous_codons() {
        assert_eq!(longest_orf(b"augGCUgcuuag", 1), Some((0, 12)));
        // ANG is not a start: the ORF starts at the later ATG.
        assert_eq!(longest_orf(b"ANGATGGCTGCTTAA", 1), Some((3, 15)));
        // TNA is not a stop: the ORF runs to the real one.
        assert_eq!(longest_orf(b"ATGTNAGCTTAA", 1), Some((0, 12)));
    }
}
