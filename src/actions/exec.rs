//! `exec`: runs a shell script with the rendered description in `POSTEE_EVENT` (spec §6.12).
//!
//! Keys: exactly one of `exec-script` (fed to `/bin/sh` on stdin) or `input-file` (run as
//! `/bin/sh <file>`); `env` (list of `NAME=value`); `timeout` (ours, Go duration, default
//! 60s: Postee waits forever). The script's combined output is captured up to 64 KiB and
//! logged; a non-zero exit is a failure carrying that output. On timeout the whole process
//! group is killed.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Action, ActionError, BuildContext, Check, Message, Validated, is_sensitive_name};
use crate::config::{Fields, KeySpec, Kind};

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Most output kept from a script (the rest is read and dropped).
pub const MAX_OUTPUT: usize = 64 * 1024;

pub(crate) const KEYS: &[KeySpec] = &[
    KeySpec::optional(
        "exec-script",
        Kind::Str,
        "",
        "Script text, fed to `/bin/sh` on standard input.",
    ),
    KeySpec::optional(
        "input-file",
        Kind::Str,
        "",
        "A script file, run as `/bin/sh <file>` (standard input is empty).",
    ),
    KeySpec::optional(
        "env",
        Kind::StrList,
        "`[]`",
        "Extra variables, each `NAME=value` (checked at load).",
    ),
    KeySpec::optional(
        "timeout",
        Kind::Str,
        "`60s`",
        "Time limit of one run, a Go duration; `\"\"` or `0` means the default.",
    ),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Script {
    Inline(String),
    File(String),
}

/// A valid exec action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecConfig {
    pub script: Script,
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
}

/// Checks the keys. Reads the file system only to warn about an `input-file` missing now.
pub fn validate(f: &Fields) -> Validated<ExecConfig> {
    let mut c = Check::default();
    let script = match (f.non_empty("input-file"), f.non_empty("exec-script")) {
        (Some(_), Some(_)) => {
            c.error(
                "",
                "exec action only takes either input-file or exec-script, not both",
            );
            None
        }
        (None, None) => {
            c.error(
                "",
                "exec action requires either input-file or exec-script to be set",
            );
            None
        }
        (Some(file), None) => {
            if !std::path::Path::new(file).is_file() {
                c.warn(
                    "input-file",
                    format!("script {file} does not exist now; runs fail until it does"),
                );
            }
            Some(Script::File(file.to_string()))
        }
        (None, Some(s)) => Some(Script::Inline(s.to_string())),
    };
    let list = f.list("env");
    let mut env = Vec::new();
    for (i, item) in list.iter().enumerate() {
        match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => env.push((k.to_string(), v.to_string())),
            // The entry may hold a secret with a typo in place of `=`: not shown.
            _ => c.error(
                "env",
                format!(
                    "entry {} of {} is not NAME=value (value hidden)",
                    i + 1,
                    list.len()
                ),
            ),
        }
    }
    let timeout = c.timeout(f, DEFAULT_TIMEOUT);
    c.finish(script.map(|script| ExecConfig {
        script,
        env,
        timeout,
    }))
}

pub fn build(name: &str, cfg: ExecConfig, _: &BuildContext) -> Result<Arc<dyn Action>, String> {
    Ok(Arc::new(Exec {
        name: name.to_string(),
        script: cfg.script,
        env: cfg.env,
        timeout: cfg.timeout,
    }))
}

pub struct Exec {
    name: String,
    script: Script,
    env: Vec<(String, String)>,
    timeout: Duration,
}

impl Exec {
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
            .map(|(k, v)| {
                // Credentials passed to the script (`API_TOKEN=...`) are not shown.
                let v = if is_sensitive_name(k) {
                    "<hidden>".to_string()
                } else {
                    v.clone()
                };
                (k.clone(), v.into())
            })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FieldValue;

    fn fields(pairs: &[(&str, FieldValue)]) -> Fields {
        let mut f = Fields::new(KEYS);
        for (k, v) in pairs {
            f.set(k, v.clone());
        }
        f
    }

    #[test]
    fn validate_takes_one_script_and_name_value_pairs() {
        let v = validate(&fields(&[
            ("exec-script", FieldValue::Str("echo".into())),
            ("env", FieldValue::List(vec!["A=1=2".into()])),
        ]));
        let cfg = v.config.unwrap();
        assert_eq!(cfg.script, Script::Inline("echo".into()));
        assert_eq!(cfg.env, [("A".to_string(), "1=2".to_string())]);
        assert_eq!(cfg.timeout, DEFAULT_TIMEOUT);
        // Every problem at once; a malformed entry is not repeated.
        let errs = validate(&fields(&[
            ("env", FieldValue::List(vec!["TOKEN s3cr3t".into()])),
            ("timeout", FieldValue::Str("soon".into())),
        ]))
        .config
        .unwrap_err();
        let shown: Vec<String> = errs
            .iter()
            .map(|e| format!("{}: {}", e.key, e.message))
            .collect();
        assert_eq!(shown.len(), 3, "{shown:?}");
        assert!(shown[0].contains("requires either input-file or exec-script"));
        assert_eq!(
            shown[1],
            "env: entry 1 of 1 is not NAME=value (value hidden)"
        );
        assert!(shown[2].starts_with("timeout: "));
        let v = validate(&fields(&[(
            "input-file",
            FieldValue::Str("/nonexistent/x.sh".into()),
        )]));
        assert!(v.config.is_ok());
        assert_eq!(v.warnings[0].key, "input-file");
    }

    #[test]
    fn preview_hides_credentials_passed_in_env() {
        let exec = Exec {
            name: "x".into(),
            script: Script::Inline("true".into()),
            env: vec![
                ("API_TOKEN".into(), "tok-1".into()),
                ("OUT".into(), "/tmp/o".into()),
            ],
            timeout: DEFAULT_TIMEOUT,
        };
        let msg = Message {
            event_id: "e".into(),
            route: "r".into(),
            content: Default::default(),
        };
        let p = exec.preview(&msg);
        assert_eq!(p["env"]["API_TOKEN"], "<hidden>");
        assert_eq!(p["env"]["OUT"], "/tmp/o");
    }
}
