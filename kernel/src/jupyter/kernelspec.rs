//! Finding and writing Jupyter kernelspecs (`kernels/NAME/kernel.json`).
//!
//! The search order follows jupyter_client: `$JUPYTER_PATH` entries, the user data
//! directory (`$JUPYTER_DATA_DIR`, else `$XDG_DATA_HOME/jupyter`, else
//! `~/.local/share/jupyter`), then the system directories.

use jupyter_protocol::JupyterKernelspec;
use std::path::{Path, PathBuf};

/// The kernel conclab registers and runs by default.
pub const DEFAULT_KERNEL: &str = "conclab";

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("no Jupyter kernel named '{name}' is installed (looked in {searched}); run `conclab-kernel setup` to install it")]
    NotInstalled { name: String, searched: String },
    #[error("{path}: unreadable kernelspec ({reason}); run `conclab-kernel setup` to rewrite it")]
    Broken { path: PathBuf, reason: String },
    #[error("cannot find the home directory: set HOME or JUPYTER_DATA_DIR")]
    NoHome,
}

/// A kernelspec found on disk.
#[derive(Debug, Clone)]
pub struct InstalledKernel {
    pub name: String,
    pub spec: JupyterKernelspec,
}

impl InstalledKernel {
    /// The same kernel, started with one more variable set (over the kernelspec's own).
    pub fn with_env(mut self, name: &str, value: &str) -> InstalledKernel {
        self.spec
            .env
            .get_or_insert_with(Default::default)
            .insert(name.to_owned(), value.to_owned());
        self
    }
}

/// Where kernelspecs of this user are written.
pub fn user_data_dir() -> Result<PathBuf, SpecError> {
    if let Some(dir) = non_empty_env("JUPYTER_DATA_DIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = non_empty_env("XDG_DATA_HOME") {
        return Ok(PathBuf::from(dir).join("jupyter"));
    }
    let home = non_empty_env("HOME").ok_or(SpecError::NoHome)?;
    Ok(PathBuf::from(home).join(".local/share/jupyter"))
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

fn search_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = non_empty_env("JUPYTER_PATH")
        .map(|paths| std::env::split_paths(&paths).collect())
        .unwrap_or_default();
    if let Ok(dir) = user_data_dir() {
        dirs.push(dir);
    }
    dirs.push(PathBuf::from("/usr/local/share/jupyter"));
    dirs.push(PathBuf::from("/usr/share/jupyter"));
    dirs
}

/// Finds the kernel `name`, or says how to install it.
pub fn find(name: &str) -> Result<InstalledKernel, SpecError> {
    let dirs = search_dirs();
    for base in &dirs {
        let dir = base.join("kernels").join(name);
        let file = dir.join("kernel.json");
        if file.is_file() {
            let spec = read(&file)?;
            return Ok(InstalledKernel {
                name: name.to_owned(),
                spec,
            });
        }
    }
    Err(SpecError::NotInstalled {
        name: name.to_owned(),
        searched: dirs
            .iter()
            .map(|dir| dir.join("kernels").display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

fn read(file: &Path) -> Result<JupyterKernelspec, SpecError> {
    let broken = |reason: String| SpecError::Broken {
        path: file.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(file).map_err(|error| broken(error.to_string()))?;
    let spec: JupyterKernelspec =
        serde_json::from_str(&text).map_err(|error| broken(error.to_string()))?;
    if spec.argv.is_empty() {
        return Err(broken("its argv is empty".into()));
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_kernel_names_setup_as_the_fix() {
        let error = find("surely-not-installed-kernel").unwrap_err();
        let text = error.to_string();
        assert!(text.contains("surely-not-installed-kernel"), "{text}");
        assert!(text.contains("conclab-kernel setup"), "{text}");
    }

    #[test]
    fn with_env_adds_a_variable_over_the_specs_own() {
        let spec = serde_json::from_value(serde_json::json!({
            "argv": ["k", "{connection_file}"], "display_name": "K", "language": "rust",
            "env": {"KEEP": "1", "CONCLAB_STANDBY": "on"}
        }))
        .unwrap();
        let kernel = InstalledKernel {
            name: "k".into(),
            spec,
        }
        .with_env("CONCLAB_STANDBY", "off");
        let env = kernel.spec.env.unwrap();
        assert_eq!(env["CONCLAB_STANDBY"], "off");
        assert_eq!(env["KEEP"], "1");
    }
}
