//! Where a webhook may point: URL rules, and the SSRF guard.
//!
//! A URL is `http` or `https`, at most [`MAX_URL_CHARS`] long, with a host and without
//! credentials. Unless private destinations are allowed, an address on loopback, a private
//! network (RFC 1918, IPv6 ULA), link-local (which holds the cloud metadata address
//! 169.254.169.254), CGNAT (100.64/10, where Alibaba's metadata lives), unspecified, multicast,
//! broadcast, reserved or documentation ranges is refused: when the URL names it, at creation;
//! when a name resolves to it, both at creation and at each attempt. At delivery the HTTP client
//! resolves names through [`GuardedResolver`], which refuses such answers, so the connection goes
//! to the very address that was checked (no second lookup for DNS rebinding to exploit).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Longest accepted URL.
pub const MAX_URL_CHARS: usize = 2048;

/// Checks a URL's form (not its addresses). The message says what is wrong.
pub fn parse_url(text: &str) -> Result<Url, String> {
    if text.chars().count() > MAX_URL_CHARS {
        return Err(format!("longer than {MAX_URL_CHARS} characters"));
    }
    let url = Url::parse(text).map_err(|e| format!("not an absolute URL ({e})"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!("scheme `{}` is not http or https", url.scheme()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials (user:password@)".to_owned());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host".to_owned());
    }
    if url.fragment().is_some() {
        return Err("must not have a #fragment".to_owned());
    }
    Ok(url)
}

/// Why an address may not be a destination, or `None` when it may.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            let s = v6.segments();
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if s[0] & 0xfe00 == 0xfc00 {
                Some("private (unique local)")
            } else if s[0] & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if s[0] == 0x64 && s[1] == 0xff9b {
                // NAT64 embeds an IPv4 address: judge that one.
                forbidden_v4(Ipv4Addr::from((u32::from(s[6]) << 16) | u32::from(s[7])))
            } else if s[0] == 0x2001 && s[1] == 0x0db8 {
                Some("documentation")
            } else if s[..6] == [0; 6] {
                // IPv4-compatible (deprecated) `::a.b.c.d`.
                forbidden_v4(Ipv4Addr::new(
                    (s[6] >> 8) as u8,
                    s[6] as u8,
                    (s[7] >> 8) as u8,
                    s[7] as u8,
                ))
            } else {
                None
            }
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if ip.is_private() {
        Some("private")
    } else if ip == Ipv4Addr::new(169, 254, 169, 254) {
        Some("cloud metadata")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (CGNAT)")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip.is_broadcast()
        || a >= 240
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b == 18 || b == 19))
    {
        Some("reserved")
    } else if (a == 192 && b == 0 && c == 2)
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
    {
        Some("documentation")
    } else {
        None
    }
}

/// Why a destination was refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "destination {host} is {kind} address {ip}; refused (start Baton with --webhooks-allow-private to allow it)"
)]
pub struct Refused {
    /// The host as named.
    pub host: String,
    /// The address.
    pub ip: IpAddr,
    /// What kind of address it is.
    pub kind: &'static str,
}

/// Checks the host of `url` when it is an address (or `localhost`); names are checked by
/// resolution ([`check_resolved`], [`GuardedResolver`]).
pub fn check_literal(url: &Url) -> Result<(), Refused> {
    let host = url.host_str().unwrap_or_default();
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        _ => {
            let h = host.trim_end_matches('.').to_ascii_lowercase();
            if h == "localhost" || h.ends_with(".localhost") {
                return Err(Refused {
                    host: host.to_owned(),
                    ip: IpAddr::V6(Ipv6Addr::LOCALHOST),
                    kind: "a loopback",
                });
            }
            return Ok(());
        }
    };
    match forbidden(ip) {
        Some(kind) => Err(Refused {
            host: host.to_owned(),
            ip,
            kind: article(kind),
        }),
        None => Ok(()),
    }
}

fn article(kind: &'static str) -> &'static str {
    match kind {
        "loopback" => "a loopback",
        "unspecified" => "an unspecified",
        "private" => "a private",
        "private (unique local)" => "a private (unique local)",
        "cloud metadata" => "a cloud metadata",
        "link-local" => "a link-local",
        "shared (CGNAT)" => "a shared (CGNAT)",
        "multicast" => "a multicast",
        "documentation" => "a documentation",
        _ => "a reserved",
    }
}

/// At creation: resolves a named host (for at most `timeout`) and refuses it when an answer is
/// a forbidden address. A name that does not resolve (yet) is accepted: attempts check again.
pub async fn check_resolved(url: &Url, timeout: Duration) -> Result<(), Refused> {
    check_literal(url)?;
    let Some(url::Host::Domain(name)) = url.host() else {
        return Ok(());
    };
    let port = url.port_or_known_default().unwrap_or(443);
    let Ok(Ok(addrs)) = tokio::time::timeout(timeout, tokio::net::lookup_host((name, port))).await
    else {
        return Ok(());
    };
    for a in addrs {
        if let Some(kind) = forbidden(a.ip()) {
            return Err(Refused {
                host: name.to_owned(),
                ip: a.ip(),
                kind: article(kind),
            });
        }
    }
    Ok(())
}

/// The delivery client's resolver: the system's, refusing forbidden answers (unless private
/// destinations are allowed).
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    /// Accept every address.
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !allow_private
                && let Some((ip, kind)) = addrs
                    .iter()
                    .find_map(|a| forbidden(a.ip()).map(|k| (a.ip(), k)))
            {
                return Err(Box::new(Refused {
                    host,
                    ip,
                    kind: article(kind),
                })
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn addresses() {
        let refused = [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.1.1",
            "100.64.0.1",
            "100.100.100.200",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
        ];
        for ip in refused {
            assert!(
                forbidden(ip.parse().unwrap()).is_some(),
                "{ip} must be refused"
            );
        }
        let allowed = [
            "93.184.216.34",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "8.8.8.8",
        ];
        for ip in allowed {
            assert_eq!(forbidden(ip.parse().unwrap()), None, "{ip} must be allowed");
        }
    }

    #[test]
    fn urls() {
        assert!(parse_url("https://example.com/hook").is_ok());
        assert!(parse_url("http://example.com:8080/x?y=1").is_ok());
        for bad in [
            "ftp://example.com/",
            "example.com/hook",
            "https://user:pw@example.com/",
            "https://user@example.com/",
            "https://",
            "https://example.com/#frag",
            "",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_CHARS));
        assert!(parse_url(&long).is_err());
        for bad in [
            "http://127.0.0.1/",
            "http://[::1]:80/",
            "http://localhost:9/",
            "http://169.254.169.254/latest",
            "http://a.localhost/",
            "http://10.0.0.1/",
        ] {
            assert!(check_literal(&parse_url(bad).unwrap()).is_err(), "{bad}");
        }
        assert!(check_literal(&parse_url("https://example.com/").unwrap()).is_ok());
    }
}
