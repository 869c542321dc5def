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
use super::ops::control::{self, NestedPlans};
use super::ops::{self, Args, OpCtx};
use crate::error::{Error, Result};
use crate::ir::{Dim, Graph, TensorData};
use compile::{Compiled, Constant, Kernel, Step, compile, topological_order};

/// Bytes of tensors that deferred observations may hold at once; past it, observations run on
/// the run's own thread.
const DEFERRED_BYTES: usize = 256 << 20;
/// Plans kept for different sets of wanted tensors.
const VARIANTS: usize = 8;

mod compile;

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
    /// The plans of the subgraphs of control-flow nodes, by node index, built once.
    nested: HashMap<usize, NestedPlans<'g>>,
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
    /// A constant the plan holds shared (made by the rewrite, or read by control flow).
    Made(&'a Arc<TensorData>),
    Shared(Arc<TensorData>),
}

impl Value<'_> {
    /// The value as a shared tensor (copying only an initializer of the graph).
    fn shared(&self) -> Arc<TensorData> {
        match self {
            Value::Borrowed(t) => Arc::new((*t).clone()),
            Value::Made(t) => Arc::clone(t),
            Value::Shared(t) => Arc::clone(t),
        }
    }
}

impl Deref for Value<'_> {
    type Target = TensorData;
    fn deref(&self) -> &TensorData {
        match self {
            Value::Borrowed(t) => t,
            Value::Made(t) => t,
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
        Self::build(graph)
    }

    /// The plan of a subgraph (which may have no nodes: a branch returning outer values).
    pub(crate) fn for_subgraph(graph: &'g Graph) -> Result<Self> {
        Self::build(graph)
    }

    fn build(graph: &'g Graph) -> Result<Self> {
        let unsupported: Vec<(String, String)> = graph
            .nodes_recursive()
            .into_iter()
            .filter(|n| ops::kernel_for(n).is_none())
            .map(|n| {
                let op = if n.in_default_domain() {
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
        let mut nested = HashMap::new();
        for &i in &order {
            if let Some(plans) = control::plans_for(&graph.nodes[i])? {
                nested.insert(i, plans);
            }
        }
        let plain = Arc::new(compile(
            graph,
            &order,
            &producers,
            &nested,
            &HashSet::new(),
        )?);
        Ok(Plan {
            graph,
            order,
            tensors,
            producers,
            plain,
            variants: Mutex::new(Vec::new()),
            nested,
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
        let compiled = Arc::new(compile(
            self.graph,
            &self.order,
            &self.producers,
            &self.nested,
            &keep,
        )?);
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
        let feeds = self.resolve_inputs(inputs)?;
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
                feeds,
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

    /// The fed value of every graph input, in input order (an input not fed takes its
    /// initializer), each checked against its declaration. Errors name a missing or unknown input.
    fn resolve_inputs(
        &self,
        mut inputs: HashMap<String, TensorData>,
    ) -> Result<Vec<Option<Arc<TensorData>>>> {
        let mut feeds = Vec::with_capacity(self.graph.inputs.len());
        for info in &self.graph.inputs {
            let value = take_input(self.graph, info, &mut inputs)?;
            feeds.push(Some(Arc::new(value)));
        }
        if let Some(extra) = inputs.keys().next() {
            let known: Vec<&str> = self.graph.inputs.iter().map(|i| i.name.as_str()).collect();
            return Err(Error::Input {
                name: extra.clone(),
                msg: format!("the model has no such input (inputs: {})", known.join(", ")),
            });
        }
        Ok(feeds)
    }

    /// Runs a subgraph's plan on shared values, one per input of the subgraph in order,
    /// without a hook, on the calling thread. Returns the outputs in order.
    pub(crate) fn run_nested(
        &self,
        feeds: Vec<Arc<TensorData>>,
        options: RunOptions<'_>,
    ) -> Result<Vec<TensorData>> {
        if feeds.len() != self.graph.inputs.len() {
            return Err(Error::Graph(format!(
                "subgraph '{}' takes {} inputs, {} were given",
                self.graph.name,
                self.graph.inputs.len(),
                feeds.len()
            )));
        }
        for (info, value) in self.graph.inputs.iter().zip(&feeds) {
            check_input(info, value)?;
        }
        let feeds = feeds.into_iter().map(Some).collect();
        let deferred = Deferred::default();
        let spawn = |task: Observation, _: usize| deferred.record(task());
        let outputs = self.run_compiled(&self.plain, feeds, None, options, &spawn, &deferred)?;
        Ok(outputs.into_iter().map(|(_, value)| value).collect())
    }

    /// Runs a control-flow step: its subgraphs through their nested plans, on the values of
    /// its inputs shared (not copied).
    fn run_control(
        &self,
        step: &Step,
        node: &crate::ir::Node,
        origin: usize,
        values: &[Option<Value<'_>>],
        options: RunOptions<'_>,
    ) -> Result<Vec<TensorData>> {
        let plans = self.nested.get(&origin).ok_or_else(|| {
            Error::Graph(format!(
                "node '{}' ({}) has no subgraph plans",
                node.name, node.op_type
            ))
        })?;
        let mut shared = Vec::with_capacity(step.inputs.len());
        for (k, slot) in step.inputs.iter().enumerate() {
            let Some(slot) = *slot else {
                shared.push(None);
                continue;
            };
            let value = values[slot].as_ref().ok_or_else(|| {
                Error::Graph(format!(
                    "node '{}' ({}) input '{}' was freed or never computed",
                    node.name, node.op_type, node.inputs[k]
                ))
            })?;
            shared.push(Some(value.shared()));
        }
        let ctx = OpCtx {
            node,
            opset: self.graph.opset,
        };
        control::run(&ctx, plans, &shared, options)
    }

    /// Shows one tensor to the hook: deferred when the hook hands the work back, another
    /// thread can take it and the bytes held by deferred observations allow, else on this
    /// thread (alone, deferring would only hold every tensor of the run until its end, and
    /// the run would allocate fresh memory in place of the buffers it recycles).
    fn show(
        hook: &mut (dyn TensorHook + '_),
        site: TensorSite<'_>,
        mut value: Arc<TensorData>,
        spawn: &dyn Fn(Observation, usize),
        deferred: &Deferred,
    ) -> Result<Arc<TensorData>> {
        if let Some(task) = hook.defer(site, &value) {
            let bytes = value.len() * 4;
            if rayon::current_num_threads() > 1
                && deferred.bytes.load(Ordering::Relaxed) + bytes <= DEFERRED_BYTES
            {
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
        mut feeds: Vec<Option<Arc<TensorData>>>,
        mut hook: Option<&mut (dyn TensorHook + 'd)>,
        options: RunOptions<'_>,
        spawn: &dyn Fn(Observation, usize),
        deferred: &Deferred,
    ) -> Result<Vec<(String, TensorData)>> {
        let mut values: Vec<Option<Value<'_>>> = Vec::with_capacity(compiled.slot_count);
        values.resize_with(compiled.slot_count, || None);
        for (slot, constant) in &compiled.constants {
            values[*slot] = match constant {
                Constant::Initializer(name) => self
                    .graph
                    .initializers
                    .get(name)
                    .map(|t| Value::Borrowed(&t.data)),
                Constant::Made(value) => Some(Value::Made(value)),
            };
        }
        for &(slot, input_index, shown) in &compiled.feeds {
            let info = &self.graph.inputs[input_index];
            let mut value = feeds
                .get_mut(input_index)
                .and_then(Option::take)
                .ok_or_else(|| Error::Input {
                    name: info.name.clone(),
                    msg: "no data given for this model input".into(),
                })?;
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
            let outputs = match step.kernel {
                Kernel::Control(origin) => {
                    self.run_control(step, node, origin, &values, options)?
                }
                _ => run_step(step, node, self.graph.opset, &mut values)?,
            };
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
                Value::Made(t) => (**t).clone(),
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
        Kernel::Control(_) => false,
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
        Kernel::Control(_) => {
            return Err(Error::Graph(format!(
                "control-flow node '{}' ({}) reached the plain kernel path",
                node.name, node.op_type
            )));
        }
    };
    result.map_err(|e| Error::Op {
        node: node.name.clone(),
        op: node.op_type.clone(),
        msg: e.0,
    })
}

/// The value fed for the model input `info` (taken out of `inputs`), or its initializer when the
/// file gives the input a default; checked against the declaration.
pub(crate) fn take_input(
    graph: &Graph,
    info: &crate::ir::ValueInfo,
    inputs: &mut HashMap<String, TensorData>,
) -> Result<TensorData> {
    let value = match inputs.remove(&info.name) {
        Some(v) => v,
        None => match graph.initializers.get(&info.name) {
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
    Ok(value)
}

/// Checks a fed value against the declared input: kind, rank and every fixed dimension.
pub(crate) fn check_input(info: &crate::ir::ValueInfo, value: &TensorData) -> Result<()> {
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
