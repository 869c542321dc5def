//! Execution plan and the run loop.
//!
//! A [`Plan`] runs a rewritten inference copy of the graph ([`rewrite`](super::rewrite)):
//! without a hook, the most fused one; with a hook, one that keeps every tensor the hook wants
//! (made once per set of wanted tensors and reused). Values live in slots; an intermediate is
//! freed after its last reader, or handed to that reader when its kernel can reuse the storage.

use std::collections::{HashMap, HashSet};
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::buffers::recycle;
use super::hook::{Observation, TensorHook, TensorSite};
use super::ops::{self, Args, MovingOpFn, OpCtx, OpFn};
use super::rewrite::{self, FusedElementwise, PlannedNode};
use crate::error::{Error, Result};
use crate::ir::{Dim, Graph, TensorData};

/// Bytes of tensors that deferred observations may hold at once; past it, observations run on
/// the run's own thread.
const DEFERRED_BYTES: usize = 256 << 20;
/// Plans kept for different sets of wanted tensors.
const VARIANTS: usize = 8;

/// How a step computes.
enum Kernel {
    Op {
        kernel: OpFn,
        /// The storage-reusing form of the kernel, if the op has one.
        moving: Option<MovingOpFn>,
    },
    Fused(Arc<FusedElementwise>),
}

/// One node of the rewritten graph, resolved: its kernel and the slots it reads and writes.
struct Step {
    kernel: Kernel,
    /// Slot per input; None for omitted optional inputs.
    inputs: Vec<Option<usize>>,
    /// Per input: whether this step is its last reader and reads it once, so that the value
    /// can be handed to the kernel (when nothing else holds it).
    movable: Vec<bool>,
    outputs: Vec<usize>,
    /// Per output: the producing node (index into the graph) when the hook sees it.
    report: Vec<Option<usize>>,
    /// Slots whose last reader is this step (freed after it runs).
    frees: Vec<usize>,
}

/// Where a constant's value is.
enum Constant {
    /// An initializer of the graph, by name.
    Initializer(String),
    /// A value the rewrite made.
    Made(Arc<TensorData>),
}

/// A rewritten graph resolved to slots and kernels.
struct Compiled {
    nodes: Vec<PlannedNode>,
    steps: Vec<Step>,
    slot_count: usize,
    constants: Vec<(usize, Constant)>,
    /// (slot, input index in graph.inputs, shown to the hook) for each fed input.
    feeds: Vec<(usize, usize, bool)>,
    /// (slot, output name) for each graph output.
    fetches: Vec<(usize, String)>,
}

/// A graph prepared to run: nodes in dependency order, names resolved to slots, kernels looked
/// up. Building a plan fails (naming every unsupported op) before anything runs.
pub struct Plan<'g> {
    graph: &'g Graph,
    /// Node indices in execution order.
    order: Vec<usize>,
    /// Every tensor a hook can ask for: graph inputs, then node outputs in execution order.
    tensors: Vec<&'g str>,
    /// Producing node of every node output.
    producers: HashMap<&'g str, usize>,
    /// The plan of runs without a hook.
    plain: Arc<Compiled>,
    /// Plans by the wanted tensors (one flag per `tensors` entry), most recent last.
    variants: Mutex<Vec<(Vec<bool>, Arc<Compiled>)>>,
}

/// Options for one run.
#[derive(Default, Clone, Copy)]
pub struct RunOptions<'a> {
    /// Checked between nodes; when set, the run stops with [`Error::Cancelled`].
    pub cancel: Option<&'a AtomicBool>,
}

/// A value in a slot: a constant of the graph or plan, or a computed tensor.
enum Value<'a> {
    Borrowed(&'a TensorData),
    Shared(Arc<TensorData>),
}

impl Deref for Value<'_> {
    type Target = TensorData;
    fn deref(&self) -> &TensorData {
        match self {
            Value::Borrowed(t) => t,
            Value::Shared(t) => t,
        }
    }
}

/// Deferred observations of one run: their errors and the bytes they hold.
#[derive(Default)]
struct Deferred {
    error: Mutex<Option<Error>>,
    failed: AtomicBool,
    bytes: AtomicUsize,
}

impl Deferred {
    fn record(&self, result: Result<()>) {
        if let Err(e) = result {
            self.failed.store(true, Ordering::Relaxed);
            if let Ok(mut slot) = self.error.lock() {
                slot.get_or_insert(e);
            }
        }
    }
}

impl<'g> Plan<'g> {
    /// Orders and resolves `graph`. Errors name every unsupported op and any dangling tensor.
    pub fn new(graph: &'g Graph) -> Result<Self> {
        if !graph.is_runnable() {
            return Err(Error::Graph("the graph has no nodes to run".into()));
        }
        let unsupported: Vec<(String, String)> = graph
            .nodes
            .iter()
            .filter(|n| ops::kernel_for(n).is_none())
            .map(|n| {
                let op = if n.domain.is_empty() || n.domain == "ai.onnx" {
                    n.op_type.clone()
                } else {
                    format!("{}::{}", n.domain, n.op_type)
                };
                (op, n.name.clone())
            })
            .collect();
        if !unsupported.is_empty() {
            return Err(Error::UnsupportedOps {
                ops: unsupported,
                supported: ops::supported_ops(),
            });
        }
        let mut available: HashMap<&str, usize> = HashMap::new();
        for (i, info) in graph.inputs.iter().enumerate() {
            available.insert(&info.name, i);
        }
        for name in graph.initializers.keys() {
            available.insert(name, 0);
        }
        let order = topological_order(graph, &available)?;
        let mut tensors: Vec<&str> = graph.inputs.iter().map(|i| i.name.as_str()).collect();
        let mut producers = HashMap::new();
        for &i in &order {
            for out in graph.nodes[i].outputs.iter().filter(|o| !o.is_empty()) {
                tensors.push(out);
                producers.insert(out.as_str(), i);
            }
        }
        let plain = Arc::new(compile(graph, &order, &producers, &HashSet::new())?);
        Ok(Plan {
            graph,
            order,
            tensors,
            producers,
            plain,
            variants: Mutex::new(Vec::new()),
        })
    }

    /// The graph this plan runs.
    pub fn graph(&self) -> &'g Graph {
        self.graph
    }

    /// Node indices (into `graph.nodes`) in execution order.
    pub fn execution_order(&self) -> impl Iterator<Item = usize> + '_ {
        self.order.iter().copied()
    }

    /// The plan that keeps every tensor `hook` wants.
    fn plan_for(&self, hook: &dyn TensorHook) -> Result<Arc<Compiled>> {
        let wanted: Vec<bool> = self.tensors.iter().map(|t| hook.wants(t)).collect();
        if !wanted.contains(&true) {
            return Ok(Arc::clone(&self.plain));
        }
        let mut variants = self
            .variants
            .lock()
            .map_err(|_| Error::Graph("a run panicked while planning".into()))?;
        if let Some(k) = variants.iter().position(|(w, _)| *w == wanted) {
            let entry = variants.remove(k);
            let compiled = Arc::clone(&entry.1);
            variants.push(entry);
            return Ok(compiled);
        }
        let keep: HashSet<&str> = self
            .tensors
            .iter()
            .zip(&wanted)
            .filter(|(_, w)| **w)
            .map(|(t, _)| *t)
            .collect();
        let compiled = Arc::new(compile(self.graph, &self.order, &self.producers, &keep)?);
        if variants.len() >= VARIANTS {
            variants.remove(0);
        }
        variants.push((wanted, Arc::clone(&compiled)));
        Ok(compiled)
    }

    /// Runs the graph on `inputs` (by input name). Returns the graph outputs by name, in the
    /// graph's output order.
    pub fn run(
        &self,
        inputs: HashMap<String, TensorData>,
        hook: Option<&mut dyn TensorHook>,
        options: RunOptions<'_>,
    ) -> Result<Vec<(String, TensorData)>> {
        let mut hook = hook;
        let compiled = match hook.as_deref() {
            Some(h) => self.plan_for(h)?,
            None => Arc::clone(&self.plain),
        };
        let deferred = Deferred::default();
        let deferred = &deferred;
        // The whole run happens on a rayon worker thread (hooks are `Send`): the kernels'
        // parallel loops then start as local jobs, instead of each one waking the pool and
        // blocking the calling thread until it is done. Deferred observations are spawned in
        // the same scope, which waits for them.
        let (result, hook) = rayon::scope(move |scope| {
            let spawn = |task: Observation, bytes: usize| {
                deferred.bytes.fetch_add(bytes, Ordering::Relaxed);
                scope.spawn(move |_| {
                    deferred.record(task());
                    deferred.bytes.fetch_sub(bytes, Ordering::Relaxed);
                });
            };
            let result = self.run_compiled(
                &compiled,
                inputs,
                hook.as_deref_mut(),
                options,
                &spawn,
                deferred,
            );
            (result, hook)
        });
        let finished = match hook {
            Some(h) => h.finish(),
            None => Ok(()),
        };
        let outputs = result?;
        if let Some(e) = deferred.error.lock().ok().and_then(|mut e| e.take()) {
            return Err(e);
        }
        finished?;
        Ok(outputs)
    }

    /// Shows one tensor to the hook: deferred when the hook hands the work back and the bytes
    /// held by deferred observations allow, else on this thread.
    fn show(
        hook: &mut (dyn TensorHook + '_),
        site: TensorSite<'_>,
        mut value: Arc<TensorData>,
        spawn: &dyn Fn(Observation, usize),
        deferred: &Deferred,
    ) -> Result<Arc<TensorData>> {
        if let Some(task) = hook.defer(site, &value) {
            let bytes = value.len() * 4;
            if deferred.bytes.load(Ordering::Relaxed) + bytes <= DEFERRED_BYTES {
                spawn(task, bytes);
            } else {
                task()?;
            }
            return Ok(value);
        }
        hook.on_tensor(site, Arc::make_mut(&mut value))?;
        Ok(value)
    }

    /// [`Plan::run`] of one compiled plan on the current thread.
    #[allow(clippy::too_many_arguments)]
    fn run_compiled<'d>(
        &self,
        compiled: &Compiled,
        inputs: HashMap<String, TensorData>,
        mut hook: Option<&mut (dyn TensorHook + 'd)>,
        options: RunOptions<'_>,
        spawn: &dyn Fn(Observation, usize),
        deferred: &Deferred,
    ) -> Result<Vec<(String, TensorData)>> {
        let mut inputs = inputs;
        let mut values: Vec<Option<Value<'_>>> = Vec::with_capacity(compiled.slot_count);
        values.resize_with(compiled.slot_count, || None);
        for (slot, constant) in &compiled.constants {
            values[*slot] = match constant {
                Constant::Initializer(name) => self
                    .graph
                    .initializers
                    .get(name)
                    .map(|t| Value::Borrowed(&t.data)),
                Constant::Made(value) => Some(Value::Borrowed(value)),
            };
        }
        for &(slot, input_index, shown) in &compiled.feeds {
            let info = &self.graph.inputs[input_index];
            let value = match inputs.remove(&info.name) {
                Some(v) => v,
                None => match self.graph.initializers.get(&info.name) {
                    Some(t) => t.data.clone(),
                    None => {
                        return Err(Error::Input {
                            name: info.name.clone(),
                            msg: "no data given for this model input".into(),
                        });
                    }
                },
            };
            check_input(info, &value)?;
            let mut value = Arc::new(value);
            if shown && let Some(h) = hook.as_deref_mut() {
                let site = TensorSite {
                    name: &info.name,
                    producer: None,
                    step: None,
                };
                value = Self::show(h, site, value, spawn, deferred)?;
            }
            values[slot] = Some(Value::Shared(value));
        }
        if let Some(extra) = inputs.keys().next() {
            let known: Vec<&str> = self.graph.inputs.iter().map(|i| i.name.as_str()).collect();
            return Err(Error::Input {
                name: extra.clone(),
                msg: format!("the model has no such input (inputs: {})", known.join(", ")),
            });
        }

        for (step_index, step) in compiled.steps.iter().enumerate() {
            if let Some(flag) = options.cancel
                && flag.load(Ordering::Relaxed)
            {
                return Err(Error::Cancelled);
            }
            if deferred.failed.load(Ordering::Relaxed) {
                break; // the observation's error is returned by `run`
            }
            let node = &compiled.nodes[step_index].node;
            let outputs = run_step(step, node, self.graph.opset, &mut values)?;
            if outputs.len() < step.outputs.len() {
                return Err(Error::Op {
                    node: node.name.clone(),
                    op: node.op_type.clone(),
                    msg: format!(
                        "produced {} outputs, the graph expects {}",
                        outputs.len(),
                        step.outputs.len()
                    ),
                });
            }
            for (k, (value, &slot)) in outputs.into_iter().zip(&step.outputs).enumerate() {
                let mut value = Arc::new(value);
                if let (Some(producer), Some(h)) = (step.report[k], hook.as_deref_mut()) {
                    let site = TensorSite {
                        name: &node.outputs[k],
                        producer: Some(&self.graph.nodes[producer]),
                        step: Some(step_index),
                    };
                    value = Self::show(h, site, value, spawn, deferred)?;
                }
                values[slot] = Some(Value::Shared(value));
            }
            for &slot in &step.frees {
                if let Some(Value::Shared(value)) = values[slot].take()
                    && let Ok(value) = Arc::try_unwrap(value)
                {
                    recycle(value);
                }
            }
        }

        let mut results = Vec::with_capacity(compiled.fetches.len());
        for (slot, name) in &compiled.fetches {
            let value = values[*slot]
                .take()
                .ok_or_else(|| Error::Graph(format!("graph output '{name}' was not computed")))?;
            let value = match value {
                Value::Borrowed(t) => t.clone(),
                Value::Shared(t) => Arc::try_unwrap(t).unwrap_or_else(|shared| (*shared).clone()),
            };
            results.push((name.clone(), value));
        }
        Ok(results)
    }
}

/// Runs one step on the values in the slots (handing over those it may reuse).
fn run_step(
    step: &Step,
    node: &crate::ir::Node,
    opset: i64,
    values: &mut [Option<Value<'_>>],
) -> Result<Vec<TensorData>> {
    let moves = match step.kernel {
        Kernel::Op { moving, .. } => moving.is_some(),
        Kernel::Fused(_) => true,
    };
    // Inputs whose last reader this is and that nothing else holds are handed over.
    let mut owned: Vec<Option<TensorData>> = Vec::new();
    if moves {
        owned = step
            .inputs
            .iter()
            .zip(&step.movable)
            .map(|(slot, &movable)| {
                let slot = slot.filter(|_| movable)?;
                match values[slot].take()? {
                    Value::Shared(value) => match Arc::try_unwrap(value) {
                        Ok(value) => Some(value),
                        Err(shared) => {
                            values[slot] = Some(Value::Shared(shared));
                            None
                        }
                    },
                    other => {
                        values[slot] = Some(other);
                        None
                    }
                }
            })
            .collect();
    }
    let borrowed: Vec<Option<&TensorData>> = step
        .inputs
        .iter()
        .map(|slot| slot.and_then(|s| values[s].as_deref()))
        .collect();
    if let Some(missing) = step.inputs.iter().enumerate().position(|(k, slot)| {
        slot.is_some() && borrowed[k].is_none() && !owned.get(k).is_some_and(Option::is_some)
    }) {
        return Err(Error::Graph(format!(
            "node '{}' ({}) input '{}' was freed or never computed",
            node.name, node.op_type, node.inputs[missing]
        )));
    }
    let ctx = OpCtx { node, opset };
    let result = match &step.kernel {
        Kernel::Op {
            kernel,
            moving: None,
        } => kernel(&ctx, &borrowed),
        Kernel::Op {
            moving: Some(moving),
            ..
        } => {
            let mut args = Args::new(borrowed, owned);
            let result = moving(&ctx, &mut args);
            args.into_leftovers().for_each(recycle);
            result
        }
        Kernel::Fused(fused) => {
            // errors name the original node that failed
            let mut args = Args::new(borrowed, owned);
            let result = fused.run(opset, &mut args);
            args.into_leftovers().for_each(recycle);
            return result;
        }
    };
    result.map_err(|e| Error::Op {
        node: node.name.clone(),
        op: node.op_type.clone(),
        msg: e.0,
    })
}

/// Rewrites `graph` keeping the tensors in `keep`, and resolves the result to slots.
fn compile(
    graph: &Graph,
    order: &[usize],
    producers: &HashMap<&str, usize>,
    keep: &HashSet<&str>,
) -> Result<Compiled> {
    let rewritten = rewrite::rewrite(graph, order, &|name| keep.contains(name));
    let mut slots: HashMap<String, usize> = HashMap::new();
    let mut constants = Vec::new();
    let mut feeds = Vec::new();
    let mut next_slot = 0usize;
    for (i, info) in graph.inputs.iter().enumerate() {
        slots.insert(info.name.clone(), next_slot);
        feeds.push((next_slot, i, keep.contains(info.name.as_str())));
        next_slot += 1;
    }
    // the constants that are read or fetched
    let mut wanted: Vec<&str> = rewritten
        .nodes
        .iter()
        .flat_map(|p| p.node.inputs.iter())
        .map(String::as_str)
        .collect();
    wanted.extend(graph.outputs.iter().map(|o| o.name.as_str()));
    for name in wanted {
        if name.is_empty() || slots.contains_key(name) {
            continue;
        }
        let constant = if let Some(value) = rewritten.constants.get(name) {
            Constant::Made(Arc::clone(value))
        } else if graph.initializers.contains_key(name) {
            Constant::Initializer(name.to_string())
        } else {
            continue;
        };
        slots.insert(name.to_string(), next_slot);
        constants.push((next_slot, constant));
        next_slot += 1;
    }

    let mut steps = Vec::with_capacity(rewritten.nodes.len());
    for planned in &rewritten.nodes {
        let node = &planned.node;
        let mut inputs = Vec::with_capacity(node.inputs.len());
        for name in &node.inputs {
            if name.is_empty() {
                inputs.push(None);
                continue;
            }
            let slot = *slots.get(name.as_str()).ok_or_else(|| {
                Error::Graph(format!(
                    "node '{}' ({}) reads '{name}', which no node, input or initializer provides",
                    node.name, node.op_type
                ))
            })?;
            inputs.push(Some(slot));
        }
        let mut outputs = Vec::with_capacity(node.outputs.len());
        let mut report = Vec::with_capacity(node.outputs.len());
        for name in &node.outputs {
            // Outputs with empty names are unused optional outputs; they get a private slot.
            let slot = next_slot;
            next_slot += 1;
            if !name.is_empty() {
                slots.insert(name.clone(), slot);
            }
            outputs.push(slot);
            report.push(
                keep.contains(name.as_str())
                    .then(|| producers.get(name.as_str()).copied())
                    .flatten(),
            );
        }
        let kernel = match &planned.fused {
            Some(fused) => Kernel::Fused(Arc::clone(fused)),
            None => Kernel::Op {
                kernel: ops::kernel_for(node).ok_or_else(|| {
                    Error::Graph(format!(
                        "no kernel for node '{}' ({})",
                        node.name, node.op_type
                    ))
                })?,
                moving: ops::moving_kernel_for(node),
            },
        };
        steps.push(Step {
            kernel,
            movable: vec![false; inputs.len()],
            inputs,
            outputs,
            report,
            frees: Vec::new(),
        });
    }

    let mut fetches = Vec::new();
    for out in &graph.outputs {
        let slot = *slots.get(out.name.as_str()).ok_or_else(|| {
            Error::Graph(format!("graph output '{}' is never produced", out.name))
        })?;
        fetches.push((slot, out.name.clone()));
    }

    // Free every intermediate after its last reader, except graph outputs and constants.
    let mut last_reader: HashMap<usize, usize> = HashMap::new();
    for (step_index, step) in steps.iter().enumerate() {
        for slot in step.inputs.iter().flatten() {
            last_reader.insert(*slot, step_index);
        }
    }
    let kept: HashSet<usize> = fetches.iter().map(|(s, _)| *s).collect();
    let constant_slots: HashSet<usize> = constants.iter().map(|(s, _)| *s).collect();
    for (slot, step_index) in last_reader {
        if !kept.contains(&slot) && !constant_slots.contains(&slot) {
            steps[step_index].frees.push(slot);
        }
    }
    for step in &mut steps {
        for (k, slot) in step.inputs.iter().enumerate() {
            step.movable[k] = slot.is_some_and(|s| {
                step.frees.contains(&s)
                    && step.inputs.iter().filter(|i| **i == Some(s)).count() == 1
            });
        }
    }

    Ok(Compiled {
        nodes: rewritten.nodes,
        steps,
        slot_count: next_slot,
        constants,
        feeds,
        fetches,
    })
}

/// Checks a fed value against the declared input: kind, rank and every fixed dimension.
fn check_input(info: &crate::ir::ValueInfo, value: &TensorData) -> Result<()> {
    if let Some(dtype) = info.dtype
        && dtype.is_held_as_f32() != matches!(value, TensorData::F32(_))
    {
        return Err(Error::Input {
            name: info.name.clone(),
            msg: format!("expects {dtype} data, got {} data", value.kind_name()),
        });
    }
    let Some(dims) = &info.shape else {
        return Ok(());
    };
    let shape = value.shape();
    let fits = dims.len() == shape.len()
        && dims.iter().zip(shape).all(|(d, &n)| match d {
            Dim::Fixed(f) => *f == n,
            _ => true,
        });
    if !fits {
        return Err(Error::Input {
            name: info.name.clone(),
            msg: format!("expects shape {}, got {:?}", info.shape_text(), shape),
        });
    }
    Ok(())
}

/// Node indices in an order where every node runs after the producers of its inputs.
/// Keeps the file's order where it is already valid. Errors on cycles.
fn topological_order(graph: &Graph, available: &HashMap<&str, usize>) -> Result<Vec<usize>> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        for out in node.outputs.iter().filter(|o| !o.is_empty()) {
            if let Some(previous) = producer.insert(out.as_str(), i) {
                return Err(Error::Graph(format!(
                    "tensor '{out}' is produced by both '{}' and '{}'",
                    graph.nodes[previous].name, node.name
                )));
            }
        }
    }
    // 0 = not visited, 1 = on the stack, 2 = done
    let mut state = vec![0u8; graph.nodes.len()];
    let mut order = Vec::with_capacity(graph.nodes.len());
    for start in 0..graph.nodes.len() {
        if state[start] != 0 {
            continue;
        }
        // Iterative DFS: (node, next input position to look at).
        let mut stack = vec![(start, 0usize)];
        state[start] = 1;
        while let Some(&mut (node_index, ref mut next)) = stack.last_mut() {
            let node = &graph.nodes[node_index];
            if let Some(name) = node.inputs.get(*next) {
                *next += 1;
                if name.is_empty() || available.contains_key(name.as_str()) {
                    continue;
                }
                if let Some(&dep) = producer.get(name.as_str()) {
                    match state[dep] {
                        0 => {
                            state[dep] = 1;
                            stack.push((dep, 0));
                        }
                        1 => {
                            return Err(Error::Graph(format!(
                                "cycle through node '{}' ({})",
                                graph.nodes[dep].name, graph.nodes[dep].op_type
                            )));
                        }
                        _ => {}
                    }
                }
            } else {
                state[node_index] = 2;
                order.push(node_index);
                stack.pop();
            }
        }
    }
    Ok(order)
}
