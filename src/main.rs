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

/// Idle or slow clients must meet the connection cap (`server.max_connections`,
/// itself kept below this limit) before the process runs out of descriptors: use
/// all that the hard limit allows.
fn raise_open_files_limit() {
    #[cfg(unix)]
    // SAFETY: getrlimit/setrlimit read and write one plain struct we own; a
    // failure leaves the limit as it was.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Gives memory back to the system after a burst of large bodies.
///
/// glibc serves an allocation of 128 KiB or more with its own mapping, returned
/// when freed, but raises that threshold after the first such free: a burst of
/// 1 MB bodies then lives in the heap and stays there. A fixed threshold keeps
/// large bodies in mappings (the small allocations of the hot path are not
/// affected). What smaller allocations leave free in the heap is handed back by a
/// thread that looks every few seconds and calls `malloc_trim` when the free
/// memory glibc holds has grown by more than [`TRIM_GROWTH`] since its last look:
/// once after a burst, never while nothing changes.
fn return_memory_after_bursts() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt takes two integers; a refused value changes nothing.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        }
        let spawned = std::thread::Builder::new().name("trim".into()).spawn(|| {
            let mut last_free = 0;
            loop {
                std::thread::sleep(TRIM_EVERY);
                // SAFETY: mallinfo2 only reads the allocator's statistics;
                // malloc_trim only releases memory that is free.
                unsafe {
                    let free = libc::mallinfo2().fordblks;
                    if free > last_free + TRIM_GROWTH {
                        libc::malloc_trim(0);
                    }
                    last_free = free;
                }
            }
        });
        if let Err(e) = spawned {
            log::warn!("cannot start the memory trimming thread: {e}");
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
/// Growth of the allocator's free memory between two looks that makes the trim
/// thread act.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_GROWTH: usize = 8 * 1024 * 1024;

fn main() {
    sqlite_without_memory_statistics();
    raise_open_files_limit();
    let cli = hookrelay::cli::Cli::parse();
    hookrelay::logging::init();
    if matches!(cli.command, hookrelay::cli::Command::Serve) {
        return_memory_after_bursts();
    }
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
