//! `webinfra`: the one binary. It parses arguments and hands over to a
//! command; every role runs as `webinfra run ROLE --host H`.
//!
//! Exit codes: 0 success, 1 failure at run time, 2 bad input (arguments or
//! topology file).

#![forbid(unsafe_code)]

/// `println!` that does not panic when stdout is gone (a closed pipe: the
/// reader of `up`'s progress went away, or `webinfra status | head`).
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

mod args;
mod certificate;
mod cmd;
mod signals;

use clap::Parser;

/// The proxy path allocates small, short-lived buffers per request; mimalloc
/// serves them from per-thread free lists (measured: about 1 us less CPU per
/// proxied request than glibc's allocator on `bench/lb`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args = args::Cli::parse();
    // Role processes log to their own files; interactive commands stay quiet.
    let level = match args.command {
        args::Command::Run { .. } => "info",
        _ => "warn",
    };
    webinfra_telemetry::init(level);
    let open_files = webinfra_process::raise_open_files_limit();
    if let args::Command::Run { .. } = args.command {
        tracing::info!(open_files, "limit on open files");
    }
    // On one CPU (e.g. pinned with taskset) a single-threaded scheduler does
    // the same work without the work-stealing machinery.
    let one_cpu = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let runtime = if one_cpu {
        // All work on this thread: counters need no locked instructions.
        webinfra_proxy::counter::one_thread();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    }
    .expect("tokio runtime");
    let code = runtime.block_on(cmd::dispatch(args));
    // Do not wait for detached tasks (e.g. a blocked stdin reader).
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    std::process::exit(code);
}
