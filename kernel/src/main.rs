//! `conclab-kernel`: the conclab Jupyter kernel (on evcxr's library), its set-up, a
//! headless runner that speaks the Jupyter protocol, and the assignment tools (release,
//! grade, merge).

mod assignment;
mod client;
mod execute;
mod grade;
mod kernelspec;
mod notebook;
mod run;
mod sandbox;
mod server;
mod setup;
mod verdict;
mod wire;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "conclab-kernel",
    version,
    about = "Set up the conclab kernel and run notebooks headless"
)]
struct Cli {
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
    #[arg(long, default_value = kernelspec::DEFAULT_KERNEL, value_name = "NAME")]
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
    /// Install evcxr_jupyter, register the `conclab` kernel and warm its build cache.
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
    /// hidden tests removed, outputs cleared, locked cells checksummed.
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
        shard: Option<grade::Shard>,
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
        #[command(flatten)]
        limits: Limits,
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

fn seconds(value: f64) -> Duration {
    Duration::from_secs_f64(value.max(0.1))
}

fn run_options(limits: &Limits) -> Result<execute::RunOptions, kernelspec::SpecError> {
    Ok(execute::RunOptions::new(
        kernelspec::find(&limits.kernel)?,
        seconds(limits.timeout),
        seconds(limits.startup_timeout),
    ))
}

fn layout(repo: Option<PathBuf>) -> Result<setup::Layout, setup::SetupError> {
    match repo {
        Some(repo) => setup::Layout::find(&repo),
        None => setup::Layout::find(&std::env::current_dir().unwrap_or_else(|_| ".".into())),
    }
}

fn setup_or_exit(repo: Option<PathBuf>, startup: Duration) -> setup::Layout {
    let result = layout(repo).and_then(|layout| {
        setup::setup(&setup::SetupOptions {
            layout: layout.clone(),
            startup_timeout: startup,
        })
        .map(|_| layout)
    });
    match result {
        Ok(layout) => layout,
        Err(error) => {
            eprintln!("setup failed: {error}");
            std::process::exit(1);
        }
    }
}

fn release(sources: &[PathBuf], output: &std::path::Path) -> i32 {
    let notebooks = match notebook::collect(sources) {
        Ok(notebooks) => notebooks,
        Err(error) => {
            eprintln!("error: {error}");
            return run::EXIT_BAD_INPUT;
        }
    };
    // Check every source before writing anything.
    let mut released = Vec::new();
    for path in &notebooks {
        let student = notebook::load(path)
            .map_err(|error| error.to_string())
            .and_then(|source| {
                assignment::release(&source).map_err(|error| format!("{}: {error}", path.display()))
            });
        match student {
            Ok(student) => released.push((path, student)),
            Err(error) => {
                eprintln!("error: {error}");
                return run::EXIT_BAD_INPUT;
            }
        }
    }
    if let Err(error) = std::fs::create_dir_all(output) {
        eprintln!("error: cannot create {}: {error}", output.display());
        return run::EXIT_BAD_INPUT;
    }
    for (path, student) in released {
        let target = output.join(path.file_name().unwrap_or_default());
        if target.canonicalize().ok() == path.canonicalize().ok() {
            eprintln!(
                "error: {} would overwrite its source; choose another --output",
                target.display()
            );
            return run::EXIT_BAD_INPUT;
        }
        if let Err(error) = notebook::save(&target, &student) {
            eprintln!("error: {error}");
            return run::EXIT_CELL_FAILED;
        }
        println!("released {} -> {}", path.display(), target.display());
    }
    run::EXIT_OK
}

fn main() {
    // This binary is also evcxr's cell process (and the relay in front of it) and its
    // rustc wrapper: those start here and never return.
    if server::relay::is_relay() {
        server::relay::run();
    }
    evcxr::runtime_hook();
    let cli = Cli::parse();
    let code = match cli.command {
        Commands::Kernel { connection_file } => match server::serve(&connection_file) {
            Ok(()) => 0,
            Err(error) => {
                eprintln!("conclab kernel: {error}");
                1
            }
        },
        Commands::Setup { lab, repo } => {
            let layout = setup_or_exit(repo, Duration::from_secs(300));
            println!("setup complete");
            if lab {
                if let Err(error) = setup::lab(&layout) {
                    eprintln!("setup --lab failed: {error}");
                    std::process::exit(1);
                }
            }
            0
        }
        Commands::Up { repo, limits } => {
            let layout = setup_or_exit(repo, Duration::from_secs(300));
            match run_options(&limits) {
                Ok(options) => run::run(&[layout.notebooks()], &options, &run::Write::Nowhere),
                Err(error) => {
                    eprintln!("error: {error}");
                    run::EXIT_BAD_INPUT
                }
            }
        }
        Commands::Release { sources, output } => release(&sources, &output),
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
            limits,
        } => match run_options(&limits) {
            Ok(mut run) => {
                run.notebook_timeout = Some(seconds(notebook_timeout));
                run.max_output_bytes = Some(max_output * 1024);
                run.replay_after_state_loss = true;
                let options = grade::GradeOptions {
                    run,
                    limits: sandbox::Limits {
                        max_tasks,
                        memory_bytes: memory << 20,
                    },
                    output,
                };
                grade::grade_all(&source, &submissions, &options, jobs, shard)
            }
            Err(error) => {
                eprintln!("error: {error}");
                run::EXIT_BAD_INPUT
            }
        },
        Commands::Merge { dirs, output } => match grade::collect_results(&dirs) {
            Ok(results) => {
                print!("{}", grade::table(&results));
                match std::fs::write(&output, grade::gradebook(&results)) {
                    Ok(()) => {
                        println!(
                            "gradebook: {} ({} students)",
                            output.display(),
                            results.len()
                        );
                        run::EXIT_OK
                    }
                    Err(error) => {
                        eprintln!("error: cannot write {}: {error}", output.display());
                        run::EXIT_CELL_FAILED
                    }
                }
            }
            Err(error) => {
                eprintln!("error: {error}");
                run::EXIT_BAD_INPUT
            }
        },
        Commands::Run {
            paths,
            inplace,
            output,
            limits,
        } => match run_options(&limits) {
            Ok(options) => {
                let write = match (inplace, output) {
                    (true, _) => run::Write::InPlace,
                    (false, Some(path)) => run::Write::To(path),
                    (false, None) => run::Write::Nowhere,
                };
                run::run(&paths, &options, &write)
            }
            Err(error) => {
                eprintln!("error: {error}");
                run::EXIT_BAD_INPUT
            }
        },
    };
    std::process::exit(code);
}
