//! Thin safe wrappers around the few raw syscalls the crate needs.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::time::Duration;

/// Adds `ctx` in front of an I/O error, keeping its kind.
pub(crate) fn context(err: io::Error, ctx: impl std::fmt::Display) -> io::Error {
    io::Error::new(err.kind(), format!("{ctx}: {err}"))
}

/// The last OS error with context.
pub(crate) fn last_err(ctx: impl std::fmt::Display) -> io::Error {
    context(io::Error::last_os_error(), ctx)
}

/// Creates a socket and returns it as an owned fd.
pub(crate) fn socket(domain: i32, ty: i32, proto: i32, ctx: &str) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes plain integers and returns a new fd or -1.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(last_err(ctx));
    }
    // SAFETY: `fd` is a freshly created, valid descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setsockopt(fd, level, name, &val, sizeof val)`.
///
/// `T` must be a plain-old-data type matching what the kernel expects for
/// the option (all callers pass `c_int`, `u32` or libc `repr(C)` structs).
pub(crate) fn setsockopt<T: Copy>(
    fd: BorrowedFd<'_>,
    level: i32,
    name: i32,
    val: &T,
    ctx: &str,
) -> io::Result<()> {
    let len = libc::socklen_t::try_from(size_of::<T>())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, ctx.to_string()))?;
    // SAFETY: `val` points to `size_of::<T>()` readable bytes for the whole
    // call; the kernel only reads `len` bytes from it.
    let r = unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, (val as *const T).cast(), len) };
    if r < 0 { Err(last_err(ctx)) } else { Ok(()) }
}

/// `getsockopt` into a zero-initialised `T`; returns it and the length the kernel wrote.
///
/// `T` must be valid for any bit pattern (plain integers / libc stats structs).
pub(crate) fn getsockopt<T: Copy + Default>(
    fd: BorrowedFd<'_>,
    level: i32,
    name: i32,
    ctx: &str,
) -> io::Result<T> {
    let mut val = T::default();
    let mut len = libc::socklen_t::try_from(size_of::<T>())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, ctx.to_string()))?;
    // SAFETY: `val` is a valid, writable `T` of `len` bytes; the kernel writes
    // at most `len` bytes and updates `len`. Callers only use integer-only
    // types, for which every bit pattern is valid.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut val as *mut T).cast(),
            &mut len,
        )
    };
    if r < 0 { Err(last_err(ctx)) } else { Ok(val) }
}

/// Waits until `fd` is readable or `timeout` passes. Returns true if readable.
/// A pending socket error (`POLLERR`, e.g. `ENETDOWN` after the interface
/// went away) is fetched with `SO_ERROR` and returned as the error. `EINTR`
/// is reported as "not readable".
pub(crate) fn poll_in(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN | libc::POLLRDNORM | libc::POLLERR,
        revents: 0,
    };
    // SAFETY: `pfd` is one valid pollfd and we pass nfds = 1.
    let r = unsafe { libc::poll(&mut pfd, 1, ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(false);
        }
        return Err(context(e, "poll on AF_PACKET socket"));
    }
    if r > 0 && pfd.revents & libc::POLLERR != 0 {
        let err: libc::c_int = getsockopt(fd, libc::SOL_SOCKET, libc::SO_ERROR, "read SO_ERROR")?;
        if err != 0 {
            return Err(context(
                io::Error::from_raw_os_error(err),
                "AF_PACKET socket error (interface down or removed?)",
            ));
        }
    }
    Ok(r > 0)
}

/// A shared memory mapping of a file descriptor, unmapped on drop.
pub(crate) struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mmap {
    /// `mmap(NULL, len, PROT_READ|PROT_WRITE, MAP_SHARED|MAP_POPULATE, fd, 0)`.
    pub(crate) fn shared(fd: BorrowedFd<'_>, len: usize, ctx: &str) -> io::Result<Self> {
        // SAFETY: a fresh mapping at a kernel-chosen address; it aliases no
        // Rust object. The result is checked for MAP_FAILED below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(last_err(ctx));
        }
        let ptr = NonNull::new(p.cast::<u8>())
            .ok_or_else(|| io::Error::other(format!("{ctx}: mmap returned NULL")))?;
        Ok(Self { ptr, len })
    }

    /// Base address of the mapping.
    pub(crate) fn ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length of the mapping in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe exactly the mapping created in
        // `shared`, and no reference into it outlives `self` (all slices
        // handed out borrow `&mut self` of the owner).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

// SAFETY: the mapping is owned exclusively by this value (no aliasing
// pointers are kept elsewhere); moving it to another thread is fine.
unsafe impl Send for Mmap {}

/// `malloc_trim(0)` where the C library is glibc.
pub(crate) fn trim_heap() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes a plain integer (the padding to keep) and only walks and
        // releases the allocator's own free lists; it is thread-safe (it takes each arena's
        // lock) and touches no memory the program owns.
        unsafe { libc::malloc_trim(0) != 0 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// `mallopt(M_MMAP_THRESHOLD, bytes)` where the C library is glibc.
pub(crate) fn fixed_mmap_threshold(bytes: i32) -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt takes two plain integers and only changes the allocator's own
        // parameters (under its lock); no memory the program owns is touched.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, bytes) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = bytes;
        false
    }
}
