//! Every question, lecture section and code example of the five seed documents has its
//! counterpart in a notebook.
//!
//! `notebooks/seed-manifest.json` lists, per seed document, the ids of its parts (no
//! text of theirs): questions `Q1`..., lecture sections `section:<slug>`, and code
//! examples `code-1`... in document order (an `In [n]:` cell or a fenced block each).
//! A notebook cell names the parts it mirrors in its metadata:
//! `"conclab": {"mirrors": ["Q4", "code-1"]}`.
//!
//! Where the seeds are at hand (`../shared/seeds`, or `CONCLAB_SEEDS`), the manifest is
//! derived from them again and must match; `CONCLAB_WRITE_MANIFEST=1` rewrites it.

use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn manifest_path() -> PathBuf {
    repo().join("notebooks/seed-manifest.json")
}

/// Which notebook mirrors which seed document.
const NOTEBOOKS: [(&str, &str); 5] = [
    (
        "000_9285cf350d02fdb7",
        "01-threads-and-processes-answers.ipynb",
    ),
    (
        "001_247a41b517feb96b",
        "02-threads-and-processes-in-depth.ipynb",
    ),
    ("002_533d3a3fe7fab12e", "03-multiprocessing-answers.ipynb"),
    ("003_6af269a805a41518", "00-lecture.ipynb"),
    ("004_cc61434a5d2701f7", "04-multiprocessing-in-depth.ipynb"),
];

/// The question number a line opens, in any of the seeds' four styles.
fn question(line: &str) -> Option<u32> {
    let number = |rest: &str| -> Option<(u32, String)> {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let n = digits.parse().ok()?;
        Some((n, rest[digits.len()..].to_owned()))
    };
    if let Some(rest) = line.strip_prefix("### Q") {
        return number(rest).map(|(n, _)| n);
    }
    if let Some(rest) = line.strip_prefix("Answer = ") {
        return number(rest).map(|(n, _)| n);
    }
    if let Some(rest) = line.strip_prefix('Q') {
        let (n, after) = number(rest)?;
        return after.trim_start().starts_with(['-', ':', '.']).then_some(n);
    }
    // "4. Write a Python program ...": a numbered line that asks something.
    let (n, after) = number(line)?;
    let asks = [
        "Discuss", "Describe", "Explain", "Write", "Create", "What", "How", "Why",
    ];
    let after = after.strip_prefix(". ")?;
    asks.iter().any(|verb| after.starts_with(verb)).then_some(n)
}

fn slug(heading: &str) -> String {
    let mut slug = String::new();
    for c in heading.to_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    slug.trim_end_matches('-').to_owned()
}

/// The part ids of one seed document.
fn parts(text: &str) -> Value {
    let mut questions = BTreeSet::new();
    let mut sections: Vec<String> = Vec::new();
    let mut code = 0;
    let mut in_fence = false;
    for line in text.lines() {
        if line.starts_with("```") {
            if !in_fence {
                code += 1;
            }
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        if line.starts_with("In [") {
            code += 1;
        } else if let Some(n) = question(line) {
            questions.insert(n);
        } else if let Some(heading) = line.strip_prefix("# ") {
            let id = format!("section:{}", slug(heading));
            if !sections.contains(&id) {
                sections.push(id);
            }
        }
    }
    // Headings are the lecture's structure; in a Q&A document the questions are.
    if !questions.is_empty() {
        sections.clear();
    }
    let mut ids: Vec<String> = questions.iter().map(|n| format!("Q{n}")).collect();
    ids.extend(sections);
    ids.extend((1..=code).map(|n| format!("code-{n}")));
    json!(ids)
}

fn seeds_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("CONCLAB_SEEDS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/seeds"));
    dir.is_dir().then_some(dir)
}

fn read_manifest() -> Value {
    let text = std::fs::read_to_string(manifest_path())
        .expect("notebooks/seed-manifest.json exists (CONCLAB_WRITE_MANIFEST=1 writes it)");
    serde_json::from_str(&text).expect("the manifest is valid JSON")
}

#[test]
fn manifest_matches_the_seed_documents() {
    let Some(seeds) = seeds_dir() else {
        eprintln!(
            "seed documents not found beside the repository: checked the committed manifest only"
        );
        return;
    };
    let mut derived = serde_json::Map::new();
    for (seed, notebook) in NOTEBOOKS {
        let text = std::fs::read_to_string(seeds.join(format!("{seed}.txt")))
            .unwrap_or_else(|error| panic!("{seed}: {error}"));
        derived.insert(
            seed.to_owned(),
            json!({"notebook": notebook, "parts": parts(&text)}),
        );
    }
    let derived = Value::Object(derived);
    if std::env::var_os("CONCLAB_WRITE_MANIFEST").is_some() {
        let text = serde_json::to_string_pretty(&derived).unwrap() + "\n";
        std::fs::write(manifest_path(), text).unwrap();
    }
    assert_eq!(
        read_manifest(),
        derived,
        "the seed documents changed: rerun with CONCLAB_WRITE_MANIFEST=1 and add the notebook cells"
    );
}

#[test]
fn every_seed_part_has_a_notebook_cell() {
    let manifest = read_manifest();
    let mut missing = Vec::new();
    for (seed, entry) in manifest.as_object().unwrap() {
        let name = entry["notebook"].as_str().unwrap();
        let path = repo().join("notebooks").join(name);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("{seed} is mirrored by {}: {error}", path.display()));
        let notebook: Value = serde_json::from_str(&text).unwrap();
        let mut mirrored = BTreeSet::new();
        for cell in notebook["cells"].as_array().unwrap() {
            for id in cell["metadata"]["conclab"]["mirrors"]
                .as_array()
                .into_iter()
                .flatten()
            {
                mirrored.insert(id.as_str().unwrap().to_owned());
            }
        }
        let wanted: BTreeSet<String> = entry["parts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| id.as_str().unwrap().to_owned())
            .collect();
        for id in wanted.difference(&mirrored) {
            missing.push(format!("{name}: no cell mirrors {seed} {id}"));
        }
        for id in mirrored.difference(&wanted) {
            missing.push(format!(
                "{name}: cell mirrors {id}, which {seed} does not have"
            ));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn question_styles_of_the_seeds_are_recognised() {
    assert_eq!(question("Q4 - Write a python program"), Some(4));
    assert_eq!(question("### Q2: What are the differences"), Some(2));
    assert_eq!(question("Answer = 6"), Some(6));
    assert_eq!(
        question("7. Create a program that uses a thread pool"),
        Some(7)
    );
    assert_eq!(question("1. Threading: Tools for Safe Data Sharing"), None);
    assert_eq!(question("1. **CPU-Bound Tasks**:"), None);
    assert_eq!(question("Queue: A FIFO queue"), None);
}
