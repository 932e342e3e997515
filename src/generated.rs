//! `hstream-io schemas` and `hstream-io docs`: files generated from the
//! connector config types, written or checked against the checked-in copies.

use std::path::Path;

use crate::registry;

/// Writes `schemas/<connector>.json`, or with `check` compares them.
pub fn schemas(out: &Path, check: bool) -> i32 {
    let files = registry::all()
        .into_iter()
        .map(|c| {
            let text = serde_json::to_string_pretty(&(c.spec)()).expect("a spec always encodes");
            (format!("{}.json", c.name), text + "\n")
        })
        .collect();
    sync(out, files, check, "json", "hstream-io schemas")
}

/// Writes the Markdown docs, or with `check` compares them.
pub fn docs(out: &Path, check: bool) -> i32 {
    let docs: Vec<hstream_io_docs_gen::ConnectorDoc> = registry::all()
        .into_iter()
        .map(|c| hstream_io_docs_gen::ConnectorDoc {
            name: c.name.into(),
            kind: c.kind.as_str().into(),
            target: c.target.into(),
            summary: c.summary.into(),
            schema: (c.spec)(),
            checks: c
                .checks
                .iter()
                .map(|k| hstream_io_docs_gen::CheckDoc {
                    id: k.id.into(),
                    kind: k.kind.as_str().into(),
                    description: k.description.into(),
                    hint: k.hint.into(),
                })
                .collect(),
            notes: c.notes.map(str::to_string),
        })
        .collect();
    sync(
        out,
        hstream_io_docs_gen::render_all(&docs),
        check,
        "md",
        "hstream-io docs",
    )
}

/// Writes `files` into `out` (removing stale generated files with extension
/// `ext`), or with `check` reports every difference and returns 1.
fn sync(out: &Path, files: Vec<(String, String)>, check: bool, ext: &str, regenerate: &str) -> i32 {
    let stale: Vec<String> = std::fs::read_dir(out)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(&format!(".{ext}")) && !files.iter().any(|(f, _)| f == n))
        .collect();
    if check {
        let mut problems = Vec::new();
        for (name, text) in &files {
            let path = out.join(name);
            match std::fs::read_to_string(&path) {
                Ok(existing) if existing == *text => {}
                Ok(_) => problems.push(format!("{} differs from the code", path.display())),
                Err(_) => problems.push(format!("{} is missing", path.display())),
            }
        }
        for name in &stale {
            problems.push(format!(
                "{} belongs to no connector",
                out.join(name).display()
            ));
        }
        if problems.is_empty() {
            println!("{} files in {} are up to date", files.len(), out.display());
            return 0;
        }
        for p in &problems {
            eprintln!("error: {p}");
        }
        eprintln!(
            "run `{regenerate} --out {}` and commit the result",
            out.display()
        );
        return 1;
    }
    if let Err(e) = std::fs::create_dir_all(out) {
        eprintln!("error: cannot create {}: {e}", out.display());
        return 1;
    }
    for name in stale {
        let _ = std::fs::remove_file(out.join(name));
    }
    for (name, text) in files {
        let path = out.join(&name);
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return 1;
        }
        println!("wrote {}", path.display());
    }
    0
}
