//! XNOR-popcount dot products for binary (±1) weights and activations.
//!
//! A ±1 vector is packed into u64 words, element j at bit j % 64 of word j / 64, with bit 1
//! meaning +1 and bit 0 meaning −1 (deterministic binarization: sign(r), +1 for r ≥ 0). For two
//! such vectors of length N, a product a_j·b_j is +1 exactly where the bits agree, i.e. where
//! XNOR(a_j, b_j) = 1, so
//!
//! ```text
//! a·b = #agree − #disagree = #agree − (N − #agree) = 2·popcount(XNOR(a, b)) − N
//! ```
//!
//! which is the lecture's "sum(XNOR)·2 − N". The unused high bits of the last word are 0 in
//! both vectors, and XNOR(0, 0) = 1: they must be masked out before the popcount, or every
//! padding bit would count as an agreement.

use ndarray::{Array2, ArrayView2};

/// Mask of the valid bits of the last word for a vector of `len` elements (all ones when `len`
/// is a multiple of 64).
#[inline]
pub fn last_word_mask(len: usize) -> u64 {
    match len % 64 {
        0 => u64::MAX,
        r => (1u64 << r) - 1,
    }
}

/// Number of u64 words holding `len` bits.
#[inline]
pub fn words_for(len: usize) -> usize {
    len.div_ceil(64)
}

/// 2·popcount(XNOR(a, b) masked to `len` bits) − len, for packed words `a` and `b` of
/// [`words_for`]`(len)` words each.
#[inline]
pub fn xnor_popcount_dot(a: &[u64], b: &[u64], len: usize) -> i32 {
    let n = words_for(len);
    assert!(
        a.len() >= n && b.len() >= n,
        "packed vectors are too short for {len} elements"
    );
    if n == 0 {
        return 0;
    }
    let mut agree: u32 = a[..n - 1]
        .iter()
        .zip(&b[..n - 1])
        .map(|(x, y)| (!(x ^ y)).count_ones())
        .sum();
    agree += (!(a[n - 1] ^ b[n - 1]) & last_word_mask(len)).count_ones();
    2 * agree as i32 - len as i32
}

/// A packed ±1 vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedSigns {
    words: Vec<u64>,
    len: usize,
}

impl PackedSigns {
    /// Binarizes and packs `values`: +1 (bit 1) for v ≥ 0, −1 (bit 0) otherwise (NaN → −1).
    pub fn from_signs(values: &[f32]) -> Self {
        Self::from_bits(values.iter().map(|&v| v >= 0.0), values.len())
    }

    /// Packs `len` bits (true = +1).
    fn from_bits(bits: impl Iterator<Item = bool>, len: usize) -> Self {
        let mut words = vec![0u64; words_for(len)];
        for (j, bit) in bits.take(len).enumerate() {
            words[j / 64] |= u64::from(bit) << (j % 64);
        }
        PackedSigns { words, len }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The packed words (padding bits are 0).
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// Element `j` as +1 or −1.
    pub fn get(&self, j: usize) -> i32 {
        assert!(
            j < self.len,
            "index {j} out of range for {} elements",
            self.len
        );
        if self.words[j / 64] >> (j % 64) & 1 == 1 {
            1
        } else {
            -1
        }
    }

    /// The ±1 values, unpacked.
    pub fn to_signs(&self) -> Vec<f32> {
        (0..self.len).map(|j| self.get(j) as f32).collect()
    }

    /// The dot product with `other` by XNOR-popcount. Panics on different lengths.
    pub fn dot(&self, other: &PackedSigns) -> i32 {
        assert_eq!(self.len, other.len, "dot product of different lengths");
        xnor_popcount_dot(&self.words, &other.words, self.len)
    }
}

/// A matrix of ±1 values packed row by row (each row starts on a fresh word).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedMatrix {
    rows: usize,
    cols: usize,
    words_per_row: usize,
    data: Vec<u64>,
}

impl PackedMatrix {
    /// Binarizes (v ≥ 0 → +1) and packs each row of `m`.
    pub fn from_signs(m: ArrayView2<'_, f32>) -> Self {
        let (rows, cols) = m.dim();
        let words_per_row = words_for(cols);
        let mut data = Vec::with_capacity(rows * words_per_row);
        for row in m.rows() {
            let packed = PackedSigns::from_bits(row.iter().map(|&v| v >= 0.0), cols);
            data.extend_from_slice(packed.words());
        }
        PackedMatrix {
            rows,
            cols,
            words_per_row,
            data,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The packed words of row `i`.
    pub fn row(&self, i: usize) -> &[u64] {
        &self.data[i * self.words_per_row..(i + 1) * self.words_per_row]
    }

    /// Size of the packed data in bits (rows × whole words).
    pub fn storage_bits(&self) -> usize {
        self.data.len() * 64
    }
}

/// Binary GEMM: C[i, j] = Σ_k A[i, k]·B[j, k] for A (M × K) and B (N × K) packed by rows, i.e.
/// A·Bᵀ, each entry by XNOR-popcount. Panics when the inner dimensions differ.
pub fn binary_gemm(a: &PackedMatrix, b: &PackedMatrix) -> Array2<i32> {
    assert_eq!(
        a.cols, b.cols,
        "binary GEMM of {}×{} by ({}×{})ᵀ",
        a.rows, a.cols, b.rows, b.cols
    );
    Array2::from_shape_fn((a.rows, b.rows), |(i, j)| {
        xnor_popcount_dot(a.row(i), b.row(j), a.cols)
    })
}

/// Binary GEMM with XNOR-Net scaling: C[i, j] = β_i · α_j · (A·Bᵀ)[i, j], with one scale per
/// row of A (`row_scales`, e.g. activation scales) and per row of B (`col_scales`, e.g. the
/// per-output-channel weight scale α = mean |W|).
pub fn binary_gemm_scaled(
    a: &PackedMatrix,
    b: &PackedMatrix,
    row_scales: &[f32],
    col_scales: &[f32],
) -> Array2<f32> {
    assert_eq!(row_scales.len(), a.rows, "one scale per row of A");
    assert_eq!(col_scales.len(), b.rows, "one scale per row of B");
    let dots = binary_gemm(a, b);
    Array2::from_shape_fn(dots.dim(), |(i, j)| {
        dots[[i, j]] as f32 * row_scales[i] * col_scales[j]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::test_support::Rng;

    fn float_dot(a: &[f32], b: &[f32]) -> i32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>() as i32
    }

    #[test]
    fn lecture_formula_on_a_hand_example() {
        // a = [+1, −1, −1, +1], w = [+1, −1, +1, +1]: a·w = 1 + 1 − 1 + 1 = 2.
        let a = PackedSigns::from_signs(&[1.0, -1.0, -1.0, 1.0]);
        let w = PackedSigns::from_signs(&[1.0, -1.0, 1.0, 1.0]);
        assert_eq!(a.words(), &[0b1001]);
        assert_eq!(w.words(), &[0b1101]);
        // XNOR over 4 bits: agree at elements 0, 1, 3 → popcount 3 → 2·3 − 4 = 2.
        assert_eq!((!(0b1001u64 ^ 0b1101) & 0b1111).count_ones(), 3);
        assert_eq!(a.dot(&w), 2);
        // Orthogonal: [+1, −1, −1, +1]·[+1, +1, −1, −1] = 0.
        let b = PackedSigns::from_signs(&[1.0, 1.0, -1.0, -1.0]);
        assert_eq!(a.dot(&b), 0);
        assert_eq!(a.dot(&a), 4);
    }

    #[test]
    fn xnor_dot_matches_float_dot_for_all_lengths() {
        let mut rng = Rng(99);
        for len in [0, 1, 5, 31, 63, 64, 65, 100, 127, 128, 129, 191, 300, 1000] {
            for _ in 0..20 {
                let (a, b) = (rng.signs(len), rng.signs(len));
                let (pa, pb) = (PackedSigns::from_signs(&a), PackedSigns::from_signs(&b));
                assert_eq!(pa.dot(&pb), float_dot(&a, &b), "length {len}");
                assert_eq!(pa.to_signs(), a);
            }
        }
    }

    #[test]
    fn padding_bits_must_be_masked() {
        // Length 65: the second word holds 1 valid bit and 63 padding bits.
        let a = vec![-1.0f32; 65];
        let (pa, pb) = (PackedSigns::from_signs(&a), PackedSigns::from_signs(&a));
        assert_eq!(pa.dot(&pb), 65);
        let unmasked: u32 = pa
            .words()
            .iter()
            .zip(pb.words())
            .map(|(x, y)| (!(x ^ y)).count_ones())
            .sum();
        assert_eq!(
            2 * unmasked as i32 - 65,
            65 + 2 * 63,
            "padding counted as agreement"
        );
        assert_eq!(last_word_mask(65), 1);
        assert_eq!(last_word_mask(128), u64::MAX);
        assert_eq!(last_word_mask(100), (1 << 36) - 1);
    }

    #[test]
    fn sign_of_zero_is_plus_one() {
        let p = PackedSigns::from_signs(&[0.0, -0.0, -1e-9, 3.0, f32::NAN]);
        assert_eq!(
            (0..5).map(|j| p.get(j)).collect::<Vec<_>>(),
            [1, 1, -1, 1, -1]
        );
    }

    #[test]
    fn binary_gemm_matches_float_matmul() {
        let mut rng = Rng(5);
        for (m, k, n) in [(5, 77, 9), (1, 64, 3), (4, 130, 4), (3, 1, 2)] {
            let a = Array2::from_shape_vec((m, k), rng.signs(m * k)).unwrap();
            let b = Array2::from_shape_vec((n, k), rng.signs(n * k)).unwrap();
            let (pa, pb) = (
                PackedMatrix::from_signs(a.view()),
                PackedMatrix::from_signs(b.view()),
            );
            assert_eq!(pb.storage_bits(), n * k.div_ceil(64) * 64);
            let got = binary_gemm(&pa, &pb);
            let want = a.dot(&b.t()).mapv(|v| v as i32);
            assert_eq!(got, want, "{m}×{k} by ({n}×{k})ᵀ");
            let alpha: Vec<f32> = (0..n).map(|j| 0.5 + j as f32).collect();
            let beta: Vec<f32> = (0..m).map(|i| 1.0 + 0.25 * i as f32).collect();
            let scaled = binary_gemm_scaled(&pa, &pb, &beta, &alpha);
            for ((i, j), &v) in scaled.indexed_iter() {
                assert_eq!(v, want[[i, j]] as f32 * beta[i] * alpha[j]);
            }
        }
    }

    #[test]
    fn binarized_real_vectors_use_their_signs() {
        let a = [0.3f32, -2.0, 0.0, 5.0, -0.1];
        let b = [-1.5f32, -0.2, 4.0, 0.7, -3.0];
        let signs = |v: &[f32]| {
            v.iter()
                .map(|&x| if x >= 0.0 { 1.0 } else { -1.0 })
                .collect::<Vec<f32>>()
        };
        assert_eq!(
            PackedSigns::from_signs(&a).dot(&PackedSigns::from_signs(&b)),
            float_dot(&signs(&a), &signs(&b))
        );
    }
}
