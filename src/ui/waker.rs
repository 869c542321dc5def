//! How a worker wakes the UI: a closure the app makes from `request_repaint` (so sessions and
//! jobs know nothing of egui beyond it).

use std::sync::Arc;

/// Wakes the UI from a worker.
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// A waker that repaints `ctx`.
pub fn waker(ctx: &egui::Context) -> Waker {
    let ctx = ctx.clone();
    Arc::new(move || ctx.request_repaint())
}
