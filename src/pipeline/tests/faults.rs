//! Faults injected into the pipeline by tests, keyed by markers in event bodies so tests
//! running in one process do not disturb each other. Compiled only under `cfg(test)`.

use std::collections::HashSet;
use std::sync::Mutex;

static FIRED: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// Whether `text` carries `fault:<kind>-once:<tag>` not fired yet (and marks it fired).
fn once(text: &str, kind: &str) -> bool {
    let needle = format!("fault:{kind}-once:");
    let Some(at) = text.find(&needle) else {
        return false;
    };
    let tag: String = text[at..].chars().take_while(|c| *c != '"').collect();
    let mut fired = FIRED.lock().unwrap_or_else(|e| e.into_inner());
    fired.get_or_insert_with(HashSet::new).insert(tag)
}

/// Planning an event whose body has `fault:plan` panics.
pub(crate) fn planning(body: &str) {
    if body.contains("fault:plan") {
        panic!("injected planning fault");
    }
}

/// The router panics on a batch with `fault:router-once:TAG` (once) or
/// `fault:router-always`.
pub(crate) fn router<'a>(bodies: impl IntoIterator<Item = &'a str>) {
    for b in bodies {
        if b.contains("fault:router-always") || once(b, "router") {
            panic!("injected router fault");
        }
    }
}

/// The outcome writer panics on an outcome whose message has `fault:outcome-once:TAG`.
pub(crate) fn outcome<'a>(texts: impl IntoIterator<Item = &'a str>) {
    for t in texts {
        if once(t, "outcome") {
            panic!("injected outcome writer fault");
        }
    }
}

/// A send panics for a message with `fault:send-once:TAG`.
pub(crate) fn sending(text: &str) {
    if once(text, "send") {
        panic!("injected send fault");
    }
}

/// The aggregation of a batch with a message holding `fault:aggregate-once:TAG` fails.
pub(crate) fn aggregating<'a>(texts: impl IntoIterator<Item = &'a str>) -> Result<(), String> {
    for t in texts {
        if once(t, "aggregate") {
            return Err("injected aggregation fault".into());
        }
    }
    Ok(())
}
