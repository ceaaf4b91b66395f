//! Wider SIMD for the element-wise loops of the kernels, chosen at run time.
//!
//! The crate is compiled for the baseline x86-64 target (SSE2), so plain loops vectorise 4
//! lanes wide. [`vectorized`] runs a closure inside a function compiled with AVX-512 (or AVX2 +
//! FMA) where the CPU has it; the closure's loops, inlined there, are vectorised for the wider
//! registers. [`exp`] is a branch-free `expf` that vectorises (libm's `expf` is a scalar call,
//! and SiLU's sigmoid made it ~10% of a training step).

/// Runs `f`, compiled for the widest SIMD this CPU has (AVX-512, AVX2 + FMA, or the baseline).
#[inline(always)]
pub(crate) fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above).
            return unsafe { run_avx512(f) };
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            return unsafe { run_avx2(f) };
        }
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx2,fma")]
unsafe fn run_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// eˣ in f32 without a library call or a branch (so loops over it vectorise): x = n·ln 2 + r
/// with |r| ≤ ln 2 / 2, eʳ by Cephes' `expf` polynomial (relative error ≈ 1e-7), 2ⁿ from the
/// exponent bits. x is clamped to [−87, 88] (eˣ from 1.6e−38 to 1.7e38), which SiLU and
/// softmax never leave in a way that matters: σ(z) is 0 or 1 to f32 precision there.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in a part exact in f32 and the remainder (Cody–Waite).
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5·2²³: adding and subtracting it rounds to the nearest integer (ties to even).
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5.000_000_1e-1;
    let er = p * r * r + r + 1.0;
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    er * scale
}

/// σ(z) = 1 / (1 + e⁻ᶻ), with [`exp`].
#[inline(always)]
pub(crate) fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + exp(-z))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_f64_across_the_range() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x <= 88.0 {
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 3e-7, "relative error {worst:e}");
        assert_eq!(exp(0.0), 1.0);
        // Clamped, finite, and σ saturates cleanly.
        assert!(exp(-1e30) > 0.0 && exp(1e30).is_finite());
        assert!(sigmoid(-200.0) < 1e-37 && sigmoid(200.0) == 1.0);
    }

    #[test]
    fn vectorized_runs_the_closure() {
        let v: Vec<f32> = (0..1000).map(|i| i as f32 * 0.01 - 5.0).collect();
        let sum: f32 = vectorized(|| v.iter().map(|&x| sigmoid(x)).sum());
        let want: f64 = v.iter().map(|&x| 1.0 / (1.0 + (-(x as f64)).exp())).sum();
        assert!((sum as f64 - want).abs() < 1e-3, "{sum} vs {want}");
    }
}
