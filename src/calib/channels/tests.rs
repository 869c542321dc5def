use std::collections::BTreeMap;

use ndarray::{ArrayD, Axis, IxDyn, concatenate};

use super::*;
use crate::ir::Node;

fn arr(shape: &[usize], v: Vec<f32>) -> ArrayD<f32> {
    ArrayD::from_shape_vec(IxDyn(shape), v).unwrap()
}

fn config(bins: usize) -> ChannelConfig {
    ChannelConfig {
        bins,
        ..ChannelConfig::default()
    }
}

/// [N=2, C=3, 4]: channel c of sample n holds c·100 + n·4 + i, i = 0..4.
fn crafted() -> ArrayD<f32> {
    ArrayD::from_shape_fn(IxDyn(&[2, 3, 4]), |i| (i[1] * 100 + i[0] * 4 + i[2]) as f32)
}

#[test]
fn channel_ranges_and_histograms_of_a_crafted_tensor() {
    let s = ChannelStats::of_tensor(crafted().view(), 1, config(4)).unwrap();
    assert_eq!(
        (s.axis(), s.channels(), s.limit()),
        (1, 3, ChannelLimit::None)
    );
    // Channel c holds c·100 + 0..8: range [c·100, c·100 + 7].
    assert_eq!(
        s.ranges(),
        vec![Some((0.0, 7.0)), Some((100.0, 107.0)), Some((200.0, 207.0))]
    );
    // Four bins of width 1.75 over eight consecutive integers: two values each.
    for c in 0..3 {
        let h = s.histogram(c).unwrap();
        assert_eq!(h.counts, vec![2, 2, 2, 2], "channel {c}");
        assert_eq!((h.lo, h.hi), (c as f32 * 100.0, c as f32 * 100.0 + 7.0));
    }
    assert!(s.histograms_are_exact());
}

#[test]
fn the_last_axis_holds_the_channels_of_a_matmul_input() {
    // [rows=5, C=3]: channel c holds c·10 + row.
    let x = ArrayD::from_shape_fn(IxDyn(&[5, 3]), |i| (i[1] * 10 + i[0]) as f32);
    let s = ChannelStats::of_tensor(x.view(), 1, config(5)).unwrap();
    assert_eq!(
        s.ranges(),
        vec![Some((0.0, 4.0)), Some((10.0, 14.0)), Some((20.0, 24.0))]
    );
    assert_eq!(s.histogram(2).unwrap().counts, vec![1; 5]);
    // Rank 3, last axis: the transposing path.
    let y = ArrayD::from_shape_fn(IxDyn(&[2, 4, 3]), |i| {
        (i[2] * 10 + i[0] * 4 + i[1]) as f32 - 5.0
    });
    let s = ChannelStats::of_tensor(y.view(), 2, config(8)).unwrap();
    assert_eq!(
        s.ranges(),
        vec![Some((-5.0, 2.0)), Some((5.0, 12.0)), Some((15.0, 22.0))]
    );
    assert_eq!(s.histogram(0).unwrap().counts, vec![1; 8]);
}

#[test]
fn non_finite_values_and_empty_channels() {
    let x = arr(
        &[1, 3, 2],
        vec![1.0, f32::NAN, f32::INFINITY, f32::NAN, -2.0, 2.0],
    );
    let s = ChannelStats::of_tensor(x.view(), 1, config(2)).unwrap();
    assert_eq!(s.ranges(), vec![Some((1.0, 1.0)), None, Some((-2.0, 2.0))]);
    assert_eq!(s.histogram(0).unwrap().counts, vec![1, 0]);
    assert!(s.histogram(1).is_none());
    assert_eq!(s.histogram(2).unwrap().counts, vec![1, 1]);
}

/// Three batches whose channel ranges grow: the streamed histograms are re-binned; a second
/// pass with the ranges fixed equals one pass over all the values, channel by channel.
#[test]
fn a_second_pass_makes_the_channel_histograms_exact() {
    let batch = |k: usize| {
        ArrayD::from_shape_fn(IxDyn(&[2, 3, 5]), |i| {
            let x = (i[0] * 5 + i[2]) as f32 * 0.37 - 1.1;
            x * (1.0 + k as f32 * 1.7) * (i[1] + 1) as f32
        })
    };
    let batches: Vec<ArrayD<f32>> = (0..3).map(batch).collect();
    let mut s = ChannelStats::new(1, 3, config(16));
    batches.iter().for_each(|b| s.observe(b.view()));
    assert!(!s.histograms_are_exact(), "the ranges grew");
    let ranges = s.ranges();
    s.restart_histograms();
    batches.iter().for_each(|b| s.observe_histograms(b.view()));
    assert!(s.histograms_are_exact());
    assert_eq!(s.ranges(), ranges);

    // Min/max only in the first pass, histograms in the second: the same result.
    let mut later = ChannelStats::new(1, 3, config(16));
    batches.iter().for_each(|b| later.observe_ranges(b.view()));
    assert_eq!(later.ranges(), ranges);
    assert_eq!(later.histogram(0).unwrap().counts.iter().sum::<u64>(), 0);
    later.restart_histograms();
    batches
        .iter()
        .for_each(|b| later.observe_histograms(b.view()));
    for c in 0..3 {
        assert_eq!(later.histogram(c), s.histogram(c), "channel {c}");
    }

    let views: Vec<_> = batches.iter().map(|b| b.view()).collect();
    let all = concatenate(Axis(0), &views).unwrap();
    let single = ChannelStats::of_tensor(all.view(), 1, config(16)).unwrap();
    assert!(single.histograms_are_exact());
    assert_eq!(single.ranges(), ranges);
    for (c, range) in ranges.iter().enumerate() {
        let h = s.histogram(c).unwrap();
        assert_eq!(Some(&h), single.histogram(c).as_ref(), "channel {c}");
        assert_eq!(h.counts.iter().sum::<u64>(), 30);
        // The direct min/max of the channel's values.
        let values = all.index_axis(Axis(1), c);
        let lo = values.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert_eq!(*range, Some((lo, hi)));
    }
}

#[test]
fn limits_keep_min_max_only_or_nothing() {
    let narrow = ChannelConfig {
        bins: 8,
        max_channels: 3,
        histogram_channels: 2,
    };
    let s = ChannelStats::of_tensor(crafted().view(), 1, narrow).unwrap();
    assert_eq!(s.limit(), ChannelLimit::NoHistograms { limit: 2 });
    assert_eq!(s.ranges()[1], Some((100.0, 107.0)));
    assert!(!s.has_histograms() && s.histogram(0).is_none());
    let none = ChannelConfig {
        max_channels: 2,
        ..narrow
    };
    let s = ChannelStats::of_tensor(crafted().view(), 1, none).unwrap();
    assert_eq!(s.limit(), ChannelLimit::TooManyChannels { limit: 2 });
    assert!(s.ranges().is_empty());
    assert!(s.limit().to_string().contains("at most 2 channels"));

    let mut s = ChannelStats::of_tensor(crafted().view(), 1, config(4)).unwrap();
    s.observe(ArrayD::zeros(IxDyn(&[2, 5, 4])).view());
    assert_eq!(s.limit(), ChannelLimit::ShapeChanged { first: 3, now: 5 });
    assert!(s.ranges().is_empty());
}

#[test]
fn the_budget_drops_histograms_before_ranges() {
    let c = ChannelConfig::default();
    assert_eq!(c.bytes(), 4096 * 8 + 1024 * (64 * 8 + 64));
    assert_eq!(c.within(c.bytes()), c);
    let fewer = c.within(4096 * 8 + 10 * (64 * 8 + 64) + 5);
    assert_eq!((fewer.max_channels, fewer.histogram_channels), (4096, 10));
    let ranges_only = c.within(800);
    assert_eq!(
        (ranges_only.max_channels, ranges_only.histogram_channels),
        (100, 0)
    );
    assert!(ranges_only.bytes() <= 800);
}

#[test]
fn the_consumer_sets_the_channel_axis() {
    let graph = Graph {
        name: "g".into(),
        nodes: vec![
            Node::new("conv", "Conv", &["x", "w"], &["c"]),
            Node::new("relu", "Relu", &["c"], &["r"]),
            Node::new("flat", "Flatten", &["r"], &["f"]),
            Node::new("mm", "MatMul", &["f", "m"], &["y"]),
        ],
        inputs: Vec::new(),
        outputs: Vec::new(),
        initializers: BTreeMap::new(),
        opset: 17,
    };
    let axes = ChannelAxis::of_graph(&graph);
    assert_eq!(axes.get("x"), Some(&ChannelAxis::Second));
    assert_eq!(axes.get("f"), Some(&ChannelAxis::Last));
    assert_eq!(axes.get("c"), None, "element-wise consumer: the default");
    assert_eq!(axes.get("m"), None, "MatMul's B is not a channel input");
    assert_eq!(ChannelAxis::Last.resolve(3), Some(2));
    assert_eq!(ChannelAxis::Second.resolve(4), Some(1));
    assert_eq!(ChannelAxis::Last.resolve(1), None);
}
