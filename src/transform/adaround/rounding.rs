//! The pieces of AdaRound's objective that do not depend on the layer: the rectified sigmoid
//! h(V) = clip(σ(V)(ζ − γ) + γ, 0, 1) and its derivative, the rounding regulariser
//! 1 − |2h − 1|^β and its derivative, the β annealing schedule and the Adam update.

/// Stretch of the rectified sigmoid above 1 (ζ).
pub const ZETA: f64 = 1.1;
/// Stretch of the rectified sigmoid below 0 (γ).
pub const GAMMA: f64 = -0.1;

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

/// h(V) = clip(σ(V)(ζ − γ) + γ, 0, 1): the soft rounding offset in [0, 1].
pub fn rectified_sigmoid(v: f64) -> f64 {
    (sigmoid(v) * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)
}

/// dh/dV: σ(V)(1 − σ(V))(ζ − γ) where the clip is inactive, 0 where h is clipped to 0 or 1.
pub fn rectified_sigmoid_grad(v: f64) -> f64 {
    let s = sigmoid(v);
    let stretched = s * (ZETA - GAMMA) + GAMMA;
    if stretched <= 0.0 || stretched >= 1.0 {
        0.0
    } else {
        s * (1.0 - s) * (ZETA - GAMMA)
    }
}

/// The V with h(V) = `fraction` (fraction in [0, 1), the fractional part of W/S), so that the
/// optimisation starts from the float weights.
pub fn initial_v(fraction: f64) -> f64 {
    let s = ((fraction - GAMMA) / (ZETA - GAMMA)).clamp(1e-9, 1.0 - 1e-9);
    (s / (1.0 - s)).ln()
}

/// 1 − |2h − 1|^β: 1 at h = ½, 0 at h ∈ {0, 1}; summed over the weights (times λ) it pushes
/// every h to a hard up/down decision.
pub fn regularizer(h: f64, beta: f64) -> f64 {
    1.0 - (2.0 * h - 1.0).abs().powf(beta)
}

/// d/dh of [`regularizer`]: −2β|2h − 1|^(β−1)·sign(2h − 1).
pub fn regularizer_grad(h: f64, beta: f64) -> f64 {
    let u = 2.0 * h - 1.0;
    if u == 0.0 {
        return 0.0;
    }
    -2.0 * beta * u.abs().powf(beta - 1.0) * u.signum()
}

/// β over the iterations: no regulariser during the warm start (the first `warm_start`
/// fraction), then β falls linearly from `start` to `end` at the last iteration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BetaSchedule {
    pub iterations: usize,
    pub warm_start: f64,
    pub start: f64,
    pub end: f64,
}

impl BetaSchedule {
    /// The first iteration with the regulariser on.
    pub fn warm_iterations(&self) -> usize {
        (self.warm_start * self.iterations as f64).round() as usize
    }

    /// β at `iteration`; None during the warm start (regulariser off).
    pub fn beta(&self, iteration: usize) -> Option<f64> {
        let warm = self.warm_iterations();
        if iteration < warm {
            return None;
        }
        let span = self.iterations.saturating_sub(1).saturating_sub(warm);
        let progress = if span == 0 {
            1.0
        } else {
            ((iteration - warm) as f64 / span as f64).min(1.0)
        };
        Some(self.start + (self.end - self.start) * progress)
    }
}

/// Adam (Kingma & Ba) over a flat parameter vector.
#[derive(Debug, Clone)]
pub struct Adam {
    pub learning_rate: f64,
    beta1: f64,
    beta2: f64,
    epsilon: f64,
    first: Vec<f64>,
    second: Vec<f64>,
    steps: i32,
}

impl Adam {
    /// Adam for `len` parameters with the usual β1 = 0.9, β2 = 0.999, ε = 1e-8.
    pub fn new(len: usize, learning_rate: f64) -> Self {
        Adam {
            learning_rate,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            first: vec![0.0; len],
            second: vec![0.0; len],
            steps: 0,
        }
    }

    /// One bias-corrected step of `params` against `grads` (same length as at creation).
    pub fn step(&mut self, params: &mut [f64], grads: &[f64]) {
        self.steps += 1;
        let c1 = 1.0 - self.beta1.powi(self.steps);
        let c2 = 1.0 - self.beta2.powi(self.steps);
        for (((p, &g), m), v) in params
            .iter_mut()
            .zip(grads)
            .zip(&mut self.first)
            .zip(&mut self.second)
        {
            *m = self.beta1 * *m + (1.0 - self.beta1) * g;
            *v = self.beta2 * *v + (1.0 - self.beta2) * g * g;
            *p -= self.learning_rate * (*m / c1) / ((*v / c2).sqrt() + self.epsilon);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + b.abs())
    }

    #[test]
    fn rectified_sigmoid_closed_forms() {
        // σ(0) = ½ → ½·1.2 − 0.1 = 0.5.
        assert!(close(rectified_sigmoid(0.0), 0.5, 1e-15));
        // σ(ln 3) = ¾ → 0.75·1.2 − 0.1 = 0.8.
        assert!(close(rectified_sigmoid(3f64.ln()), 0.8, 1e-12));
        // Clipped ends: σ(V) < 1/12 gives 0, σ(V) > 11/12 gives 1.
        assert_eq!(rectified_sigmoid(-10.0), 0.0);
        assert_eq!(rectified_sigmoid(10.0), 1.0);
        assert_eq!(rectified_sigmoid_grad(-10.0), 0.0);
        assert_eq!(rectified_sigmoid_grad(10.0), 0.0);
        // At V = 0: σ(1−σ)(ζ−γ) = ¼·1.2 = 0.3.
        assert!(close(rectified_sigmoid_grad(0.0), 0.3, 1e-12));
    }

    #[test]
    fn gradients_match_finite_differences() {
        let eps = 1e-6;
        for v in [-2.3, -1.0, -0.2, 0.0, 0.4, 1.7, 2.2] {
            let numeric = (rectified_sigmoid(v + eps) - rectified_sigmoid(v - eps)) / (2.0 * eps);
            assert!(
                close(rectified_sigmoid_grad(v), numeric, 1e-6),
                "dh/dV at {v}: {} vs {numeric}",
                rectified_sigmoid_grad(v)
            );
        }
        for beta in [2.0, 3.5, 11.0, 20.0] {
            for h in [0.05, 0.3, 0.49, 0.51, 0.7, 0.95] {
                let numeric =
                    (regularizer(h + eps, beta) - regularizer(h - eps, beta)) / (2.0 * eps);
                assert!(
                    close(regularizer_grad(h, beta), numeric, 1e-5),
                    "dreg/dh at h={h}, β={beta}: {} vs {numeric}",
                    regularizer_grad(h, beta)
                );
            }
        }
    }

    #[test]
    fn initial_v_reproduces_the_fraction() {
        for f in [0.0, 0.01, 0.25, 0.5, 0.77, 0.999] {
            assert!(close(rectified_sigmoid(initial_v(f)), f, 1e-9), "{f}");
        }
    }

    #[test]
    fn regularizer_closed_forms() {
        for beta in [2.0, 20.0] {
            assert_eq!(regularizer(0.5, beta), 1.0);
            assert_eq!(regularizer(0.0, beta), 0.0);
            assert_eq!(regularizer(1.0, beta), 0.0);
        }
        // β = 2: 1 − (2h − 1)² = 4h(1 − h); at h = 0.25 that is 0.75.
        assert!(close(regularizer(0.25, 2.0), 0.75, 1e-12));
        // Large β is flat near ½: at h = 0.75, 1 − 0.5^20 ≈ 1.
        assert!(close(regularizer(0.75, 20.0), 1.0 - 0.5f64.powi(20), 1e-12));
    }

    #[test]
    fn beta_schedule_warm_start_then_linear_20_to_2() {
        let schedule = BetaSchedule {
            iterations: 1001,
            warm_start: 0.2,
            start: 20.0,
            end: 2.0,
        };
        assert_eq!(schedule.warm_iterations(), 200);
        assert_eq!(schedule.beta(0), None);
        assert_eq!(schedule.beta(199), None);
        assert_eq!(schedule.beta(200), Some(20.0));
        // 800 iterations after the warm start: halfway (600) gives (20 + 2)/2.
        assert!(close(schedule.beta(600).unwrap(), 11.0, 1e-12));
        assert_eq!(schedule.beta(1000), Some(2.0));
    }

    #[test]
    fn adam_minimises_a_quadratic() {
        // f(x) = (x − 3)², gradient 2(x − 3); the first step moves by the learning rate.
        let mut adam = Adam::new(1, 0.1);
        let mut x = [0.0];
        let g = [2.0 * (x[0] - 3.0)];
        adam.step(&mut x, &g);
        assert!(close(x[0], 0.1, 1e-6));
        for _ in 0..2000 {
            let g = [2.0 * (x[0] - 3.0)];
            adam.step(&mut x, &g);
        }
        assert!((x[0] - 3.0).abs() < 1e-3, "{}", x[0]);
    }
}
