//! Error kinds and exit codes.
//!
//! Two kinds of failure reach the user:
//! - [`UserError`]: the input is wrong (a config field, a path, a CLI value). One line, names the
//!   culprit and says what to do; exit code 2.
//! - anything else: the run itself failed (I/O, a numerical problem, a bug); exit code 1.
//!
//! Scripts can rely on: 0 = success, 1 = run failed, 2 = bad input.

use std::fmt;

/// A mistake in what the user gave us. Rendered as one line; exit code 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserError(pub String);

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UserError {}

/// Build an `anyhow::Error` that is a [`UserError`].
pub fn user(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UserError(msg.into()))
}

/// Return early with a [`UserError`], `format!`-style.
#[macro_export]
macro_rules! user_bail {
    ($($arg:tt)*) => {
        return Err($crate::error::user(format!($($arg)*)))
    };
}

pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

/// The exit code for an error: 2 if any cause in its chain is a [`UserError`], else 1.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err.chain().any(|e| e.downcast_ref::<UserError>().is_some()) {
        EXIT_USAGE
    } else {
        EXIT_FAILED
    }
}

/// One line: the outermost message followed by its causes, `: `-separated, without repeats.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let s = cause.to_string().replace('\n', " ");
        let s = s.trim().to_string();
        if s.is_empty() || parts.iter().any(|p| p.contains(&s)) {
            continue;
        }
        parts.push(s);
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn user_errors_exit_2_even_when_wrapped() {
        let e: anyhow::Result<()> = Err(user("bad field"));
        let e = e.context("reading experiments/x.yaml").unwrap_err();
        assert_eq!(exit_code(&e), EXIT_USAGE);
        assert_eq!(one_line(&e), "reading experiments/x.yaml: bad field");
        let other = anyhow::anyhow!("disk full");
        assert_eq!(exit_code(&other), EXIT_FAILED);
    }
}
