use clap::Parser;

fn main() {
    let cli = hoist::cli::Cli::parse();
    if let Err(e) = hoist::cli::run(cli) {
        eprintln!("hoist: {e}");
        std::process::exit(e.exit_code());
    }
}
