//! Which addresses a guest may name, before the embedder's check is asked:
//! wasmtime-wasi 48's own rules (`sockets/mod.rs`: `is_valid_unicast_address`,
//! `is_valid_remote_address`, `is_valid_address_family`), so a
//! [`SocketAddrCheck`](super::SocketAddrCheck) written for WASI never sees an
//! address WASI would have refused.
//!
//! These sockets take their family from the address, so the family rule is
//! the IPv6 half of WASI's: an IPv4-mapped (`::ffff:a.b.c.d`) or deprecated
//! IPv4-compatible (`::a.b.c.d`) IPv6 address is refused, not canonicalized.
//! A policy that denies `127.0.0.1` would otherwise be asked about
//! `::ffff:127.0.0.1` and reach the same service.

use runtime_mm::Errno;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// `inval` unless `addr` may be bound: unicast, of a valid family.
pub(crate) fn local(addr: SocketAddr) -> Result<(), Errno> {
    if unicast(addr.ip()) && family(addr.ip()) {
        Ok(())
    } else {
        Err(Errno::Inval)
    }
}

/// `inval` unless `addr` may be connected to: as [`local`], and neither the
/// unspecified address (which the kernel takes for loopback) nor port 0.
pub(crate) fn remote(addr: SocketAddr) -> Result<(), Errno> {
    local(addr)?;
    if addr.ip().to_canonical().is_unspecified() || addr.port() == 0 {
        return Err(Errno::Inval);
    }
    Ok(())
}

/// The unspecified address of `addr`'s family, port 0: what a connect's
/// implicit bind is checked as.
pub(crate) fn implicit_bind(addr: SocketAddr) -> SocketAddr {
    let ip = match addr {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, 0)
}

fn unicast(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => !v4.is_multicast() && !v4.is_broadcast(),
        IpAddr::V6(v6) => !v6.is_multicast(),
    }
}

fn family(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(_) => true,
        IpAddr::V6(v6) => {
            let compatible =
                matches!(v6.segments(), [0, 0, 0, 0, 0, 0, _, _]) && !v6.is_unspecified() && !v6.is_loopback();
            !compatible && v6.to_ipv4_mapped().is_none()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn wasis_rules() {
        for bad in [
            "0.0.0.0:80",
            "[::]:80",
            "127.0.0.1:0",
            "[::ffff:127.0.0.1]:80",
            "[::127.0.0.1]:80",
        ] {
            assert_eq!(remote(a(bad)), Err(Errno::Inval), "{bad}");
        }
        for bad in [
            "224.0.0.1:80",
            "255.255.255.255:80",
            "[ff02::1]:80",
            "[::ffff:10.0.0.1]:80",
        ] {
            assert_eq!(local(a(bad)), Err(Errno::Inval), "{bad}");
            assert_eq!(remote(a(bad)), Err(Errno::Inval), "{bad}");
        }
        for good in ["127.0.0.1:80", "[::1]:80", "10.1.2.3:1"] {
            assert_eq!(remote(a(good)), Ok(()), "{good}");
        }
        // Binding to the wildcard or an ephemeral port is fine.
        for good in ["0.0.0.0:0", "[::]:0", "127.0.0.1:0"] {
            assert_eq!(local(a(good)), Ok(()), "{good}");
        }
        assert_eq!(implicit_bind(a("[::1]:9")), a("[::]:0"));
        assert_eq!(implicit_bind(a("127.0.0.1:9")), a("0.0.0.0:0"));
    }
}
