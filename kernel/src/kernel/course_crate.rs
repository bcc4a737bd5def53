//! The notebook's `:dep conclab = { path = "..." }` line, pointed at the course crate
//! the kernel was installed with when that path holds no crate.
//!
//! The course's notebooks load the crate by a path relative to where they sit in the
//! repository (`../..` for an assignment). A copy of the notebook elsewhere keeps the
//! line but not the tree around it: nbgrader runs a submission in
//! `autograded/STUDENT/ASSIGNMENT/`, and JupyterHub hands a student's copy out into their
//! home. There the path names no crate and evcxr fails the course's first cell. The
//! "Rust (conclab)" kernel knows where the course crate is (`setup` records it in the
//! kernelspec as `CONCLAB_CRATE`), so it loads that one instead. A path that does hold a
//! crate is left alone, so a notebook inside the repository loads what it names.

use std::path::{Path, PathBuf};

/// The variable in which the kernelspec names the course crate's folder.
pub const CRATE_VARIABLE: &str = "CONCLAB_CRATE";

/// `code` with each `:dep conclab` line whose path holds no `Cargo.toml` (relative
/// paths are taken from `cwd`) pointed at `course_crate`, and the paths it replaced. Lines
/// are left alone when `course_crate` itself holds no crate.
pub fn point_at_course_crate(
    code: &str,
    cwd: &Path,
    course_crate: Option<&Path>,
) -> (String, Vec<String>) {
    // Every cell passes through here: the file system is asked only about a `:dep conclab`
    // line, and only once the line's own path turned out to hold no crate.
    let Some(course_crate) = course_crate else {
        return (code.to_owned(), Vec::new());
    };
    let mut replaced = Vec::new();
    let lines: Vec<String> = code
        .split('\n')
        .map(|line| match dep_path(line) {
            Some((start, end))
                if !holds_crate(cwd, &line[start..end]) && holds_crate(course_crate, ".") =>
            {
                replaced.push(line[start..end].to_owned());
                format!(
                    "{}{}{}",
                    &line[..start],
                    course_crate.display(),
                    &line[end..]
                )
            }
            _ => line.to_owned(),
        })
        .collect();
    (lines.join("\n"), replaced)
}

/// The course crate named by the kernel's environment.
pub fn from_environment() -> Option<PathBuf> {
    std::env::var_os(CRATE_VARIABLE).map(PathBuf::from)
}

/// The byte range of the path in a `:dep conclab = { path = "..." }` line.
fn dep_path(line: &str) -> Option<(usize, usize)> {
    let rest = line.trim_start().strip_prefix(":dep")?;
    if !rest.trim_start().starts_with("conclab") {
        return None;
    }
    let key = line.find("path")?;
    let open = key + line[key..].find('"')? + 1;
    let close = open + line[open..].find('"')?;
    Some((open, close))
}

fn holds_crate(cwd: &Path, path: &str) -> bool {
    cwd.join(path).join("Cargo.toml").is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn course() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("Cargo.toml"),
            "[package]\nname = \"conclab\"\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn a_path_without_a_crate_is_pointed_at_the_course_crate() {
        let course = course();
        let elsewhere = tempfile::tempdir().unwrap();
        let code = ":dep conclab = { path = \"../..\" }\nuse conclab::prelude::*;";
        let (code, replaced) = point_at_course_crate(code, elsewhere.path(), Some(course.path()));
        assert_eq!(replaced, ["../.."]);
        assert_eq!(
            code,
            format!(
                ":dep conclab = {{ path = \"{}\" }}\nuse conclab::prelude::*;",
                course.path().display()
            )
        );
    }

    #[test]
    fn a_path_that_holds_a_crate_and_other_deps_are_left_alone() {
        let course = course();
        let notebooks = course.path().join("notebooks");
        std::fs::create_dir(&notebooks).unwrap();
        for code in [
            ":dep conclab = { path = \"..\" }",
            ":dep rand = \"0.8\"",
            "let path = \"nowhere\";",
        ] {
            let (same, replaced) = point_at_course_crate(code, &notebooks, Some(course.path()));
            assert_eq!(same, code);
            assert!(replaced.is_empty());
        }
    }

    #[test]
    fn without_a_course_crate_nothing_changes() {
        let elsewhere = tempfile::tempdir().unwrap();
        let code = ":dep conclab = { path = \"../..\" }";
        let missing = elsewhere.path().join("gone");
        for course in [None, Some(missing.as_path())] {
            assert_eq!(
                point_at_course_crate(code, elsewhere.path(), course).0,
                code
            );
        }
    }
}
