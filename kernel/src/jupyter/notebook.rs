//! Reading and writing `.ipynb` files through the `nbformat` crate.
//!
//! `nbformat` writes as Jupyter does (sorted keys, one-space indent, multi-line strings
//! split into lines, a final newline), so a notebook Jupyter wrote comes back byte for
//! byte, and keeps metadata it does not know (nbgrader's, for one). Every error names the
//! file and what to do; nothing is ever written over a notebook that failed to parse.

use nbformat::v4::Notebook;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum NotebookError {
    #[error("{0}: no such file or folder; check the path")]
    NotFound(PathBuf),
    #[error("{0}: not a notebook (expected a .ipynb file, or a folder holding some)")]
    NotANotebook(PathBuf),
    #[error("{0}: a folder with no .ipynb notebook in it; give a notebook or another folder")]
    EmptyFolder(PathBuf),
    #[error("{path}: invalid JSON at line {line}, column {column} ({reason}); repair the file or restore it from version control")]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        reason: String,
    },
    #[error("{path}: nbformat {major} is too old; open and save it in JupyterLab (or run `jupyter nbconvert --to notebook --inplace` on it) to upgrade it to nbformat 4")]
    TooOld { path: PathBuf, major: i64 },
    #[error("{path}: not a valid Jupyter notebook ({reason}); repair the file or restore it from version control")]
    Invalid { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Expands files and folders into the notebooks they name: a folder stands for every
/// `.ipynb` below it (sorted, checkpoints skipped).
pub fn collect(paths: &[PathBuf]) -> Result<Vec<PathBuf>, NotebookError> {
    let mut notebooks = Vec::new();
    for path in paths {
        if path.is_dir() {
            let before = notebooks.len();
            walk(path, &mut notebooks)?;
            if notebooks.len() == before {
                return Err(NotebookError::EmptyFolder(path.clone()));
            }
        } else if !path.exists() {
            return Err(NotebookError::NotFound(path.clone()));
        } else if path.extension().is_some_and(|ext| ext == "ipynb") {
            notebooks.push(path.clone());
        } else {
            return Err(NotebookError::NotANotebook(path.clone()));
        }
    }
    Ok(notebooks)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), NotebookError> {
    let io = |source| NotebookError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort();
    for path in entries {
        let hidden = path
            .file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            walk(&path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "ipynb") {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads a notebook. Notebooks of nbformat 4.0 to 4.4 are upgraded in memory to 4.5
/// (cell ids added), as Jupyter does when it saves them.
pub fn load(path: &Path) -> Result<Notebook, NotebookError> {
    let text = std::fs::read_to_string(path).map_err(|source| NotebookError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text)
}

/// Parses notebook `text` that came from `path` (the path is only used in errors).
pub fn parse(path: &Path, text: &str) -> Result<Notebook, NotebookError> {
    // Check the JSON and the version first, for errors that say exactly what is wrong.
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|error| NotebookError::Json {
            path: path.to_owned(),
            line: error.line(),
            column: error.column(),
            reason: error
                .to_string()
                .split(" at line")
                .next()
                .unwrap_or("")
                .to_owned(),
        })?;
    let invalid = |reason: String| NotebookError::Invalid {
        path: path.to_owned(),
        reason,
    };
    let Some(major) = value.get("nbformat").and_then(serde_json::Value::as_i64) else {
        return Err(invalid("it has no `nbformat` version number".into()));
    };
    if major < 4 {
        return Err(NotebookError::TooOld {
            path: path.to_owned(),
            major,
        });
    }
    match nbformat::parse_notebook(text).map_err(|error| invalid(error.to_string()))? {
        nbformat::Notebook::V4(notebook) => Ok(notebook),
        nbformat::Notebook::V4QuirksMode(quirks) => Ok(quirks.repair()),
        nbformat::Notebook::Legacy(legacy) => {
            nbformat::upgrade_legacy_notebook(legacy).map_err(|error| invalid(error.to_string()))
        }
        nbformat::Notebook::V3(_) => Err(NotebookError::TooOld {
            path: path.to_owned(),
            major,
        }),
        _ => Err(invalid(format!(
            "nbformat {major} is not supported; conclab reads nbformat 4"
        ))),
    }
}

/// The notebook as Jupyter would write it.
pub fn to_string(path: &Path, notebook: &Notebook) -> Result<String, NotebookError> {
    nbformat::serialize_notebook(&nbformat::Notebook::V4(notebook.clone())).map_err(|error| {
        NotebookError::Invalid {
            path: path.to_owned(),
            reason: error.to_string(),
        }
    })
}

/// Writes `notebook` to `path` atomically: a crash mid-write leaves the old file whole.
pub fn save(path: &Path, notebook: &Notebook) -> Result<(), NotebookError> {
    let text = to_string(path, notebook)?;
    let io = |source| NotebookError::Io {
        path: path.to_owned(),
        source,
    };
    let file_name = path.file_name().unwrap_or_default().to_string_lossy();
    let temporary = path.with_file_name(format!(".{file_name}.conclab-tmp"));
    std::fs::write(&temporary, text).map_err(io)?;
    std::fs::rename(&temporary, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_text(text: &str) -> String {
        parse(Path::new("x.ipynb"), text).unwrap_err().to_string()
    }

    /// Every notebook Jupyter wrote (the fixtures are written by Python's nbformat) comes
    /// back byte for byte: outputs of every kind, unknown metadata, unicode, ANSI codes.
    #[test]
    fn jupyter_written_notebooks_round_trip_byte_for_byte() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut checked = 0;
        for path in collect(&[dir]).unwrap() {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name == "invalid_json.ipynb" || name == "nbformat3.ipynb" {
                continue;
            }
            let original = std::fs::read_to_string(&path).unwrap();
            let notebook = load(&path).unwrap();
            assert_eq!(to_string(&path, &notebook).unwrap(), original, "{name}");
            checked += 1;
        }
        assert!(checked >= 7, "only {checked} fixtures were checked");
    }

    #[test]
    fn save_replaces_the_file_whole() {
        let dir = std::env::temp_dir().join(format!("conclab-save-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rich.ipynb");
        let target = dir.join("copy.ipynb");
        std::fs::write(&target, "old content").unwrap();
        save(&target, &load(&source).unwrap()).unwrap();
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            std::fs::read_to_string(&source).unwrap()
        );
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "temporary file left"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn invalid_json_names_line_and_fix() {
        let text = error_text("{\n \"cells\": [,]\n}");
        assert!(
            text.starts_with("x.ipynb: invalid JSON at line 2"),
            "{text}"
        );
        assert!(text.contains("repair the file"), "{text}");
    }

    #[test]
    fn old_nbformat_says_how_to_upgrade() {
        let text =
            error_text(r#"{"nbformat": 3, "nbformat_minor": 0, "worksheets": [], "metadata": {}}"#);
        assert!(text.contains("nbformat 3 is too old"), "{text}");
        assert!(text.contains("upgrade it to nbformat 4"), "{text}");
    }

    #[test]
    fn json_that_is_no_notebook_is_invalid() {
        let text = error_text(r#"{"hello": "world"}"#);
        assert!(text.contains("no `nbformat` version"), "{text}");
        let text = error_text(r#"{"nbformat": 4, "nbformat_minor": 5}"#);
        assert!(text.contains("not a valid Jupyter notebook"), "{text}");
    }
}
