"""Fits the polynomial coefficients of the engine's vectorized erf and tanh
(`src/engine/ops/elementwise/math.rs`) and prints them.

Least squares with relative weights on Chebyshev nodes (close to minimax), in float64:
- erf(x) = x * P(x^2) on |x| <= 1, P of degree 5;
- erfc(x) = exp(-x^2) * Q(1/x) on 1 <= x <= 10, Q of degree 10 (used by erf up to 3.92, where
  erf(x) rounds to 1 in f32, and by GELU's tail down to where it underflows);
- tanh(x) = x + x^3 * T(x^2) on |x| <= 0.625, T of degree 4 (beyond it
  tanh(x) = 1 - 2 / (exp(2x) + 1) loses nothing).
Also prints each fit's worst relative error with f32 Horner evaluation against float64.

    python3 scripts/fit_math_polynomials.py
"""

import math

import numpy as np

erf = np.vectorize(math.erf)
erfc = np.vectorize(math.erfc)


def chebyshev_nodes(a, b, n=4000):
    k = np.arange(n)
    return (a + b) / 2 + (b - a) / 2 * np.cos(np.pi * (k + 0.5) / n)


def fit(y, basis, weight):
    a = np.stack(basis, 1) * weight[:, None]
    c, *_ = np.linalg.lstsq(a, y * weight, rcond=None)
    return c


def horner_f32(c, t):
    t = t.astype(np.float32)
    r = np.float32(c[-1])
    for k in c[-2::-1]:
        r = (r * t + np.float32(k)).astype(np.float32)
    return r


def main():
    np.set_printoptions(precision=17)
    x = chebyshev_nodes(1e-4, 1.0)
    y = erf(x) / x
    p = fit(y, [(x * x) ** k for k in range(6)], 1 / y)
    xs = np.linspace(1e-4, 1.0, 100001).astype(np.float32)
    got = xs * horner_f32(p, xs * xs)
    print("erf |x|<=1, P:", repr(p))
    print("  worst relative error", np.max(np.abs(got - erf(xs.astype(np.float64))) / erf(xs)))

    x = chebyshev_nodes(1.0, 10.0)
    q_values = erfc(x) * np.exp(x * x)
    q = fit(q_values, [(1 / x) ** k for k in range(11)], 1 / q_values)
    xs = np.linspace(1.0, 10.0, 100001).astype(np.float32)
    x64 = xs.astype(np.float64)
    got = horner_f32(q, (np.float32(1) / xs).astype(np.float32))
    print("erfc 1<=x<=10, Q:", repr(q))
    print("  worst relative error of Q", np.max(np.abs(got - erfc(x64) * np.exp(x64**2)) / got))

    x = chebyshev_nodes(1e-4, 0.625)
    t_values = (np.tanh(x) - x) / x**3
    t = fit(t_values, [(x * x) ** k for k in range(5)], x**3 / np.tanh(x))
    xs = np.linspace(1e-4, 0.625, 100001).astype(np.float32)
    x2 = (xs * xs).astype(np.float32)
    got = xs + xs * x2 * horner_f32(t, x2)
    ref = np.tanh(xs.astype(np.float64))
    print("tanh |x|<=0.625, T:", repr(t))
    print("  worst relative error", np.max(np.abs(got - ref) / ref))


if __name__ == "__main__":
    main()
