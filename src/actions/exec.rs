//! `exec`: runs a shell script with the rendered description in `POSTEE_EVENT` (spec §6.12).
//!
//! Keys: exactly one of `exec-script` (fed to `/bin/sh` on stdin) or `input-file` (run as
//! `/bin/sh <file>`); `env` (list of `NAME=value`); `timeout` (ours, Go duration, default
//! 60s: Postee waits forever). The script's combined output is captured up to 64 KiB and
//! logged; a non-zero exit is a failure carrying that output. On timeout the whole process
//! group is killed.

use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Action, ActionError, Message, timeout_key};
use crate::config::{ActionConfig, Problems};

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Most output kept from a script (the rest is read and dropped).
pub const MAX_OUTPUT: usize = 64 * 1024;

enum Script {
    Inline(String),
    File(String),
}

pub struct Exec {
    name: String,
    script: Script,
    env: Vec<(String, String)>,
    timeout: Duration,
}

impl Exec {
    pub fn build(
        cfg: &ActionConfig,
        errs: &mut Vec<(String, String)>,
        problems: &mut Problems,
    ) -> Option<Self> {
        let f = &cfg.fields;
        let script = match (f.non_empty("input-file"), f.non_empty("exec-script")) {
            (Some(_), Some(_)) => {
                errs.push((
                    String::new(),
                    "exec action only takes either input-file or exec-script, not both".into(),
                ));
                return None;
            }
            (None, None) => {
                errs.push((
                    String::new(),
                    "exec action requires either input-file or exec-script to be set".into(),
                ));
                return None;
            }
            (Some(file), None) => {
                if !std::path::Path::new(file).is_file() {
                    problems.warn(
                        format!("actions[{}].input-file", cfg.name),
                        format!("script {file} does not exist now; runs fail until it does"),
                    );
                }
                Script::File(file.to_string())
            }
            (None, Some(s)) => Script::Inline(s.to_string()),
        };
        let mut env = Vec::new();
        for item in f.list("env") {
            match item.split_once('=') {
                Some((k, v)) if !k.is_empty() => env.push((k.to_string(), v.to_string())),
                _ => errs.push(("env".into(), format!("entry {item:?} is not NAME=value"))),
            }
        }
        let timeout = timeout_key(cfg, DEFAULT_TIMEOUT, errs);
        Some(Exec {
            name: cfg.name.clone(),
            script,
            env,
            timeout,
        })
    }

    async fn run(&self, event: &str) -> Result<(i32, String), ActionError> {
        let mut cmd = tokio::process::Command::new("/bin/sh");
        if let Script::File(f) = &self.script {
            cmd.arg(f);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("POSTEE_EVENT", event)
            .stdin(if matches!(self.script, Script::Inline(_)) {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| ActionError::permanent(format!("cannot start /bin/sh: {e}")))?;
        let pid = child.id();
        if let (Script::Inline(s), Some(mut stdin)) = (&self.script, child.stdin.take()) {
            let s = s.clone();
            tokio::spawn(async move {
                let _ = stdin.write_all(s.as_bytes()).await;
            });
        }
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let work = async {
            let (out, err) = tokio::join!(read_capped(stdout), read_capped(stderr));
            let status = child.wait().await;
            (status, out, err)
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok((status, out, err)) => {
                let status = status
                    .map_err(|e| ActionError::permanent(format!("script failed to run: {e}")))?;
                let mut output = out;
                output.push_str(&err);
                Ok((status.code().unwrap_or(-1), output))
            }
            Err(_) => {
                if let Some(pid) = pid {
                    // Kill the script and everything it started.
                    #[allow(unsafe_code)]
                    // SAFETY: kill takes no pointers; signalling a process group we created
                    // (process_group(0) above) cannot affect memory safety.
                    unsafe {
                        libc::kill(-(pid as i32), libc::SIGKILL);
                    }
                }
                Err(ActionError::transient(format!(
                    "script did not finish within {:?} and was killed",
                    self.timeout
                )))
            }
        }
    }
}

async fn read_capped<R: tokio::io::AsyncRead + Unpin>(r: Option<R>) -> String {
    let Some(mut r) = r else { return String::new() };
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    let mut truncated = false;
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = MAX_OUTPUT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
                truncated |= n > room;
            }
        }
    }
    let mut s = String::from_utf8_lossy(&kept).into_owned();
    if truncated {
        s.push_str("\n[output truncated]");
    }
    s
}

#[async_trait]
impl Action for Exec {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "exec"
    }

    async fn send(&self, msg: &Message) -> Result<(), ActionError> {
        let (code, output) = self.run(&msg.content.description).await?;
        if code == 0 {
            tracing::debug!(action = %self.name, event_id = %msg.event_id, output = %output.trim_end(), "script output");
            Ok(())
        } else {
            Err(ActionError::permanent(format!(
                "error while executing script: exit status {code}, output: {}",
                output.trim_end()
            )))
        }
    }

    fn preview(&self, msg: &Message) -> serde_json::Value {
        let mut env: serde_json::Map<String, serde_json::Value> = self
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into()))
            .collect();
        env.insert(
            "POSTEE_EVENT".into(),
            msg.content.description.clone().into(),
        );
        let (command, stdin) = match &self.script {
            Script::Inline(s) => (vec!["/bin/sh".to_string()], Some(s.clone())),
            Script::File(f) => (vec!["/bin/sh".to_string(), f.clone()], None),
        };
        serde_json::json!({
            "command": command,
            "stdin": stdin,
            "env": env,
            "timeout": format!("{:?}", self.timeout),
        })
    }
}
