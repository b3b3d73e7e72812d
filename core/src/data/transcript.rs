//! One mature transcript as stored in a dataset, and its 6-track encoding (METHOD.md, "Input encoding").
//!
//! Knows nothing of files or tensors: the encoding is written into plain byte buffers, each value in
//! quarter units ([`TRACK_UNIT`]), which is a quarter of the bytes of `f32` to build, hold and upload.

use serde::{Deserialize, Serialize};

use super::{DataError, Result};

/// Number of input tracks: A, C, G, T, codon starts, exon ends.
pub const TRACKS: usize = 6;
/// Track index of the codon-start (CDS) track.
pub const CODON_TRACK: usize = 4;
/// Track index of the splice (exon end) track.
pub const SPLICE_TRACK: usize = 5;
/// What one unit of a stored track value is worth: tracks hold only 0, 0.25 and 1, so they are stored
/// exactly as bytes counting quarters, and the model multiplies by this once they are on the device.
pub const TRACK_UNIT: f32 = 0.25;
/// A track value of 1 (a base that is present, a codon start, an exon end), in [`TRACK_UNIT`]s.
pub const TRACK_ONE: u8 = 4;
/// What [`is_nucleotide_letter`] allows, for messages.
pub const NUCLEOTIDE_LETTERS: &str = "0-based; allowed: A C G T U and IUPAC codes";

/// Letters a sequence may hold, in any case: the four bases, U, and the IUPAC ambiguity codes (kept as
/// unknown positions). One rule for every input: FASTA, tables, labels.
pub fn is_nucleotide_letter(letter: u8) -> bool {
    matches!(
        letter.to_ascii_uppercase(),
        b'A' | b'C' | b'G' | b'T' | b'U' | b'R' | b'Y' | b'S' | b'W' | b'K' | b'M' | b'B' | b'D' | b'H' | b'V' | b'N'
    )
}

/// Value written in all four base tracks for a non-ACGT letter, and in all six tracks at a masked position:
/// 0.25, in [`TRACK_UNIT`]s.
pub const UNKNOWN_VALUE: u8 = 1;

/// A mature (spliced) RNA, 5'→3', with its annotation in transcript coordinates.
///
/// The sequence is 2-bit packed (A=0, C=1, G=2, T=3, four bases per byte, first base in the low bits);
/// letters other than A, C, G, T are stored as A in the packed bytes and listed in `ambiguous`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transcript {
    /// Transcript id from the annotation (e.g. `ENST00000456328.2`).
    pub id: String,
    /// Gene id from the annotation.
    pub gene_id: String,
    /// Index of this transcript's group in the dataset's group index.
    pub group: u32,
    /// Length in nucleotides.
    pub len: u32,
    /// 2-bit packed bases, `len.div_ceil(4)` bytes.
    pub packed: Vec<u8>,
    /// Positions (ascending) of letters that are not A, C, G, T/U, with the letter (upper case).
    pub ambiguous: Vec<(u32, u8)>,
    /// Last nucleotide of every exon in transcript order, strictly ascending; the last one is `len - 1`.
    pub exon_ends: Vec<u32>,
    /// Coding region `[start, end)` in transcript coordinates, stop codon included; `None` when non-coding.
    pub cds: Option<(u32, u32)>,
}

/// Maps a nucleotide letter to its 2-bit code; `None` for anything that is not A, C, G, T or U.
fn base_code(letter: u8) -> Option<u8> {
    match letter.to_ascii_uppercase() {
        b'A' => Some(0),
        b'C' => Some(1),
        b'G' => Some(2),
        b'T' | b'U' => Some(3),
        _ => None,
    }
}

const BASES: [u8; 4] = [b'A', b'C', b'G', b'T'];

impl Transcript {
    /// Builds a transcript from its letters and annotation, checking that the annotation fits the sequence.
    ///
    /// Accepts upper or lower case; U is read as T; any other ASCII letter (N, IUPAC codes) is kept as
    /// an ambiguous position. Errors with [`DataError::Invalid`] naming the transcript when the sequence is
    /// empty or holds a non-letter, when exon ends are not strictly ascending or do not end at `len - 1`, or
    /// when the CDS is empty or lies outside the transcript.
    pub fn new(
        id: impl Into<String>,
        gene_id: impl Into<String>,
        group: u32,
        sequence: &[u8],
        exon_ends: Vec<u32>,
        cds: Option<(u32, u32)>,
    ) -> Result<Self> {
        let id = id.into();
        let invalid = |why: String| DataError::Invalid {
            what: format!("transcript {id}"),
            why,
        };
        if sequence.is_empty() {
            return Err(invalid("empty sequence".into()));
        }
        let len = u32::try_from(sequence.len()).map_err(|_| invalid("sequence longer than 4 Gb".into()))?;
        let mut packed = vec![0u8; sequence.len().div_ceil(4)];
        let mut ambiguous = Vec::new();
        for (pos, &letter) in sequence.iter().enumerate() {
            match base_code(letter) {
                Some(code) => packed[pos / 4] |= code << (2 * (pos % 4)),
                None if is_nucleotide_letter(letter) => ambiguous.push((pos as u32, letter.to_ascii_uppercase())),
                None => {
                    return Err(invalid(format!(
                        "illegal letter {:?} at position {pos} ({NUCLEOTIDE_LETTERS})",
                        char::from(letter)
                    )));
                }
            }
        }
        if exon_ends.is_empty() {
            return Err(invalid("no exons".into()));
        }
        if exon_ends.windows(2).any(|w| w[0] >= w[1]) {
            return Err(invalid(format!("exon ends not strictly ascending: {exon_ends:?}")));
        }
        let last = *exon_ends.last().unwrap_or(&0);
        if last != len - 1 {
            return Err(invalid(format!(
                "summed exon length {} differs from sequence length {len}",
                last + 1
            )));
        }
        if let Some((start, end)) = cds
            && (start >= end || end > len)
        {
            return Err(invalid(format!(
                "CDS [{start}, {end}) outside transcript of length {len}"
            )));
        }
        Ok(Self {
            id,
            gene_id: gene_id.into(),
            group,
            len,
            packed,
            ambiguous,
            exon_ends,
            cds,
        })
    }

    /// Length in nucleotides as `usize`.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Always false: a transcript holds at least one nucleotide.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Decodes the sequence back to upper-case letters (T, never U; ambiguous letters restored).
    pub fn sequence(&self) -> Vec<u8> {
        let mut letters: Vec<u8> = (0..self.len())
            .map(|pos| BASES[usize::from((self.packed[pos / 4] >> (2 * (pos % 4))) & 3)])
            .collect();
        for &(pos, letter) in &self.ambiguous {
            letters[pos as usize] = letter;
        }
        letters
    }

    /// Writes the 6-track encoding into `out` in [`TRACK_UNIT`]s, laid out channel-first: track `t` of
    /// position `p` goes to `out[t * stride + offset + p]`. Only the transcript's own `len` positions of each track are written,
    /// so the caller zero-fills padding (and any shift, by choosing `offset`).
    ///
    /// Panics if `out` is shorter than `5 * stride + offset + len` — a caller's sizing bug, not user input.
    pub fn write_tracks(&self, out: &mut [u8], stride: usize, offset: usize) {
        let len = self.len();
        assert!(
            offset + len <= stride && out.len() >= TRACKS * stride,
            "track buffer too small"
        );
        for pos in 0..len {
            let code = usize::from((self.packed[pos / 4] >> (2 * (pos % 4))) & 3);
            for track in 0..4 {
                out[track * stride + offset + pos] = if track == code { TRACK_ONE } else { 0 };
            }
        }
        for &(pos, _) in &self.ambiguous {
            for track in 0..4 {
                out[track * stride + offset + pos as usize] = UNKNOWN_VALUE;
            }
        }
        let codon = &mut out[CODON_TRACK * stride + offset..CODON_TRACK * stride + offset + len];
        codon.fill(0);
        if let Some((start, end)) = self.cds {
            for pos in (start..end).step_by(3) {
                codon[pos as usize] = TRACK_ONE;
            }
        }
        let splice = &mut out[SPLICE_TRACK * stride + offset..SPLICE_TRACK * stride + offset + len];
        splice.fill(0);
        for &end in &self.exon_ends {
            splice[end as usize] = TRACK_ONE;
        }
    }

    /// The 6-track encoding as `[TRACKS][len]` rows of values (not units), for inspection and tests.
    pub fn tracks(&self) -> Vec<[f32; TRACKS]> {
        let len = self.len();
        let mut flat = vec![0; TRACKS * len];
        self.write_tracks(&mut flat, len, 0);
        (0..len)
            .map(|pos| std::array::from_fn(|t| f32::from(flat[t * len + pos]) * TRACK_UNIT))
            .collect()
    }
}

/// Reverse complement of a nucleotide sequence, keeping case; IUPAC codes map to their complements.
pub fn reverse_complement(sequence: &[u8]) -> Vec<u8> {
    sequence
        .iter()
        .rev()
        .map(|&b| {
            let c = match b.to_ascii_uppercase() {
                b'A' => b'T',
                b'T' | b'U' => b'A',
                b'C' => b'G',
                b'G' => b'C',
                b'R' => b'Y',
                b'Y' => b'R',
                b'K' => b'M',
                b'M' => b'K',
                b'B' => b'V',
                b'V' => b'B',
                b'D' => b'H',
                b'H' => b'D',
                other => other, // N, S, W are their own complements
            };
            if b.is_ascii_lowercase() {
                c.to_ascii_lowercase()
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(t: &Transcript) -> Vec<[f32; 6]> {
        t.tracks()
    }

    #[test]
    fn coding_multi_exon_plus_strand() {
        // Two exons (0..=4, 5..=11), CDS ATG at 2, stop TAA at 8..11 → codon starts 2, 5, 8.
        let t = Transcript::new("t1", "g1", 0, b"ccATGaaaTAAg", vec![4, 11], Some((2, 11))).unwrap();
        let r = rows(&t);
        assert_eq!(r.len(), 12);
        assert_eq!(r[0], [0.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(r[2], [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
        assert_eq!(r[4], [0.0, 0.0, 1.0, 0.0, 0.0, 1.0]);
        let codon: Vec<usize> = (0..12).filter(|&p| r[p][4] == 1.0).collect();
        assert_eq!(codon, vec![2, 5, 8]);
        let splice: Vec<usize> = (0..12).filter(|&p| r[p][5] == 1.0).collect();
        assert_eq!(splice, vec![4, 11]);
        assert_eq!(t.sequence(), b"CCATGAAATAAG");
    }

    #[test]
    fn non_coding_single_exon_with_ambiguous_letters_and_u() {
        let t = Transcript::new("t2", "g2", 3, b"ANRuG", vec![4], None).unwrap();
        let r = rows(&t);
        assert_eq!(r[1], [0.25, 0.25, 0.25, 0.25, 0.0, 0.0]);
        assert_eq!(r[2], [0.25, 0.25, 0.25, 0.25, 0.0, 0.0]);
        assert_eq!(r[3], [0.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
        assert_eq!(r[4], [0.0, 0.0, 1.0, 0.0, 0.0, 1.0]);
        assert!(r.iter().all(|row| row[4] == 0.0));
        assert_eq!(t.ambiguous, vec![(1, b'N'), (2, b'R')]);
        assert_eq!(t.sequence(), b"ANRTG");
    }

    #[test]
    fn write_tracks_respects_offset_and_leaves_padding_alone() {
        let t = Transcript::new("t", "g", 0, b"ACG", vec![2], Some((0, 3))).unwrap();
        let stride = 8;
        let mut out = vec![0u8; 6 * stride];
        t.write_tracks(&mut out, stride, 2);
        // Values in quarter units: 4 is 1.0.
        assert_eq!(&out[0..stride], &[0, 0, 4, 0, 0, 0, 0, 0]);
        assert_eq!(&out[4 * stride..5 * stride], &[0, 0, 4, 0, 0, 0, 0, 0]);
        assert_eq!(&out[5 * stride..6 * stride], &[0, 0, 0, 0, 4, 0, 0, 0]);
    }

    #[test]
    fn rejects_bad_annotation() {
        let err = Transcript::new("tx9", "g", 0, b"ACGT", vec![2], None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("tx9") && err.contains("summed exon length 3"), "{err}");
        assert!(Transcript::new("t", "g", 0, b"ACGT", vec![2, 1, 3], None).is_err());
        assert!(Transcript::new("t", "g", 0, b"ACGT", vec![3], Some((2, 5))).is_err());
        let err = Transcript::new("t", "g", 0, b"AC-T", vec![3], None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("position 2"), "{err}");
        assert!(Transcript::new("t", "g", 0, b"", vec![], None).is_err());
    }

    #[test]
    fn reverse_complement_keeps_case_and_iupac() {
        assert_eq!(reverse_complement(b"AcgTNRy"), b"rYNAcgT");
    }
}
