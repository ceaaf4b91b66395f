//! Printing: results go to stdout through [`outln!`], messages to stderr through [`note!`].
//!
//! `println!` panics when stdout is a pipe whose reader has gone (`ddpm schedule | head -1`):
//! [`outln!`] returns [`StdoutClosed`] instead, which `main` turns into a quiet exit, as Unix
//! tools do. Messages on stderr are diagnostics: when nobody reads them any more
//! (`ddpm sample 2>&1 | head -1`), [`note!`] drops them and the command carries on, its files
//! and exit status unaffected.

use std::io::Write;

/// The reader of stdout closed the pipe: the command stops quietly.
#[derive(Debug)]
pub struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output was closed by its reader")
    }
}

impl std::error::Error for StdoutClosed {}

/// Writes to stdout; a closed pipe is [`StdoutClosed`], any other failure an error that says
/// stdout could not be written.
pub fn write_stdout(args: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_fmt(args).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(e) => Err(anyhow::Error::new(e).context("writing to standard output")),
    }
}

/// Writes a message to stderr.
// NOTE: a failed write is dropped on purpose: stderr is the only channel a message could be
// reported on, and the command's result (its files, its exit status) does not depend on it.
pub fn write_stderr(args: std::fmt::Arguments<'_>) {
    let _ = std::io::stderr().lock().write_fmt(args);
}

/// `println!` that returns `anyhow::Result<()>` instead of panicking on a closed pipe.
macro_rules! outln {
    () => {
        $crate::output::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprintln!` that never panics (see [`write_stderr`]).
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::output::write_stderr(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use {note, outln};
