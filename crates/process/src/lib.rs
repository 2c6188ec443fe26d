//! Child processes that die with their parent, and signals sent by pid.
//!
//! Every process webinfra starts (role processes, `mariadbd`) is tied to its
//! parent with `PR_SET_PDEATHSIG`, so killing a parent -- like losing the
//! machine -- takes its children with it, and nothing is left running after a
//! crash. Processes are only ever signalled by their own pid (or their own
//! process group), never by name. Each process also lifts its own limit on
//! open files ([`raise_open_files_limit`]), as HAProxy and nginx do.

use std::time::{Duration, Instant};

/// Asks the kernel to send `signal` to the child when the spawning thread exits.
///
/// Call it on a command spawned from a long-lived thread (a tokio worker or the
/// main thread): the signal fires when *that thread* ends.
#[allow(unsafe_code)]
pub fn die_with_parent(cmd: &mut tokio::process::Command, signal: i32) {
    // SAFETY: the closure runs in the forked child before exec and only calls
    // prctl(2) and getppid(2), both async-signal-safe; it allocates nothing and
    // touches no lock. If the parent already died before prctl took effect,
    // getppid() is 1 and the child exits at once instead of running orphaned.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() == 1 {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// Sends `signal` to process `pid`. Returns false if it does not exist.
#[allow(unsafe_code)]
pub fn signal(pid: u32, signal: i32) -> bool {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid as libc::pid_t, signal) == 0 }
}

/// Sends `signal` to every process of group `pgid`.
#[allow(unsafe_code)]
pub fn signal_group(pgid: u32, signal: i32) -> bool {
    // SAFETY: kill(2) has no memory-safety preconditions; a negative pid names a group.
    unsafe { libc::kill(-(pgid as libc::pid_t), signal) == 0 }
}

/// True while `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Waits until `pid` is gone, polling, up to `deadline`. Returns true if it went.
pub fn wait_gone(pid: u32, deadline: Duration) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    !alive(pid)
}

pub use libc::{SIGCONT, SIGHUP, SIGINT, SIGKILL, SIGSTOP, SIGTERM, SIGUSR1};

/// Raises this process's soft limit on open files to its hard limit (capped
/// at 1,048,576), as HAProxy does for its `maxconn`: a proxy holds two
/// descriptors per client, and the usual soft limit of 1024 would refuse
/// clients long before `max_connections`. Children inherit it. Returns the
/// limit now in force.
#[allow(unsafe_code)]
pub fn raise_open_files_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        let want = lim.rlim_max.min(1 << 20);
        if lim.rlim_cur < want {
            let raised = libc::rlimit {
                rlim_cur: want,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = want;
            }
        }
    }
    lim.rlim_cur
}

/// Points this process's standard output and error at `path` (appending,
/// created if missing), as nginx reopens its logs on SIGUSR1: after a log
/// was renamed (logrotate), new lines go to a new file of the old name.
#[allow(unsafe_code)]
pub fn reopen_stdio(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    for target in [1, 2] {
        // SAFETY: dup2(2) takes two descriptors and no memory; `file` is open
        // for the call's duration, and 1 and 2 are this process's own stdio,
        // which dup2 replaces atomically (a concurrent write goes to the old
        // or the new file, never to a closed descriptor).
        if unsafe { libc::dup2(file.as_raw_fd(), target) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The environment variable that names a supervised process's log file.
pub const LOG_FILE_ENV: &str = "WEBINFRA_LOG_FILE";
