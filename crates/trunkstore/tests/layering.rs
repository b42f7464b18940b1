//! No import loops between the modules of a crate (issue 14): every `crates/*/src/**/*.rs`
//! is read, each crate's module graph is built from its paths, and the test fails listing
//! each loop with the line that makes every step of it.
//!
//! The rules, so that a layer can only use the layers below it:
//!
//! * A module is a file: `foo.rs` and `foo/mod.rs` are `foo`, `foo/bar.rs` is `foo::bar`,
//!   `lib.rs` / `main.rs` is the crate root. Inline `mod x { .. }` blocks belong to their
//!   file.
//! * Test code does not count: every item under `#[cfg(test)]` (the `mod tests` of a file,
//!   a `#[cfg(test)] mod tests;` file is then never used by anything) is left out, and so
//!   are comments (doc links) and string literals.
//! * An edge A → B is any path in A's code that names B or an item of B: `use` declarations
//!   (`crate::…`, `super::…`, `self::…`, a child module's name, `{…}` groups) and paths
//!   in expressions and types (`crate::b::f()`). A name that a module imports or re-exports
//!   (`pub use b::Thing`) is followed to the module it comes from, so `crate::Thing` is an
//!   edge to `b`, not to the crate root.
//! * A parent that only declares (`mod`) or re-exports (`pub use`) its children is a facade,
//!   not a layer: those two do not make parent → child edges. So a child importing its
//!   parent is a loop only when the parent's own code (functions, types, a private `use`)
//!   uses that child too.
//!
//! Parsing is plain text scanning (no `syn`): enough for the way this workspace writes Rust;
//! macros that build paths from fragments are not seen.
//!
//! Every crate is checked; none is allowed a loop.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};

#[test]
fn no_crate_has_an_import_loop() {
    let crates_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut failures = Vec::new();
    let mut checked = 0;
    for name in crate_dirs(&crates_dir) {
        let files = read_sources(&crates_dir.join(&name).join("src"));
        let loops = import_loops(&files);
        checked += 1;
        if !loops.is_empty() {
            failures.push(format!("crates/{name}:\n{}", loops.join("\n")));
        }
    }
    assert!(
        checked >= 7,
        "found only {checked} crates under {crates_dir:?}"
    );
    assert!(
        failures.is_empty(),
        "import loops:\n{}",
        failures.join("\n")
    );
}

/// Names of the directories under `crates/` that have a `src/`.
fn crate_dirs(crates_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(crates_dir)
        .expect("read crates/")
        .map(|e| e.expect("crates/ entry").path())
        .filter(|p| p.join("src").is_dir())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Every `.rs` file under `src`, as (path relative to `src` with `/`, text).
fn read_sources(src: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(rel) = dirs.pop() {
        for entry in fs::read_dir(src.join(&rel)).expect("read src dir") {
            let path = entry.expect("src entry").path();
            let rel_child = rel.join(path.file_name().unwrap());
            if path.is_dir() {
                dirs.push(rel_child);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = fs::read_to_string(&path).expect("read source");
                let rel_str = rel_child.to_string_lossy().replace('\\', "/");
                out.push((rel_str, text));
            }
        }
    }
    out.sort();
    out
}

/// A module path from the crate root (`[]` is the root).
type ModPath = Vec<String>;

/// One path found in a module's code.
struct PathUse {
    /// Absolute path (crate root first), unresolved.
    path: Vec<String>,
    /// 1-based line in the file, for the report.
    line: usize,
    /// From a `pub use` (any visibility): a re-export, not a use.
    reexport: bool,
}

/// One module's file, cleaned, with the names it imports.
struct Module {
    file: String,
    paths: Vec<PathUse>,
    /// Names brought in by `use` (name → absolute path), followed when another module
    /// names them through this one.
    imports: BTreeMap<String, Vec<String>>,
}

/// The loops of one crate's module graph, one line each (empty when there is none).
fn import_loops(files: &[(String, String)]) -> Vec<String> {
    let names: BTreeSet<ModPath> = files.iter().filter_map(|(f, _)| module_path(f)).collect();
    let mut modules = BTreeMap::new();
    for (file, text) in files {
        let Some(me) = module_path(file) else {
            continue;
        };
        modules.insert(me.clone(), scan_module(file, text, &me, &names));
    }
    let edges = edges(&modules);
    strongly_connected(&edges)
        .into_iter()
        .map(|scc| describe_loop(&scc, &edges))
        .collect()
}

/// `foo/bar.rs` → `foo::bar`, `foo/mod.rs` → `foo`, `lib.rs`/`main.rs` → root. Files under
/// `src/bin/` are other crates and are left out.
fn module_path(file: &str) -> Option<ModPath> {
    let stem = file.strip_suffix(".rs")?;
    let mut parts: Vec<String> = stem.split('/').map(str::to_owned).collect();
    if parts.first().is_some_and(|p| p == "bin") {
        return None;
    }
    if parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main") {
        return Some(Vec::new());
    }
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    Some(parts)
}

fn show(m: &[String]) -> String {
    if m.is_empty() {
        "crate".to_owned()
    } else {
        m.join("::")
    }
}

// ---------------------------------------------------------------------------------------
// Edges

/// Module → (module it uses → first `file:line` that uses it).
type Edges = BTreeMap<ModPath, BTreeMap<ModPath, String>>;

fn edges(modules: &BTreeMap<ModPath, Module>) -> Edges {
    let mut out: Edges = BTreeMap::new();
    for (me, module) in modules {
        let targets = out.entry(me.clone()).or_default();
        for u in &module.paths {
            let target = resolve(modules, &u.path, 0);
            let facade = u.reexport && target.starts_with(me);
            if target == *me || facade || !modules.contains_key(&target) {
                continue;
            }
            let at = format!("{}:{}", module.file, u.line);
            targets.entry(target).or_insert(at);
        }
    }
    out
}

/// The module that an absolute path's item lives in: the longest prefix that is a module,
/// then through that module's imports when the next name is one of them.
fn resolve(modules: &BTreeMap<ModPath, Module>, path: &[String], depth: usize) -> ModPath {
    let mut k = path.len();
    while k > 0 && !modules.contains_key(&path[..k]) {
        k -= 1;
    }
    let owner = path[..k].to_vec();
    // Import chains are short; the bound only stops `use a::x; use b::x` cycles.
    if depth < 16 {
        if let Some(next) = path.get(k) {
            if let Some(imported) = modules.get(&owner).and_then(|m| m.imports.get(next)) {
                let mut further = imported.clone();
                further.extend_from_slice(&path[k + 1..]);
                if further != path {
                    return resolve(modules, &further, depth + 1);
                }
            }
        }
    }
    owner
}

/// Tarjan's algorithm; only components of two or more modules (a loop) are returned.
fn strongly_connected(edges: &Edges) -> Vec<Vec<ModPath>> {
    struct State<'a> {
        edges: &'a Edges,
        index: BTreeMap<&'a ModPath, usize>,
        low: BTreeMap<&'a ModPath, usize>,
        stack: Vec<&'a ModPath>,
        on_stack: BTreeSet<&'a ModPath>,
        out: Vec<Vec<ModPath>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a ModPath) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.edges.get(v).into_iter().flat_map(|t| t.keys()) {
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                scc.push(w.clone());
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                s.out.push(scc);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.out.sort();
    s.out
}

/// "loop of N modules (a, b, c): a → b (a.rs:3) → a (b.rs:9)": every module of the loop,
/// then one shortest cycle through the first of them.
fn describe_loop(scc: &[ModPath], edges: &Edges) -> String {
    let inside: BTreeSet<&ModPath> = scc.iter().collect();
    let start = &scc[0];
    // Breadth-first from `start` back to it, inside the component.
    let mut came_from: BTreeMap<&ModPath, &ModPath> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    let mut last = None;
    'search: while let Some(v) = queue.pop_front() {
        for w in edges[v].keys().filter(|w| inside.contains(w)) {
            if w == start {
                last = Some(v);
                break 'search;
            }
            if !came_from.contains_key(w) {
                came_from.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    let mut back = Vec::new();
    let mut v = last.expect("a strongly connected component has a cycle");
    while v != start {
        back.push(v);
        v = came_from[v];
    }
    let mut cycle = vec![start];
    cycle.extend(back.into_iter().rev());
    cycle.push(start);
    let mut steps = show(start);
    for pair in cycle.windows(2) {
        let at = &edges[pair[0]][pair[1]];
        steps.push_str(&format!(" → {} ({at})", show(pair[1])));
    }
    let all: Vec<String> = scc.iter().map(|m| show(m)).collect();
    format!(
        "  loop of {} modules ({}): {steps}",
        scc.len(),
        all.join(", ")
    )
}

// ---------------------------------------------------------------------------------------
// Scanning one file

fn scan_module(file: &str, text: &str, me: &ModPath, names: &BTreeSet<ModPath>) -> Module {
    let mut code = blank_comments_and_literals(text);
    blank_test_items(&mut code);
    let inline = inline_mod_bodies(&code);
    let ctx = Scope {
        me,
        names,
        inline: &inline,
    };
    let mut paths = Vec::new();
    let mut imports = BTreeMap::new();
    for decl in take_use_decls(&mut code) {
        let line = line_of(&code, decl.at);
        for (rel, alias) in expand_use_tree(&decl.tree) {
            let Some(abs) = ctx.absolute(&rel, decl.at) else {
                continue;
            };
            if let Some(name) = alias.or_else(|| abs.last().cloned()) {
                if name != "*" && name != "_" {
                    imports.insert(name, abs.clone());
                }
            }
            let path = abs.into_iter().filter(|s| s != "*").collect();
            paths.push(PathUse {
                path,
                line,
                reexport: decl.public,
            });
        }
    }
    for (at, rel) in expression_paths(&code) {
        if let Some(path) = ctx.absolute(&rel, at) {
            let line = line_of(&code, at);
            paths.push(PathUse {
                path,
                line,
                reexport: false,
            });
        }
    }
    Module {
        file: file.to_owned(),
        paths,
        imports,
    }
}

/// What a relative path means at one place of one module.
struct Scope<'a> {
    me: &'a ModPath,
    names: &'a BTreeSet<ModPath>,
    /// Byte ranges of inline `mod x { .. }` bodies (same file, same module).
    inline: &'a [(usize, usize)],
}

impl Scope<'_> {
    /// `crate::a`, `super::a`, `self::a` or `child::a` as a path from the crate root;
    /// `None` for paths into other crates, std, or local types.
    fn absolute(&self, rel: &[String], at: usize) -> Option<Vec<String>> {
        let first = rel.first()?;
        let (base, rest) = match first.as_str() {
            "crate" => (Vec::new(), &rel[1..]),
            "self" => (self.me.clone(), &rel[1..]),
            "super" => {
                // Inside an inline module the first `super`s only leave it.
                let mut inline_depth = self
                    .inline
                    .iter()
                    .filter(|(s, e)| *s <= at && at < *e)
                    .count();
                let mut base = self.me.clone();
                let mut i = 0;
                while rel.get(i).is_some_and(|s| s == "super") {
                    if inline_depth > 0 {
                        inline_depth -= 1;
                    } else {
                        base.pop()?;
                    }
                    i += 1;
                }
                (base, &rel[i..])
            }
            name => {
                let mut child = self.me.clone();
                child.push(name.to_owned());
                if !self.names.contains(&child) {
                    return None;
                }
                (self.me.clone(), rel)
            }
        };
        let mut abs = base;
        abs.extend(rest.iter().cloned());
        Some(abs)
    }
}

fn line_of(code: &[u8], at: usize) -> usize {
    1 + code[..at].iter().filter(|&&b| b == b'\n').count()
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Comments, string/char literals replaced by spaces (newlines kept, so offsets and line
/// numbers stay those of the file).
fn blank_comments_and_literals(text: &str) -> Vec<u8> {
    let src = text.as_bytes();
    let mut out = src.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for b in &mut out[from..to.min(src.len())] {
            if *b != b'\n' {
                *b = b' ';
            }
        }
    };
    let mut i = 0;
    while i < src.len() {
        let rest = &src[i..];
        if rest.starts_with(b"//") {
            let end = memchr_from(src, i, b'\n');
            blank(&mut out, i, end);
            i = end;
        } else if rest.starts_with(b"/*") {
            let end = block_comment_end(src, i);
            blank(&mut out, i, end);
            i = end;
        } else if let Some(end) = raw_string_end(src, i) {
            blank(&mut out, i, end);
            i = end;
        } else if src[i] == b'"' {
            let end = quoted_end(src, i, b'"');
            blank(&mut out, i, end);
            i = end;
        } else if src[i] == b'\'' {
            // A char literal ('x', '\n', '\u{..}', '"') or a lifetime ('a).
            let end = char_literal_end(src, i);
            blank(&mut out, i, end);
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

fn memchr_from(src: &[u8], from: usize, b: u8) -> usize {
    src[from..]
        .iter()
        .position(|&c| c == b)
        .map_or(src.len(), |p| from + p)
}

/// End of the (nested) block comment starting at `i`.
fn block_comment_end(src: &[u8], mut i: usize) -> usize {
    let mut depth = 0;
    while i < src.len() {
        if src[i..].starts_with(b"/*") {
            depth += 1;
            i += 2;
        } else if src[i..].starts_with(b"*/") {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    src.len()
}

/// End of `r"…"`, `r#"…"#`, `br"…"` starting at `i`, if one starts there.
fn raw_string_end(src: &[u8], i: usize) -> Option<usize> {
    if i > 0 && is_ident(src[i - 1]) {
        return None;
    }
    let mut j = i;
    if src.get(j) == Some(&b'b') {
        j += 1;
    }
    if src.get(j) != Some(&b'r') {
        return None;
    }
    j += 1;
    let hashes = src[j..].iter().take_while(|&&b| b == b'#').count();
    j += hashes;
    if src.get(j) != Some(&b'"') {
        return None;
    }
    let mut close = vec![b'"'];
    close.extend(vec![b'#'; hashes]);
    let body = j + 1;
    Some(
        src[body..]
            .windows(close.len())
            .position(|w| w == close.as_slice())
            .map_or(src.len(), |p| body + p + close.len()),
    )
}

/// End of a `"…"` (or `'…'`) literal with backslash escapes, starting at `i`.
fn quoted_end(src: &[u8], i: usize, quote: u8) -> usize {
    let mut j = i + 1;
    while j < src.len() {
        match src[j] {
            b'\\' => j += 2,
            b if b == quote => return j + 1,
            _ => j += 1,
        }
    }
    src.len()
}

/// End of the char literal at `i`, or `i` when it is a lifetime / label.
fn char_literal_end(src: &[u8], i: usize) -> usize {
    match src.get(i + 1) {
        Some(b'\\') => quoted_end(src, i, b'\''),
        Some(_) => {
            // One character (maybe multi-byte UTF-8), then the closing quote.
            let len = std::str::from_utf8(&src[i + 1..(i + 5).min(src.len())])
                .or_else(|e| std::str::from_utf8(&src[i + 1..i + 1 + e.valid_up_to()]))
                .ok()
                .and_then(|s| s.chars().next())
                .map_or(1, char::len_utf8);
            if src.get(i + 1 + len) == Some(&b'\'') {
                i + 2 + len
            } else {
                i
            }
        }
        None => i,
    }
}

/// Blank every item that follows `#[cfg(test)]`, attribute included.
fn blank_test_items(code: &mut [u8]) {
    let mut i = 0;
    while let Some(p) = find_from(code, i, b"#[") {
        let attr_end = matching(code, p + 1);
        let attr: String = code[p..attr_end]
            .iter()
            .filter(|b| !b.is_ascii_whitespace())
            .map(|&b| b as char)
            .collect();
        if attr != "#[cfg(test)]" {
            i = p + 2;
            continue;
        }
        let end = item_end(code, attr_end);
        for b in &mut code[p..end] {
            if *b != b'\n' {
                *b = b' ';
            }
        }
        i = end;
    }
}

/// End of the item starting at `from`: its `;` or its closing `}`, whichever comes first
/// at nesting depth 0 (`use a::{b, c};` ends at the `;`).
fn item_end(code: &[u8], from: usize) -> usize {
    let text = &code[from..];
    let first_word = text
        .split(|b| !is_ident(*b))
        .find(|w| !w.is_empty() && *w != b"pub");
    let is_use = first_word == Some(b"use");
    let mut depth = 0i32;
    let mut j = from;
    while j < code.len() {
        match code[j] {
            b'(' | b'[' => depth += 1,
            b')' | b']' => depth -= 1,
            b'{' if depth == 0 && !is_use => return matching(code, j),
            b'{' => depth += 1,
            b'}' => depth -= 1,
            b';' if depth == 0 => return j + 1,
            _ => {}
        }
        j += 1;
    }
    code.len()
}

fn find_from(code: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    code.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

/// Index just past the bracket that closes the one at `open`.
fn matching(code: &[u8], open: usize) -> usize {
    let mut depth = 0i32;
    for (j, &b) in code.iter().enumerate().skip(open) {
        match b {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
    }
    code.len()
}

/// Whole-word occurrences of `word` in `code`.
fn words(code: &[u8], word: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(p) = find_from(code, i, word) {
        let before_ok = p == 0 || !is_ident(code[p - 1]);
        let after_ok = !matches!(code.get(p + word.len()), Some(&b) if is_ident(b));
        if before_ok && after_ok {
            out.push(p);
        }
        i = p + word.len();
    }
    out
}

/// Byte ranges of inline `mod name { .. }` bodies.
fn inline_mod_bodies(code: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for p in words(code, b"mod") {
        let mut j = p + 3;
        while j < code.len() && (is_ident(code[j]) || code[j].is_ascii_whitespace()) {
            j += 1;
        }
        if code.get(j) == Some(&b'{') {
            out.push((j, matching(code, j)));
        }
    }
    out
}

struct UseDecl {
    at: usize,
    public: bool,
    /// The tree between `use` and `;`, spaces only around `as`.
    tree: String,
}

/// Every `use …;` (and `pub use`), removed from `code` so the expression scan does not
/// see it twice.
fn take_use_decls(code: &mut [u8]) -> Vec<UseDecl> {
    let mut out = Vec::new();
    for p in words(code, b"use") {
        let end = memchr_from(code, p, b';');
        let tree = normalise_use_tree(&String::from_utf8_lossy(&code[p + 3..end]));
        let before = String::from_utf8_lossy(&code[p.saturating_sub(40)..p]).into_owned();
        let before = before.trim_end();
        let public = before.ends_with("pub") || (before.ends_with(')') && before.contains("pub("));
        for b in &mut code[p..end] {
            if *b != b'\n' {
                *b = b' ';
            }
        }
        out.push(UseDecl {
            at: p,
            public,
            tree,
        });
    }
    out
}

/// Whitespace runs become one space, then the spaces next to punctuation go:
/// `crate::{a, b as c}` → `crate::{a,b as c}`.
fn normalise_use_tree(tree: &str) -> String {
    let words: Vec<&str> = tree.split_whitespace().collect();
    let mut out = String::new();
    for w in words {
        let glue = out.ends_with([':', '{', ',', '}']) || w.starts_with([':', '{', ',', '}']);
        if !out.is_empty() && !glue {
            out.push(' ');
        }
        out.push_str(w);
    }
    out
}

/// `a::{b, c::{d as e, self}}` → (`a::b`, None), (`a::c::d`, Some(e)), (`a::c`, None).
fn expand_use_tree(tree: &str) -> Vec<(Vec<String>, Option<String>)> {
    fn go(prefix: &[String], tree: &str, out: &mut Vec<(Vec<String>, Option<String>)>) {
        let tree = tree.trim_start_matches("::");
        if let Some(open) = tree.find('{') {
            let head = &tree[..open];
            let mut base = prefix.to_vec();
            base.extend(
                head.split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            );
            let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
            for part in split_top_level(inner) {
                go(&base, part, out);
            }
            return;
        }
        let mut path = prefix.to_vec();
        let mut alias = None;
        for seg in tree.split("::").filter(|s| !s.is_empty()) {
            path.push(seg.to_owned());
        }
        if let Some(last) = path.pop() {
            match last.split_once(" as ") {
                Some((name, a)) => {
                    path.push(name.to_owned());
                    alias = Some(a.to_owned());
                }
                None if last == "self" => {}
                None => path.push(last),
            }
        }
        if !path.is_empty() {
            out.push((path, alias));
        }
    }
    let mut out = Vec::new();
    go(&[], tree, &mut out);
    out
}

/// Split on commas at brace depth 0.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

/// Paths outside `use` declarations: `ident::ident::…` not preceded by `::` (which would
/// make it the tail of a longer path), as (offset, segments).
fn expression_paths(code: &[u8]) -> Vec<(usize, Vec<String>)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < code.len() {
        if !is_ident(code[i]) || (i > 0 && is_ident(code[i - 1])) {
            i += 1;
            continue;
        }
        let start = i;
        let preceded_by_path = start >= 2 && &code[start - 2..start] == b"::";
        let mut segs = Vec::new();
        let mut j = i;
        loop {
            let s = j;
            while j < code.len() && is_ident(code[j]) {
                j += 1;
            }
            if s == j {
                break;
            }
            segs.push(String::from_utf8_lossy(&code[s..j]).into_owned());
            if code[j..].starts_with(b"::") && code.get(j + 2).is_some_and(|&b| is_ident(b)) {
                j += 2;
            } else {
                break;
            }
        }
        if segs.len() >= 2 && !preceded_by_path {
            out.push((start, segs));
        }
        i = j.max(start + 1);
    }
    out
}

// ---------------------------------------------------------------------------------------
// The checker's own tests, on small fake crates.

fn fake(files: &[(&str, &str)]) -> Vec<String> {
    let files: Vec<(String, String)> = files
        .iter()
        .map(|(f, t)| ((*f).to_owned(), (*t).to_owned()))
        .collect();
    import_loops(&files)
}

#[test]
fn a_two_module_loop_fails_and_names_both_lines() {
    let loops = fake(&[
        ("lib.rs", "mod a;\nmod b;\n"),
        ("a.rs", "use crate::b::B;\npub struct A;\n"),
        (
            "b.rs",
            "\npub struct B;\nfn f() -> crate::a::A { crate::a::A }\n",
        ),
    ]);
    assert_eq!(loops.len(), 1, "{loops:?}");
    assert!(
        loops[0].contains("a → b (a.rs:1) → a (b.rs:3)"),
        "{loops:?}"
    );
}

#[test]
fn a_layered_tree_passes() {
    let loops = fake(&[
        (
            "lib.rs",
            "mod a;\nmod b;\nmod c;\npub use c::C;\npub use a::A;\n",
        ),
        ("a.rs", "use crate::{b::B, c::C};\npub struct A(B, C);\n"),
        ("b.rs", "use crate::C;\npub struct B(C);\n"),
        ("c.rs", "pub struct C;\n"),
    ]);
    assert!(loops.is_empty(), "{loops:?}");
}

#[test]
fn a_longer_loop_through_reexports_and_groups_fails() {
    let loops = fake(&[
        ("lib.rs", "mod a;\nmod b;\nmod c;\npub use a::A;\n"),
        ("a.rs", "use crate::{b::{self, B}};\npub struct A;\n"),
        ("b.rs", "use super::c::C as Renamed;\npub struct B;\n"),
        ("c.rs", "pub struct C(crate::A);\n"),
    ]);
    assert_eq!(loops.len(), 1, "{loops:?}");
    assert!(
        loops[0].contains("loop of 3 modules (a, b, c)"),
        "{loops:?}"
    );
}

#[test]
fn test_code_comments_and_strings_do_not_count() {
    let loops = fake(&[
        ("lib.rs", "mod a;\nmod b;\n"),
        ("a.rs", "use crate::b::B;\n"),
        (
            "b.rs",
            "/// See [`crate::a::A`].\npub struct B;\nconst S: &str = \"crate::a::A\";\n\
             // crate::a::x()\n#[cfg(test)]\nmod tests {\n    use crate::a::A;\n}\n\
             #[cfg(test)]\nuse crate::a::{A, Z};\nfn f() -> char { '{' }\n",
        ),
    ]);
    assert!(loops.is_empty(), "{loops:?}");
}

#[test]
fn a_child_importing_a_facade_parent_passes_but_not_a_parent_using_it() {
    let facade = [
        ("lib.rs", "mod p;\n"),
        ("p/mod.rs", "mod x;\nmod y;\npub use x::X;\npub use y::Y;\n"),
        ("p/x.rs", "pub struct X;\n"),
        ("p/y.rs", "use super::X;\npub struct Y(super::X);\n"),
    ];
    assert!(fake(&facade).is_empty(), "{:?}", fake(&facade));
    // The parent's own code uses y while y uses the parent's own type: a loop.
    let layered_wrong = [
        ("lib.rs", "mod p;\n"),
        ("p/mod.rs", "mod y;\npub struct P;\nfn f() { y::g() }\n"),
        ("p/y.rs", "pub fn g() -> super::P { super::P }\n"),
    ];
    let loops = fake(&layered_wrong);
    assert_eq!(loops.len(), 1, "{loops:?}");
    assert!(
        loops[0].contains("p → p::y (p/mod.rs:3) → p (p/y.rs:1)"),
        "{loops:?}"
    );
}

#[test]
fn super_inside_an_inline_module_stays_in_its_file() {
    let loops = fake(&[
        ("lib.rs", "mod a;\nmod b;\n"),
        (
            "a.rs",
            "use crate::b::B;\npub mod inner {\n    pub use super::A;\n}\npub struct A;\n",
        ),
        ("b.rs", "pub struct B;\n"),
    ]);
    assert!(loops.is_empty(), "{loops:?}");
}

#[test]
fn module_paths_follow_files() {
    let m = |f: &str| module_path(f).map(|p| show(&p));
    assert_eq!(m("lib.rs").as_deref(), Some("crate"));
    assert_eq!(m("main.rs").as_deref(), Some("crate"));
    assert_eq!(m("foo.rs").as_deref(), Some("foo"));
    assert_eq!(m("foo/mod.rs").as_deref(), Some("foo"));
    assert_eq!(m("foo/bar.rs").as_deref(), Some("foo::bar"));
    assert_eq!(m("bin/tool.rs"), None);
}
