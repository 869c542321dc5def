//! Optimizers over named parameter vectors, and the learning-rate schedule.
//!
//! * SGD with momentum: v ← μ·v + (g + λ·w), w ← w − η·v (λ: L2 weight decay).
//! * Adam (decoupled weight decay, i.e. AdamW): m ← β₁m + (1 − β₁)g, v ← β₂v + (1 − β₂)g²,
//!   w ← w − η·(m̂/(√v̂ + ε) + λ·w) with the bias-corrected m̂, v̂.
//!
//! State is kept per parameter name, so quantizer parameters (TTQ scales, k-means centroids,
//! learned clip ranges) are optimized like weights.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Which optimizer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum OptimizerKind {
    Sgd {
        momentum: f32,
    },
    Adam {
        beta1: f32,
        beta2: f32,
        epsilon: f32,
    },
}

impl OptimizerKind {
    /// Adam with the usual β₁ = 0.9, β₂ = 0.999, ε = 1e-8.
    pub const ADAM: OptimizerKind = OptimizerKind::Adam {
        beta1: 0.9,
        beta2: 0.999,
        epsilon: 1e-8,
    };
    /// SGD with momentum 0.9.
    pub const SGD: OptimizerKind = OptimizerKind::Sgd { momentum: 0.9 };

    /// "sgd" or "adam".
    pub fn name(&self) -> &'static str {
        match self {
            OptimizerKind::Sgd { .. } => "sgd",
            OptimizerKind::Adam { .. } => "adam",
        }
    }
}

/// Learning rate over the run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Schedule {
    Constant,
    /// Half a cosine from the base rate down to 0 at the last step.
    Cosine,
    /// Multiplied by `gamma` after every `every` epochs.
    Step {
        every: usize,
        gamma: f32,
    },
}

impl Schedule {
    /// The rate at `step` of `steps` (steps per epoch `per_epoch`), from `base`.
    pub fn rate(&self, base: f32, step: usize, steps: usize, per_epoch: usize) -> f32 {
        match *self {
            Schedule::Constant => base,
            Schedule::Cosine => {
                let t = if steps <= 1 {
                    0.0
                } else {
                    step as f64 / (steps - 1) as f64
                };
                (f64::from(base) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())) as f32
            }
            Schedule::Step { every, gamma } => {
                let epoch = step / per_epoch.max(1);
                base * gamma.powi((epoch / every.max(1)) as i32)
            }
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Slot {
    first: Vec<f32>,
    second: Vec<f32>,
    steps: u32,
}

/// An optimizer with per-parameter state.
#[derive(Debug, Clone)]
pub struct Optimizer {
    pub kind: OptimizerKind,
    /// L2 (SGD) or decoupled (Adam) weight decay λ, applied where asked.
    pub weight_decay: f32,
    state: HashMap<String, Slot>,
}

impl Optimizer {
    pub fn new(kind: OptimizerKind, weight_decay: f32) -> Self {
        Optimizer {
            kind,
            weight_decay,
            state: HashMap::new(),
        }
    }

    /// One update of parameter `name` (values `w`, gradient `g` of the same length) at
    /// learning rate `lr`; weight decay only when `decay`.
    pub fn update(&mut self, name: &str, w: &mut [f32], g: &[f32], lr: f32, decay: bool) {
        let slot = self.state.entry(name.to_string()).or_default();
        if slot.first.len() != w.len() {
            *slot = Slot {
                first: vec![0.0; w.len()],
                second: vec![0.0; w.len()],
                steps: 0,
            };
        }
        slot.steps += 1;
        let lambda = if decay { self.weight_decay } else { 0.0 };
        match self.kind {
            OptimizerKind::Sgd { momentum } => {
                for ((w, &g), v) in w.iter_mut().zip(g).zip(&mut slot.first) {
                    let g = g + lambda * *w;
                    *v = momentum * *v + g;
                    *w -= lr * *v;
                }
            }
            OptimizerKind::Adam {
                beta1,
                beta2,
                epsilon,
            } => {
                let t = slot.steps as i32;
                let c1 = 1.0 - beta1.powi(t);
                let c2 = 1.0 - beta2.powi(t);
                for (((w, &g), m), v) in w
                    .iter_mut()
                    .zip(g)
                    .zip(&mut slot.first)
                    .zip(&mut slot.second)
                {
                    *m = beta1 * *m + (1.0 - beta1) * g;
                    *v = beta2 * *v + (1.0 - beta2) * g * g;
                    let step = (*m / c1) / ((*v / c2).sqrt() + epsilon);
                    *w -= lr * (step + lambda * *w);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both optimizers minimize a quadratic (w − 3)².
    #[test]
    fn optimizers_reach_the_minimum_of_a_quadratic() {
        for kind in [OptimizerKind::SGD, OptimizerKind::ADAM] {
            let mut opt = Optimizer::new(kind, 0.0);
            let mut w = vec![0.0f32, 10.0];
            for _ in 0..500 {
                let g: Vec<f32> = w.iter().map(|&x| 2.0 * (x - 3.0)).collect();
                opt.update("w", &mut w, &g, 0.05, true);
            }
            for x in w {
                assert!((x - 3.0).abs() < 1e-2, "{}: {x}", kind.name());
            }
        }
    }

    #[test]
    fn adam_first_step_is_the_learning_rate_and_decay_shrinks() {
        let mut opt = Optimizer::new(OptimizerKind::ADAM, 0.0);
        let mut w = vec![1.0f32];
        opt.update("w", &mut w, &[123.0], 0.01, false);
        assert!((w[0] - 0.99).abs() < 1e-6, "{}", w[0]);
        let mut opt = Optimizer::new(OptimizerKind::SGD, 0.5);
        let mut w = vec![2.0f32];
        opt.update("w", &mut w, &[0.0], 0.1, true);
        assert!((w[0] - 1.9).abs() < 1e-6);
    }

    #[test]
    fn schedules() {
        assert_eq!(Schedule::Constant.rate(0.1, 5, 10, 2), 0.1);
        assert!((Schedule::Cosine.rate(0.1, 0, 11, 1) - 0.1).abs() < 1e-7);
        assert!((Schedule::Cosine.rate(0.1, 5, 11, 1) - 0.05).abs() < 1e-7);
        assert!(Schedule::Cosine.rate(0.1, 10, 11, 1).abs() < 1e-7);
        let step = Schedule::Step {
            every: 2,
            gamma: 0.1,
        };
        assert!((step.rate(1.0, 7, 20, 2) - 0.1).abs() < 1e-6);
    }
}
