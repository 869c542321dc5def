//! The vector operations the direct and packed convolution kernels are written in, one
//! implementation per instruction set (AVX-512, AVX2 + FMA, and a portable fallback of
//! eight-float arrays the compiler vectorizes for the baseline target).
//!
//! Kernels are generic over [`Simd`] and `#[inline(always)]`; each instruction set gets one
//! entry point compiled with its target features (see `isa_dispatch!`), chosen at run time by
//! [`Isa::detect`]. The x86 methods carry their target features themselves: only then does the
//! compiler inline the intrinsics into the entry point (a featureless wrapper stays a call).

/// An instruction set a kernel can be compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isa {
    Avx512,
    Avx2,
    Portable,
}

impl Isa {
    /// The widest instruction set this CPU has (detected once).
    pub fn detect() -> Isa {
        use std::sync::OnceLock;
        static ISA: OnceLock<Isa> = OnceLock::new();
        *ISA.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("fma")
                {
                    return Isa::Avx512;
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    return Isa::Avx2;
                }
            }
            Isa::Portable
        })
    }

    /// Every instruction set this CPU can run (for tests: each kernel against the reference).
    #[cfg(test)]
    pub fn available() -> Vec<Isa> {
        let mut v = vec![Isa::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                v.push(Isa::Avx2);
            }
            if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("fma") {
                v.push(Isa::Avx512);
            }
        }
        v
    }
}

/// A vector of `LANES` floats and the operations on it. Every method is unsafe: pointers must
/// be valid for `LANES` floats, and the CPU must have the instruction set.
pub(super) trait Simd: Copy {
    const LANES: usize;
    type V: Copy;
    unsafe fn splat(x: f32) -> Self::V;
    unsafe fn load(p: *const f32) -> Self::V;
    unsafe fn store(p: *mut f32, v: Self::V);
    /// `a · b + c`.
    unsafe fn fmadd(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
}

/// Implements [`Simd`] for `$name`: `$lanes` floats in a `$v`, compiled for `$features`, from
/// the intrinsics `$set1`, `$loadu`, `$storeu` and `$fmadd`.
#[cfg(target_arch = "x86_64")]
macro_rules! simd_impl {
    ($name:ident, $lanes:literal, $v:ident, $features:literal,
     $set1:ident, $loadu:ident, $storeu:ident, $fmadd:ident) => {
        impl Simd for $name {
            const LANES: usize = $lanes;
            type V = std::arch::x86_64::$v;
            #[inline]
            #[target_feature(enable = $features)]
            unsafe fn splat(x: f32) -> Self::V {
                std::arch::x86_64::$set1(x)
            }
            #[inline]
            #[target_feature(enable = $features)]
            unsafe fn load(p: *const f32) -> Self::V {
                unsafe { std::arch::x86_64::$loadu(p) }
            }
            #[inline]
            #[target_feature(enable = $features)]
            unsafe fn store(p: *mut f32, v: Self::V) {
                unsafe { std::arch::x86_64::$storeu(p, v) }
            }
            #[inline]
            #[target_feature(enable = $features)]
            unsafe fn fmadd(a: Self::V, b: Self::V, c: Self::V) -> Self::V {
                std::arch::x86_64::$fmadd(a, b, c)
            }
        }
    };
}

/// AVX-512F: 16 floats.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(super) struct Avx512;

#[cfg(target_arch = "x86_64")]
simd_impl!(
    Avx512,
    16,
    __m512,
    "avx512f,fma",
    _mm512_set1_ps,
    _mm512_loadu_ps,
    _mm512_storeu_ps,
    _mm512_fmadd_ps
);

/// AVX2 + FMA: 8 floats.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(super) struct Avx2;

#[cfg(target_arch = "x86_64")]
simd_impl!(
    Avx2,
    8,
    __m256,
    "avx2,fma",
    _mm256_set1_ps,
    _mm256_loadu_ps,
    _mm256_storeu_ps,
    _mm256_fmadd_ps
);

/// Any target: eight floats in an array (the compiler vectorizes the element loops).
#[derive(Clone, Copy)]
pub(super) struct Portable;

impl Simd for Portable {
    const LANES: usize = 8;
    type V = [f32; 8];
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self::V {
        [x; 8]
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self::V {
        unsafe { std::ptr::read_unaligned(p as *const [f32; 8]) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: Self::V) {
        unsafe { std::ptr::write_unaligned(p as *mut [f32; 8], v) }
    }
    #[inline(always)]
    unsafe fn fmadd(a: Self::V, b: Self::V, c: Self::V) -> Self::V {
        std::array::from_fn(|i| a[i] * b[i] + c[i])
    }
}

/// A raw output pointer shared by parallel tasks that each write a disjoint part of one
/// buffer (each use says why the parts are disjoint and in bounds).
#[derive(Clone, Copy)]
pub(super) struct SharedOut(pub *mut f32);

// SAFETY: the pointer is only written through by tasks whose regions do not overlap, while
// the buffer it points into is mutably borrowed by the spawning call (so nothing else reads or
// writes it until every task has finished).
unsafe impl Send for SharedOut {}

impl SharedOut {
    /// The pointer `offset` floats further (a method, so closures capture the whole `Sync`
    /// value rather than its raw pointer field).
    ///
    /// # Safety
    /// The result must stay inside the buffer.
    pub unsafe fn offset(self, offset: usize) -> SharedOut {
        // SAFETY: the caller's contract.
        SharedOut(unsafe { self.0.add(offset) })
    }
}
unsafe impl Sync for SharedOut {}

/// Defines `fn $name(isa, args...)` calling `$generic::<S>(args...)` compiled for the chosen
/// instruction set (`S` = `Avx512`, `Avx2` or `Portable`).
macro_rules! isa_dispatch {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) => $generic:ident) => {
        $(#[$doc])*
        $vis fn $name(isa: $crate::engine::ops::conv::simd::Isa, $($arg: $ty),*) {
            use $crate::engine::ops::conv::simd::{Isa, Portable};
            #[cfg(target_arch = "x86_64")]
            {
                use $crate::engine::ops::conv::simd::{Avx2, Avx512};
                #[target_feature(enable = "avx512f,fma")]
                fn avx512($($arg: $ty),*) {
                    $generic::<Avx512>($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) {
                    $generic::<Avx2>($($arg),*)
                }
                match isa {
                    // SAFETY: `Isa::Avx512`/`Avx2` are only produced when the CPU has them.
                    Isa::Avx512 => return unsafe { avx512($($arg),*) },
                    Isa::Avx2 => return unsafe { avx2($($arg),*) },
                    Isa::Portable => {}
                }
            }
            let _ = isa;
            $generic::<Portable>($($arg),*)
        }
    };
}

pub(super) use isa_dispatch;

/// Defines `fn $name(args...)` calling the `#[inline(always)]` function `$plain(args...)`
/// compiled for the widest vector instructions this CPU has (AVX-512F or AVX2; the baseline
/// target otherwise), so the plain element loops it inlines vectorize for them. The results are
/// the same bit for bit: the arithmetic does not change, only the vector width (Rust never
/// fuses a multiply and an add). Functions `$plain` calls must be `#[inline(always)]` too.
macro_rules! wide_fn {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $plain:path) => {
        $(#[$doc])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                use $crate::engine::ops::conv::simd::Isa;
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) $(-> $ret)? {
                    $plain($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $plain($($arg),*)
                }
                match Isa::detect() {
                    // SAFETY: `Isa::Avx512`/`Avx2` are only produced when the CPU has them.
                    Isa::Avx512 => return unsafe { avx512($($arg),*) },
                    Isa::Avx2 => return unsafe { avx2($($arg),*) },
                    Isa::Portable => {}
                }
            }
            $plain($($arg),*)
        }
    };
}

pub(crate) use wide_fn;
