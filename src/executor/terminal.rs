//! The terminal of a tty container or exec, made as runc makes it: inside the container,
//! from the container's own devpts, so the process's terminal is the container's
//! `/dev/pts/N` (`tty` and `ttyname()` find it there) and the host's devpts never holds it.
//!
//! Both sides of the console socket are here. The monitor forks the executor with one end of
//! a unix socket pair on fd 5 ([`CONSOLE_FD`]); the executor, once it is in the container's
//! mount namespace and root, opens `/dev/pts/ptmx`, unlocks the pty, sends the master over
//! the socket (SCM_RIGHTS, before it reports `ready`), puts the slave on fds 0-2 and (for a
//! container, not an exec) binds it on `/dev/console`. The monitor takes the master
//! ([`receive_master`]) once the executor is ready and pumps it as any output.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use rustix::fs::{Mode, OFlags};

use super::error::{Context, Error, Result};
use super::inroot::{Root, fd_path};

/// The executor's fd for its end of the console socket (tty only).
pub const CONSOLE_FD: RawFd = 5;

/// The device numbers of a devpts instance's `ptmx`.
const PTMX: (u32, u32) = (5, 2);

/// The executor's end of the console socket.
pub(crate) struct ConsoleSocket(OwnedFd);

impl ConsoleSocket {
    /// Takes over fd 5, which the monitor gives a tty executor.
    pub(crate) fn take() -> Result<ConsoleSocket> {
        // SAFETY: only reads the fd's flags; an fd that is not open gives EBADF.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(CONSOLE_FD) };
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD)
            .context(|| format!("no console socket on fd {CONSOLE_FD}"))?;
        // SAFETY: fd 5 is open (fcntl just succeeded) and nothing else in this process
        // owns it.
        Ok(ConsoleSocket(unsafe { OwnedFd::from_raw_fd(CONSOLE_FD) }))
    }
}

/// Makes the pty in the devpts mounted at /dev/pts of the current root, hands its master to
/// the monitor, and puts its slave on fds 0-2; with `console`, binds it on /dev/console.
pub(crate) fn create(socket: ConsoleSocket, console: bool) -> Result<()> {
    let master = open_ptmx()?;
    // SAFETY: TIOCSPTLCK reads an int that lives across the call.
    let unlocked = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &0 as *const i32) };
    if unlocked != 0 {
        return Err(Error::from(std::io::Error::last_os_error())).context(|| "unlock the pty");
    }
    let mut number: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes an unsigned int into `number`, which lives across the call.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut number) } != 0 {
        return Err(Error::from(std::io::Error::last_os_error())).context(|| "number the pty");
    }
    // The slave through the master (no lookup of /dev/pts/N by name).
    // SAFETY: TIOCGPTPEER takes open flags and returns a new fd or -1.
    let slave = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(Error::from(std::io::Error::last_os_error()))
            .context(|| "open the pty's terminal");
    }
    // SAFETY: the ioctl returned a new fd that nothing else owns.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    if console {
        bind_console(&slave, number)?;
    }
    send_master(&socket, &master)?;
    drop((socket, master));
    for target in 0..=2 {
        // dup2 leaves the new fd without close-on-exec: the process keeps its terminal.
        // SAFETY: both fds are open; dup2 replaces fd `target` of this process only.
        if unsafe { libc::dup2(slave.as_raw_fd(), target) } < 0 {
            return Err(Error::from(std::io::Error::last_os_error()))
                .context(|| format!("put the terminal on fd {target}"));
        }
    }
    Ok(())
}

/// The root's /dev/pts/ptmx, checked to be a pty multiplexer.
fn open_ptmx() -> Result<OwnedFd> {
    const PATH: &str = "/dev/pts/ptmx";
    let master = rustix::fs::open(
        PATH,
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .context(|| format!("open {PATH} (a terminal needs the container's devpts)"))?;
    let stat = rustix::fs::fstat(&master).context(|| format!("stat {PATH}"))?;
    let rdev = (
        rustix::fs::major(stat.st_rdev),
        rustix::fs::minor(stat.st_rdev),
    );
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::CharacterDevice
        || rdev != PTMX
    {
        return Err(format!("{PATH} is not a pty multiplexer").into());
    }
    Ok(master)
}

/// The terminal is also the container's console (runc binds it there): `/dev/pts/<number>`
/// of the same devpts, checked to be the slave itself.
fn bind_console(slave: &OwnedFd, number: u32) -> Result<()> {
    let root = Root::open(std::path::Path::new("/"))?;
    let path = format!("/dev/pts/{number}");
    let source = root.open_path(&path).context(|| format!("open {path}"))?;
    let same = match (rustix::fs::fstat(&source), rustix::fs::fstat(slave)) {
        (Ok(a), Ok(b)) => a.st_dev == b.st_dev && a.st_ino == b.st_ino,
        _ => false,
    };
    if !same {
        return Err(format!("{path} is not the pty just made").into());
    }
    let console = root.ensure_file("/dev/console")?;
    nix::mount::mount(
        Some(fd_path(&source).as_str()),
        fd_path(&console).as_str(),
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .context(|| format!("bind {path} on /dev/console"))
}

fn send_master(socket: &ConsoleSocket, master: &OwnedFd) -> Result<()> {
    let fds = [master.as_raw_fd()];
    // One byte of payload: a stream socket carries no message with none.
    sendmsg::<()>(
        socket.0.as_raw_fd(),
        &[IoSlice::new(b"T")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .context(|| "send the pty to the monitor")
    .map(drop)
}

/// The monitor's side: the pty master the executor sent on `socket`, which must already be
/// there (the executor sends it before it reports `ready`).
pub fn receive_master(socket: &impl AsFd) -> std::result::Result<OwnedFd, String> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let message = recvmsg::<()>(
        socket.as_fd().as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| format!("the executor sent no terminal: {e}"))?;
    let mut received: Vec<OwnedFd> = Vec::new();
    for cmsg in message
        .cmsgs()
        .map_err(|e| format!("cannot read the executor's terminal: {e}"))?
    {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            // SAFETY: the kernel just installed these fds in this process; nothing else
            // owns them.
            received.extend(
                fds.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    // Exactly one: anything else is not what the executor sends (extra fds close here).
    match <[OwnedFd; 1]>::try_from(received) {
        Ok([master]) => Ok(master),
        Err(other) => Err(format!(
            "the executor sent {} descriptors instead of its terminal",
            other.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};

    #[test]
    fn the_master_crosses_the_socket() {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        assert!(receive_master(&ours).is_err(), "nothing sent yet");
        let pty = nix::pty::openpty(None, None).unwrap();
        send_master(&ConsoleSocket(theirs), &pty.master).unwrap();
        let master = receive_master(&ours).unwrap();
        // The same pty: what the slave writes comes out of the received master.
        nix::unistd::write(&pty.slave, b"x").unwrap();
        let mut buf = [0u8; 1];
        nix::unistd::read(&master, &mut buf).unwrap();
        assert_eq!(&buf, b"x");
    }
}
