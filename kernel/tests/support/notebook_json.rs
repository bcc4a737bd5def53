//! A notebook as JSON, the way the tests read what the tools wrote: cells, sources and
//! nbgrader markings. Shared (through `#[path]`) by the test files; each uses a part.
#![allow(dead_code)]

use serde_json::Value;
use std::path::Path;

pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn write_json(path: &Path, value: &Value) {
    std::fs::create_dir_all(path.parent().expect("a file has a folder")).unwrap();
    std::fs::write(path, serde_json::to_string_pretty(value).unwrap()).unwrap();
}

pub fn cells(notebook: &Value) -> &Vec<Value> {
    notebook["cells"].as_array().expect("a notebook has cells")
}

/// A cell's source: nbformat allows a string or a list of lines.
pub fn text(cell: &Value) -> String {
    match &cell["source"] {
        Value::String(text) => text.clone(),
        Value::Array(lines) => lines.iter().filter_map(Value::as_str).collect(),
        _ => String::new(),
    }
}

pub fn nbgrader(cell: &Value) -> &Value {
    &cell["metadata"]["nbgrader"]
}

pub fn grade_id(cell: &Value) -> &str {
    nbgrader(cell)["grade_id"].as_str().unwrap_or("")
}

pub fn flag(cell: &Value, key: &str) -> bool {
    nbgrader(cell)[key].as_bool().unwrap_or(false)
}
