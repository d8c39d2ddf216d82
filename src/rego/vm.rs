//! regorus' VM (RVM) for bundled template packages: about 4x faster than the interpreter on
//! real scans (rust-notes §2.2). Used only where the output is proven identical — the
//! bundled packages, checked against every golden by a test — and only as an optimisation:
//! any VM failure falls back to the interpreter.

use std::sync::Arc;

use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::program::Program;
use regorus::rvm::vm::{ExecutionMode, ExecutionState, RegoVM, SuspendReason};
use regorus::utils::limits::ExecutionTimerConfig;
use regorus::{Engine, Value};

use super::{RegoError, TEMPLATE_TIME_LIMIT, go_json_indent};

/// Builtins the VM hands back to us (host-await), with their arity.
const HOST_BUILTINS: &[(&str, usize)] = &[("jsonformat", 1)];
/// Instruction budget per entry point (the VM's default of 25,000 is too small for big scans;
/// the time limit still applies).
const MAX_INSTRUCTIONS: usize = 200_000_000;

/// A package compiled for the VM: one entry point per template field it defines.
pub struct VmTemplate {
    program: Arc<Program>,
    /// (field name, entry point `data.<pkg>.<field>`).
    fields: Vec<(String, String)>,
}

impl VmTemplate {
    /// Compiles `fields` of `package` from a prepared engine. Errors mean "use the
    /// interpreter" (for example a builtin the VM does not know).
    pub fn compile(
        engine: &Engine,
        package: &str,
        fields: &[&str],
    ) -> Result<VmTemplate, RegoError> {
        let eps: Vec<String> = fields
            .iter()
            .map(|f| format!("data.{package}.{f}"))
            .collect();
        let first = eps.first().ok_or_else(|| RegoError::new("no fields"))?;
        let mut e = engine.clone();
        let policy = e
            .compile_with_entrypoint(&regorus::Rc::from(first.as_str()))
            .map_err(RegoError::from_any)?;
        let refs: Vec<&str> = eps.iter().map(String::as_str).collect();
        let program = Compiler::compile_from_policy_with_host_await(&policy, &refs, HOST_BUILTINS)
            .map_err(RegoError::from_any)?;
        Ok(VmTemplate {
            program,
            fields: fields.iter().map(|f| f.to_string()).zip(eps).collect(),
        })
    }

    /// Evaluates every field; the result is the object the interpreter's `data.<pkg>` query
    /// would give for these fields (undefined fields absent).
    pub fn eval(&self, input: &Value) -> Result<Value, RegoError> {
        let mut obj = Value::new_object();
        for (field, ep) in &self.fields {
            // A fresh VM per entry point: reusing one across entry points can leak the
            // previous entry point's result into an undefined one (seen in regorus 0.14.1).
            let mut vm = RegoVM::new();
            vm.set_max_instructions(MAX_INSTRUCTIONS);
            vm.set_execution_timer_config(Some(ExecutionTimerConfig {
                limit: TEMPLATE_TIME_LIMIT,
                check_interval: crate::rego::CHECK_INTERVAL,
            }));
            vm.load_program(self.program.clone());
            vm.set_execution_mode(ExecutionMode::Suspendable);
            vm.set_input(input.clone());
            let mut v = vm
                .execute_entry_point_by_name(ep)
                .map_err(RegoError::from_any)?;
            // Serve host-await calls (jsonformat) until the entry point completes.
            for _ in 0..100_000 {
                let ExecutionState::Suspended { reason, .. } = vm.execution_state().clone() else {
                    break;
                };
                let SuspendReason::HostAwait {
                    argument,
                    identifier,
                    ..
                } = reason
                else {
                    return Err(RegoError::new(format!(
                        "VM suspended unexpectedly: {reason:?}"
                    )));
                };
                let out = host_call(&identifier, &argument)?;
                v = vm.resume(Some(out)).map_err(RegoError::from_any)?;
            }
            if let ExecutionState::Suspended { .. } = vm.execution_state() {
                return Err(RegoError::new(format!("VM did not complete {ep}")));
            }
            if v != Value::Undefined
                && let Ok(o) = obj.as_object_mut()
            {
                o.insert(Value::from(field.as_str()), v);
            }
        }
        Ok(obj)
    }
}

fn host_call(identifier: &Value, argument: &Value) -> Result<Value, RegoError> {
    let name = identifier
        .as_string()
        .map(|s| s.to_string())
        .unwrap_or_default();
    // Arguments come as an array of the call's operands.
    let arg = match argument {
        Value::Array(a) if a.len() == 1 => a.get(0).cloned().unwrap_or(Value::Undefined),
        other => other.clone(),
    };
    match name.as_str() {
        "jsonformat" => {
            if arg.as_object().is_err() {
                return Err(RegoError::new("jsonformat: operand 1 must be object"));
            }
            Ok(Value::from(
                go_json_indent(&arg).map_err(RegoError::from_any)?,
            ))
        }
        other => Err(RegoError::new(format!("unknown host builtin {other}"))),
    }
}

/// A route condition (`data.postee.allow`) compiled for the VM, with warm VMs kept for reuse.
///
/// The router evaluates conditions on every core, so each thread needs a VM of its own: a
/// fresh VM costs about three times a warm one's evaluation. The VMs live in slots, one
/// cache line each, and a thread starts at a slot of its own, so two threads neither wait
/// for each other nor bounce a lock between cores. Each VM also runs a private copy of the
/// program, because the VM clones the program's `Arc` and literal values as it runs and
/// shared reference counts would bounce between cores in the same way.
pub struct VmCondition {
    program: Arc<Program>,
    slots: Box<[Slot]>,
}

#[repr(align(128))]
struct Slot(std::sync::Mutex<Option<RegoVM>>);

/// Slots per condition: twice the cores, so threads rarely meet in a slot.
fn slot_count() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get() * 2)
        .clamp(2, 64)
}

/// This thread's first slot (threads are numbered as they first evaluate a condition).
fn thread_slot() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    SLOT.with(|s| *s)
}

impl VmCondition {
    pub const ENTRY: &'static str = "data.postee.allow";

    /// Errors (for example a shimmed OPA builtin the VM does not know) mean "interpreter".
    pub fn compile(engine: &Engine) -> Result<VmCondition, RegoError> {
        let mut e = engine.clone();
        let policy = e
            .compile_with_entrypoint(&regorus::Rc::from(Self::ENTRY))
            .map_err(RegoError::from_any)?;
        let program =
            Compiler::compile_from_policy(&policy, &[Self::ENTRY]).map_err(RegoError::from_any)?;
        Ok(VmCondition {
            program,
            slots: (0..slot_count())
                .map(|_| Slot(std::sync::Mutex::new(None)))
                .collect(),
        })
    }

    fn new_vm(&self) -> RegoVM {
        let mut vm = RegoVM::new();
        vm.set_max_instructions(MAX_INSTRUCTIONS);
        vm.set_execution_timer_config(Some(ExecutionTimerConfig {
            limit: super::CONDITION_TIME_LIMIT,
            check_interval: crate::rego::CHECK_INTERVAL,
        }));
        let mut program = (*self.program).clone();
        program.literals = program.literals.iter().map(unshared).collect();
        vm.load_program(Arc::new(program));
        vm
    }

    /// Whether `allow` is exactly `true` for this input.
    pub fn allow(&self, input: &Value) -> Result<bool, RegoError> {
        let first = thread_slot();
        // This thread's slot, else the next free one; a slot stays locked while its VM runs.
        let slot = (0..self.slots.len())
            .find_map(|i| self.slots[(first + i) % self.slots.len()].0.try_lock().ok());
        let res = match slot {
            Some(mut slot) => run(slot.get_or_insert_with(|| self.new_vm()), input),
            None => run(&mut self.new_vm(), input),
        };
        Ok(res.map_err(RegoError::from_any)? == Value::Bool(true))
    }

    /// Warm VMs kept.
    #[cfg(test)]
    pub fn warm_vms(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.0.lock().is_ok_and(|vm| vm.is_some()))
            .count()
    }
}

fn run(vm: &mut RegoVM, input: &Value) -> Result<Value, regorus::rvm::vm::VmError> {
    vm.set_input(input.clone());
    let res = vm.execute_entry_point_by_name(VmCondition::ENTRY);
    // A warm VM must not keep the event alive (rule registers are already released).
    vm.set_input(Value::Null);
    res
}

/// A copy of a value that shares no reference-counted storage with the original.
fn unshared(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::from(s.as_ref()),
        Value::Array(a) => Value::from(a.iter().map(unshared).collect::<Vec<_>>()),
        Value::Object(o) => {
            let mut out = Value::new_object();
            if let Ok(m) = out.as_object_mut() {
                for (k, v) in o.iter() {
                    m.insert(unshared(k), unshared(v));
                }
            }
            out
        }
        Value::Set(s) => Value::from(
            s.iter()
                .map(unshared)
                .collect::<std::collections::BTreeSet<_>>(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(body: &str) -> VmCondition {
        let mut e = super::super::new_engine(super::super::CONDITION_TIME_LIMIT);
        e.add_policy(
            "c.rego".into(),
            format!("package postee\ndefault allow = false\nallow {{\n{body}\n}}\n"),
        )
        .unwrap();
        VmCondition::compile(&e).unwrap()
    }

    /// Concurrent evaluations each get a VM of their own and keep it warm; answers do not
    /// leak between inputs evaluated on the same VMs.
    #[test]
    fn concurrent_evaluations_reuse_warm_vms() {
        let c = condition("some i\ninput.xs[i] == \"hit\"");
        let hit = Value::from_json_str(r#"{"xs":["miss","hit"]}"#).unwrap();
        let miss = Value::from_json_str(r#"{"xs":["miss"]}"#).unwrap();
        assert_eq!(c.warm_vms(), 0);
        assert!(c.allow(&hit).unwrap());
        assert!(!c.allow(&miss).unwrap());
        assert_eq!(c.warm_vms(), 1, "one thread needs one VM");
        // The warm VM does not keep the last event alive.
        let Value::Object(root) = &miss else {
            unreachable!()
        };
        assert_eq!(Arc::strong_count(root), 1);
        std::thread::scope(|s| {
            for t in 0..4 {
                let (c, hit, miss) = (&c, &hit, &miss);
                s.spawn(move || {
                    for i in 0..200 {
                        let want = (i + t) % 2 == 0;
                        let input = if want { hit } else { miss };
                        assert_eq!(c.allow(input).unwrap(), want);
                    }
                });
            }
        });
        // Kept for reuse, at most one per slot and per thread that ever evaluated.
        let warm = c.warm_vms();
        assert!(
            warm >= 1 && warm <= c.slots.len().min(5),
            "{warm} warm VMs after 5 threads"
        );
    }
}
