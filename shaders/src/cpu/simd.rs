//! What the element-wise kernels share: compiling a loop for the CPU's vector width, and the
//! sizes of their accumulators and parallel chunks.

/// Compiles `$body` as a baseline function and, on x86-64, twice more, with AVX-512 and with AVX2
/// and FMA enabled (so LLVM vectorises its loops 16 or 8 lanes wide), choosing at run time.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn generic($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                    generic($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    generic($($arg),*)
                }
                if std::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the features `avx512` was compiled for (AVX-512F
                    // implies AVX2 and FMA).
                    return unsafe { avx512($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has the features `avx2` was compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            generic($($arg),*)
        }
    };
}

/// Lanes of the manual accumulators below: float sums and maxima are not reassociated by the
/// compiler, so a reduction written as one running value runs one element at a time.
pub const LANES: usize = 16;

/// Elements per parallel task of the element-wise kernels: large enough that a chunk outlasts
/// rayon's scheduling, small enough to spread over cores.
pub const CHUNK: usize = 1 << 14;
