//! Progress reporting: indicatif bars on a terminal, plain one-line notes everywhere (so logs of
//! batch jobs still say what happened and how long it took). Off a terminal (Slurm logs, CI), a
//! bar prints one progress line at a bounded rate instead — every 15 s by default,
//! `I2I_PROGRESS_SECS` to change it — with the phase, step/total, rate and ETA.

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
pub struct Bar(ProgressBar, Option<LogLines>);

/// The progress lines of a bar off a terminal.
struct LogLines {
    title: String,
    every: std::time::Duration,
    start: std::time::Instant,
    /// Steps done before the phase started (not counted in the rate).
    base: std::sync::atomic::AtomicU64,
    last: std::sync::Mutex<(std::time::Instant, String)>,
}

impl LogLines {
    fn tick(&self, pos: u64, len: u64) {
        let mut last = self.last.lock().expect("progress lock");
        let now = std::time::Instant::now();
        if now.duration_since(last.0) < self.every && pos < len {
            return;
        }
        if pos >= len && now.duration_since(self.start) < self.every {
            return; // short phases: the phase's own note says it is done
        }
        last.0 = now;
        let secs = now.duration_since(self.start).as_secs_f64().max(1e-9);
        let base = self.base.load(std::sync::atomic::Ordering::Relaxed);
        let rate = pos.saturating_sub(base) as f64 / secs;
        let eta = if rate > 0.0 {
            format!("{:.0} s", (len.saturating_sub(pos)) as f64 / rate)
        } else {
            "?".into()
        };
        let msg = if last.1.is_empty() {
            String::new()
        } else {
            format!(" {}", last.1)
        };
        eprintln!(
            "{}: {pos}/{len} ({rate:.2}/s, {secs:.0} s elapsed, ETA {eta}){msg}",
            self.title
        );
    }
}

impl Bar {
    pub fn inc(&self, n: u64) {
        self.0.inc(n);
        if let Some(l) = &self.1 {
            l.tick(self.0.position(), self.0.length().unwrap_or(0));
        }
    }
    /// Steps already done before this run (a resumed phase): counted in the position, not in
    /// the rate.
    pub fn skip(&self, n: u64) {
        self.0.inc(n);
        self.0.reset_eta();
        if let Some(l) = &self.1 {
            l.base
                .store(self.0.position(), std::sync::atomic::Ordering::Relaxed);
        }
    }
    pub fn set_message(&self, m: String) {
        if let Some(l) = &self.1 {
            l.last.lock().expect("progress lock").1 = m.clone();
        }
        self.0.set_message(m)
    }
    pub fn finish_and_clear(&self) {
        self.0.finish_and_clear()
    }
}

/// Seconds between two progress lines off a terminal (`I2I_PROGRESS_SECS`, default 15).
fn log_every() -> std::time::Duration {
    let s = std::env::var("I2I_PROGRESS_SECS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .unwrap_or(15.0);
    std::time::Duration::from_secs_f64(s)
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
        let lines = (!self.tty && !self.quiet).then(|| {
            let now = std::time::Instant::now();
            LogLines {
                title: title.to_string(),
                every: log_every(),
                start: now,
                base: std::sync::atomic::AtomicU64::new(0),
                last: std::sync::Mutex::new((now, String::new())),
            }
        });
        Bar(b, lines)
    }

    /// A warning: one line, `warning: `-prefixed, printed even when quiet.
    pub fn warn(&self, msg: &str) {
        let line = format!("warning: {msg}");
        if self.tty {
            let _ = self.mp.println(line);
        } else {
            eprintln!("{line}");
        }
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
