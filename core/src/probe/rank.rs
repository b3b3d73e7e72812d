//! Representation diagnostics: the effective rank of an embedding matrix (RankMe, Garrido et al. 2023), the
//! number of directions the embeddings really use. A contrastive encoder that collapses onto few directions
//! leaves a linear probe little to read, whatever its loss. Knows no tensors.

use nalgebra::{DMatrix, SymmetricEigen};

/// The effective rank of `values` (`rows × dim`, row-major): `exp(H(p))` where `p_k = σ_k / Σσ` are the
/// normalised singular values of the (uncentred) matrix and `H` the Shannon entropy. Between 1 (one direction)
/// and `dim` (all singular values equal); 0 for an empty or all-zero matrix.
///
/// Singular values come from the eigenvalues of the `dim × dim` Gram matrix, in f64.
pub fn effective_rank(values: &[f64], dim: usize) -> f64 {
    if dim == 0 || values.is_empty() || !values.len().is_multiple_of(dim) {
        return 0.0;
    }
    let rows = values.len() / dim;
    let x = DMatrix::from_row_slice(rows, dim, values);
    let gram = x.transpose() * &x;
    let singular: Vec<f64> = SymmetricEigen::new(gram)
        .eigenvalues
        .iter()
        .map(|&l| l.max(0.0).sqrt())
        .collect();
    let total: f64 = singular.iter().sum();
    if total <= 0.0 || !total.is_finite() {
        return 0.0;
    }
    let entropy: f64 = singular
        .iter()
        .map(|s| s / total)
        .filter(|&p| p > 0.0)
        .map(|p| -p * p.ln())
        .sum();
    entropy.exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_one_and_isotropic_matrices_have_their_ranks() {
        // Every row a multiple of one vector: rank 1.
        let rows: Vec<f64> = (1..=20).flat_map(|i| [i as f64, 2.0 * i as f64, -(i as f64)]).collect();
        assert!((effective_rank(&rows, 3) - 1.0).abs() < 1e-6);
        // Rows of the identity repeated: equal singular values, rank = dim.
        let eye: Vec<f64> = (0..8)
            .flat_map(|r| (0..4).map(move |c| f64::from(u8::from(r % 4 == c))))
            .collect();
        assert!((effective_rank(&eye, 4) - 4.0).abs() < 1e-9);
        // Singular values 3 and 1 (diagonal): p = (0.75, 0.25).
        let diag = [3.0, 0.0, 0.0, 1.0];
        let want = (-(0.75f64 * 0.75f64.ln() + 0.25 * 0.25f64.ln())).exp();
        assert!((effective_rank(&diag, 2) - want).abs() < 1e-12);
        assert_eq!(effective_rank(&[], 3), 0.0);
        assert_eq!(effective_rank(&[0.0; 6], 3), 0.0);
    }
}
