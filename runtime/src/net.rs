//! TCP socket options that a database driver does not set itself.
//!
//! sqlx 0.9 connects without `TCP_NODELAY` (0.8 set it; 0.9 dropped it and
//! offers no option), so Nagle's algorithm holds back the last partial
//! segment of a message until the server's delayed ACK — up to 40 ms — when
//! earlier bytes are still unacknowledged. A sink writing a batch as one large
//! COPY or multi-row statement hits exactly that. The connection's socket is
//! private to sqlx, so [`disable_nagle_to_port`] finds it among the process's
//! open descriptors instead, right after sqlx connected (its pools'
//! `after_connect` hook).

/// Turns Nagle's algorithm off (`TCP_NODELAY`) on every TCP socket of this
/// process whose remote port is `peer_port`; returns how many sockets it set.
///
/// Only the database connections of a sink task go to that port (a socket to
/// another service on the same port number gets `TCP_NODELAY` too, which is
/// harmless: the stream client sets it anyway). Linux only (the sockets are
/// found in `/proc/self/fd`); elsewhere it does nothing and returns 0.
pub fn disable_nagle_to_port(peer_port: u16) -> usize {
    #[cfg(target_os = "linux")]
    {
        linux::disable_nagle_to_port(peer_port)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = peer_port;
        0
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod linux {
    pub(super) fn disable_nagle_to_port(peer_port: u16) -> usize {
        let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
            return 0;
        };
        let mut set = 0;
        for entry in entries.flatten() {
            let Some(fd) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            let is_socket = std::fs::read_link(entry.path())
                .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
            if is_socket && remote_port(fd) == Some(peer_port) && set_nodelay(fd) {
                set += 1;
            }
        }
        set
    }

    /// The remote port of socket `fd` if it is a connected IPv4/IPv6 socket.
    fn remote_port(fd: i32) -> Option<u16> {
        // SAFETY: getpeername writes at most `len` bytes into `addr`, a
        // zeroed sockaddr_storage large enough for any address family; a
        // descriptor that is not a connected socket only makes it fail.
        let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let rc =
            unsafe { libc::getpeername(fd, (&raw mut addr).cast::<libc::sockaddr>(), &mut len) };
        if rc != 0 {
            return None;
        }
        match i32::from(addr.ss_family) {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a sockaddr_in.
                let v4 = unsafe { &*(&raw const addr).cast::<libc::sockaddr_in>() };
                Some(u16::from_be(v4.sin_port))
            }
            libc::AF_INET6 => {
                // SAFETY: the family says the storage holds a sockaddr_in6.
                let v6 = unsafe { &*(&raw const addr).cast::<libc::sockaddr_in6>() };
                Some(u16::from_be(v6.sin6_port))
            }
            _ => None,
        }
    }

    /// Sets `TCP_NODELAY` on `fd`; false when it is not a TCP socket.
    fn set_nodelay(fd: i32) -> bool {
        let on: libc::c_int = 1;
        // SAFETY: setsockopt reads one c_int from `on`; on a descriptor that
        // is not a TCP socket it fails without effect.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&raw const on).cast::<libc::c_void>(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        rc == 0
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn sets_nodelay_on_the_sockets_to_the_port_only() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let a = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let b = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let c = std::net::TcpStream::connect(other.local_addr().unwrap()).unwrap();
        for s in [&a, &b, &c] {
            assert!(!s.nodelay().unwrap(), "Nagle is on by default");
        }
        assert_eq!(disable_nagle_to_port(port), 2);
        assert!(a.nodelay().unwrap());
        assert!(b.nodelay().unwrap());
        assert!(
            !c.nodelay().unwrap(),
            "a socket to another port is left alone"
        );
    }
}
