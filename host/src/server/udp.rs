//! The broker's UDP socket: kernel buffers sized for login bursts, and the kernel's count
//! of datagrams it dropped because the receive buffer was full.
//!
//! Every QUIC packet of every client arrives on this one socket. With the kernel's default
//! receive buffer (about 208 KiB on Linux) a burst of a few hundred handshakes, or of many
//! clients closing at once, overflows it: lost handshake packets wait for QUIC's
//! retransmission timers (a second or more), and a lost CONNECTION_CLOSE leaves a dead
//! session until the idle timeout.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};

/// Sizes asked of the kernel for the socket's buffers, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct BufferSizes {
    pub receive: usize,
    pub send: usize,
}

/// The buffers the kernel actually gave (Linux reports twice the size asked for, the
/// second half being its bookkeeping; this is what it reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    pub receive: usize,
    pub send: usize,
}

/// Binds `addr` and sizes its buffers. A size the system's limit (`net.core.rmem_max`,
/// `net.core.wmem_max`) does not allow is still granted when the process may override the
/// limit (CAP_NET_ADMIN); otherwise the socket gets the limit and a warning says how to
/// raise it.
pub fn bind(addr: SocketAddr, sizes: BufferSizes) -> std::io::Result<(UdpSocket, UdpStats)> {
    let socket = UdpSocket::bind(addr)?;
    let granted = Granted {
        receive: size_buffer(&socket, Direction::Receive, sizes.receive),
        send: size_buffer(&socket, Direction::Send, sizes.send),
    };
    for (what, asked, got, sysctl) in [
        (
            "receive",
            sizes.receive,
            granted.receive,
            "net.core.rmem_max",
        ),
        ("send", sizes.send, granted.send, "net.core.wmem_max"),
    ] {
        // The kernel doubles what it is asked for; getting less than asked means a cap.
        if got < asked {
            tracing::warn!(
                asked,
                granted = got / 2,
                "the UDP {what} buffer is smaller than configured: a burst of logins may lose packets; \
                 raise the system's limit (sysctl -w {sysctl}={asked}) or give the broker CAP_NET_ADMIN"
            );
        }
    }
    let stats = UdpStats {
        granted,
        fd: socket.try_clone()?.into(),
    };
    Ok((socket, stats))
}

#[derive(Clone, Copy)]
enum Direction {
    Receive,
    Send,
}

/// Asks for `size` bytes, forcing past the system's limit when allowed; returns what the
/// kernel reports.
fn size_buffer(socket: &UdpSocket, direction: Direction, size: usize) -> usize {
    let (force, plain) = match direction {
        Direction::Receive => (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        Direction::Send => (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    };
    let value = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
    if setsockopt(socket, force, value).is_err() {
        // Without CAP_NET_ADMIN: the kernel caps the size at the system's limit.
        let _ = setsockopt(socket, plain, value);
    }
    getsockopt(socket, plain).map(|v| v as usize).unwrap_or(0)
}

fn setsockopt(socket: &UdpSocket, name: libc::c_int, value: libc::c_int) -> std::io::Result<()> {
    // SAFETY: the fd is a live socket owned by `socket`; the value is a c_int of the given size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn getsockopt(socket: &UdpSocket, name: libc::c_int) -> std::io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the fd is a live socket; `value` and `len` describe a writable c_int.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(value)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// What the kernel says of the socket: the buffers it granted, and how many datagrams it
/// dropped (the `drops` column of /proc/net/udp for this socket).
pub struct UdpStats {
    pub granted: Granted,
    /// A duplicate of the socket's descriptor (the socket itself belongs to quinn).
    fd: OwnedFd,
}

impl UdpStats {
    /// Datagrams dropped since the socket was made (the kernel's counter, which wraps at
    /// 2^32), or `None` if the kernel does not say.
    pub fn drops(&self) -> Option<u64> {
        const FIELDS: usize = libc::SK_MEMINFO_DROPS as usize + 1;
        let mut meminfo = [0u32; 16];
        let mut len = std::mem::size_of_val(&meminfo) as libc::socklen_t;
        // SAFETY: the fd is a live socket; `meminfo` and `len` describe a writable buffer.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_MEMINFO,
                meminfo.as_mut_ptr().cast(),
                &mut len,
            )
        };
        (rc == 0 && len as usize >= FIELDS * 4)
            .then(|| u64::from(meminfo[libc::SK_MEMINFO_DROPS as usize]))
    }
}

/// How often [`warn_on_drops`] looks at the drop counter.
const DROP_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Logs a warning whenever the kernel dropped datagrams at the socket since the last look
/// (every 10 s): each drop cost a client a retransmission, or a session its close.
pub async fn warn_on_drops(stats: std::sync::Arc<UdpStats>) {
    let mut seen = stats.drops().unwrap_or(0);
    let mut tick = tokio::time::interval(DROP_CHECK_EVERY);
    loop {
        tick.tick().await;
        let Some(now) = stats.drops() else { return };
        if now != seen {
            tracing::warn!(
                dropped = now.wrapping_sub(seen) & u64::from(u32::MAX),
                receive_buffer = stats.granted.receive / 2,
                "the UDP socket dropped datagrams in a burst (its receive buffer was full); raise udp.receive_buffer_bytes"
            );
            seen = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_sized_as_asked_within_what_the_system_allows() {
        let sizes = BufferSizes {
            receive: 1 << 20,
            send: 512 << 10,
        };
        let (socket, stats) = bind("127.0.0.1:0".parse().unwrap(), sizes).unwrap();
        // 1 MiB is under any usual system limit; the kernel reports double.
        assert!(
            stats.granted.receive >= sizes.receive,
            "{:?}",
            stats.granted
        );
        assert!(stats.granted.send >= sizes.send, "{:?}", stats.granted);
        assert_eq!(stats.drops(), Some(0));
        drop(socket);
    }

    #[test]
    fn a_full_receive_buffer_is_counted_as_drops() {
        let sizes = BufferSizes {
            receive: 4096,
            send: 4096,
        };
        let (socket, stats) = bind("127.0.0.1:0".parse().unwrap(), sizes).unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        // Nobody reads `socket`: after a few datagrams its small buffer is full.
        for _ in 0..200 {
            sender
                .send_to(&[0u8; 1200], socket.local_addr().unwrap())
                .unwrap();
        }
        let drops = stats.drops().unwrap();
        assert!(
            drops > 100,
            "{drops} drops for 200 datagrams into a 4 KiB buffer"
        );
    }
}
