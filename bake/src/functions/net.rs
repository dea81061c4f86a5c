//! CIDR functions (`cidrhost`, `cidrnetmask`, `cidrsubnet`, `cidrsubnets`): Go's `net`
//! parsing and printing of prefixes, with `go-cidr`'s arithmetic and messages.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hcl::Value;

use super::value::{str_of, to_int};
use super::FuncError;

type R = Result<Value, FuncError>;

/// A parsed prefix: the network address (host bits cleared) in `bits`-wide arithmetic.
#[derive(Debug, Clone, Copy)]
struct Net {
    ip: u128,
    prefix: u32,
    bits: u32,
}

impl Net {
    fn mask(&self) -> u128 {
        mask(self.prefix, self.bits)
    }

    fn last(&self) -> u128 {
        self.ip | (!self.mask() & all_ones(self.bits))
    }

    fn contains(&self, ip: u128) -> bool {
        ip & self.mask() == self.ip
    }

    fn to_text(self) -> String {
        format!("{}/{}", ip_text(self.ip, self.bits), self.prefix)
    }
}

fn all_ones(bits: u32) -> u128 {
    if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    }
}

fn mask(prefix: u32, bits: u32) -> u128 {
    if prefix == 0 {
        0
    } else {
        all_ones(bits) & !(all_ones(bits - prefix.min(bits)))
    }
}

/// Go's `net.IP.String`: dotted for IPv4 (and IPv4-mapped IPv6), RFC 5952 otherwise.
fn ip_text(ip: u128, bits: u32) -> String {
    if bits == 32 {
        return Ipv4Addr::from(ip as u32).to_string();
    }
    let v6 = Ipv6Addr::from(ip);
    match v6.to_ipv4_mapped() {
        Some(v4) => v4.to_string(),
        None => v6.to_string(),
    }
}

/// Go's `net.ParseCIDR`.
fn parse_cidr(s: &str) -> Result<Net, String> {
    let err = || format!("invalid CIDR expression: invalid CIDR address: {s}");
    let (addr, len) = s.split_once('/').ok_or_else(err)?;
    let ip: IpAddr = addr.parse().map_err(|_| err())?;
    if len.is_empty() || !len.bytes().all(|c| c.is_ascii_digit()) || len.len() > 10 {
        return Err(err());
    }
    let prefix: u32 = len.parse().map_err(|_| err())?;
    let (raw, bits) = match ip {
        IpAddr::V4(v4) => (u32::from(v4) as u128, 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    };
    if prefix > bits {
        return Err(err());
    }
    Ok(Net {
        ip: raw & mask(prefix, bits),
        prefix,
        bits,
    })
}

pub fn cidrhost(args: Vec<Value>) -> R {
    let host = to_int(&args[1]).map_err(FuncError::call)?;
    let net = parse_cidr(str_of(&args[0])).map_err(FuncError::call)?;
    let host_len = net.bits - net.prefix;
    let max_host: u128 = all_ones(host_len);
    // A negative host number counts back from the last address of the prefix.
    let (value, magnitude) = if host < 0 {
        let back = host.unsigned_abs() as u128 - 1;
        (max_host.wrapping_sub(back), back)
    } else {
        (host as u128, host as u128)
    };
    if magnitude > max_host {
        // go-cidr reports the number after counting back from the end, for negative ones.
        let shown = if host < 0 {
            max_host as i128 - magnitude as i128
        } else {
            host as i128
        };
        return Err(FuncError::call(format!(
            "prefix of {} does not accommodate a host numbered {shown}",
            net.prefix
        )));
    }
    // go-cidr sizes the insertion by whether the address converts to IPv4, which an
    // IPv4-mapped IPv6 prefix does: the number lands 96 bits higher.
    let value = if net.bits == 128 && Ipv6Addr::from(net.ip).to_ipv4_mapped().is_some() {
        value << 96
    } else {
        value
    };
    Ok(Value::String(ip_text(net.ip | value, net.bits)))
}

pub fn cidrnetmask(args: Vec<Value>) -> R {
    let net = parse_cidr(str_of(&args[0])).map_err(FuncError::call)?;
    let m = net.mask();
    // A mask is never an IPv4-mapped address, so it prints in its own family.
    let text = if net.bits == 32 {
        Ipv4Addr::from(m as u32).to_string()
    } else {
        Ipv6Addr::from(m).to_string()
    };
    Ok(Value::String(text))
}

pub fn cidrsubnet(args: Vec<Value>) -> R {
    let newbits = to_int(&args[1]).map_err(FuncError::call)?;
    let netnum = to_int(&args[2]).map_err(FuncError::call)?;
    let net = parse_cidr(str_of(&args[0])).map_err(FuncError::call)?;
    if newbits > 32 {
        return Err(FuncError::call(
            "may not extend prefix by more than 32 bits",
        ));
    }
    let new_prefix = net.prefix as i64 + newbits;
    if new_prefix > net.bits as i64 {
        return Err(FuncError::call(format!(
            "insufficient address space to extend prefix of {} by {newbits}",
            net.prefix
        )));
    }
    let new_prefix = new_prefix.max(0) as u32;
    let max_net: u64 = (1u64 << newbits.max(0)) - 1;
    // go-cidr compares the number's magnitude (big.Int's Uint64).
    let magnitude = netnum.unsigned_abs();
    if magnitude > max_net {
        return Err(FuncError::call(format!(
            "prefix extension of {newbits} does not accommodate a subnet numbered {netnum}"
        )));
    }
    let shifted = (magnitude as u128)
        .checked_shl(net.bits - new_prefix)
        .unwrap_or(0);
    let sub = Net {
        ip: net.ip | shifted,
        prefix: new_prefix,
        bits: net.bits,
    };
    Ok(Value::String(sub.to_text()))
}

pub fn cidrsubnets(args: Vec<Value>) -> R {
    let net = parse_cidr(str_of(&args[0])).map_err(|m| FuncError::arg(0, m))?;
    let lengths = &args[1..];
    if lengths.is_empty() {
        return Ok(Value::Array(Vec::new()));
    }
    let first = to_int(&lengths[0]).map_err(|m| FuncError::arg(1, m))?;
    let first_len = (first + net.prefix as i64).clamp(0, net.bits as i64) as u32;
    // The subnet just before the prefix, at the first requested length (wrapping below zero).
    let prev_ip = net.ip.wrapping_sub(1) & all_ones(net.bits);
    let mut current = Net {
        ip: prev_ip & mask(first_len, net.bits),
        prefix: first_len,
        bits: net.bits,
    };
    let mut out = Vec::with_capacity(lengths.len());
    for (i, arg) in lengths.iter().enumerate() {
        let len = to_int(arg).map_err(|m| FuncError::arg(i + 1, m))?;
        if len < 1 {
            return Err(FuncError::arg(
                i + 1,
                "must extend prefix by at least one bit",
            ));
        }
        if len > 32 {
            return Err(FuncError::arg(
                i + 1,
                "may not extend prefix by more than 32 bits",
            ));
        }
        let len = len + net.prefix as i64;
        if len > net.bits as i64 {
            let protocol = if net.bits == 32 { "IPv4" } else { "IPv6" };
            return Err(FuncError::arg(
                i + 1,
                format!(
                    "would extend prefix to {len} bits, which is too long for an {protocol} address"
                ),
            ));
        }
        let len = len as u32;
        // go-cidr's NextSubnet: the subnet of this length right after the current one.
        let m = mask(len, net.bits);
        let widened = Net {
            ip: current.last() & m,
            prefix: len,
            bits: net.bits,
        };
        let after = widened.last().wrapping_add(1) & all_ones(net.bits);
        let next = Net {
            ip: after & m,
            prefix: len,
            bits: net.bits,
        };
        if after == 0 || !net.contains(next.ip) {
            return Err(FuncError::arg(
                i + 1,
                format!(
                    "not enough remaining address space for a subnet with a prefix of {len} bits after {}",
                    current.to_text()
                ),
            ));
        }
        current = next;
        out.push(Value::String(current.to_text()));
    }
    Ok(Value::Array(out))
}
