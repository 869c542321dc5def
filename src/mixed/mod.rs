//! Mixed precision (issue 6): per-layer sensitivity analysis and bit allocation under a size or
//! BitOps budget.
