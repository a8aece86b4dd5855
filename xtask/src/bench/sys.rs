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

/// CPU time every thread of this process has run so far (the sum of
/// `/proc/self/task/*/schedstat`; threads that already ended are not counted). `None` where
/// those files do not exist.
pub(crate) fn process_cpu() -> Option<Duration> {
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    let mut total = Duration::ZERO;
    for task in tasks.flatten() {
        total += schedstat(&task.path().join("schedstat").to_string_lossy())?;
    }
    Some(total)
}

/// The calling thread's id (from `/proc/thread-self`, a link to `PID/task/TID`).
pub(crate) fn current_tid() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// Resident memory of this process, in bytes (0 where `/proc/self/statm` does not exist).
pub(crate) fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
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
