//! The house's rules, read from the code's own `crate::` paths (DESIGN.md
//! §1): the layers of `src/` import only from the layers below them
//! (`error` and `sync` at the bottom, then `format`, `os`, `read`,
//! `recovery`, `log`), the files of one folder import each other without a
//! circle, no source file is longer than 800 lines, and no function longer
//! than 150, every system call of the library is in `src/os/`, and every
//! sync in `src/os/durable.rs`. Test code (`tests.rs`, `#[cfg(test)]` modules, the loom
//! models) and the `walctl` binary are not part of the layers; the binary
//! is held to the same lengths.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom first.
const LAYERS: [&str; 7] = ["error", "sync", "format", "os", "read", "recovery", "log"];
const MAX_FILE_LINES: usize = 800;
const MAX_FN_LINES: usize = 150;

fn layer(name: &str) -> Option<usize> {
    match name {
        "error" | "sync" => Some(0),
        _ => LAYERS.iter().position(|l| *l == name).map(|i| i - 1),
    }
}

/// The house's source files: `src/` without the binary, the loom models
/// and test-only files.
fn sources() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                // The loom models (test code, built only under
                // `--cfg loom`) are not the house.
                if p.file_name().unwrap() != "loom_tests" {
                    walk(&p, out);
                }
            } else if p.extension().is_some_and(|x| x == "rs") {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                if name != "tests.rs" {
                    out.push(p);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut out);
    out.sort();
    out
}

/// The lines of a file that are code of the house: comments dropped, and
/// everything from an inline test module on.
fn code_lines(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(l) = lines.next() {
        let t = l.trim_start();
        if t.starts_with("#[cfg(")
            && t.contains("test")
            && lines
                .peek()
                .is_some_and(|n| n.trim_start().starts_with("mod "))
        {
            break;
        }
        if t.starts_with("//") {
            continue;
        }
        out.push(l);
    }
    out
}

/// (folder or root module, file module) of a source path: `src/log/wal.rs`
/// is ("log", "wal"); `src/error.rs` is ("error", "error").
fn place(path: &Path) -> (String, String) {
    let rel = path
        .strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
        .unwrap();
    let parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    match parts.as_slice() {
        [file] => (file.clone(), file.clone()),
        [folder, file] => (folder.clone(), file.clone()),
        _ => panic!("a source file deeper than one folder: {}", rel.display()),
    }
}

/// Every `crate::a::b` path in `lines`: (a, b); b is empty for `crate::a`.
fn crate_paths(lines: &[&str]) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for l in lines {
        let mut rest = *l;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let word = |s: &str| -> String {
                s.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect()
            };
            let a = word(after);
            let b = after[a.len()..]
                .strip_prefix("::")
                .map(word)
                .unwrap_or_default();
            out.insert((a, b));
            rest = after;
        }
    }
    out
}

/// A circle in `graph` (node -> nodes it imports), if there is one.
fn find_circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in graph.get(n).into_iter().flatten() {
            match state.get(m.as_str()) {
                Some(1) => {
                    let at = stack.iter().position(|s| s == m).unwrap();
                    let mut circle = stack[at..].to_vec();
                    circle.push(m.clone());
                    return Some(circle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(m, graph, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in graph.keys() {
        if !state.contains_key(n.as_str()) {
            if let Some(c) = visit(n, graph, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn the_circle_finder_finds_circles() {
    let g = |edges: &[(&str, &str)]| {
        let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            m.entry(a.to_string()).or_default().insert(b.to_string());
        }
        m
    };
    assert_eq!(find_circle(&g(&[("a", "b"), ("b", "c")])), None);
    let c = find_circle(&g(&[("a", "b"), ("b", "c"), ("c", "a")])).unwrap();
    assert_eq!(c.first(), c.last());
    assert_eq!(c.len(), 4);
    let paths = crate_paths(&["use crate::log::wal::Wal; x(crate::error::Error::Closed)"]);
    assert!(paths.contains(&("log".into(), "wal".into())));
    assert!(paths.contains(&("error".into(), "Error".into())));
}

#[test]
fn layers_import_only_from_below_and_folders_have_no_circle() {
    let mut folders: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    let mut wrong = Vec::new();
    let files = sources();
    assert!(files.len() > 30, "the sources were not found");
    for path in &files {
        let (folder, module) = place(path);
        if folder == "lib" {
            continue; // the crate root re-exports every layer
        }
        let from = layer(&folder).unwrap_or_else(|| panic!("{folder}: not a layer of the house"));
        let text = std::fs::read_to_string(path).unwrap();
        let graph = folders.entry(folder.clone()).or_default();
        graph.entry(module.clone()).or_default();
        for (a, b) in crate_paths(&code_lines(&text)) {
            let Some(to) = layer(&a) else {
                wrong.push(format!(
                    "{}: crate::{a} is not a layer (import it from its layer)",
                    path.display()
                ));
                continue;
            };
            if to > from {
                wrong.push(format!(
                    "{}: imports crate::{a}::{b}, a layer above it",
                    path.display()
                ));
            }
            if a == folder
                && !b.is_empty()
                && b != module
                && b.chars().next().is_some_and(char::is_lowercase)
            {
                graph.entry(module.clone()).or_default().insert(b);
            }
        }
    }
    for (folder, graph) in &folders {
        if let Some(c) = find_circle(graph) {
            wrong.push(format!(
                "src/{folder}/: an import circle {}",
                c.join(" -> ")
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "the house's rules are broken:\n{}",
        wrong.join("\n")
    );
}

/// The `walctl` binary's files: outside the layers, but held to the same
/// lengths.
fn binary_sources() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("walctl/src");
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    out.sort();
    out
}

#[test]
fn no_file_over_800_lines_and_no_function_over_150() {
    let mut wrong = Vec::new();
    let files = binary_sources();
    assert!(files.len() > 5, "walctl's files were not found");
    for path in sources().into_iter().chain(files) {
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() > MAX_FILE_LINES {
            wrong.push(format!("{}: {} lines", path.display(), lines.len()));
        }
        // A function runs from its `fn` line to the closing brace at its
        // own indentation.
        for (i, l) in lines.iter().enumerate() {
            let t = l.trim_start();
            let is_fn = [
                "fn ",
                "pub fn ",
                "pub(crate) fn ",
                "pub(super) fn ",
                "unsafe fn ",
                "pub(crate) unsafe fn ",
                "const fn ",
                "pub const fn ",
            ]
            .iter()
            .any(|p| t.starts_with(p));
            if !is_fn || t.ends_with(';') {
                continue;
            }
            let indent = &l[..l.len() - t.len()];
            let close = format!("{indent}}}");
            if let Some(end) = lines[i + 1..].iter().position(|x| *x == close) {
                let len = end + 2;
                if len > MAX_FN_LINES {
                    wrong.push(format!(
                        "{}:{}: a function of {len} lines",
                        path.display(),
                        i + 1
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "too long:\n{}", wrong.join("\n"));
}

/// Every system call of the library is in `os/` (DESIGN.md §1), so each
/// system's side of it is in one place; and every sync is
/// `os::durable`'s, so what "durable" means on each system (`F_FULLFSYNC`
/// on macOS, DESIGN.md §6) is decided once.
#[test]
fn system_calls_live_in_os_and_syncs_in_durable() {
    const SYSTEM: [&str; 6] = [
        "rustix::",
        "libc::",
        "memmap2::",
        "std::os::unix",
        ".sync_all(",
        ".sync_data(",
    ];
    const SYNC: [&str; 5] = [
        ".sync_all(",
        ".sync_data(",
        "fsync(",
        "fdatasync(",
        "fcntl_fullfsync(",
    ];
    let mut wrong = Vec::new();
    let mut seen_durable = false;
    for path in sources() {
        let text = std::fs::read_to_string(&path).unwrap();
        let (folder, file) = place(&path);
        let durable = folder == "os" && file == "durable";
        seen_durable |= durable;
        for (i, line) in code_lines(&text).iter().enumerate() {
            let banned: &[&str] = if folder != "os" {
                &SYSTEM
            } else if !durable {
                &SYNC
            } else {
                &[]
            };
            if let Some(b) = banned.iter().find(|b| line.contains(*b)) {
                wrong.push(format!("{}: code line {}: {b}", path.display(), i + 1));
            }
        }
    }
    assert!(seen_durable, "src/os/durable.rs was not found");
    assert!(
        wrong.is_empty(),
        "system calls outside os/, or syncs outside os/durable.rs:\n{}",
        wrong.join("\n")
    );
}

/// The library never prints: what it cannot return it reports as `tracing`
/// events, which are silent unless the application installs a subscriber.
#[test]
fn the_library_never_prints() {
    const PRINTS: [&str; 5] = ["eprintln!(", "println!(", "eprint!(", "print!(", "dbg!("];
    let mut wrong = Vec::new();
    for path in sources() {
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, line) in code_lines(&text).iter().enumerate() {
            if let Some(p) = PRINTS.iter().find(|p| line.contains(*p)) {
                wrong.push(format!("{}: code line {}: {p}", path.display(), i + 1));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the library prints (use tracing):\n{}",
        wrong.join("\n")
    );
}

/// The library's dependencies are the library's: the command-line tool's
/// (clap, indicatif, anyhow, serde_json, hex, tempfile) live in `walctl/`,
/// so that no dependent of `durability` builds them (DESIGN.md §1).
#[test]
fn the_library_depends_only_on_what_the_library_uses() {
    const LIBRARY: [&str; 11] = [
        "rkyv",
        "zerocopy",
        "crc32c",
        "uuid",
        "memmap2",
        "parking_lot",
        "thiserror",
        "tracing",
        "serde",
        "rustix",
        "loom",
    ];
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let mut section = String::new();
    let mut found = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.to_string();
            continue;
        }
        // [dependencies] and [target.'cfg(...)'.dependencies], not dev-.
        let library = section == "[dependencies]"
            || (section.starts_with("[target.") && section.ends_with(".dependencies]"));
        if !library || line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((name, _)) = line.split_once('=') {
            found.push(name.trim().to_string());
        }
    }
    assert!(
        found.len() >= 8,
        "the library's dependencies were not found: {found:?}"
    );
    let foreign: Vec<&String> = found
        .iter()
        .filter(|n| !LIBRARY.contains(&n.as_str()))
        .collect();
    assert!(
        foreign.is_empty(),
        "the library depends on {foreign:?}: a dependency of walctl or of the tests belongs in \
         walctl/Cargo.toml or [dev-dependencies]"
    );
}
