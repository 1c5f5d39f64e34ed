//! Network interface resolution: by name, or the one carrying the default route.

use std::ffi::CString;

use crate::{Error, Result};

/// A network interface in the caller's network namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub index: u32,
}

impl Interface {
    /// Resolves `name`, or the default-route interface when `name` is `None`.
    pub fn resolve(name: Option<&str>) -> Result<Self> {
        let name = match name {
            Some(n) => n.to_string(),
            None => default_route_interface()?,
        };
        let c = CString::new(name.as_bytes())
            .map_err(|_| Error::UnknownInterface { name: name.clone() })?;
        // SAFETY: `c` is a valid NUL-terminated string.
        let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
        if index == 0 {
            return Err(Error::UnknownInterface { name });
        }
        Ok(Self { name, index })
    }
}

/// The interface of the IPv4 default route with the lowest metric, from /proc/net/route.
pub fn default_route_interface() -> Result<String> {
    let table = std::fs::read_to_string("/proc/net/route")
        .map_err(|e| Error::io("reading /proc/net/route", e))?;
    parse_default_route(&table).ok_or(Error::NoDefaultRoute)
}

fn parse_default_route(table: &str) -> Option<String> {
    const RTF_UP: u32 = 0x1;
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // Iface Destination Gateway Flags RefCnt Use Metric Mask ...
            if f.len() < 8 || f[1] != "00000000" || f[7] != "00000000" {
                return None;
            }
            let flags = u32::from_str_radix(f[3], 16).ok()?;
            let metric: u32 = f[6].parse().ok()?;
            (flags & RTF_UP != 0).then(|| (metric, f[0].to_string()))
        })
        .min()
        .map(|(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n";

    #[test]
    fn picks_lowest_metric_default_route() {
        let table = format!(
            "{HEADER}wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n\
             eth0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
             eth0\t0000000A\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n"
        );
        assert_eq!(parse_default_route(&table).as_deref(), Some("eth0"));
    }

    #[test]
    fn no_default_route() {
        let table =
            format!("{HEADER}eth0\t0000000A\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n");
        assert_eq!(parse_default_route(&table), None);
    }

    #[test]
    fn unknown_interface_is_named() {
        let err = Interface::resolve(Some("nonexistent0")).unwrap_err();
        assert!(err.to_string().contains("nonexistent0"), "{err}");
    }
}
