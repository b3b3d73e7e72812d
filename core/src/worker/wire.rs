//! The one place where a [`Shard`] becomes a [`ShardMessage`] and back: the coordinator encodes, the worker
//! decodes and validates. Sequences travel 2-bit packed as `bytes`; sorted position lists (masked
//! positions, exon ends) travel delta-encoded in packed `uint32`s, which halves the bytes of masks (gaps of
//! about 7 fit one varint byte where absolute positions up to 12,288 take two).
//!
//! Decoding never panics on a malformed message: every length, position and count that
//! [`Shard::encode`] relies on is checked, and a violation is a [`WireError`] naming the step and the field.
//! Must not import tch, the model or train modules, or the coordinator.

use bytes::Bytes;
use isoclr_proto::v1::{Cds, ShardMessage, View};

use crate::data::batch::{Shard, ViewSpec};
use crate::data::{Pair, Transcript};

/// Longest view (shift included) a message may carry; far above any real transcript, low enough that a
/// corrupt length cannot make the worker allocate gigabytes of tracks.
pub const MAX_VIEW_LEN: u32 = 1 << 22;

/// A message that does not describe a valid shard.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed shard message for step {step}: {field}: {why}")]
pub struct WireError {
    /// The step the message claims.
    pub step: u64,
    /// The offending field, e.g. `views[3].masked_deltas`.
    pub field: String,
    /// What is wrong.
    pub why: String,
}

/// Delta-encodes a strictly ascending list in place: the first value stays, each later one becomes its
/// difference to the previous.
fn delta_encode(mut values: Vec<u32>) -> Vec<u32> {
    for i in (1..values.len()).rev() {
        values[i] = values[i].wrapping_sub(values[i - 1]);
    }
    values
}

/// Undoes [`delta_encode`], checking that the result is strictly ascending and below `limit`.
fn delta_decode(deltas: &[u32], limit: u32) -> Result<Vec<u32>, String> {
    let mut out = Vec::with_capacity(deltas.len());
    let mut previous: Option<u32> = None;
    for (i, &delta) in deltas.iter().enumerate() {
        let value = match previous {
            None => delta,
            Some(_) if delta == 0 => return Err(format!("entry {i} repeats the previous position")),
            Some(p) => p.checked_add(delta).ok_or_else(|| format!("entry {i} overflows"))?,
        };
        if value >= limit {
            return Err(format!("position {value} (entry {i}) is not below {limit}"));
        }
        out.push(value);
        previous = Some(value);
    }
    Ok(out)
}

/// Encodes one view, taking its buffers.
fn view_to_message(view: ViewSpec) -> View {
    let t = view.transcript;
    let (ambiguous_positions, ambiguous_letters): (Vec<u32>, Vec<u8>) = t.ambiguous.into_iter().unzip();
    View {
        len: t.len,
        packed: Bytes::from(t.packed),
        ambiguous_positions,
        ambiguous_letters: Bytes::from(ambiguous_letters),
        exon_end_deltas: delta_encode(t.exon_ends),
        cds: t.cds.map(|(start, end)| Cds { start, end }),
        shift: view.shift,
        masked_deltas: delta_encode(view.masked),
        transcript_id: t.id,
        gene_id: t.gene_id,
        group: t.group,
    }
}

/// Encodes a shard for the wire, taking its buffers (sequence bytes move without a copy).
pub fn shard_to_message(shard: Shard) -> ShardMessage {
    let n = shard.pairs.len();
    let mut message = ShardMessage {
        step: shard.step,
        offset: shard.offset as u64,
        global_pairs: shard.global_pairs as u64,
        pair_groups: Vec::with_capacity(n),
        pair_view1: Vec::with_capacity(n),
        pair_view2: Vec::with_capacity(n),
        pair_group_sizes: Vec::with_capacity(n),
        views: Vec::with_capacity(shard.views.len()),
    };
    for pair in &shard.pairs {
        message.pair_groups.push(pair.group);
        message.pair_view1.push(pair.views[0]);
        message.pair_view2.push(pair.views[1]);
        message.pair_group_sizes.push(pair.group_size);
    }
    message.views.extend(shard.views.into_iter().map(view_to_message));
    message
}

/// Decodes and validates one view; `field` prefixes error fields.
fn view_from_message(view: View, step: u64, index: usize) -> Result<ViewSpec, WireError> {
    let bad = |name: &str, why: String| WireError {
        step,
        field: format!("views[{index}].{name}"),
        why,
    };
    let len = view.len;
    if len == 0 {
        return Err(bad("len", "empty view".into()));
    }
    let total = len
        .checked_add(view.shift)
        .filter(|&total| total <= MAX_VIEW_LEN)
        .ok_or_else(|| {
            bad(
                "len",
                format!("len {len} + shift {} exceeds {MAX_VIEW_LEN}", view.shift),
            )
        })?;
    let expected_bytes = len.div_ceil(4) as usize;
    if view.packed.len() != expected_bytes {
        return Err(bad(
            "packed",
            format!(
                "{} bytes for {len} nucleotides, expected {expected_bytes}",
                view.packed.len()
            ),
        ));
    }
    if view.ambiguous_letters.len() != view.ambiguous_positions.len() {
        return Err(bad(
            "ambiguous_letters",
            format!(
                "{} letters for {} positions",
                view.ambiguous_letters.len(),
                view.ambiguous_positions.len()
            ),
        ));
    }
    if let Some(w) = view.ambiguous_positions.windows(2).find(|w| w[0] >= w[1]) {
        return Err(bad(
            "ambiguous_positions",
            format!("not ascending at {} ≥ {}", w[0], w[1]),
        ));
    }
    if let Some(&p) = view.ambiguous_positions.iter().find(|&&p| p >= len) {
        return Err(bad("ambiguous_positions", format!("position {p} outside length {len}")));
    }
    let exon_ends = delta_decode(&view.exon_end_deltas, len).map_err(|why| bad("exon_end_deltas", why))?;
    if exon_ends.last() != Some(&(len - 1)) {
        return Err(bad("exon_end_deltas", format!("the last exon must end at {}", len - 1)));
    }
    if let Some(Cds { start, end }) = view.cds
        && (start >= end || end > len)
    {
        return Err(bad(
            "cds",
            format!("[{start}, {end}) outside transcript of length {len}"),
        ));
    }
    let masked = delta_decode(&view.masked_deltas, total).map_err(|why| bad("masked_deltas", why))?;
    let ambiguous = view
        .ambiguous_positions
        .iter()
        .copied()
        .zip(view.ambiguous_letters.iter().copied())
        .collect();
    Ok(ViewSpec {
        transcript: Transcript {
            id: view.transcript_id,
            gene_id: view.gene_id,
            group: view.group,
            len,
            packed: Vec::from(view.packed),
            ambiguous,
            exon_ends,
            cds: view.cds.map(|c| (c.start, c.end)),
        },
        shift: view.shift,
        masked,
    })
}

/// Decodes a message into a shard, checking that it is one: equal pair arrays, `2 × pairs` views, the
/// shard inside the global batch, and every view consistent (see [`view_from_message`]'s checks).
///
/// Errors with a [`WireError`] naming the step and the field; never panics.
pub fn shard_from_message(message: ShardMessage) -> Result<Shard, WireError> {
    let step = message.step;
    let bad = |field: &str, why: String| WireError {
        step,
        field: field.to_owned(),
        why,
    };
    let n = message.pair_groups.len();
    for (field, len) in [
        ("pair_view1", message.pair_view1.len()),
        ("pair_view2", message.pair_view2.len()),
        ("pair_group_sizes", message.pair_group_sizes.len()),
    ] {
        if len != n {
            return Err(bad(field, format!("{len} entries for {n} pairs")));
        }
    }
    if message.views.len() != 2 * n {
        return Err(bad(
            "views",
            format!("{} views for {n} pairs, expected {}", message.views.len(), 2 * n),
        ));
    }
    let offset = usize::try_from(message.offset).map_err(|_| bad("offset", "too large".into()))?;
    let global_pairs = usize::try_from(message.global_pairs).map_err(|_| bad("global_pairs", "too large".into()))?;
    if offset.checked_add(n).is_none_or(|end| end > global_pairs) {
        return Err(bad(
            "offset",
            format!("pairs {offset}..{offset}+{n} outside a global batch of {global_pairs}"),
        ));
    }
    let pairs = (0..n)
        .map(|i| Pair {
            group: message.pair_groups[i],
            views: [message.pair_view1[i], message.pair_view2[i]],
            group_size: message.pair_group_sizes[i],
        })
        .collect();
    let views = message
        .views
        .into_iter()
        .enumerate()
        .map(|(i, view)| view_from_message(view, step, i))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Shard {
        step,
        offset,
        global_pairs,
        pairs,
        views,
    })
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn random_transcript(rng: &mut ChaCha8Rng, i: usize) -> Transcript {
        let len = rng.random_range(1..3000usize);
        let seq: Vec<u8> = (0..len)
            .map(|_| {
                if rng.random_bool(0.01) {
                    b'N'
                } else {
                    b"ACGT"[rng.random_range(0..4)]
                }
            })
            .collect();
        let mut ends: Vec<u32> = (0..rng.random_range(0..6))
            .map(|_| rng.random_range(0..len as u32))
            .collect();
        ends.push(len as u32 - 1);
        ends.sort_unstable();
        ends.dedup();
        let cds = (len > 10 && rng.random_bool(0.7)).then(|| (3, len as u32 - 2));
        Transcript::new(
            format!("t{i}.1"),
            format!("g{}", i / 2),
            (i / 2) as u32,
            &seq,
            ends,
            cds,
        )
        .unwrap()
    }

    fn random_shard(rng: &mut ChaCha8Rng, step: u64) -> Shard {
        let n = rng.random_range(1..6);
        let shift = rng.random_range(0..4);
        let pairs: Vec<Pair> = (0..n)
            .map(|i| Pair {
                group: i as u32,
                views: [2 * i as u32, 2 * i as u32 + 1],
                group_size: rng.random_range(1..5),
            })
            .collect();
        let views = (0..2 * n)
            .map(|i| {
                let transcript = random_transcript(rng, i);
                let total = transcript.len + shift;
                let mut masked: Vec<u32> = (0..total).filter(|_| rng.random_bool(0.15)).collect();
                masked.dedup();
                ViewSpec {
                    transcript,
                    shift,
                    masked,
                }
            })
            .collect();
        Shard {
            step,
            offset: 3 * n,
            global_pairs: 5 * n,
            pairs,
            views,
        }
    }

    #[test]
    fn random_shards_survive_the_round_trip() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for step in 0..50 {
            let shard = random_shard(&mut rng, step);
            let message = shard_to_message(shard.clone());
            let bytes = prost::Message::encode_to_vec(&message);
            let decoded: ShardMessage = prost::Message::decode(bytes.as_slice()).unwrap();
            assert_eq!(shard_from_message(decoded).unwrap(), shard);
        }
    }

    #[test]
    fn malformed_messages_are_errors_naming_step_and_field() {
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let good = shard_to_message(random_shard(&mut rng, 12));
        let check = |mutate: &dyn Fn(&mut ShardMessage), field: &str| {
            let mut m = good.clone();
            mutate(&mut m);
            let err = shard_from_message(m).unwrap_err();
            assert_eq!(err.step, 12);
            assert!(err.field.contains(field), "{err} should name {field}");
            assert!(err.to_string().contains("step 12"), "{err}");
        };
        check(&|m| m.views[0].packed = Bytes::from_static(b"x"), "views[0].packed");
        check(&|m| m.views[1].len = 0, "views[1].len");
        check(&|m| m.views[1].len = u32::MAX, "views[1].len");
        check(&|m| m.views[0].masked_deltas = vec![u32::MAX], "views[0].masked_deltas");
        check(&|m| m.views[0].masked_deltas = vec![1, 0], "views[0].masked_deltas");
        check(&|m| m.views[0].exon_end_deltas = vec![0, 1], "views[0].exon_end_deltas");
        check(&|m| m.views[0].cds = Some(Cds { start: 5, end: 5 }), "views[0].cds");
        check(&|m| m.views[0].ambiguous_positions.push(u32::MAX), "views[0].ambiguous");
        check(&|m| m.views.pop().map(drop).unwrap_or(()), "views");
        check(&|m| m.pair_view2.clear(), "pair_view2");
        check(&|m| m.offset = u64::MAX, "offset");
    }

    #[test]
    fn deltas_halve_the_bytes_of_masks() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let masked: Vec<u32> = (0..12_288u32).filter(|_| rng.random_bool(0.15)).collect();
        let absolute = prost::encoding::encoded_len_varint as fn(u64) -> usize;
        let abs_bytes: usize = masked.iter().map(|&p| absolute(u64::from(p))).sum();
        let delta_bytes: usize = delta_encode(masked.clone())
            .iter()
            .map(|&d| absolute(u64::from(d)))
            .sum();
        assert!(
            delta_bytes * 10 < abs_bytes * 6,
            "delta {delta_bytes} vs absolute {abs_bytes}"
        );
        assert_eq!(delta_decode(&delta_encode(masked.clone()), 12_288).unwrap(), masked);
    }
}
