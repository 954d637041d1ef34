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
    let threads = rayon::current_num_threads();
    gemm_rows_on(
        threads,
        (m, n, k),
        dst,
        dst_rs,
        lhs,
        lhs_rs,
        rhs,
        rhs_rs,
        accumulate,
    )
}

/// [`gemm_rows`] on `threads` of the current rayon pool (1: on the calling thread alone, for
/// products that are themselves run in parallel).
#[allow(clippy::too_many_arguments)]
pub fn gemm_rows_on(
    threads: usize,
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
            if threads > 1 {
                gemm::Parallelism::Rayon(threads)
            } else {
                gemm::Parallelism::None
            },
        );
    }
}

/// `count` independent products `dst[p] = lhs[p] · rhs[p]` (p < count), the p-th operands at
/// `p · off` from the slices' starts with the row strides of [`gemm_rows`], in parallel over p
/// and one thread each: many small products (Winograd's points at batch 1) without the
/// synchronisation of splitting each one over the threads. The products' outputs must not
/// overlap: either interleaved (`dst_off ≥ n` and all of them inside one row stride) or apart
/// (`dst_off` at least one whole output).
#[allow(clippy::too_many_arguments)]
pub fn gemm_rows_batched(
    count: usize,
    (m, n, k): (usize, usize, usize),
    (dst, dst_off, dst_rs): (&mut [f32], usize, usize),
    (lhs, lhs_off, lhs_rs): (&[f32], usize, usize),
    (rhs, rhs_off, rhs_rs): (&[f32], usize, usize),
) {
    use rayon::prelude::*;
    if m == 0 || n == 0 || count == 0 {
        return;
    }
    let span = |rows: usize, rs: usize, cols: usize| (rows - 1) * rs + cols;
    assert!(
        dst_rs >= n && lhs_rs >= k && rhs_rs >= n,
        "gemm_rows_batched: a row stride below its row"
    );
    let last = count - 1;
    assert!(
        dst.len() >= last * dst_off + span(m, dst_rs, n)
            && (k == 0
                || (lhs.len() >= last * lhs_off + span(m, lhs_rs, k)
                    && rhs.len() >= last * rhs_off + span(k, rhs_rs, n))),
        "gemm_rows_batched: an operand shorter than its rows"
    );
    let interleaved = dst_off >= n && last * dst_off + n <= dst_rs;
    let apart = dst_off >= span(m, dst_rs, n);
    assert!(
        count == 1 || interleaved || apart,
        "gemm_rows_batched: outputs overlap"
    );
    // Addresses as integers so that the closure is Send; each task writes only its own output.
    let (d, l, r) = (
        dst.as_mut_ptr() as usize,
        lhs.as_ptr() as usize,
        rhs.as_ptr() as usize,
    );
    (0..count).into_par_iter().for_each(|p| {
        // SAFETY: every element read or written lies inside its slice (checked above); the
        // outputs of different p do not overlap (checked above), and `dst` is borrowed mutably
        // for the whole call, apart from the inputs.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                (d as *mut f32).add(p * dst_off),
                1,
                dst_rs as isize,
                false,
                (l as *const f32).add(p * lhs_off),
                1,
                lhs_rs as isize,
                (r as *const f32).add(p * rhs_off),
                1,
                rhs_rs as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
    });
}
