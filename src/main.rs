use clap::Parser;

fn main() {
    reset_sigpipe();
    let cli = hoist::cli::Cli::parse();
    if let Err(e) = hoist::cli::run(cli) {
        let msg = e.to_string();
        if !msg.is_empty() {
            eprintln!("hoist: {}", hoist::error::printable(&msg));
        }
        std::process::exit(e.exit_code());
    }
}

/// Rust ignores SIGPIPE; a CLI piped into `head` should just stop, not panic on EPIPE.
#[allow(unsafe_code)]
fn reset_sigpipe() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: called first thing in main, single-threaded, installing the default disposition.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}
