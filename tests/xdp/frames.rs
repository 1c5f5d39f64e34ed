//! Hand-built Ethernet frames for the firewall tests: any source address, IPv4 or IPv6, with or
//! without VLAN tags, sent raw so the test alone decides what crosses the veth.

use std::net::IpAddr;

use crate::harness::{RX_MAC_BYTES, TX_MAC_BYTES};

/// An Ethernet frame carrying a UDP datagram of `payload` bytes from `src` to `dst`, tagged
/// with each VLAN id in `vlans` (outermost first, 802.1ad for the outer of two).
pub fn udp(src: IpAddr, dst: IpAddr, vlans: &[u16], payload: usize) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&RX_MAC_BYTES);
    f.extend_from_slice(&TX_MAC_BYTES);
    for (i, id) in vlans.iter().enumerate() {
        let tpid: u16 = if vlans.len() == 2 && i == 0 {
            0x88a8
        } else {
            0x8100
        };
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&id.to_be_bytes());
    }
    let udp_len = 8 + payload;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f.extend_from_slice(&0x0800u16.to_be_bytes());
            f.extend_from_slice(&[0x45, 0]);
            f.extend_from_slice(&((20 + udp_len) as u16).to_be_bytes());
            f.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            f.extend_from_slice(&0x86ddu16.to_be_bytes());
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&(udp_len as u16).to_be_bytes());
            f.extend_from_slice(&[17, 64]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
        }
        _ => panic!("mixed families"),
    }
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&9u16.to_be_bytes());
    f.extend_from_slice(&(udp_len as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend(std::iter::repeat_n(0xab, payload));
    f
}

/// `n` copies of a frame.
pub fn times(frame: Vec<u8>, n: usize) -> Vec<Vec<u8>> {
    vec![frame; n]
}

/// Parses an address literal.
pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}
