//! The PROXY protocol (version 1, text, and version 2, binary): the header a TCP (layer
//! 4) balancer puts before a connection's own bytes to say which client it came from.
//! Behind such a balancer every connection otherwise comes from the balancer, so the
//! audit trail would name the balancer and the per-address login throttle would count
//! every person together.
//!
//! The header is read without reading past it (TLS starts right after), byte by byte
//! for version 1 and by its stated length for version 2, and parsed by the `ppp` crate.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncReadExt;

/// Version 2's twelve-byte signature.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Version 1's longest header, `\r\n` included (the protocol's own limit).
const V1_MAX: usize = 107;
/// The longest version 2 header taken: addresses and the TLVs a balancer adds fit well
/// within it; a longer one is refused rather than buffered.
const V2_MAX: usize = 1024;

/// Why a connection from the balancer was closed before anything else was read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProxyHeaderError {
    #[error("no PROXY protocol header within {0:?}")]
    Timeout(Duration),
    #[error("the connection ended before its PROXY protocol header did")]
    Closed,
    #[error("not a PROXY protocol header: {0}")]
    Malformed(String),
}

/// Reads the PROXY protocol header at the start of `stream` within `within`: the client's
/// address, or `None` for a connection the balancer makes on its own behalf (version 1
/// `UNKNOWN`, version 2 `LOCAL`, its health checks), which keeps the balancer's address.
pub async fn read_proxy_header<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    within: Duration,
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    tokio::time::timeout(within, read_header(stream))
        .await
        .map_err(|_| ProxyHeaderError::Timeout(within))?
}

async fn read_header<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let closed = |_| ProxyHeaderError::Closed;
    // Both versions' shortest headers are longer than this.
    let mut header = vec![0u8; V2_SIGNATURE.len()];
    stream.read_exact(&mut header).await.map_err(closed)?;
    if header == V2_SIGNATURE {
        let mut fixed = [0u8; 4];
        stream.read_exact(&mut fixed).await.map_err(closed)?;
        header.extend_from_slice(&fixed);
        let length = usize::from(u16::from_be_bytes([fixed[2], fixed[3]]));
        if header.len() + length > V2_MAX {
            return Err(ProxyHeaderError::Malformed(format!(
                "a version 2 header of {} bytes (at most {V2_MAX} are taken)",
                header.len() + length
            )));
        }
        let start = header.len();
        header.resize(start + length, 0);
        stream
            .read_exact(&mut header[start..])
            .await
            .map_err(closed)?;
        return match ppp::v2::Header::try_from(header.as_slice()) {
            Ok(parsed) => Ok(match parsed.command {
                ppp::v2::Command::Local => None,
                ppp::v2::Command::Proxy => match parsed.addresses {
                    ppp::v2::Addresses::IPv4(ip) => {
                        Some(SocketAddr::new(ip.source_address.into(), ip.source_port))
                    }
                    ppp::v2::Addresses::IPv6(ip) => {
                        Some(SocketAddr::new(ip.source_address.into(), ip.source_port))
                    }
                    ppp::v2::Addresses::Unspecified | ppp::v2::Addresses::Unix(_) => None,
                },
            }),
            Err(error) => Err(ProxyHeaderError::Malformed(error.to_string())),
        };
    }
    if !header.starts_with(b"PROXY ") {
        return Err(ProxyHeaderError::Malformed(
            "the connection does not start with \"PROXY \" or the version 2 signature".into(),
        ));
    }
    while !header.ends_with(b"\r\n") {
        if header.len() >= V1_MAX {
            return Err(ProxyHeaderError::Malformed(format!(
                "a version 1 header longer than {V1_MAX} bytes"
            )));
        }
        let byte = stream.read_u8().await.map_err(closed)?;
        header.push(byte);
    }
    match ppp::v1::Header::try_from(header.as_slice()) {
        Ok(parsed) => Ok(match parsed.addresses {
            ppp::v1::Addresses::Tcp4(ip) => {
                Some(SocketAddr::new(ip.source_address.into(), ip.source_port))
            }
            ppp::v1::Addresses::Tcp6(ip) => {
                Some(SocketAddr::new(ip.source_address.into(), ip.source_port))
            }
            ppp::v1::Addresses::Unknown => None,
        }),
        Err(error) => Err(ProxyHeaderError::Malformed(error.to_string())),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    async fn read(bytes: &[u8]) -> (Result<Option<SocketAddr>, ProxyHeaderError>, Vec<u8>) {
        let mut stream = bytes;
        let header = read_proxy_header(&mut stream, Duration::from_secs(1)).await;
        (header, stream.to_vec())
    }

    fn v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
        let mut bytes = V2_SIGNATURE.to_vec();
        bytes.push(0x20 | command);
        bytes.push(family);
        bytes.extend_from_slice(&u16::try_from(addresses.len()).unwrap().to_be_bytes());
        bytes.extend_from_slice(addresses);
        bytes
    }

    #[tokio::test]
    async fn version_1_names_the_client_and_leaves_the_rest_unread() {
        let (header, rest) =
            read(b"PROXY TCP4 203.0.113.7 10.0.0.5 51234 8443\r\n\x16\x03\x01rest").await;
        assert_eq!(header, Ok(Some("203.0.113.7:51234".parse().unwrap())));
        assert_eq!(rest, b"\x16\x03\x01rest");
        let (header, _) = read(b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 8443\r\n").await;
        assert_eq!(header, Ok(Some("[2001:db8::1]:4000".parse().unwrap())));
        let (header, rest) = read(b"PROXY UNKNOWN\r\nGET /healthz").await;
        assert_eq!(header, Ok(None));
        assert_eq!(rest, b"GET /healthz");
    }

    #[tokio::test]
    async fn version_2_names_the_client_and_leaves_the_rest_unread() {
        let mut addresses = vec![198, 51, 100, 9, 10, 0, 0, 5];
        addresses.extend_from_slice(&40000u16.to_be_bytes());
        addresses.extend_from_slice(&8443u16.to_be_bytes());
        let mut bytes = v2(1, 0x11, &addresses);
        bytes.extend_from_slice(b"\x16\x03\x01");
        let (header, rest) = read(&bytes).await;
        assert_eq!(header, Ok(Some("198.51.100.9:40000".parse().unwrap())));
        assert_eq!(rest, b"\x16\x03\x01");
        // A health check of the balancer's own.
        let (header, _) = read(&v2(0, 0x00, &[])).await;
        assert_eq!(header, Ok(None));
    }

    #[tokio::test]
    async fn anything_else_is_refused_with_its_reason() {
        for bytes in [
            &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x00"[..],
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"PROXY TCP4 999.0.0.1 10.0.0.5 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8\r\n",
        ] {
            let (header, _) = read(bytes).await;
            assert!(
                matches!(header, Err(ProxyHeaderError::Malformed(_))),
                "{:?}: {header:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        let (header, _) = read(b"PROXY TCP4 1.2.3.4").await;
        assert_eq!(header, Err(ProxyHeaderError::Closed));
        let mut too_long = V2_SIGNATURE.to_vec();
        too_long.extend_from_slice(&[0x21, 0x11, 0xFF, 0xFF]);
        let (header, _) = read(&too_long).await;
        assert!(matches!(header, Err(ProxyHeaderError::Malformed(_))));
        // A balancer that sends nothing is not waited for beyond the limit.
        let (_client, mut server) = tokio::io::duplex(64);
        assert_eq!(
            read_proxy_header(&mut server, Duration::from_millis(50)).await,
            Err(ProxyHeaderError::Timeout(Duration::from_millis(50)))
        );
    }
}
