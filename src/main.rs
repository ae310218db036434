//! The `hookrelay` binary: parse the command line, set up logging, hand off.

use clap::Parser;

fn main() {
    let cli = hookrelay::cli::Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hookrelay: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(hookrelay::cli::run(cli));
    std::process::exit(code);
}
