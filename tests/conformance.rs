//! Op conformance: every model under tests/fixtures/conformance runs in the engine and matches
//! onnxruntime's stored outputs (scripts/make_conformance.py) element by element.

mod common;

use common::{compare, read_named, repo_path, run_model};

#[test]
fn every_conformance_case_matches_onnxruntime() {
    let dir = repo_path("tests/fixtures/conformance");
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("manifest.json")).expect("manifest.json is readable"),
    )
    .expect("manifest.json is valid JSON");
    let cases = manifest.as_array().expect("manifest is a list of cases");
    assert!(
        cases.len() >= 40,
        "expected the full conformance suite, found {} cases",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in cases {
        let name = case["case"].as_str().expect("case name");
        let outcome = run_model(
            &dir.join(format!("{name}.onnx")),
            &dir.join(format!("{name}.inputs.npz")),
        )
        .and_then(|outputs| {
            let expected = read_named(&dir.join(format!("{name}.outputs.npz")));
            for (output, reference) in &expected {
                let actual = outputs
                    .get(output)
                    .ok_or_else(|| format!("output '{output}' missing"))?;
                compare(output, actual, reference)?;
            }
            Ok(())
        });
        if let Err(e) = outcome {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from onnxruntime:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
