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
    check(
        "gemm_rows",
        1,
        (m, n, k),
        (dst.len(), 0, dst_rs),
        (lhs.len(), 0, lhs_rs),
        (rhs.len(), 0, rhs_rs),
    );
    // SAFETY: every element read or written lies inside its slice (checked above); the rows of
    // `dst` do not overlap (dst_rs ≥ n), and `dst` is borrowed mutably, apart from the inputs.
    unsafe {
        product(
            (m, n, k),
            (dst.as_mut_ptr(), dst_rs),
            (lhs.as_ptr(), lhs_rs),
            (rhs.as_ptr(), rhs_rs),
            accumulate,
            threads,
        )
    }
}

/// The operands of `count` products (the p-th at `p · off`) lie inside their slices, whose
/// lengths are given, with row strides no shorter than their rows; panics naming `what`
/// otherwise.
fn check(
    what: &str,
    count: usize,
    (m, n, k): (usize, usize, usize),
    (dst_len, dst_off, dst_rs): (usize, usize, usize),
    (lhs_len, lhs_off, lhs_rs): (usize, usize, usize),
    (rhs_len, rhs_off, rhs_rs): (usize, usize, usize),
) {
    let span = |rows: usize, rs: usize, cols: usize| (rows - 1) * rs + cols;
    assert!(
        dst_rs >= n && lhs_rs >= k && rhs_rs >= n,
        "{what}: a row stride below its row"
    );
    let last = count - 1;
    assert!(
        dst_len >= last * dst_off + span(m, dst_rs, n)
            && (k == 0
                || (lhs_len >= last * lhs_off + span(m, lhs_rs, k)
                    && rhs_len >= last * rhs_off + span(k, rhs_rs, n))),
        "{what}: an operand shorter than its rows"
    );
    let interleaved = dst_off >= n && last * dst_off + n <= dst_rs;
    let apart = dst_off >= span(m, dst_rs, n);
    assert!(
        count == 1 || interleaved || apart,
        "{what}: outputs overlap"
    );
}

/// `gemm`'s product of row-major operands with row strides, on `threads` of the current pool.
///
/// # Safety
/// The operands must lie inside live allocations (see [`check`]), and no other reference may
/// read or write `dst`'s elements during the call.
unsafe fn product(
    (m, n, k): (usize, usize, usize),
    (dst, dst_rs): (*mut f32, usize),
    (lhs, lhs_rs): (*const f32, usize),
    (rhs, rhs_rs): (*const f32, usize),
    accumulate: bool,
    threads: usize,
) {
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs as isize,
        accumulate,
        lhs,
        1,
        lhs_rs as isize,
        rhs,
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
    check(
        "gemm_rows_batched",
        count,
        (m, n, k),
        (dst.len(), dst_off, dst_rs),
        (lhs.len(), lhs_off, lhs_rs),
        (rhs.len(), rhs_off, rhs_rs),
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
            product(
                (m, n, k),
                ((d as *mut f32).add(p * dst_off), dst_rs),
                ((l as *const f32).add(p * lhs_off), lhs_rs),
                ((r as *const f32).add(p * rhs_off), rhs_rs),
                false,
                1,
            )
        }
    });
}
