//! regorus' VM (RVM) for bundled template packages: about 4x faster than the interpreter on
//! real scans (rust-notes §2.2). Used only where the output is proven identical — the
//! bundled packages, checked against every golden by a test — and only as an optimisation:
//! any VM failure falls back to the interpreter.

use std::sync::Arc;

use anyhow::{anyhow, bail};
use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::program::Program;
use regorus::rvm::vm::{ExecutionMode, ExecutionState, RegoVM, SuspendReason};
use regorus::utils::limits::ExecutionTimerConfig;
use regorus::{Engine, Value};

use super::{TEMPLATE_TIME_LIMIT, go_json_indent};

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
    pub fn compile(engine: &Engine, package: &str, fields: &[&str]) -> anyhow::Result<VmTemplate> {
        let eps: Vec<String> = fields
            .iter()
            .map(|f| format!("data.{package}.{f}"))
            .collect();
        let first = eps.first().ok_or_else(|| anyhow!("no fields"))?;
        let mut e = engine.clone();
        let policy = e.compile_with_entrypoint(&regorus::Rc::from(first.as_str()))?;
        let refs: Vec<&str> = eps.iter().map(String::as_str).collect();
        let program = Compiler::compile_from_policy_with_host_await(&policy, &refs, HOST_BUILTINS)?;
        Ok(VmTemplate {
            program,
            fields: fields.iter().map(|f| f.to_string()).zip(eps).collect(),
        })
    }

    /// Evaluates every field; the result is the object the interpreter's `data.<pkg>` query
    /// would give for these fields (undefined fields absent).
    pub fn eval(&self, input: &Value) -> anyhow::Result<Value> {
        let mut obj = Value::new_object();
        for (field, ep) in &self.fields {
            // A fresh VM per entry point: reusing one across entry points can leak the
            // previous entry point's result into an undefined one (seen in regorus 0.14.1).
            let mut vm = RegoVM::new();
            vm.set_max_instructions(MAX_INSTRUCTIONS);
            vm.set_execution_timer_config(Some(ExecutionTimerConfig {
                limit: TEMPLATE_TIME_LIMIT,
                check_interval: std::num::NonZeroU32::new(64).expect("non-zero"),
            }));
            vm.load_program(self.program.clone());
            vm.set_execution_mode(ExecutionMode::Suspendable);
            vm.set_input(input.clone());
            let mut v = vm.execute_entry_point_by_name(ep)?;
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
                    bail!("VM suspended unexpectedly: {reason:?}");
                };
                let out = host_call(&identifier, &argument)?;
                v = vm.resume(Some(out))?;
            }
            if let ExecutionState::Suspended { .. } = vm.execution_state() {
                bail!("VM did not complete {ep}");
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

fn host_call(identifier: &Value, argument: &Value) -> anyhow::Result<Value> {
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
                bail!("jsonformat: operand 1 must be object");
            }
            Ok(Value::from(go_json_indent(&arg)?))
        }
        other => bail!("unknown host builtin {other}"),
    }
}

/// A route condition (`data.postee.allow`) compiled for the VM. One warm VM is kept and
/// reused (the router evaluates conditions on one thread; a busy VM means a fresh one).
pub struct VmCondition {
    program: Arc<Program>,
    warm: std::sync::Mutex<Option<RegoVM>>,
}

impl VmCondition {
    pub const ENTRY: &'static str = "data.postee.allow";

    /// Errors (for example a shimmed OPA builtin the VM does not know) mean "interpreter".
    pub fn compile(engine: &Engine) -> anyhow::Result<VmCondition> {
        let mut e = engine.clone();
        let policy = e.compile_with_entrypoint(&regorus::Rc::from(Self::ENTRY))?;
        let program = Compiler::compile_from_policy(&policy, &[Self::ENTRY])?;
        Ok(VmCondition {
            program,
            warm: std::sync::Mutex::new(None),
        })
    }

    fn new_vm(&self) -> RegoVM {
        let mut vm = RegoVM::new();
        vm.set_max_instructions(MAX_INSTRUCTIONS);
        vm.set_execution_timer_config(Some(ExecutionTimerConfig {
            limit: super::CONDITION_TIME_LIMIT,
            check_interval: std::num::NonZeroU32::new(64).expect("non-zero"),
        }));
        vm.load_program(self.program.clone());
        vm
    }

    /// Whether `allow` is exactly `true` for this input.
    pub fn allow(&self, input: &Value) -> anyhow::Result<bool> {
        let mut slot = self.warm.try_lock().ok();
        let mut vm = slot
            .as_mut()
            .and_then(|s| s.take())
            .unwrap_or_else(|| self.new_vm());
        vm.set_input(input.clone());
        let res = vm.execute_entry_point_by_name(Self::ENTRY);
        if let Some(s) = slot.as_mut() {
            **s = Some(vm);
        }
        Ok(res? == Value::Bool(true))
    }
}
