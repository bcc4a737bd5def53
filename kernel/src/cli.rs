//! The command line: what each subcommand takes, and which part of the library runs it.

use crate::grading;
use crate::jupyter::kernelspec;
use crate::run::{self, execute::RunOptions};
use crate::{sandbox, setup, Error};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// The command line of `conclab-kernel`.
///
/// ```
/// use clap::Parser;
/// use conclab_kernel::cli::Cli;
///
/// let cli = Cli::try_parse_from(["conclab-kernel", "run", "notebooks/", "--timeout", "10"]).unwrap();
/// # let _ = cli;
/// let missing = Cli::try_parse_from(["conclab-kernel", "run"]);
/// assert!(missing.is_err(), "run needs a notebook");
/// ```
#[derive(Parser)]
#[command(
    name = "conclab-kernel",
    version,
    about = "The conclab Jupyter kernel, its set-up, a headless notebook runner, and assignment release and grading"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(clap::Args, Clone)]
struct Limits {
    /// Seconds one cell may run before it is interrupted (and the kernel killed if the
    /// interrupt does not stop it).
    #[arg(long, default_value_t = 60.0, value_name = "SECONDS")]
    timeout: f64,
    /// Seconds a kernel may take to start.
    #[arg(long, default_value_t = 180.0, value_name = "SECONDS")]
    startup_timeout: f64,
    /// The Jupyter kernel to run notebooks in.
    #[arg(long, default_value = crate::jupyter::kernelspec::DEFAULT_KERNEL, value_name = "NAME")]
    kernel: String,
}

#[derive(Subcommand)]
enum Commands {
    /// Run as a Jupyter kernel (Jupyter starts this; see `setup`).
    Kernel {
        /// The connection file Jupyter wrote for this kernel.
        #[arg(long = "connection-file", short = 'f', value_name = "FILE")]
        connection_file: PathBuf,
    },
    /// Standby kernels: kernels started before they are needed, each taken by the next
    /// launch of the same kernel (running kernels start them; see `CONCLAB_STANDBY`).
    Standby {
        #[command(subcommand)]
        action: Option<StandbyAction>,
    },
    /// Register the `conclab` kernel and build the support crate into its first build folder.
    Setup {
        /// Then install JupyterLab into .venv and start it on notebooks/.
        #[arg(long)]
        lab: bool,
        /// The repository (found from the current directory by default).
        #[arg(long, value_name = "DIR")]
        repo: Option<PathBuf>,
    },
    /// Set up, then run every notebook in notebooks/ and print the summary.
    Up {
        #[arg(long, value_name = "DIR")]
        repo: Option<PathBuf>,
        #[command(flatten)]
        limits: Limits,
    },
    /// Write the student version of assignment notebooks: solutions replaced by stubs,
    /// hidden tests removed, outputs cleared, cells locked and checksummed as nbgrader does.
    Release {
        /// Source notebooks, or folders of them.
        #[arg(required = true, value_name = "SOURCE")]
        sources: Vec<PathBuf>,
        /// Folder to write the student versions into (created if missing).
        #[arg(long, short, value_name = "DIR")]
        output: PathBuf,
    },
    /// Grade submissions against their source assignment, each in a fresh sandboxed
    /// kernel; writes OUTPUT/STUDENT/{result.json,feedback.ipynb} and a gradebook.
    Grade {
        /// The source assignment (with solutions and hidden tests).
        #[arg(long, value_name = "SOURCE")]
        source: PathBuf,
        /// Submitted notebooks, or folders of them.
        #[arg(required = true, value_name = "SUBMISSION")]
        submissions: Vec<PathBuf>,
        #[arg(long, short, default_value = "graded", value_name = "DIR")]
        output: PathBuf,
        /// Submissions graded at once (one kernel each).
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        /// Grade only part I of N of the sorted submissions (batch array jobs).
        #[arg(long, value_name = "I/N")]
        shard: Option<grading::Shard>,
        /// Seconds the whole notebook may run.
        #[arg(long, default_value_t = 600.0, value_name = "SECONDS")]
        notebook_timeout: f64,
        /// Processes and threads a submission may run at once.
        #[arg(long, default_value_t = 512)]
        max_tasks: u64,
        /// Memory a submission may use, compiler included, in MiB.
        #[arg(long, default_value_t = 4096, value_name = "MIB")]
        memory: u64,
        /// Output one cell may print, in KiB.
        #[arg(long, default_value_t = 1024, value_name = "KIB")]
        max_output: usize,
        /// Run kernels without cgroups of their own, where the machine already isolates
        /// each submission (a Gradescope container, a Kubernetes pod).
        #[arg(long)]
        no_sandbox: bool,
        /// Also write the result of the one submission graded here in Gradescope's
        /// `results.json` format.
        #[arg(long, value_name = "FILE")]
        gradescope: Option<PathBuf>,
        #[command(flatten)]
        limits: Limits,
    },
    /// Write a Gradescope autograder for an assignment: setup.sh, run_autograder and the
    /// repository's files, to zip and upload.
    Gradescope {
        /// The source assignment, inside this repository.
        #[arg(value_name = "SOURCE")]
        source: PathBuf,
        /// Folder to write the autograder into (created if missing).
        #[arg(long, short, value_name = "DIR")]
        output: PathBuf,
    },
    /// Combine the results of sharded grading runs into one gradebook.
    Merge {
        /// Output folders of `grade` runs.
        #[arg(required = true, value_name = "DIR")]
        dirs: Vec<PathBuf>,
        #[arg(long, short, default_value = "gradebook.csv", value_name = "FILE")]
        output: PathBuf,
    },
    /// Execute notebooks (files or folders of them) in the kernel, cell by cell.
    Run {
        /// Notebooks, or folders whose notebooks are run in name order.
        #[arg(required = true, value_name = "NOTEBOOK|DIR")]
        paths: Vec<PathBuf>,
        /// Write each executed notebook back over its file.
        #[arg(long, conflicts_with = "output")]
        inplace: bool,
        /// Write the executed notebook here (one notebook only).
        #[arg(long, short, value_name = "PATH")]
        output: Option<PathBuf>,
        #[command(flatten)]
        limits: Limits,
    },
}

#[derive(Subcommand)]
enum StandbyAction {
    /// Wait until a standby for this kernel's configuration is ready.
    Wait {
        #[arg(long, default_value_t = 300.0, value_name = "SECONDS")]
        timeout: f64,
        /// Look for the standby of this kernelspec's kernel (with its environment), not
        /// of one started with this command's environment.
        #[arg(long, value_name = "NAME")]
        kernel: Option<String>,
    },
    /// End every standby kernel of this user on this machine.
    Stop,
}

impl Cli {
    /// Runs the command.
    ///
    /// ```
    /// use clap::Parser;
    /// use conclab_kernel::{cli::Cli, Error};
    ///
    /// let cli = Cli::try_parse_from(["conclab-kernel", "merge", "/nonexistent/graded"]).unwrap();
    /// let error = cli.run().unwrap_err();
    /// assert!(matches!(error, Error::BadInput(_)), "{error}");
    /// ```
    pub fn run(self) -> Result<(), Error> {
        match self.command {
            Commands::Kernel { connection_file } => crate::kernel::serve(&connection_file)
                .map_err(|error| Error::Failed(format!("conclab kernel: {error}"))),
            Commands::Standby { action: None } => crate::kernel::standby()
                .map_err(|error| Error::Failed(format!("conclab standby: {error}"))),
            Commands::Standby {
                action: Some(StandbyAction::Wait { timeout, kernel }),
            } => {
                let hint = match &kernel {
                    Some(_) => String::new(),
                    None => format!("; this looked for one started with this command's own environment: add `--kernel {}` to look for the one that kernelspec's launches take", kernelspec::DEFAULT_KERNEL),
                };
                if let Some(name) = kernel {
                    let kernel = kernelspec::find(&name).map_err(Error::bad_input)?;
                    for (name, value) in kernel.spec.env.iter().flatten() {
                        // SAFETY: no other thread runs yet in this command.
                        unsafe { std::env::set_var(name, value) };
                    }
                }
                if let Some(pid) = crate::kernel::standby::wait_until_ready(seconds(timeout)) {
                    println!("a standby kernel is ready (pid {pid})");
                    Ok(())
                } else {
                    Err(Error::Failed(format!("no standby kernel became ready within {timeout} s; a kernel that is up starts one (unless {}=off){hint}", crate::kernel::standby::VARIABLE)))
                }
            }
            Commands::Standby {
                action: Some(StandbyAction::Stop),
            } => {
                let stopped = crate::kernel::standby::stop_all();
                println!("stopped {stopped} standby kernel(s)");
                Ok(())
            }
            Commands::Setup { lab, repo } => {
                let layout = set_up(repo)?;
                println!("setup complete");
                if lab {
                    setup::lab(&layout)
                        .map_err(|error| Error::Failed(format!("setup --lab failed: {error}")))?;
                }
                Ok(())
            }
            Commands::Up { repo, limits } => {
                let layout = set_up(repo)?;
                run::run(
                    &[layout.notebooks()],
                    &run_options(&limits)?,
                    &run::Write::Nowhere,
                )
            }
            Commands::Release { sources, output } => grading::release_all(&sources, &output),
            Commands::Grade {
                source,
                submissions,
                output,
                jobs,
                shard,
                notebook_timeout,
                max_tasks,
                memory,
                max_output,
                no_sandbox,
                gradescope,
                limits,
            } => {
                let mut run = run_options(&limits)?;
                // Each submission in a kernel started for it alone: a standby kernel is
                // shared between launches and lives outside the sandbox.
                run.kernel = run.kernel.with_env(crate::kernel::standby::VARIABLE, "off");
                run.notebook_timeout = Some(seconds(notebook_timeout));
                run.max_output_bytes = Some(max_output * 1024);
                run.replay_after_state_loss = true;
                let options = grading::GradeOptions {
                    run,
                    limits: sandbox::Limits {
                        max_tasks,
                        memory_bytes: memory << 20,
                    },
                    output,
                    sandbox: !no_sandbox,
                    gradescope,
                };
                grading::grade_all(&source, &submissions, &options, jobs, shard)
            }
            Commands::Merge { dirs, output } => grading::merge(&dirs, &output),
            Commands::Gradescope { source, output } => grading::write_autograder(&source, &output),
            Commands::Run {
                paths,
                inplace,
                output,
                limits,
            } => {
                let write = match (inplace, output) {
                    (true, _) => run::Write::InPlace,
                    (false, Some(path)) => run::Write::To(path),
                    (false, None) => run::Write::Nowhere,
                };
                let mut options = run_options(&limits)?;
                // What a student's copy runs: a source saved in place must not show the
                // hidden tests' output.
                options.skip_hidden_tests = true;
                run::run(&paths, &options, &write)
            }
        }
    }
}

fn seconds(value: f64) -> Duration {
    Duration::from_secs_f64(value.max(0.1))
}

fn run_options(limits: &Limits) -> Result<RunOptions, Error> {
    Ok(RunOptions::new(
        kernelspec::find(&limits.kernel).map_err(Error::bad_input)?,
        seconds(limits.timeout),
        seconds(limits.startup_timeout),
    ))
}

fn set_up(repo: Option<PathBuf>) -> Result<setup::Layout, Error> {
    let start = match repo {
        Some(repo) => repo,
        None => std::env::current_dir().unwrap_or_else(|_| ".".into()),
    };
    let layout = setup::Layout::find(&start)
        .map_err(|error| Error::Failed(format!("setup failed: {error}")))?;
    setup::setup(&setup::SetupOptions {
        layout: layout.clone(),
        startup_timeout: Duration::from_secs(300),
    })
    .map_err(|error| Error::Failed(format!("setup failed: {error}")))?;
    Ok(layout)
}
