//! Claims: how several processes pointed at one output folder (or one cache) split the work.
//!
//! A claim is a file `<dir>/<name>.claim` created exclusively (`O_EXCL`), holding the host and
//! process id; while the work runs, a heartbeat thread touches it every few seconds. A claim is
//! stale — and is taken over — when its process is gone (same host, no such pid) or when its
//! heartbeat stopped for [`STALE_AFTER`] (another host, or a frozen process), so a killed worker
//! never blocks the grid for long. Dropping a [`Claim`] removes its file.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How often a held claim is touched.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// A claim untouched for this long is stale.
pub const STALE_AFTER: Duration = Duration::from_secs(60);

/// A held claim; released (file removed) on drop.
pub struct Claim {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    beat: Option<std::thread::JoinHandle<()>>,
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into())
}

fn pid_alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks whether the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Whether the claim file at `path` belongs to a live worker.
fn is_live(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    // The claim's age; a modification time in the future counts as its distance from now, so
    // that a claim stamped far ahead (a bad clock, a copied file) goes stale instead of holding
    // the work forever.
    let age = meta.modified().ok().map(|m| {
        SystemTime::now()
            .duration_since(m)
            .unwrap_or_else(|e| e.duration())
    });
    if age.is_some_and(|a| a >= STALE_AFTER) {
        return false;
    }
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut parts = text.split_whitespace();
    match (
        parts.next(),
        parts.next().and_then(|p| p.parse::<i32>().ok()),
    ) {
        (Some(h), Some(pid)) if h == host() => pid_alive(pid),
        // Written right after it is created: an empty claim older than a heartbeat lost its
        // writer.
        (None, _) => age.is_none_or(|a| a < HEARTBEAT),
        _ => true,
    }
}

impl Claim {
    /// Claim `name` in `dir`; `None` while a live worker holds it (a stale claim is taken over).
    pub fn try_take(dir: &Path, name: &str) -> Result<Option<Claim>> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("{name}.claim"));
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    use std::io::Write;
                    writeln!(f, "{} {}", host(), std::process::id())?;
                    return Ok(Some(Claim::hold(path)));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if is_live(&path) {
                        return Ok(None);
                    }
                    // Stale: remove it and try once more (another worker may win the race).
                    std::fs::remove_file(&path).ok();
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("creating {}", path.display()));
                }
            }
        }
        Ok(None)
    }

    /// Wait until `name` can be claimed (polling), then hold it.
    pub fn wait_take(dir: &Path, name: &str, mut on_wait: impl FnMut()) -> Result<Claim> {
        let mut told = false;
        loop {
            if let Some(c) = Claim::try_take(dir, name)? {
                return Ok(c);
            }
            if !told {
                on_wait();
                told = true;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Whether a live worker holds `name` in `dir`.
    pub fn held_by_other(dir: &Path, name: &str) -> bool {
        is_live(&dir.join(format!("{name}.claim")))
    }

    fn hold(path: PathBuf) -> Claim {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, p) = (stop.clone(), path.clone());
        let beat = std::thread::spawn(move || {
            let mut waited = Duration::ZERO;
            while !s.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                waited += Duration::from_millis(200);
                if waited >= HEARTBEAT {
                    waited = Duration::ZERO;
                    if let Ok(f) = std::fs::OpenOptions::new().append(true).open(&p) {
                        let _ = f.set_modified(SystemTime::now());
                    }
                }
            }
        });
        Claim {
            path,
            stop,
            beat: Some(beat),
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(b) = self.beat.take() {
            let _ = b.join();
        }
        std::fs::remove_file(&self.path).ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_dead_holders_are_taken_over() {
        let d = std::env::temp_dir().join(format!("i2i-claim-test-{}", std::process::id()));
        let a = Claim::try_take(&d, "x").unwrap().expect("free");
        assert!(Claim::try_take(&d, "x").unwrap().is_none(), "held");
        assert!(Claim::held_by_other(&d, "x"));
        drop(a);
        assert!(!d.join("x.claim").exists(), "released on drop");
        // A claim of a process that no longer exists (pid far above pid_max) is stale.
        std::fs::write(d.join("y.claim"), format!("{} 2147483000\n", host())).unwrap();
        assert!(!Claim::held_by_other(&d, "y"));
        assert!(Claim::try_take(&d, "y").unwrap().is_some(), "taken over");
        std::fs::remove_dir_all(&d).ok();
    }

    /// A claim of another host stamped an hour ahead, and an empty claim whose writer is gone,
    /// are stale: neither makes a worker wait (the first waited until the stamp had passed, the
    /// second a whole minute).
    #[test]
    fn future_stamped_and_empty_claims_do_not_hold_the_work() {
        let d = tempfile::tempdir().unwrap();
        let future = d.path().join("f.claim");
        std::fs::write(&future, "other-host 1\n").unwrap();
        let ahead = SystemTime::now() + Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&future)
            .unwrap()
            .set_modified(ahead)
            .unwrap();
        assert!(
            !Claim::held_by_other(d.path(), "f"),
            "an hour ahead is stale"
        );
        let empty = d.path().join("e.claim");
        std::fs::write(&empty, "").unwrap();
        assert!(
            Claim::held_by_other(d.path(), "e"),
            "just created: being written"
        );
        let before = SystemTime::now() - HEARTBEAT - Duration::from_secs(1);
        std::fs::File::options()
            .write(true)
            .open(&empty)
            .unwrap()
            .set_modified(before)
            .unwrap();
        assert!(
            !Claim::held_by_other(d.path(), "e"),
            "empty past a heartbeat is stale"
        );
        assert!(
            Claim::try_take(d.path(), "e").unwrap().is_some(),
            "taken over"
        );
    }
}
