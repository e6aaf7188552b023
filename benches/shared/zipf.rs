//! Zipf-distributed key traces, as the workloads of real caches are.

/// Keys whose ranks follow Zipf(`exponent`), by inverse transform over the cumulative weights
/// `1 / rank^exponent`.
pub struct Zipf {
    cumulative: Vec<f64>,
    rng: fastrand::Rng,
}

impl Zipf {
    pub fn new(keys: usize, exponent: f64, seed: u64) -> Self {
        let mut total = 0.0;
        let cumulative = (1..=keys)
            .map(|rank| {
                total += (rank as f64).powf(-exponent);
                total
            })
            .collect();
        Zipf {
            cumulative,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    pub fn trace(mut self, length: usize) -> Vec<u64> {
        let total = *self.cumulative.last().expect("keys");
        (0..length)
            .map(|_| {
                let target = self.rng.f64() * total;
                // Ranks are scattered over the key space, as hot ids are in real data.
                let rank = self.cumulative.partition_point(|&weight| weight < target) as u64;
                rank.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            })
            .collect()
    }
}
