use clap::Parser;

/// Panics printed in full; later ones are only counted (the run reports them all as a run
/// error), so a bug hit by every VU does not bury the console under thousands of traces.
const PANICS_PRINTED: usize = 3;

fn main() {
    let cli = novaload::cli::Cli::parse();
    novaload::logging::init(cli.verbose);
    let default_hook = std::panic::take_hook();
    let printed = std::sync::atomic::AtomicUsize::new(0);
    std::panic::set_hook(Box::new(move |info| {
        if printed.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < PANICS_PRINTED {
            default_hook(info);
        }
    }));
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
