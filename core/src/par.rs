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

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    /// Chunk `k` of `len` elements of a buffer of `total`: its start and
    /// length (the last chunk shorter), as the loops must hand it out.
    fn expected(total: usize, len: usize) -> Vec<(usize, usize)> {
        (0..total.div_ceil(len))
            .map(|k| (k * len, len.min(total - k * len)))
            .collect()
    }

    /// Writes into every element its chunk index and its offset in the
    /// chunk, so that a wrong split (index, boundary, length) shows.
    fn stamp<T: Copy + From<u16>>(k: usize, c: &mut [(T, T)]) {
        for (i, x) in c.iter_mut().enumerate() {
            *x = (T::from(k as u16), T::from(i as u16));
        }
    }

    fn stamps(total: usize, len: usize) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        for (k, (_, l)) in expected(total, len).into_iter().enumerate() {
            out.extend((0..l).map(|i| (k as u32, i as u32)));
        }
        out
    }

    #[test]
    fn chunks_are_split_by_index_with_a_shorter_last() {
        for (total, len) in [(10, 3), (9, 3), (1, 4), (0, 2), (7, 1)] {
            let mut a = vec![(u32::MAX, u32::MAX); total];
            for_each_chunk(&mut a, len, stamp::<u32>);
            assert_eq!(a, stamps(total, len), "n = {total}, chunk {len}");
        }
    }

    #[test]
    fn paired_chunks_advance_in_step() {
        // Chunk k of `a` (2 per chunk) and of `b` (5 per chunk), 4 chunks.
        let (mut a, mut b) = (vec![(0u32, 0u32); 8], vec![(0u64, 0u64); 20]);
        for_each_chunk2(&mut a, 2, &mut b, 5, |k, x, y| {
            stamp::<u32>(k, x);
            stamp::<u64>(k, y);
        });
        assert_eq!(a, stamps(8, 2));
        let b32: Vec<(u32, u32)> = b.iter().map(|&(k, i)| (k as u32, i as u32)).collect();
        assert_eq!(b32, stamps(20, 5));

        let (mut a, mut b, mut c) = (
            vec![(0u32, 0u32); 6],
            vec![(0u32, 0u32); 3],
            vec![(0u32, 0u32); 9],
        );
        for_each_chunk3((&mut a, 2), (&mut b, 1), (&mut c, 3), |k, x, y, z| {
            stamp::<u32>(k, x);
            stamp::<u32>(k, y);
            stamp::<u32>(k, z);
        });
        assert_eq!((a, b, c), (stamps(6, 2), stamps(3, 1), stamps(9, 3)));
    }

    #[test]
    fn zero_chunk_lengths_leave_the_outputs_alone() {
        let mut a = vec![(7u32, 7u32); 4];
        let mut b = vec![(7u32, 7u32); 4];
        for_each_chunk(&mut a, 0, stamp::<u32>);
        for_each_chunk2(&mut a, 0, &mut b, 2, |_, _, _| unreachable!());
        for_each_chunk2(&mut a, 2, &mut b, 0, |_, _, _| unreachable!());
        for_each_chunk3(
            (&mut a, 1),
            (&mut b, 0),
            (&mut [0u8; 2][..], 1),
            |_, _, _, _| unreachable!(),
        );
        assert_eq!((a, b), (vec![(7, 7); 4], vec![(7, 7); 4]));
    }
}
