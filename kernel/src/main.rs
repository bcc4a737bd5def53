//! `conclab-kernel`: see the library's documentation (`src/lib.rs`) for the pieces.

use clap::Parser;

fn main() {
    // This binary is also evcxr's cell process and the relay in front of it: those start
    // here and never return.
    conclab_kernel::become_helper_if_started_as_one();
    let cli = conclab_kernel::cli::Cli::parse();
    if let Err(error) = cli.run() {
        let message = error.to_string();
        if !message.is_empty() {
            eprintln!("error: {message}");
        }
        std::process::exit(error.exit_code());
    }
}
