//! Recurrent layers (LSTM, GRU): their W and R quantized per gate row against the closed form,
//! their input sequence quantized like any layer input, the bias and hidden state left float,
//! and their cost counted.

use std::collections::{BTreeMap, HashMap};

use ndarray::ArrayD;

use crate::engine::{Plan, RunOptions};
use crate::ir::{Attribute, DType, Graph, Node, ParamRole, Tensor, TensorData, ValueInfo};
use crate::quant::QuantizedModel;
use crate::quant::config::{ActivationQuant, QuantConfig};
use crate::quant::cost::layer_costs;
use crate::quant::test_support::gaussian_like;

/// x [7 steps, 2 sequences, 5 features] read by a bidirectional LSTM (hidden 3: W [2, 12, 5],
/// R [2, 12, 3], B [2, 24]) and a GRU (hidden 4: W [1, 12, 5], R [1, 12, 4]).
fn recurrent_graph() -> Graph {
    let weights = [
        ("lstm_w", vec![2, 12, 5], 1),
        ("lstm_r", vec![2, 12, 3], 2),
        ("lstm_b", vec![2, 24], 3),
        ("gru_w", vec![1, 12, 5], 4),
        ("gru_r", vec![1, 12, 4], 5),
    ];
    let initializers = weights
        .into_iter()
        .map(|(name, shape, seed)| {
            let data = TensorData::F32(gaussian_like(&shape, seed, 0.4));
            (name.to_string(), Tensor::new(name, data, DType::F32))
        })
        .collect();
    let lstm = Node::new("lstm", "LSTM", &["x", "lstm_w", "lstm_r", "lstm_b"], &["y"])
        .with_attributes([
            ("hidden_size", Attribute::Int(3)),
            ("direction", Attribute::String("bidirectional".into())),
        ]);
    let gru = Node::new("gru", "GRU", &["x", "gru_w", "gru_r"], &["z"])
        .with_attributes([("hidden_size", Attribute::Int(4))]);
    let value = |name: &str| ValueInfo {
        name: name.into(),
        dtype: Some(DType::F32),
        shape: None,
    };
    let mut graph = Graph {
        name: "recurrent".into(),
        nodes: vec![lstm, gru],
        inputs: vec![value("x")],
        outputs: vec![value("y"), value("z")],
        initializers,
        opset: 14,
    };
    crate::ir::assign_roles(&mut graph);
    graph
}

fn sequence() -> ArrayD<f32> {
    gaussian_like(&[7, 2, 5], 11, 1.0)
}

fn run(graph: &Graph, hook: Option<&mut dyn crate::engine::TensorHook>) -> Vec<ArrayD<f32>> {
    let feeds = HashMap::from([("x".to_string(), TensorData::F32(sequence()))]);
    Plan::new(graph)
        .unwrap()
        .run(feeds, hook, RunOptions::default())
        .unwrap()
        .into_iter()
        .map(|(_, t)| t.as_f32().unwrap().clone())
        .collect()
}

#[test]
fn recurrent_weights_are_quantized_per_gate_row_and_the_bias_stays_float() {
    let graph = recurrent_graph();
    for name in ["lstm_w", "lstm_r", "gru_w", "gru_r"] {
        let t = &graph.initializers[name];
        assert_eq!(
            (t.role, t.channel_axis),
            (ParamRole::Weight, Some(1)),
            "{name}"
        );
    }
    assert_eq!(graph.initializers["lstm_b"].role, ParamRole::Bias);
    let mut config = QuantConfig::int8_per_channel();
    config.default.activations = None;
    let quantized = QuantizedModel::prepare(&graph, &config, &BTreeMap::new()).unwrap();
    let reported: Vec<&str> = quantized
        .weights
        .iter()
        .map(|w| w.tensor.as_str())
        .collect();
    assert_eq!(reported, ["lstm_w", "lstm_r", "gru_w", "gru_r"]);
    for report in &quantized.weights {
        let float = graph.initializers[&report.tensor].data.as_f32().unwrap();
        let rows = float.shape()[1];
        assert!(report.per_channel, "{}", report.tensor);
        assert_eq!(
            report.params.len(),
            rows,
            "{}: one grid per gate row",
            report.tensor
        );
        let quantized_values = quantized.graph.initializers[&report.tensor]
            .data
            .as_f32()
            .unwrap();
        // Closed form: symmetric int8 per row j over every direction and input,
        // s_j = max|w[·, j, ·]| / 127 and ŵ = round(w / s_j) · s_j.
        for j in 0..rows {
            let row_max = float
                .indexed_iter()
                .filter(|(i, _)| i[1] == j)
                .fold(0.0f32, |m, (_, &v)| m.max(v.abs()));
            let scale = row_max / 127.0;
            assert!((report.params[j].scale - scale).abs() <= scale * 1e-6);
            for (i, &w) in float.indexed_iter().filter(|(i, _)| i[1] == j) {
                let expected = (w / scale).round_ties_even() * scale;
                let got = quantized_values[&i];
                assert!(
                    (got - expected).abs() <= scale * 1e-3,
                    "{} {i:?}: {got} vs {expected}",
                    report.tensor
                );
            }
        }
    }
    assert_eq!(
        quantized.graph.initializers["lstm_b"].data.as_f32(),
        graph.initializers["lstm_b"].data.as_f32(),
        "the bias stays float"
    );
    // The quantized layers run and stay close to float (8-bit weights: well above 30 dB).
    let (float_out, quant_out) = (run(&graph, None), run(&quantized.graph, None));
    for (f, q) in float_out.iter().zip(&quant_out) {
        let signal: f32 = f.iter().map(|v| v * v).sum();
        let noise: f32 = f.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum();
        let sqnr = 10.0 * (signal / noise).log10();
        assert!(noise > 0.0 && sqnr > 30.0, "SQNR {sqnr} dB");
    }
}

#[test]
fn a_recurrent_layers_input_sequence_is_quantized_with_channels_on_its_last_axis() {
    let graph = recurrent_graph();
    let mut config = QuantConfig::int8_per_channel();
    config.default.weights = None;
    config.default.activations = Some(ActivationQuant {
        bits: 8,
        symmetric: true,
        method: crate::calib::Method::MinMax,
    });
    config.activation_ranges.insert("x".into(), (-2.0, 2.0));
    let quantized = QuantizedModel::prepare(&graph, &config, &BTreeMap::new()).unwrap();
    let inputs: Vec<&str> = quantized
        .activations
        .iter()
        .map(|a| a.tensor.as_str())
        .collect();
    assert_eq!(
        inputs,
        ["x"],
        "one quantizer for the sequence both layers read"
    );
    // The simulation sees the sequence on the int8 grid of S = 2/127, saturating at its ends.
    let mut hook = quantized.hook();
    let float = sequence().mapv(|v| v * 3.0);
    let mut value = TensorData::F32(float.clone());
    let site = crate::engine::TensorSite {
        name: "x",
        producer: None,
        step: None,
    };
    crate::engine::TensorHook::on_tensor(&mut hook, site, &mut value).unwrap();
    let step = 2.0 / 127.0;
    let mut saturated = 0;
    for (&x, &q) in float.iter().zip(value.as_f32().unwrap()) {
        let code = q / step;
        assert!((code - code.round()).abs() < 1e-3, "{q} is off the grid");
        if x.abs() > 2.0 {
            saturated += 1;
            // int8 codes: 127 steps up, 128 down
            let end = if x > 0.0 { 127.0 * step } else { -128.0 * step };
            assert!((q - end).abs() < 1e-5, "{x} saturates at {end}, got {q}");
        } else {
            assert!((q - x).abs() <= step / 2.0 + 1e-6, "{x} → {q}");
        }
    }
    assert!(saturated > 0, "the test sequence reaches beyond ±2");
    // Its channels are the features (last axis, 5 of them, the width of W's rows).
    config
        .activation_channel_ranges
        .insert("x".into(), BTreeMap::from([(4, (-0.5, 0.5))]));
    let clipped = QuantizedModel::prepare(&graph, &config, &BTreeMap::new()).unwrap();
    let channels = clipped.activations[0].channels.as_ref().unwrap();
    assert_eq!(
        (channels.axis, channels.count),
        (-1, Some(5)),
        "the last axis"
    );
    config
        .activation_channel_ranges
        .insert("x".into(), BTreeMap::from([(5, (-0.5, 0.5))]));
    let e = QuantizedModel::prepare(&graph, &config, &BTreeMap::new())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("'x'") && e.contains("channel 5"), "{e}");
}

#[test]
fn recurrent_costs_count_the_inputs_and_the_float_recurrence() {
    let graph = recurrent_graph();
    let shapes = HashMap::from([("x".to_string(), vec![7, 2, 5])]);
    let costs = layer_costs(&graph, &shapes, |_| (8, 8)).unwrap();
    let row = |name: &str| costs.iter().find(|c| c.node == name).unwrap();
    // 14 steps of the two sequences, each weight used once per step.
    assert_eq!(row("lstm").macs, 14 * 2 * 12 * 5);
    assert_eq!(row("lstm (recurrence)").macs, 14 * 2 * 12 * 3);
    assert_eq!(row("gru").macs, 14 * 12 * 5);
    assert_eq!(row("gru (recurrence)").macs, 14 * 12 * 4);
    assert_eq!(row("gru").bitops, 14 * 12 * 5 * 64);
    assert_eq!(
        row("gru (recurrence)").bitops,
        14 * 12 * 4 * 8 * 32,
        "the hidden state is float"
    );
}
