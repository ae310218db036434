//! The `hookrelay` binary: parse the command line, set up logging, hand off.

use clap::Parser;

/// The runtime's threads run delivery (and admin reads); the HTTP workers, the
/// storage writer and the log thread are started from the main thread and keep
/// normal priority. Under a burst that saturates the CPU, accepting and storing
/// webhooks (which providers do not retry) goes first; deliveries, safe on disk,
/// get the rest and catch up when the burst ends. When the CPU is not saturated the
/// niceness changes nothing. On Linux, niceness is per thread: `who = 0` is the
/// calling thread, and threads inherit it, hence the order in `main`.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority only reads its integer arguments; raising one's own
    // niceness is always permitted, and a failure leaves the priority as it was.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, DELIVERY_NICENESS);
    }
}

/// Niceness of the delivery threads (0 normal, 19 lowest).
const DELIVERY_NICENESS: libc::c_int = 10;

/// SQLite counts every allocation under a global mutex unless told not to, and
/// hookrelay never reads those counts (the storage writer allocates constantly).
/// Only possible before SQLite is initialized, i.e. before the first connection.
fn sqlite_without_memory_statistics() {
    // SAFETY: SQLITE_CONFIG_MEMSTATUS takes one int. Called before any connection
    // exists and before any other thread starts; were SQLite already initialized it
    // would refuse (SQLITE_MISUSE) and nothing would change.
    unsafe {
        rusqlite::ffi::sqlite3_config(rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS, 0 as libc::c_int);
    }
}

fn main() {
    sqlite_without_memory_statistics();
    let cli = hookrelay::cli::Cli::parse();
    hookrelay::logging::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(lower_priority)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hookrelay: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(hookrelay::cli::run(cli));
    hookrelay::logging::flush();
    std::process::exit(code);
}
