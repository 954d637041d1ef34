//! Time limits on network calls. hf-hub's client has no timeouts of its own, and a server that
//! accepts a connection and never answers would hang `fetch`, `run` and `inpaint` forever. Every
//! request here runs on a thread of its own, watched: it fails when it makes no progress (no
//! answer, no new bytes) for [`timeout`], naming the host and what to do. A stuck call's thread
//! is left behind; the command ends with the error.

use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The limit on a call without progress: `I2I_UNLEARN_NET_TIMEOUT` seconds, default 60.
pub fn timeout() -> Duration {
    let secs = std::env::var("I2I_UNLEARN_NET_TIMEOUT")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(60.0);
    Duration::from_secs_f64(secs)
}

/// How many times a request that timed out is tried in all (downloads resume where they stopped).
pub const ATTEMPTS: usize = 2;

/// The host (and port) of a URL, for messages.
pub fn host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?', '#']).next().unwrap_or(rest)
}

/// The message for a call that timed out.
pub fn timed_out_message(url: &str, what: &str) -> String {
    format!(
        "{}: no answer for {:.0} s while {what} ({ATTEMPTS} tries); check the network, a proxy or \
         HF_ENDPOINT, or work offline from a filled cache (HF_HUB_OFFLINE=1); \
         I2I_UNLEARN_NET_TIMEOUT=SECONDS sets the limit",
        host(url),
        timeout().as_secs_f64()
    )
}

/// Runs `call` on a thread and waits for it while `progress()` changes (`progress` reads, say,
/// the size of the file being written; a constant makes the limit a plain timeout). `None` when
/// it made no progress for [`timeout`].
pub fn watched<T: Send + 'static>(
    progress: impl Fn() -> u64,
    call: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(call());
    });
    let limit = timeout();
    let tick = limit.min(Duration::from_millis(250));
    let (mut last, mut since) = (progress(), Instant::now());
    loop {
        match rx.recv_timeout(tick) {
            Ok(v) => return Some(v),
            Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let now = progress();
                if now != last {
                    (last, since) = (now, Instant::now());
                } else if since.elapsed() >= limit {
                    return None;
                }
            }
        }
    }
}

/// [`watched`] tried [`ATTEMPTS`] times; `Err` is the timeout message.
pub fn watched_retried<T: Send + 'static>(
    url: &str,
    what: &str,
    progress: impl Fn() -> u64,
    call: impl Fn() -> T + Send + Sync + Clone + 'static,
) -> Result<T, String> {
    for _ in 0..ATTEMPTS {
        let c = call.clone();
        if let Some(v) = watched(&progress, c) {
            return Ok(v);
        }
    }
    Err(timed_out_message(url, what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_urls() {
        assert_eq!(host("http://127.0.0.1:8080/x/y"), "127.0.0.1:8080");
        assert_eq!(host("https://huggingface.co"), "huggingface.co");
    }

    #[test]
    fn a_call_that_keeps_progressing_is_not_cut() {
        let r = watched(|| 0, || 7);
        assert_eq!(r, Some(7));
    }
}
