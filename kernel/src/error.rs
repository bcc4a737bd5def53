//! The one error type of the commands, and the exit code each kind of failure maps to.

/// Why a command did not succeed. [`Error::exit_code`] is what the process exits with,
/// as the README documents: 1 when work ran and failed, 2 when the input was unusable.
///
/// ```
/// use conclab_kernel::Error;
///
/// let error = Error::BadInput("notebooks/x.ipynb: not a readable notebook".into());
/// assert_eq!(error.exit_code(), 2);
/// assert_eq!(Error::Failed("2 cells failed".into()).exit_code(), 1);
/// ```
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input cannot be used (a malformed notebook, a missing kernel, a bad option,
    /// a machine that cannot sandbox): nothing ran and nothing was written.
    #[error("{0}")]
    BadInput(String),
    /// The command ran, and something in it failed: cells, a submission, a write. What
    /// failed was reported as it happened; the message sums it up.
    #[error("{0}")]
    Failed(String),
}

impl Error {
    /// The process exit code for this failure (success is 0).
    ///
    /// ```
    /// assert_eq!(conclab_kernel::Error::Failed(String::new()).exit_code(), 1);
    /// ```
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Failed(_) => 1,
            Error::BadInput(_) => 2,
        }
    }

    pub(crate) fn bad_input(error: impl std::fmt::Display) -> Error {
        Error::BadInput(error.to_string())
    }
}
