//! Binding the listening socket with a listen backlog of our choosing.
//!
//! `tokio::net::TcpListener::bind` always asks the kernel for a backlog of
//! 1,024. When more connections arrive at once than the accept queue holds
//! (10,000 users opening their connections, or a burst after a restart), the
//! kernel drops the extra SYNs (`TcpExtListenOverflows`/`ListenDrops` in
//! `nstat`) and each client sends its SYN again only after its 1 s
//! retransmission timeout: the slowest requests then take a second. Here the
//! socket is bound through `tokio::net::TcpSocket`, which lets `listen` take
//! COOP_LISTEN_BACKLOG (default 4,096).
//!
//! The kernel silently caps any backlog at `net.core.somaxconn` (4,096 on
//! Linux since 5.4, 128 before), so a larger setting would look applied
//! while it is not: [`effective_backlog`] works out what the kernel will use,
//! and start-up logs a warning naming the sysctl to raise when it is less
//! than asked for.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// COOP_LISTEN_BACKLOG's default: Linux's own `somaxconn` default since 5.4.
pub const DEFAULT_BACKLOG: u32 = 4096;

/// Where Linux keeps the cap on every listen backlog.
const SOMAXCONN_PATH: &str = "/proc/sys/net/core/somaxconn";

/// The backlog the kernel will apply when asked for `requested`, given the
/// `somaxconn` cap if it could be read (else it is taken as asked).
pub fn effective_backlog(requested: u32, somaxconn: Option<u32>) -> u32 {
    let requested = requested.max(1);
    match somaxconn {
        Some(cap) if cap > 0 => requested.min(cap),
        _ => requested,
    }
}

/// `net.core.somaxconn`, where the system has one.
pub fn somaxconn() -> Option<u32> {
    std::fs::read_to_string(SOMAXCONN_PATH)
        .ok()
        .and_then(|text| text.trim().parse().ok())
}

/// Binds `address` with SO_REUSEADDR (as `TcpListener::bind` does, so a
/// restart does not wait out TIME_WAIT) and listens with `backlog`. Returns
/// the listener and the backlog the kernel applies.
pub fn bind(address: SocketAddr, backlog: u32) -> std::io::Result<(TcpListener, u32)> {
    let socket = match address {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    let cap = somaxconn();
    let applied = effective_backlog(backlog, cap);
    if applied < backlog {
        tracing::warn!(
            requested = backlog,
            applied,
            "COOP_LISTEN_BACKLOG is above net.core.somaxconn, which caps it: raise that sysctl to use the setting"
        );
    }
    // Asking for `backlog` rather than `applied`: should the sysctl be raised
    // while this process runs, the kernel does not re-read it, but asking for
    // no more than the setting keeps the value an operator chose.
    let listener = socket.listen(backlog)?;
    Ok((listener, applied))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_cap_wins_over_a_larger_setting() {
        assert_eq!(effective_backlog(4096, Some(4096)), 4096);
        assert_eq!(effective_backlog(65_535, Some(4096)), 4096);
        assert_eq!(effective_backlog(4096, Some(128)), 128);
    }

    #[test]
    fn a_smaller_setting_is_kept() {
        assert_eq!(effective_backlog(1024, Some(4096)), 1024);
        assert_eq!(effective_backlog(16, Some(4096)), 16);
    }

    #[test]
    fn without_a_readable_cap_the_setting_is_taken_as_asked() {
        assert_eq!(effective_backlog(4096, None), 4096);
        assert_eq!(effective_backlog(4096, Some(0)), 4096);
        assert_eq!(effective_backlog(0, None), 1);
    }

    #[tokio::test]
    async fn binds_a_port_that_accepts() {
        let (listener, applied) = bind("127.0.0.1:0".parse().unwrap(), 64).unwrap();
        assert!((1..=64).contains(&applied));
        let address = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(address);
        let (accepted, client) = tokio::join!(listener.accept(), client);
        assert!(accepted.is_ok() && client.is_ok());
    }
}
