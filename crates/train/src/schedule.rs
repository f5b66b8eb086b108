//! Learning-rate schedules.

/// Linear warm-up to `peak` over `warmup` steps, then cosine decay to `peak * floor` at
/// `total` steps (nanoGPT's schedule). `step` counts from 0.
pub fn warmup_cosine(step: usize, warmup: usize, total: usize, peak: f64, floor: f64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    if step >= total {
        return peak * floor;
    }
    let progress = (step - warmup) as f64 / (total - warmup).max(1) as f64;
    let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
    peak * (floor + (1.0 - floor) * cosine)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Rises linearly, peaks after warm-up, halves midway through the decay, ends at the floor.
    #[test]
    fn shape_of_the_schedule() {
        assert!((warmup_cosine(0, 10, 110, 1.0, 0.0) - 0.1).abs() < 1e-12);
        assert!((warmup_cosine(10, 10, 110, 1.0, 0.0) - 1.0).abs() < 1e-12);
        assert!((warmup_cosine(60, 10, 110, 1.0, 0.0) - 0.5).abs() < 1e-12);
        assert!((warmup_cosine(500, 10, 110, 1.0, 0.1) - 0.1).abs() < 1e-12);
    }
}
