//! The module layers of the crate (lib.rs's doc comment) hold: a module uses only modules
//! of the layers below it and those listed before it in its own layer, so there is no
//! import loop. Read from the source: every `crate::module` a file names (comments
//! aside), per top-level module; and every `super::sibling` inside `proxying/`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// lib.rs's layers, bottom first, flattened: a module may use only those before it.
const ORDER: &[&str] = &[
    // 1. Base values.
    "dns",
    "types",
    "error",
    "util",
    "keys",
    "branch",
    "dialled",
    "policy",
    "transaction",
    "timerq",
    "trunks",
    "media",
    "registrar",
    // 2. Settings and wire reads.
    "auth",
    "config",
    "sides",
    "sipview",
    "callerid",
    "metrics",
    // 3. Routing model and decisions; the plain-value machines.
    "route",
    "carriers",
    "failover",
    "machines",
    // 4. Tables and context.
    "state",
    "shard",
    "context",
    // 5. Actions in context.
    "local",
    "admission",
    "anchor",
    "calls",
    "late2xx",
    "outbound",
    "register",
    // 6. Proxying.
    "proxying",
    "trunk_wait",
    // 7. Dispatch.
    "request",
    "response",
    "engine",
];

/// `proxying/`'s modules, bottom first (its mod.rs is on top of them all).
const PROXYING: &[&str] = &["forward", "cancel", "answer", "responses", "timers"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir` (bounded by the crate's depth: two levels).
fn files(dir: &Path, depth: u8, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() && depth > 0 {
            files(&path, depth - 1, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without `//` comments and without its `#[cfg(test)] mod tests` tail.
fn code(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The identifiers that follow `prefix` (`crate::` or `super::`), including each first
/// name of a `prefix{a, b::c}` group.
fn named_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices(prefix) {
        let rest = &code[i + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            for item in inner.split(',') {
                let name = item.trim().split("::").next().unwrap_or("");
                out.insert(name.to_string());
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            out.insert(name);
        }
    }
    out.retain(|n| !n.is_empty() && n != "self");
    out
}

fn top_module(path: &Path) -> String {
    let rel = path.strip_prefix(src()).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

#[test]
fn modules_use_only_lower_layers() {
    let mut all = Vec::new();
    files(&src(), 2, &mut all);
    let mut bad = Vec::new();
    for path in &all {
        let module = top_module(path);
        if module == "lib" {
            continue;
        }
        let Some(rank) = ORDER.iter().position(|m| *m == module) else {
            bad.push(format!(
                "{module}: not placed in a layer (lib.rs and this test)"
            ));
            continue;
        };
        for used in named_after(&code(path), "crate::") {
            match ORDER.iter().position(|m| *m == used) {
                Some(r) if r < rank || used == module => {}
                Some(_) => bad.push(format!("{}: uses {used}, a layer above", path.display())),
                None if used.starts_with(char::is_uppercase) => bad.push(format!(
                    "{}: uses crate::{used} from the root (use its module)",
                    path.display()
                )),
                None => bad.push(format!("{}: uses unknown crate::{used}", path.display())),
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn proxying_modules_are_layered() {
    let dir = src().join("proxying");
    let mut bad = Vec::new();
    for (rank, module) in PROXYING.iter().enumerate() {
        let used = named_after(&code(&dir.join(format!("{module}.rs"))), "super::");
        for u in used {
            match PROXYING.iter().position(|m| *m == u) {
                Some(r) if r < rank => {}
                _ => bad.push(format!("proxying/{module}.rs uses super::{u}")),
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
