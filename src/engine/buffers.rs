//! Recycled output buffers.
//!
//! Every node allocates its output and most intermediates die a node or two later. The system
//! allocator hands large freed blocks back to the OS, so without reuse each run page-faults all
//! its activations in again (a large share of the time for small models). Freed float
//! intermediates are therefore kept per thread (a plan runs on one thread; a few buffers of
//! bounded total size, kept between runs) and handed out again by `zeroed` and `recycled`,
//! which the kernels use for their outputs.

use std::any::Any;
use std::cell::RefCell;

use crate::ir::TensorData;

/// Buffers smaller than this (elements) are left to the allocator.
const SPARE_MIN_LEN: usize = 1 << 14;
/// At most this many spare buffers, of at most this many bytes in all, per thread.
const SPARE_MAX_COUNT: usize = 8;
const SPARE_MAX_BYTES: usize = 64 << 20;

thread_local! {
    static SPARE: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// A spare buffer of capacity at least `len` and not more than twice it, if there is one.
fn take_spare(len: usize) -> Option<Vec<f32>> {
    if len < SPARE_MIN_LEN {
        return None;
    }
    SPARE.with_borrow_mut(|spare| {
        let best = spare
            .iter()
            .enumerate()
            .filter(|(_, v)| v.capacity() >= len && v.capacity() / 2 <= len)
            .min_by_key(|(_, v)| v.capacity())
            .map(|(i, _)| i)?;
        Some(spare.remove(best))
    })
}

/// `v` as a `Vec<T>` when T is f32.
fn as_vec_of<T: 'static>(v: Vec<f32>) -> Option<Vec<T>> {
    let any: Box<dyn Any> = Box::new(v);
    any.downcast::<Vec<T>>().ok().map(|v| *v)
}

/// A vector of `len` zeros, reusing a spare buffer of a freed intermediate when one fits.
pub(crate) fn zeroed<T: Copy + Default + 'static>(len: usize) -> Vec<T> {
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>()
        && let Some(mut v) = take_spare(len)
    {
        v.clear();
        v.resize(len, 0.0);
        if let Some(v) = as_vec_of(v) {
            return v;
        }
    }
    vec![T::default(); len]
}

/// A vector of `len` elements with unspecified values (whatever a reused buffer held), for
/// outputs the kernel overwrites entirely: like [`zeroed`] without the fill.
pub(crate) fn recycled<T: Copy + Default + 'static>(len: usize) -> Vec<T> {
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>()
        && let Some(mut v) = take_spare(len)
    {
        if v.len() >= len {
            v.truncate(len);
        } else {
            v.resize(len, 0.0);
        }
        if let Some(v) = as_vec_of(v) {
            return v;
        }
    }
    vec![T::default(); len]
}

/// Keeps the buffer of a freed value for [`zeroed`] and [`recycled`].
pub(super) fn recycle(value: TensorData) {
    let TensorData::F32(array) = value else {
        return;
    };
    let (v, _) = array.into_raw_vec_and_offset();
    if v.capacity() < SPARE_MIN_LEN || v.capacity() * 4 > SPARE_MAX_BYTES {
        return;
    }
    SPARE.with_borrow_mut(|spare| {
        // Oldest first out: recent sizes are the likeliest to be asked for again.
        while spare.len() >= SPARE_MAX_COUNT
            || spare.iter().map(|v| v.capacity() * 4).sum::<usize>() + v.capacity() * 4
                > SPARE_MAX_BYTES
        {
            spare.remove(0);
        }
        spare.push(v);
    });
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::SPARE;
    use crate::engine::{Plan, RunOptions, TensorHook, TensorSite};
    use crate::error::Result;
    use crate::ir::TensorData;
    use crate::load::{load_model, read_arrays};

    struct Nothing;

    impl TensorHook for Nothing {
        fn on_tensor(&mut self, _: TensorSite<'_>, _: &mut TensorData) -> Result<()> {
            Ok(())
        }
    }

    /// Kernels given `recycled` buffers overwrite every element: after the spare buffers are
    /// filled with NaN, runs give bit-identical outputs, with and without a hook. (Runs happen
    /// on a rayon worker; a one-thread pool makes it the thread whose spares are poisoned.)
    #[test]
    fn recycled_buffers_are_fully_overwritten() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("pool");
        pool.install(|| {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_models");
            let images = read_arrays(&dir.join("data/digits_test_x.npy")).expect("images");
            for name in [
                "digits_mlp",
                "digits_cnn",
                "digits_mobilenet",
                "digits_transformer",
            ] {
                let model = load_model(&dir.join(format!("{name}.onnx"))).expect("model");
                let plan = Plan::new(&model.graph).expect("plan");
                let run = |hooked: bool| {
                    let feeds = [("input".to_string(), images[0].data.clone())].into();
                    let out = if hooked {
                        plan.run(feeds, Some(&mut Nothing), RunOptions::default())
                    } else {
                        plan.run(feeds, None, RunOptions::default())
                    }
                    .expect("runs");
                    let logits = out[0].1.as_f32().expect("float logits");
                    logits.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                };
                for hooked in [false, true] {
                    let first = run(hooked);
                    for _ in 0..2 {
                        SPARE.with_borrow_mut(|spare| {
                            assert!(!spare.is_empty(), "{name}: no spare buffers kept");
                            for v in spare.iter_mut() {
                                v.fill(f32::NAN);
                            }
                        });
                        assert!(
                            run(hooked) == first,
                            "{name}: outputs changed with reused buffers"
                        );
                    }
                }
            }
        });
    }
}
