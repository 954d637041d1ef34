//! `i2i-unlearn`: see `i2i-unlearn --help`.

use clap::Parser;
use i2i_unlearn::cli::{main_with, Cli};
use i2i_unlearn::error;
use std::process::ExitCode;

// See i2i_unlearn::tune_allocator.
#[global_allocator]
static GLOBAL: i2i_unlearn::Allocator = i2i_unlearn::Allocator;

fn main() -> ExitCode {
    // A closed pipe (`i2i-unlearn check EXP | head`) ends the process quietly, as it ends `ls`,
    // instead of a panic in println!: restore SIGPIPE's default action, which Rust sets to ignore.
    #[cfg(unix)]
    // SAFETY: changes a signal disposition at start-up, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    i2i_unlearn::tune_allocator();
    i2i_unlearn::default_candle_threads();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                error::EXIT_USAGE
            } else {
                error::EXIT_OK
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match main_with(cli) {
        Ok(()) => ExitCode::from(error::EXIT_OK),
        Err(e) => {
            eprintln!("error: {}", error::one_line(&e));
            ExitCode::from(error::exit_code(&e))
        }
    }
}
