//! Interface helpers: index, MAC, MTU, listing, non-blocking mode, CPU pinning.
//!
//! All look-ups go through ioctls / `if_nameindex` on sockets created by the
//! calling thread, so they answer for the network namespace of the calling
//! thread (unlike `/sys/class/net`, which shows the namespace sysfs was
//! mounted in).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use crate::sys;

/// A network interface: kernel index and name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
}

fn cname(name: &str) -> io::Result<CString> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "invalid interface name {name:?} (must be 1..{} bytes)",
                libc::IFNAMSIZ - 1
            ),
        ));
    }
    CString::new(name).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name {name:?} contains a NUL byte"),
        )
    })
}

/// Index of interface `name` in the calling thread's network namespace.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = cname(name)?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(sys::last_err(format!("no interface named {name:?}")));
    }
    Ok(idx)
}

/// Name of the interface with index `index`.
pub fn ifname(index: u32) -> io::Result<String> {
    let mut buf = [0 as libc::c_char; libc::IFNAMSIZ];
    // SAFETY: `buf` has IFNAMSIZ bytes, which is what if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return Err(sys::last_err(format!("no interface with index {index}")));
    }
    // SAFETY: on success if_indextoname wrote a NUL-terminated name into `buf`.
    let s = unsafe { CStr::from_ptr(buf.as_ptr()) };
    Ok(s.to_string_lossy().into_owned())
}

/// Runs one `SIOCGIF*` ioctl for `name` and returns the filled `ifreq`.
fn ifreq_ioctl(name: &str, req: libc::c_ulong, what: &str) -> io::Result<libc::ifreq> {
    let c = cname(name)?;
    let sock = sys::socket(
        libc::AF_INET,
        libc::SOCK_DGRAM,
        0,
        "socket for interface ioctl",
    )?;
    // SAFETY: ifreq is a plain C struct/union of integers, arrays and
    // pointers; all-zeroes is a valid value for it.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(c.as_bytes()) {
        *d = *s as libc::c_char;
    }
    // SAFETY: `ifr` is a valid, writable ifreq with a NUL-terminated name
    // (cname checked the length < IFNAMSIZ and the struct was zeroed); the
    // SIOCGIF* requests read the name and write into `ifr_ifru` only.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), req as _, &mut ifr) };
    if r < 0 {
        return Err(sys::last_err(format!("{what} of interface {name:?}")));
    }
    Ok(ifr)
}

/// Hardware (MAC) address of interface `name` (`SIOCGIFHWADDR`).
pub fn mac(name: &str) -> io::Result<[u8; 6]> {
    let ifr = ifreq_ioctl(name, libc::SIOCGIFHWADDR, "read MAC address")?;
    // SAFETY: SIOCGIFHWADDR succeeded, so the kernel filled `ifru_hwaddr`;
    // reading a sockaddr (integers only) is valid for any bit pattern.
    let sa = unsafe { ifr.ifr_ifru.ifru_hwaddr };
    let mut m = [0u8; 6];
    for (d, s) in m.iter_mut().zip(sa.sa_data.iter()) {
        *d = *s as u8;
    }
    Ok(m)
}

/// MTU of interface `name` (`SIOCGIFMTU`).
pub fn mtu(name: &str) -> io::Result<u32> {
    let ifr = ifreq_ioctl(name, libc::SIOCGIFMTU, "read MTU")?;
    // SAFETY: SIOCGIFMTU succeeded and wrote `ifru_mtu`; any c_int is valid.
    let m = unsafe { ifr.ifr_ifru.ifru_mtu };
    u32::try_from(m).map_err(|_| io::Error::other(format!("interface {name:?} reports MTU {m}")))
}

/// Interface flags (`IFF_*`) of interface `name` (`SIOCGIFFLAGS`).
pub fn flags(name: &str) -> io::Result<u32> {
    let ifr = ifreq_ioctl(name, libc::SIOCGIFFLAGS, "read flags")?;
    // SAFETY: SIOCGIFFLAGS succeeded and wrote `ifru_flags`; any c_short is valid.
    let f = unsafe { ifr.ifr_ifru.ifru_flags };
    Ok(u32::from(f as u16))
}

/// All interfaces of the calling thread's namespace, in kernel order.
pub fn all_interfaces() -> io::Result<Vec<Interface>> {
    // SAFETY: if_nameindex returns NULL or an array terminated by an entry
    // with index 0, which we free with if_freenameindex below.
    let list = unsafe { libc::if_nameindex() };
    if list.is_null() {
        return Err(sys::last_err("list interfaces (if_nameindex)"));
    }
    let mut out = Vec::new();
    let mut p = list;
    loop {
        // SAFETY: `p` points into the array returned by if_nameindex and we
        // stop at the terminating zero entry, so it is in bounds.
        let e = unsafe { &*p };
        if e.if_index == 0 || e.if_name.is_null() {
            break;
        }
        // SAFETY: entries before the terminator have a valid NUL-terminated name.
        let name = unsafe { CStr::from_ptr(e.if_name) }
            .to_string_lossy()
            .into_owned();
        out.push(Interface {
            index: e.if_index,
            name,
        });
        // SAFETY: the current entry is not the terminator, so the next one exists.
        p = unsafe { p.add(1) };
    }
    // SAFETY: `list` came from if_nameindex and is freed exactly once.
    unsafe { libc::if_freenameindex(list) };
    Ok(out)
}

/// All non-loopback interfaces of the calling thread's namespace.
pub fn interfaces() -> io::Result<Vec<Interface>> {
    let mut v = all_interfaces()?;
    v.retain(|i| match flags(&i.name) {
        Ok(f) => f & libc::IFF_LOOPBACK as u32 == 0,
        Err(_) => false, // vanished meanwhile
    });
    Ok(v)
}

/// Sets or clears `O_NONBLOCK` on `fd`.
pub fn set_nonblocking(fd: impl AsFd, on: bool) -> io::Result<()> {
    let fd: BorrowedFd<'_> = fd.as_fd();
    // SAFETY: fcntl F_GETFL on a valid borrowed fd has no memory effects.
    let fl = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if fl < 0 {
        return Err(sys::last_err("fcntl(F_GETFL)"));
    }
    let nfl = if on {
        fl | libc::O_NONBLOCK
    } else {
        fl & !libc::O_NONBLOCK
    };
    // SAFETY: fcntl F_SETFL with an integer flag set on a valid borrowed fd.
    if nfl != fl && unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, nfl) } < 0 {
        return Err(sys::last_err("fcntl(F_SETFL, O_NONBLOCK)"));
    }
    Ok(())
}

/// Pins the calling thread to CPU `cpu` (`sched_setaffinity`).
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is a plain bit array; all-zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if cpu >= 8 * size_of::<libc::cpu_set_t>() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("CPU {cpu} is out of range for cpu_set_t"),
        ));
    }
    // SAFETY: `cpu` is within the set's capacity (checked above).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size we pass; pid 0 means the calling thread.
    let r = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
    if r < 0 {
        return Err(sys::last_err(format!("pin thread to CPU {cpu}")));
    }
    Ok(())
}
