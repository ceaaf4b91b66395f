//! Wider SIMD for the element-wise loops of the kernels, chosen at run time.
//!
//! The crate is compiled for the baseline x86-64 target (SSE2), so plain loops vectorise 4
//! lanes wide. [`multiversion!`] compiles a function body three times — for AVX-512, for
//! AVX2 + FMA and for the baseline — and calls the widest the CPU has (the body is an
//! `#[inline(always)]` function, so everything it inlines is compiled for those features
//! too; a closure passed to a `#[target_feature]` function would not be). [`exp`] is a
//! branch-free `expf` that vectorises (libm's `expf` is a scalar call, and SiLU's sigmoid made
//! it ~10% of a training step).

/// Defines `fn $name(args) -> ret` whose body runs compiled for the widest SIMD this CPU has
/// (AVX-512, AVX2 + FMA, or the baseline), chosen at run time (a cached CPUID test).
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if std::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F (and with it AVX2 and FMA).
                    return unsafe { avx512($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has AVX2 and FMA.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use multiversion;

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
    // t = ROUND + n exactly, so n's two's complement sits in t's low mantissa bits (no
    // float-to-int conversion, which Rust saturates with scalar compares).
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5; // Cephes: 5.000_000_1e-1, which rounds to 0.5 in f32
    let er = p * r * r + r + 1.0;
    let n_bits = t.to_bits().wrapping_sub(ROUND.to_bits());
    let scale = f32::from_bits(n_bits.wrapping_add(127) << 23);
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

    multiversion! {
        fn sigmoid_sum(v: &[f32]) -> f32 {
            v.iter().map(|&x| sigmoid(x)).sum()
        }
    }

    #[test]
    fn multiversioned_function_runs() {
        let v: Vec<f32> = (0..1000).map(|i| i as f32 * 0.01 - 5.0).collect();
        let sum = sigmoid_sum(&v);
        let want: f64 = v.iter().map(|&x| 1.0 / (1.0 + (-(x as f64)).exp())).sum();
        assert!((sum as f64 - want).abs() < 1e-3, "{sum} vs {want}");
    }
}
