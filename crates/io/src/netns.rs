//! Entering named network namespaces (`ip netns` style, `/run/netns/<name>`).
//!
//! `setns(2)` changes the network namespace of the **calling thread only**.
//! Use it on a dedicated thread: every socket that thread creates afterwards
//! (AF_PACKET, UDP, TCP, the ioctl sockets of [`crate::iface`]) lives in the
//! namespace. Note that `/sys/class/net` keeps showing the namespace sysfs
//! was mounted in, which is why [`crate::iface`] uses ioctls instead.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use crate::sys;

/// Path of the bind mount `ip netns add <name>` creates.
pub fn path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

/// Moves the calling thread into network namespace `name` (`/run/netns/<name>`).
pub fn enter(name: &str) -> io::Result<()> {
    if name.is_empty() || name.contains('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid network namespace name {name:?}"),
        ));
    }
    let p = path(name);
    let f = File::open(&p).map_err(|e| {
        sys::context(
            e,
            format!(
                "open {} (does the namespace exist? create it with `ip netns add {name}`)",
                p.display()
            ),
        )
    })?;
    enter_file(&f).map_err(|e| sys::context(e, format!("enter network namespace {name}")))
}

/// Moves the calling thread into the network namespace referred to by `f`
/// (e.g. an open `/run/netns/<name>` or `/proc/<pid>/ns/net`).
pub fn enter_file(f: &File) -> io::Result<()> {
    // SAFETY: setns takes a valid open fd (borrowed from `f` for the call)
    // and a flag; it does not touch our memory.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if r < 0 {
        return Err(sys::last_err("setns(CLONE_NEWNET)"));
    }
    Ok(())
}

/// Opens a handle to the calling thread's current network namespace, so it
/// can be re-entered later with [`enter_file`].
pub fn current() -> io::Result<File> {
    File::open("/proc/thread-self/ns/net")
        .map_err(|e| sys::context(e, "open /proc/thread-self/ns/net"))
}
