//! Index-split parallel loops: with the `std` feature the chunks run on
//! rayon's pool, without it sequentially. Work is split by index only and
//! each chunk is computed by the same code either way, so results are
//! bit-identical for every thread count and between `std` and `no_std`.

/// Calls `op(k, chunk)` for the `k`-th chunk of `chunk_len` elements of `out`
/// (the last may be shorter).
pub fn for_each_chunk<T: Send, G: Fn(usize, &mut [T]) + Sync + Send>(
    out: &mut [T],
    chunk_len: usize,
    op: G,
) {
    if chunk_len == 0 {
        return;
    }
    #[cfg(feature = "std")]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(chunk_len)
            .enumerate()
            .for_each(|(k, c)| op(k, c));
    }
    #[cfg(not(feature = "std"))]
    out.chunks_mut(chunk_len)
        .enumerate()
        .for_each(|(k, c)| op(k, c));
}

/// Like [`for_each_chunk`] over two outputs split in step: chunk `k` is
/// `a[k*a_len..]` (`a_len` elements) with `b[k*b_len..]` (`b_len` elements).
pub fn for_each_chunk2<T: Send, U: Send, G: Fn(usize, &mut [T], &mut [U]) + Sync + Send>(
    a: &mut [T],
    a_len: usize,
    b: &mut [U],
    b_len: usize,
    op: G,
) {
    if a_len == 0 || b_len == 0 {
        return;
    }
    #[cfg(feature = "std")]
    {
        use rayon::prelude::*;
        a.par_chunks_mut(a_len)
            .zip(b.par_chunks_mut(b_len))
            .enumerate()
            .for_each(|(k, (x, y))| op(k, x, y));
    }
    #[cfg(not(feature = "std"))]
    a.chunks_mut(a_len)
        .zip(b.chunks_mut(b_len))
        .enumerate()
        .for_each(|(k, (x, y))| op(k, x, y));
}

/// Like [`for_each_chunk2`] over three outputs split in step.
pub fn for_each_chunk3<T: Send, U: Send, V: Send, G>(
    a: (&mut [T], usize),
    b: (&mut [U], usize),
    c: (&mut [V], usize),
    op: G,
) where
    G: Fn(usize, &mut [T], &mut [U], &mut [V]) + Sync + Send,
{
    if a.1 == 0 || b.1 == 0 || c.1 == 0 {
        return;
    }
    #[cfg(feature = "std")]
    {
        use rayon::prelude::*;
        a.0.par_chunks_mut(a.1)
            .zip(b.0.par_chunks_mut(b.1))
            .zip(c.0.par_chunks_mut(c.1))
            .enumerate()
            .for_each(|(k, ((x, y), z))| op(k, x, y, z));
    }
    #[cfg(not(feature = "std"))]
    a.0.chunks_mut(a.1)
        .zip(b.0.chunks_mut(b.1))
        .zip(c.0.chunks_mut(c.1))
        .enumerate()
        .for_each(|(k, ((x, y), z))| op(k, x, y, z));
}
