use clap::Parser;

fn main() {
    let cli = novaload::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("novaload: cannot start the async runtime: {e}");
            std::process::exit(novaload::exit::ERROR);
        }
    };
    let code = runtime.block_on(novaload::run(cli));
    // Don't wait for lingering connection tasks: results are already written.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    std::process::exit(code);
}
