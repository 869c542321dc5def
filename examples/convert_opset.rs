//! Lifts an ONNX model to a newer opset with Quantscope's converter and writes it; used by
//! `scripts/check_opsets.py` to check the lifted files with onnx.checker and onnxruntime.
//!
//! `cargo run --release --no-default-features --example convert_opset -- MODEL OPSET OUT`

use std::path::PathBuf;

use quantscope::export::opset::upgrade_opset;
use quantscope::export::write_onnx_model;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, opset, out] = args.as_slice() else {
        anyhow::bail!("usage: convert_opset MODEL OPSET OUT");
    };
    let target: i64 = opset
        .parse()
        .map_err(|_| anyhow::anyhow!("OPSET must be an integer, got '{opset}'"))?;
    let mut graph = quantscope::load::load_model(&PathBuf::from(model))?.graph;
    let from = graph.opset;
    upgrade_opset(&mut graph, target)?;
    write_onnx_model(&graph, &PathBuf::from(out))?;
    println!("{model}: opset {from} -> {} written to {out}", graph.opset);
    Ok(())
}
