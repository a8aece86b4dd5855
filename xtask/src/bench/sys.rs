//! What the operating system and the C library say about this process: thread CPU time, resident
//! memory and C malloc's own figures.

#![allow(unsafe_code)]

use std::time::Duration;

/// CPU time the calling thread has run, from `/proc/thread-self/schedstat` (nanoseconds).
/// `None` where that file does not exist.
pub(crate) fn thread_cpu() -> Option<Duration> {
    schedstat("/proc/thread-self/schedstat")
}

/// CPU time thread `tid` of this process has run (see [`current_tid`]).
pub(crate) fn thread_cpu_of(tid: u32) -> Option<Duration> {
    schedstat(&format!("/proc/self/task/{tid}/schedstat"))
}

fn schedstat(path: &str) -> Option<Duration> {
    let text = std::fs::read_to_string(path).ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// CPU time another process has run so far: the sum over its live threads'
/// `/proc/PID/task/TID/schedstat` (nanoseconds; a thread that ended is not counted). `None`
/// where `/proc` does not say.
pub(crate) fn process_cpu_of(pid: u32) -> Option<Duration> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = Duration::ZERO;
    for task in tasks {
        let path = task.ok()?.path().join("schedstat");
        total += schedstat(path.to_str()?)?;
    }
    Some(total)
}

/// CPU time this process has run so far, every thread included (those that ended too): user +
/// system time from `getrusage(RUSAGE_SELF)`, which Linux accounts to the microsecond.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) fn process_cpu() -> Option<Duration> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage writes a whole `rusage` into the pointer it is given and returns 0, or
    // returns -1 without writing; the struct is read only after a 0.
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
            return None;
        }
        usage.assume_init()
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).ok()?)
            .checked_add(Duration::from_micros(u64::try_from(t.tv_usec).ok()?))
    };
    time(usage.ru_utime)?.checked_add(time(usage.ru_stime)?)
}

/// CPU time of this process: not available off glibc targets (the probes need it).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn process_cpu() -> Option<Duration> {
    None
}

/// The calling thread's id (from `/proc/thread-self`, a link to `PID/task/TID`).
pub(crate) fn current_tid() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// Resident memory of this process, in bytes (0 where `/proc/self/statm` does not exist).
pub(crate) fn rss_bytes() -> u64 {
    statm_rss("/proc/self/statm")
}

/// Resident memory of process `pid`, in bytes (0 where `/proc/PID/statm` does not say).
pub(crate) fn rss_of(pid: u32) -> u64 {
    statm_rss(&format!("/proc/{pid}/statm"))
}

/// The resident pages of a `statm` file, in bytes.
fn statm_rss(path: &str) -> u64 {
    let statm = std::fs::read_to_string(path).unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// C malloc's own account of this process's heap (all arenas), from glibc's `mallinfo2`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Malloc {
    /// Bytes in use: allocated chunks in the arenas plus mmapped chunks. Rust's allocations are
    /// in here too (the system allocator is malloc), and so are libzstd's.
    pub(crate) in_use: u64,
    /// Bytes malloc holds from the system: the arenas' size plus mmapped chunks.
    pub(crate) committed: u64,
}

/// C malloc's figures now, where the C library is glibc.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) fn malloc() -> Option<Malloc> {
    // SAFETY: mallinfo2 takes no arguments, only reads the allocator's statistics under its own
    // locks, and returns a plain struct by value (glibc 2.33 and later).
    let info = unsafe { libc::mallinfo2() };
    let mmapped = info.hblkhd as u64;
    Some(Malloc {
        in_use: info.uordblks as u64 + mmapped,
        committed: info.arena as u64 + mmapped,
    })
}

/// C malloc's figures: not available off glibc.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn malloc() -> Option<Malloc> {
    None
}
