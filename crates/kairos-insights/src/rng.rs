//! A tiny seeded random number generator (SplitMix64). Training must be
//! reproducible run to run, and this is all the randomness it needs
//! (row subsampling, shuffles), so no dependency.

#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 bits of precision.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..bound` (bound > 0); the modulo bias is negligible here.
    pub fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound as u64) as usize
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for index in (1..items.len()).rev() {
            items.swap(index, self.below(index + 1));
        }
    }
}

/// `fold_count` folds of `0..n`, each stratified by `labels` so every fold
/// has about the same positive rate (what makes small-positive-rate CV stable).
pub fn stratified_folds(labels: &[bool], fold_count: usize, seed: u64) -> Vec<usize> {
    let classes: Vec<u8> = labels.iter().map(|&label| u8::from(label)).collect();
    stratified_folds_by_class(&classes, fold_count, seed)
}

/// Like [`stratified_folds`] for any number of classes (e.g. treatment × outcome).
pub fn stratified_folds_by_class(classes: &[u8], fold_count: usize, seed: u64) -> Vec<usize> {
    let mut rng = SplitMix64::new(seed);
    let mut fold_of = vec![0; classes.len()];
    let mut distinct = classes.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    // Dealing continues across classes so fold sizes differ by at most one.
    let mut dealt = 0;
    for class in distinct {
        let mut members: Vec<usize> = (0..classes.len())
            .filter(|&i| classes[i] == class)
            .collect();
        rng.shuffle(&mut members);
        for index in members {
            fold_of[index] = dealt % fold_count;
            dealt += 1;
        }
    }
    fold_of
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_numbers_and_uniform_enough() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        assert_eq!(a.next_u64(), b.next_u64());
        let mean = (0..10_000).map(|_| a.next_f64()).sum::<f64>() / 10_000.0;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
    }

    #[test]
    fn stratified_folds_balance_the_positives() {
        let labels: Vec<bool> = (0..100).map(|i| i % 10 == 0).collect();
        let folds = stratified_folds(&labels, 5, 1);
        for fold in 0..5 {
            let positives = (0..100).filter(|&i| folds[i] == fold && labels[i]).count();
            assert_eq!(positives, 2);
        }
    }
}
