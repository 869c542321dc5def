//! Einsum: the parser's label assignment, and results against naive sums over all indices.

use ndarray::{ArrayD, IxDyn};

use super::super::testutil::*;
use super::{ELLIPSIS_BASE, parse};
use crate::ir::{Attribute, TensorData};

fn einsum(equation: &str, inputs: &[&TensorData]) -> Result<(Vec<usize>, Vec<f32>), String> {
    run(
        "Einsum",
        12,
        vec![("equation", Attribute::String(equation.into()))],
        inputs,
    )
    .map(|out| fvals(&out[0]))
    .map_err(|e| e.0)
}

fn l(c: char) -> usize {
    c as usize
}

#[test]
fn parse_implicit_explicit_and_ellipsis() {
    let eq = parse("ij,jk", &[2, 2]).unwrap();
    assert_eq!(eq.output, vec![l('i'), l('k')]);
    let eq = parse("ba , ab", &[2, 2]).unwrap();
    assert_eq!(eq.output, Vec::<usize>::new());
    let eq = parse("...ij,...jk->...ik", &[4, 3]).unwrap();
    let e = |k| ELLIPSIS_BASE + k;
    assert_eq!(eq.inputs[0], vec![e(0), e(1), l('i'), l('j')]);
    assert_eq!(eq.inputs[1], vec![e(1), l('j'), l('k')]);
    assert_eq!(eq.output, vec![e(0), e(1), l('i'), l('k')]);
    // implicit output puts the ellipsis first, then single letters in ASCII order
    let eq = parse("b...a", &[3]).unwrap();
    assert_eq!(eq.output, vec![e(0), l('a'), l('b')]);
    for bad in ["ij,jk->iz", "ij->ii", "i1", "ij,jk"] {
        let ranks: &[usize] = if bad == "ij,jk" { &[2] } else { &[2, 2] };
        assert!(parse(bad, ranks).is_err(), "{bad}");
    }
}

fn random(rng: &mut Rng, shape: &[usize]) -> TensorData {
    TensorData::F32(rng.array(shape))
}

fn at(t: &TensorData, idx: &[usize]) -> f32 {
    t.as_f32().unwrap()[IxDyn(idx)]
}

#[test]
fn matrix_products_traces_and_diagonals() {
    let mut rng = Rng::new(7);
    let a = random(&mut rng, &[3, 4]);
    let b = random(&mut rng, &[4, 5]);
    let (shape, v) = einsum("ij,jk->ik", &[&a, &b]).unwrap();
    assert_eq!(shape, vec![3, 5]);
    for i in 0..3 {
        for k in 0..5 {
            let want: f32 = (0..4).map(|j| at(&a, &[i, j]) * at(&b, &[j, k])).sum();
            assert!((v[i * 5 + k] - want).abs() < 1e-5);
        }
    }
    // transposed output, implicit form
    let (shape, v) = einsum("ij,jk->ki", &[&a, &b]).unwrap();
    assert_eq!(shape, vec![5, 3]);
    let want: f32 = (0..4).map(|j| at(&a, &[2, j]) * at(&b, &[j, 1])).sum();
    assert!((v[3 + 2] - want).abs() < 1e-5);
    // trace and diagonal of a square matrix
    let s = random(&mut rng, &[4, 4]);
    let (shape, v) = einsum("ii", &[&s]).unwrap();
    assert_eq!(shape, Vec::<usize>::new());
    let trace: f32 = (0..4).map(|i| at(&s, &[i, i])).sum();
    assert!((v[0] - trace).abs() < 1e-5);
    let (_, v) = einsum("ii->i", &[&s]).unwrap();
    let diag: Vec<f32> = (0..4).map(|i| at(&s, &[i, i])).collect();
    assert_close(&v, &diag, 1e-6);
    // sum over everything, outer product
    let (_, v) = einsum("ij->", &[&a]).unwrap();
    let total: f32 = a.as_f32().unwrap().sum();
    assert!((v[0] - total).abs() < 1e-5);
    let x = f(&[2], &[1., 2.]);
    let y = f(&[3], &[3., 4., 5.]);
    assert_eq!(
        einsum("i,j->ij", &[&x, &y]).unwrap(),
        (vec![2, 3], vec![3., 4., 5., 6., 8., 10.])
    );
    assert_eq!(einsum("i,i", &[&x, &x]).unwrap(), (vec![], vec![5.]));
}

#[test]
fn attention_and_batched_ellipsis_forms() {
    let mut rng = Rng::new(3);
    // BERT-style attention scores: bqnh,bknh->bnqk
    let q = random(&mut rng, &[2, 3, 2, 4]);
    let k = random(&mut rng, &[2, 5, 2, 4]);
    let (shape, v) = einsum("bqnh,bknh->bnqk", &[&q, &k]).unwrap();
    assert_eq!(shape, vec![2, 2, 3, 5]);
    let want = |b, n, qi, ki| -> f32 {
        (0..4)
            .map(|h| at(&q, &[b, qi, n, h]) * at(&k, &[b, ki, n, h]))
            .sum()
    };
    for (idx, got) in v.iter().enumerate() {
        let (b, n, qi, ki) = (idx / 30, (idx / 15) % 2, (idx / 5) % 3, idx % 5);
        assert!((got - want(b, n, qi, ki)).abs() < 1e-5, "{idx}");
    }
    // broadcasting ellipsis: [2,1,3,4] x [5,4,2] -> [2,5,3,2]
    let a = random(&mut rng, &[2, 1, 3, 4]);
    let b = random(&mut rng, &[5, 4, 2]);
    let (shape, v) = einsum("...ij,...jk->...ik", &[&a, &b]).unwrap();
    assert_eq!(shape, vec![2, 5, 3, 2]);
    let got = v[((5 + 4) * 3 + 2) * 2 + 1];
    let want: f32 = (0..4)
        .map(|j| at(&a, &[1, 0, 2, j]) * at(&b, &[4, j, 1]))
        .sum();
    assert!((got - want).abs() < 1e-5);
    // three operands
    let x = random(&mut rng, &[3]);
    let m = random(&mut rng, &[3, 4]);
    let y = random(&mut rng, &[4]);
    let (_, v) = einsum("i,ij,j->", &[&x, &m, &y]).unwrap();
    let mut want = 0.0;
    for i in 0..3 {
        for j in 0..4 {
            want += at(&x, &[i]) * at(&m, &[i, j]) * at(&y, &[j]);
        }
    }
    assert!((v[0] - want).abs() < 1e-5);
}

#[test]
fn mismatched_sizes_are_refused() {
    let a = TensorData::F32(ArrayD::zeros(IxDyn(&[2, 3])));
    let b = TensorData::F32(ArrayD::zeros(IxDyn(&[4, 5])));
    let err = einsum("ij,jk->ik", &[&a, &b]).unwrap_err();
    assert!(err.contains("sizes 3 and 4"), "{err}");
    let err = einsum("ij,jk", &[&a]).unwrap_err();
    assert!(err.contains("2 terms for 1 inputs"), "{err}");
}
