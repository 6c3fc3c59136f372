//! Sleeping on a workload's event ring buffer and on the one descriptor that
//! ends its reader (a stop pipe, a child's pidfd) at once: events are written
//! as they come and the reader leaves the moment it is told, with no poll
//! timeout to wait out at exit and no periodic wake-ups meanwhile.

use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};

use libbpf_rs::RingBuffer;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// Blocks until the ring has records or `until` is readable or hung up;
/// true once `until` is. The caller consumes the ring either way.
pub fn wait(ring: &RingBuffer<'_>, until: BorrowedFd<'_>) -> std::io::Result<bool> {
    // SAFETY: the epoll fd lives as long as `ring`, which outlives this call.
    let epoll = unsafe { BorrowedFd::borrow_raw(ring.epoll_fd()) };
    let mut fds = [
        PollFd::new(epoll, PollFlags::POLLIN),
        PollFd::new(until.as_fd(), PollFlags::POLLIN),
    ];
    loop {
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => break,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(fds[1].revents().is_some_and(|r| !r.is_empty()))
}

/// A descriptor that becomes readable when process `pid` exits.
pub fn pidfd(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just handed us this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
