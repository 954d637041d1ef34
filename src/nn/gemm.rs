//! The one door to the `gemm` crate's kernels for row-major operands with row strides.

/// `dst[i·dst_rs + j] = (dst[i·dst_rs + j] if accumulate) + Σₖ lhs[i·lhs_rs + k] · rhs[k·rhs_rs + j]`
/// for `i < m`, `j < n`: row-major operands whose rows may be further apart than their length,
/// checked against the slices, on `gemm`'s SIMD kernels with the current rayon pool's threads.
#[allow(clippy::too_many_arguments)]
pub fn gemm_rows(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    dst_rs: usize,
    lhs: &[f32],
    lhs_rs: usize,
    rhs: &[f32],
    rhs_rs: usize,
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    let span = |rows: usize, rs: usize, cols: usize| (rows - 1) * rs + cols;
    assert!(
        dst_rs >= n && lhs_rs >= k && rhs_rs >= n,
        "gemm_rows: a row stride below its row"
    );
    assert!(
        dst.len() >= span(m, dst_rs, n)
            && (k == 0 || (lhs.len() >= span(m, lhs_rs, k) && rhs.len() >= span(k, rhs_rs, n))),
        "gemm_rows: an operand shorter than its rows"
    );
    // SAFETY: every element read or written lies inside its slice (checked above); the rows of
    // `dst` do not overlap (dst_rs ≥ n), and `dst` is borrowed mutably, apart from the inputs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            1,
            lhs_rs as isize,
            rhs.as_ptr(),
            1,
            rhs_rs as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(rayon::current_num_threads()),
        );
    }
}
