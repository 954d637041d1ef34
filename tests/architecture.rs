//! The house rules that a compiler does not check, read from the source with comments and string
//! literals blanked out:
//! - no import cycle between the top-level modules of `src/`, and none between the files of one
//!   folder (`mod.rs` aside: it declares its files, which use what it re-exports; tests aside: a
//!   kernel's test may check it against a sibling's);
//! - the arrows that contradict the data flow (config → data → models → unlearn → pipeline →
//!   metrics → store → report) stay absent, e.g. the report reads the store, never `unlearn`;
//! - no source file past 500 lines and no function past 120 lines, tests aside.
//!
//! Each failure names the rule and the file and line that break it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn src_files() -> (PathBuf, Vec<PathBuf>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![];
    rust_files(&src, &mut files);
    files.sort();
    (src, files)
}

/// `text` with comments, string and character literals replaced by spaces (newlines kept, so
/// line numbers hold).
fn blank(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let keep = |ch: char| if ch == '\n' { '\n' } else { ' ' };
    while i < c.len() {
        let at = |j: usize| c.get(j).copied();
        let rest = |k: usize| at(i + k);
        if c[i] == '/' && rest(1) == Some('/') {
            while i < c.len() && c[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c[i] == '/' && rest(1) == Some('*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == Some('*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == Some('/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(keep(c[i]));
                    i += 1;
                }
            }
        } else if c[i] == 'r'
            && (rest(1) == Some('"')
                || (rest(1) == Some('#') && matches!(rest(2), Some('"' | '#'))))
            && (i == 0 || !(c[i - 1].is_alphanumeric() || c[i - 1] == '_'))
        {
            // A raw string: r"…", r#"…"#.
            let mut hashes = 0;
            let mut j = i + 1;
            while c.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            j += 1; // the opening quote
            while j < c.len() {
                if c[j] == '"' && (0..hashes).all(|h| c.get(j + 1 + h) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            for &ch in &c[i..j.min(c.len())] {
                out.push(keep(ch));
            }
            i = j;
        } else if c[i] == '"' {
            out.push(' ');
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < c.len() {
                    out.push(keep(c[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c[i] == '\'' && (rest(1) == Some('\\') || rest(2) == Some('\'')) {
            // A character literal (a lifetime has no closing quote two places on).
            let mut j = i + 1;
            if c[j] == '\\' {
                j += 2;
                while j < c.len() && c[j] != '\'' {
                    j += 1;
                }
            } else {
                j += 1;
            }
            for _ in i..=j.min(c.len() - 1) {
                out.push(' ');
            }
            i = j + 1;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// The line number (1-based) of byte offset `at`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at].matches('\n').count() + 1
}

/// The code of a file before its `#[cfg(test)]` module (the tests aside), blanked.
fn code_of(file: &Path) -> String {
    let text = blank(&std::fs::read_to_string(file).unwrap());
    match text.find("\n#[cfg(test)]") {
        Some(i) => text[..i + 1].to_string(),
        None => text,
    }
}

fn ident(s: &str) -> String {
    s.trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// The first segments a path prefix (`crate::`, `super::`) leads to in `code`, each with its
/// line: `crate::a::b` gives `a`, `crate::{a::x, b}` gives `a` and `b`.
fn first_segments(code: &str, prefix: &str) -> Vec<(String, usize)> {
    let mut out = vec![];
    for (i, _) in code.match_indices(prefix) {
        if i > 0 && {
            let b = code.as_bytes()[i - 1];
            b.is_ascii_alphanumeric() || b == b'_' || b == b':'
        } {
            continue; // `x::crate::` or a longer name ending in the prefix
        }
        let rest = &code[i + prefix.len()..];
        let line = line_of(code, i);
        if rest.trim_start().starts_with('{') {
            // A group: its top-level entries.
            let body = &rest[rest.find('{').unwrap() + 1..];
            let mut depth = 0;
            let mut entry_start = true;
            for (k, ch) in body.char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => entry_start = true,
                    c if entry_start && !c.is_whitespace() => {
                        entry_start = false;
                        let name = ident(&body[k..]);
                        if !name.is_empty() {
                            out.push((name, line));
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                out.push((name, line));
            }
        }
    }
    out
}

/// The top-level module a file of `src/` belongs to (`src/data/split.rs` → `data`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// Top-level modules each module uses, with the first place it does.
fn graph() -> BTreeMap<String, BTreeMap<String, String>> {
    let (src, files) = src_files();
    let mut g: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for f in files {
        let m = module_of(&src, &f);
        if m == "main" || m == "lib" {
            continue; // entry points use everything
        }
        let code = blank(&std::fs::read_to_string(&f).unwrap());
        let deps = g.entry(m.clone()).or_default();
        let mut found = first_segments(&code, "crate::");
        if f.parent() == Some(src.as_path()) {
            found.extend(first_segments(&code, "super::")); // a top-level file's super is the crate
        }
        for (name, line) in found {
            if name != m && name != "self" && name != "super" {
                deps.entry(name)
                    .or_insert_with(|| format!("{}:{line}", f.display()));
            }
        }
    }
    g
}

/// A cycle in `g`, if any, as the list of its nodes.
fn find_cycle<T: AsRef<str>>(g: &BTreeMap<String, BTreeMap<String, T>>) -> Option<Vec<String>> {
    fn visit<T>(
        n: &str,
        g: &BTreeMap<String, BTreeMap<String, T>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == n) {
            let mut c = stack[i..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for d in g.get(n).into_iter().flat_map(|m| m.keys()) {
            if let Some(c) = visit(d, g, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    g.keys().find_map(|n| visit(n, g, &mut vec![], &mut done))
}

#[test]
fn top_level_modules_have_no_import_cycles() {
    let g = graph();
    if let Some(c) = find_cycle(&g) {
        let places: Vec<String> = c
            .windows(2)
            .map(|w| format!("{} → {} at {}", w[0], w[1], g[&w[0]][&w[1]]))
            .collect();
        panic!(
            "rule `no import cycle between top-level modules` broken: {}\n{}",
            c.join(" → "),
            places.join("\n")
        );
    }
}

/// Arrows that would run against the data flow.
const FORBIDDEN: &[(&str, &str, &str)] = &[
    (
        "data",
        "config",
        "data sources do not know the experiment file",
    ),
    (
        "models",
        "config",
        "families do not know the experiment file",
    ),
    ("models", "metrics", "families do not know the metrics"),
    ("models", "unlearn", "families do not know the methods"),
    ("models", "pipeline", "families do not know the pipeline"),
    ("models", "report", "families do not know the report"),
    ("unlearn", "pipeline", "methods do not know the pipeline"),
    ("metrics", "models", "metrics do not know the families"),
    ("metrics", "unlearn", "metrics do not know the methods"),
    (
        "pretrain",
        "unlearn",
        "pre-training comes before unlearning",
    ),
    ("store", "report", "the store does not know the report"),
    (
        "report",
        "unlearn",
        "the report reads the store, not the methods",
    ),
    (
        "report",
        "pipeline",
        "the report reads the store, not the pipeline",
    ),
    (
        "report",
        "models",
        "the report reads the store, not the families",
    ),
    (
        "report",
        "metrics",
        "the report reads the store, not the metrics",
    ),
];

/// Leaf modules: usable from every step, using no step themselves.
const LEAVES: &[&str] = &[
    "util", "error", "locate", "resample", "progress", "host", "names", "draw", "train", "parallel",
];

#[test]
fn no_arrow_runs_against_the_data_flow() {
    let g = graph();
    let mut broken = vec![];
    for (from, to, why) in FORBIDDEN {
        if let Some(at) = g.get(*from).and_then(|d| d.get(*to)) {
            broken.push(format!("`{from}` must not use `{to}` ({why}): {at}"));
        }
    }
    let steps: BTreeSet<&str> = g.keys().map(|k| k.as_str()).collect();
    for leaf in LEAVES {
        for (to, at) in g.get(*leaf).into_iter().flatten() {
            if steps.contains(to.as_str()) && !LEAVES.contains(&to.as_str()) && to != "weights" {
                broken.push(format!(
                    "leaf `{leaf}` must use no step of the pipeline, but uses `{to}`: {at}"
                ));
            }
        }
    }
    // The family-neutral interface does not depend on the registry of every family.
    let model_rs = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/models/model.rs");
    let code = code_of(&model_rs);
    for name in ["FamilyConfig", "FamilyName"] {
        if let Some(i) = code.find(name) {
            broken.push(format!(
                "the family-neutral `I2IModel` must not name `{name}`: {}:{}",
                model_rs.display(),
                line_of(&code, i)
            ));
        }
    }
    assert!(
        broken.is_empty(),
        "house rules broken:\n{}",
        broken.join("\n")
    );
}

#[test]
fn files_of_a_folder_have_no_import_cycles() {
    let (src, files) = src_files();
    let mut folders: BTreeMap<PathBuf, Vec<PathBuf>> = BTreeMap::new();
    for f in &files {
        folders
            .entry(f.parent().unwrap().to_path_buf())
            .or_default()
            .push(f.clone());
    }
    let mut broken = vec![];
    for (dir, fs) in &folders {
        if dir == &src {
            continue; // the top-level modules: the test above
        }
        // The folder's module path (`src/metrics/inception` → `metrics::inception`).
        let path = dir
            .strip_prefix(&src)
            .unwrap()
            .components()
            .map(|c| c.as_os_str().to_string_lossy().to_string())
            .collect::<Vec<_>>()
            .join("::");
        let stem = |f: &Path| f.file_stem().unwrap().to_string_lossy().to_string();
        let siblings: BTreeSet<String> = fs
            .iter()
            .map(|f| stem(f))
            .chain(
                std::fs::read_dir(dir)
                    .unwrap()
                    .flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name().to_string_lossy().to_string()),
            )
            .filter(|s| s != "mod")
            .collect();
        let mut g: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for f in fs.iter().filter(|f| stem(f) != "mod") {
            // A file's tests may use its siblings (a kernel checked against another one).
            let code = code_of(f);
            let me = stem(f);
            let deps = g.entry(me.clone()).or_default();
            let mut found = first_segments(&code, "super::");
            found.extend(first_segments(&code, &format!("crate::{path}::")));
            for (name, line) in found {
                if name != me && siblings.contains(&name) {
                    deps.entry(name)
                        .or_insert_with(|| format!("{}:{line}", f.display()));
                }
            }
        }
        if let Some(c) = find_cycle(&g) {
            let places: Vec<String> = c
                .windows(2)
                .map(|w| format!("{} → {} at {}", w[0], w[1], g[&w[0]][&w[1]]))
                .collect();
            broken.push(format!(
                "rule `no file-level loop in a folder` broken in {}: {}\n  {}",
                dir.display(),
                c.join(" → "),
                places.join("\n  ")
            ));
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn no_source_file_past_500_lines_and_no_function_past_120() {
    const FILE_LIMIT: usize = 500;
    const FN_LIMIT: usize = 120;
    let (_, files) = src_files();
    let mut broken = vec![];
    for f in &files {
        let code = code_of(f);
        let n = code.lines().count();
        if n > FILE_LIMIT {
            broken.push(format!(
                "rule `a file past {FILE_LIMIT} lines is split along its seams` broken: {} has {n} lines before its tests",
                f.display()
            ));
        }
        for (name, line, len) in functions(&code) {
            if len > FN_LIMIT {
                broken.push(format!(
                    "rule `a function past {FN_LIMIT} lines is split` broken: {}:{line} `{name}` has {len} lines",
                    f.display()
                ));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

/// Every function of blanked `code` with a body: name, first line, length in lines.
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let bytes = code.as_bytes();
    let mut out = vec![];
    for (i, _) in code.match_indices("fn ") {
        if i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_') {
            continue;
        }
        let name = ident(&code[i + 3..]);
        if name.is_empty() {
            continue; // `fn(` types
        }
        // The body: the first `{` before any `;` at depth 0 of parentheses and angle brackets.
        let mut j = i + 3;
        let mut paren = 0i32;
        let mut open = None;
        while j < bytes.len() {
            match bytes[j] {
                b'(' | b'[' => paren += 1,
                b')' | b']' => paren -= 1,
                b';' if paren == 0 => break,
                b'{' if paren == 0 => {
                    open = Some(j);
                    break;
                }
                _ => {}
            }
            j += 1;
        }
        let Some(open) = open else { continue };
        let mut depth = 0;
        let mut k = open;
        while k < bytes.len() {
            match bytes[k] {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            k += 1;
        }
        let (first, last) = (line_of(code, i), line_of(code, k.min(bytes.len() - 1)));
        out.push((name, first, last - first + 1));
    }
    out
}

#[test]
fn the_rule_readers_see_through_comments_strings_and_groups() {
    let code = blank("use crate::{a::x, b};\n// crate::c\nlet s = \"crate::d\"; let r = r#\"crate::e\"#; let ch = '{';\nuse crate::f::g;\nfn long<'a>(x: &'a str) {\n}\n");
    let names: Vec<String> = first_segments(&code, "crate::")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["a", "b", "f"]);
    assert_eq!(functions(&code), vec![("long".to_string(), 5, 2)]);
}

/// Docs, scripts and experiment files give commands that work on any machine: no absolute path
/// of the machine they were written on (a virtual environment, a home folder).
#[test]
fn docs_and_scripts_name_no_machine_paths() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "fixtures") {
                    walk(&p, out);
                }
            } else if p.extension().is_some_and(|x| {
                ["md", "py", "sh", "yaml", "txt"].contains(&x.to_str().unwrap_or(""))
            }) {
                out.push(p);
            }
        }
    }
    for d in ["docs", "tools", "experiments", ".ci"] {
        if root.join(d).is_dir() {
            walk(&root.join(d), &mut files);
        }
    }
    let bad: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let text = std::fs::read_to_string(f).ok()?;
            let hit = text
                .lines()
                .enumerate()
                .find(|(_, l)| ["/work/", "/root/", "/home/"].iter().any(|p| l.contains(p)))?;
            Some(format!("{}:{}: {}", f.display(), hit.0 + 1, hit.1.trim()))
        })
        .collect();
    assert!(bad.is_empty(), "machine paths in docs or scripts: {bad:#?}");
}

/// Every list of methods and families a person reads comes from the registries: the methods
/// table of docs/methods.md names every method, and docs/architecture.md every family.
#[test]
fn docs_list_every_registered_method_and_family() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let methods = std::fs::read_to_string(root.join("docs/methods.md")).unwrap();
    let missing: Vec<&str> = i2i_unlearn::names::MethodName::ALL
        .iter()
        .map(|m| m.as_str())
        .filter(|m| !methods.contains(&format!("| `{m}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/methods.md has no table row for the registered methods {missing:?}"
    );
    let arch = std::fs::read_to_string(root.join("docs/architecture.md")).unwrap();
    let missing: Vec<&str> = i2i_unlearn::models::FamilyName::ALL
        .iter()
        .map(|f| f.as_str())
        .filter(|f| !arch.contains(&format!("{f}/")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/architecture.md does not name the folders of the families {missing:?}"
    );
}
