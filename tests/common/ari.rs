//! Adjusted Rand index (Hubert & Arabie) of two labelings, the chance-
//! corrected agreement scikit-learn's `adjusted_rand_score` reports: 1 for
//! identical partitions (up to renaming), about 0 for independent ones.
//!
//! Use from an integration test binary:
//! `#[path = "common/ari.rs"] mod ari;` then `ari::adjusted_rand_index(&a, &b)`.

use std::collections::HashMap;

/// ARI of labelings `a` and `b` (same length, any label values).
pub fn adjusted_rand_index(a: &[u32], b: &[u32]) -> f64 {
    assert_eq!(a.len(), b.len(), "labelings differ in length");
    let pairs = |c: u64| (c * c.saturating_sub(1) / 2) as f64;
    let mut table: HashMap<(u32, u32), u64> = HashMap::new();
    let mut rows: HashMap<u32, u64> = HashMap::new();
    let mut cols: HashMap<u32, u64> = HashMap::new();
    for (&x, &y) in a.iter().zip(b) {
        *table.entry((x, y)).or_default() += 1;
        *rows.entry(x).or_default() += 1;
        *cols.entry(y).or_default() += 1;
    }
    let index: f64 = table.values().map(|&c| pairs(c)).sum();
    let sum_a: f64 = rows.values().map(|&c| pairs(c)).sum();
    let sum_b: f64 = cols.values().map(|&c| pairs(c)).sum();
    let expected = sum_a * sum_b / pairs(a.len() as u64);
    let max = 0.5 * (sum_a + sum_b);
    if max == expected {
        // Both partitions trivial (all one cluster or all singletons).
        return 1.0;
    }
    (index - expected) / (max - expected)
}

#[cfg(test)]
mod tests {
    use super::adjusted_rand_index;

    #[test]
    fn matches_hand_computed_values() {
        assert_eq!(adjusted_rand_index(&[0, 0, 1, 1], &[5, 5, 2, 2]), 1.0);
        // sklearn: adjusted_rand_score([0,0,1,1],[0,0,1,2]) = 0.5714285714285715
        let v = adjusted_rand_index(&[0, 0, 1, 1], &[0, 0, 1, 2]);
        assert!((v - 4.0 / 7.0).abs() < 1e-15, "{v}");
        // By hand: index 2, expected 6·6/15 = 2.4, max 6.
        let v = adjusted_rand_index(&[0, 0, 0, 1, 1, 1], &[0, 1, 0, 1, 0, 1]);
        assert!((v - (2.0 - 2.4) / (6.0 - 2.4)).abs() < 1e-15, "{v}");
    }
}
