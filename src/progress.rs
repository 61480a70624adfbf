//! Progress reporting for long work: a bar on a terminal, plain lines otherwise, nothing with
//! `--quiet` or `--json` (whose stdout must stay machine-readable; progress goes to stderr).

use std::io::{IsTerminal, Read};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Bars,
    Lines,
    Silent,
}

#[derive(Debug)]
pub struct Progress {
    mode: Mode,
    /// Keeps concurrent bars (parallel blob downloads) on their own lines.
    bars: MultiProgress,
}

impl Progress {
    /// Bars when stderr is a terminal, lines otherwise; silent when `quiet`.
    pub fn auto(quiet: bool) -> Self {
        let mode = if quiet {
            Mode::Silent
        } else if std::io::stderr().is_terminal() {
            Mode::Bars
        } else {
            Mode::Lines
        };
        Progress { mode, bars: MultiProgress::new() }
    }

    pub fn silent() -> Self {
        Progress { mode: Mode::Silent, bars: MultiProgress::new() }
    }

    /// A one-line message (plain line or a finished bar line).
    pub fn line(&self, msg: &str) {
        let msg = &*crate::error::printable(msg);
        match self.mode {
            Mode::Silent => {}
            Mode::Lines => eprintln!("{msg}"),
            Mode::Bars => {
                if self.bars.println(msg).is_err() {
                    eprintln!("{msg}");
                }
            }
        }
    }

    /// A task over `total` bytes (0 = unknown). Use [`Task::reader`] to count bytes as they flow.
    pub fn task(&self, msg: &str, total: u64) -> Task {
        let msg = &*crate::error::printable(msg);
        match self.mode {
            Mode::Silent => Task { bar: None },
            Mode::Lines => {
                eprintln!("{msg}");
                Task { bar: None }
            }
            Mode::Bars => {
                let bar = self.bars.add(if total > 0 { ProgressBar::new(total) } else { ProgressBar::new_spinner() });
                let style = if total > 0 {
                    ProgressStyle::with_template("{msg:40!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
                } else {
                    ProgressStyle::with_template("{spinner} {msg:40!} {bytes} {elapsed}")
                };
                bar.set_style(style.expect("valid template").progress_chars("=> "));
                bar.set_message(msg.to_string());
                bar.enable_steady_tick(Duration::from_millis(120));
                Task { bar: Some(bar) }
            }
        }
    }
}

/// One progress bar (or nothing).
#[derive(Debug)]
pub struct Task {
    bar: Option<ProgressBar>,
}

impl Task {
    pub fn reader<R: Read>(&self, r: R) -> TaskReader<R> {
        TaskReader { inner: r, bar: self.bar.clone() }
    }

    /// Counts `n` more bytes done.
    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    pub fn finish(self) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}

/// Counts bytes into a bar.
pub struct TaskReader<R> {
    inner: R,
    bar: Option<ProgressBar>,
}

impl<R: Read> Read for TaskReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(b) = &self.bar {
            b.inc(n as u64);
        }
        Ok(n)
    }
}
