//! Progress reporting: indicatif bars on a terminal, plain one-line notes everywhere (so logs of
//! batch jobs still say what happened and how long it took).

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the command line's progress shows bars (a terminal, not `--quiet`): read by code that
/// draws its own, such as the hub client's download bars. Off until a [`Progress::new`] says so.
static BARS: AtomicBool = AtomicBool::new(false);

/// See [`BARS`].
pub fn bars_enabled() -> bool {
    BARS.load(Ordering::Relaxed)
}

#[derive(Clone)]
pub struct Progress {
    mp: MultiProgress,
    tty: bool,
    quiet: bool,
}

/// A bar for one phase.
pub struct Bar(ProgressBar);

impl Bar {
    pub fn inc(&self, n: u64) {
        self.0.inc(n)
    }
    pub fn set_message(&self, m: String) {
        self.0.set_message(m)
    }
    pub fn finish_and_clear(&self) {
        self.0.finish_and_clear()
    }
    pub fn bar(&self) -> &ProgressBar {
        &self.0
    }
}

impl Progress {
    /// Bars only when stderr is a terminal and not `quiet`; notes unless `quiet`.
    pub fn new(quiet: bool) -> Self {
        let tty = std::io::stderr().is_terminal();
        BARS.store(tty && !quiet, Ordering::Relaxed);
        let target = if tty && !quiet {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Self {
            mp: MultiProgress::with_draw_target(target),
            tty,
            quiet,
        }
    }

    /// No output at all (tests, benches).
    pub fn silent() -> Self {
        Self {
            mp: MultiProgress::with_draw_target(ProgressDrawTarget::hidden()),
            tty: false,
            quiet: true,
        }
    }

    pub fn bar(&self, len: u64, title: &str) -> Bar {
        let b = self.mp.add(ProgressBar::new(len));
        b.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} {elapsed_precise} (eta {eta}) {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        b.set_prefix(title.to_string());
        Bar(b)
    }

    /// One line of log, printed above any bars.
    pub fn note(&self, msg: &str) {
        if self.quiet {
            return;
        }
        if self.tty {
            let _ = self.mp.println(msg);
        } else {
            eprintln!("{msg}");
        }
    }
}
