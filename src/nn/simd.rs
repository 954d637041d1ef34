//! Runtime-dispatched SIMD for the element-wise kernels of `fused.rs` (and any loop written to
//! vectorise): [`multiversion!`] compiles one kernel body three times — for AVX-512, for
//! AVX2 + FMA, and for the baseline x86-64 the crate is built for (SSE2) — and picks the widest
//! the CPU has, once per process. The binary stays portable; on the machines this project runs on
//! the kernels' loops get 16-wide registers instead of 4-wide ones.
//!
//! Results do not depend on the variant: the bodies are the same IEEE operations in the same
//! order (Rust does not contract `a * b + c` into an FMA, and the sequential reductions stay
//! sequential), only more of them per instruction.

use std::sync::OnceLock;

/// 4: AVX-512 (F, BW, VL) with AVX2 and FMA; 3: AVX2 and FMA; 0: neither (or not x86-64).
pub fn level() -> u8 {
    static LEVEL: OnceLock<u8> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            let v3 = std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma");
            let v4 = v3
                && std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vl");
            if v4 {
                return 4;
            }
            if v3 {
                return 3;
            }
        }
        0
    })
}

/// `multiversion! { fn name(args…) { body } }` defines `fn name(args…)` that runs `body`
/// compiled for the widest instruction set [`level`] reports. The body and whatever it calls
/// must be `#[inline(always)]` to be compiled with the wider features.
#[macro_export]
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn imp($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn v4($($arg: $ty),*) {
                    imp($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn v3($($arg: $ty),*) {
                    imp($($arg),*)
                }
                match $crate::nn::simd::level() {
                    // SAFETY: `level` checked at run time that the CPU has these features.
                    4 => return unsafe { v4($($arg),*) },
                    3 => return unsafe { v3($($arg),*) },
                    _ => {}
                }
            }
            imp($($arg),*)
        }
    };
}

#[cfg(test)]
mod tests {
    multiversion! {
        fn axpy(y: &mut [f32], x: &[f32], a: f32) {
            for (v, &xi) in y.iter_mut().zip(x) {
                *v += a * xi;
            }
        }
    }

    #[test]
    fn dispatched_kernel_equals_the_plain_loop() {
        let x: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut y: Vec<f32> = (0..1000).map(|i| i as f32 * 1e-3).collect();
        let mut want = y.clone();
        for (v, &xi) in want.iter_mut().zip(&x) {
            *v += 1.7 * xi;
        }
        axpy(&mut y, &x, 1.7);
        assert_eq!(y, want, "bitwise equal to the scalar loop");
        assert!(super::level() <= 4);
    }
}
