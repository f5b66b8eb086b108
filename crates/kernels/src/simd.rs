//! Pieces shared by the CPU kernels (GELU, cross-entropy): a vectorizable e^x, and running
//! a kernel compiled for AVX2 where the CPU has it.

/// `avx2_dispatch!(fn name = body(args) -> ret)` defines `name`, which runs `body` (an
/// `#[inline(always)]` fn of plain arithmetic) compiled for AVX2 + FMA when the CPU has
/// them, chosen at run time, and compiled for the baseline otherwise.
macro_rules! avx2_dispatch {
    (fn $name:ident = $body:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)?) => {
        fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn with_avx2($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                // SAFETY: the CPU supports the features the function was compiled for.
                return unsafe { with_avx2($($arg),*) };
            }
            $body($($arg),*)
        }
    };
}
pub(crate) use avx2_dispatch;

/// e^x for x <= 0 (what GELU's backward pass and a softmax need), to a few ulp: x = n ln 2 + r with
/// |r| <= ln 2 / 2, e^r by a degree-6 polynomial, 2^n from the exponent bits. Inputs
/// below -87 give 0.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    let x = x.max(-87.0);
    // Round to nearest by the 1.5 · 2^23 trick: plain arithmetic, unlike `round`.
    const SHIFT: f32 = 12_582_912.0;
    let n = (x * std::f32::consts::LOG2_E + SHIFT) - SHIFT;
    // ln 2 in two parts, so that n · ln2_hi is exact.
    let r = (x - n * 0.693_145_75) - n * 1.428_606_8e-6;
    let mut p = 1.0 / 720.0_f32;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    p * scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std() {
        for i in 0..=8700 {
            let x = -(i as f32) / 100.0;
            let (ours, std) = (exp(x), x.exp());
            assert!(
                (ours - std).abs() <= 4.0 * f32::EPSILON * std + f32::MIN_POSITIVE,
                "{x}: {ours} vs {std}"
            );
        }
    }
}
