//! A WebSocket client that writes frames byte by byte, so tests can send what
//! a well-behaved library never would: reserved bits, unknown opcodes,
//! unmasked frames, bad UTF-8, lying lengths.

use super::{Server, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const CONTINUATION: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// One frame as it goes over the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    pub fin: bool,
    /// RSV1..3 as the low three bits.
    pub rsv: u8,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl RawFrame {
    pub fn new(opcode: u8, payload: impl Into<Vec<u8>>) -> Self {
        RawFrame {
            fin: true,
            rsv: 0,
            opcode,
            payload: payload.into(),
        }
    }

    pub fn fin(mut self, fin: bool) -> Self {
        self.fin = fin;
        self
    }

    pub fn rsv(mut self, rsv: u8) -> Self {
        self.rsv = rsv;
        self
    }

    /// A Close frame with `code` and `reason`.
    pub fn close(code: u16, reason: &[u8]) -> Self {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason);
        RawFrame::new(CLOSE, payload)
    }

    /// The frame's bytes; masked with `mask` (clients must mask).
    pub fn encode(&self, mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = vec![(u8::from(self.fin) << 7) | (self.rsv << 4) | self.opcode];
        let mask_bit = if mask.is_some() { 0x80 } else { 0 };
        let len = self.payload.len();
        if len < 126 {
            out.push(mask_bit | len as u8);
        } else if len <= 0xFFFF {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        match mask {
            Some(key) => {
                out.extend_from_slice(&key);
                out.extend(self.payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
            }
            None => out.extend_from_slice(&self.payload),
        }
        out
    }

    /// The close code of a Close frame, if it carries one.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == CLOSE && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// An upgraded connection spoken to frame by frame.
pub struct RawWs {
    tcp: TcpStream,
    buf: Vec<u8>,
}

impl RawWs {
    /// Open `path` with a hand-written handshake.
    pub async fn connect(server: &Server, path: &str) -> RawWs {
        RawWs::connect_with(server, path, "").await
    }

    /// Open `path` with a hand-written handshake carrying `extra` header lines.
    pub async fn connect_with(server: &Server, path: &str, extra: &str) -> RawWs {
        let tcp = TcpStream::connect(server.addr).await.unwrap();
        RawWs::open(tcp, server, path, extra).await
    }

    /// Open `path` from source address 127.0.0.`host`.
    pub async fn connect_from(server: &Server, host: u8, path: &str) -> RawWs {
        let tcp = super::tcp_from(server, host).await;
        RawWs::open(tcp, server, path, "").await
    }

    /// The handshake for `path` over `tcp`, with `extra` header lines.
    async fn open(mut tcp: TcpStream, server: &Server, path: &str, extra: &str) -> RawWs {
        tcp.set_nodelay(true).unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n",
            server.addr
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut ws = RawWs {
            tcp,
            buf: Vec::new(),
        };
        let end = loop {
            if let Some(i) = ws.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(ws.fill().await, "connection closed during the handshake");
        };
        let head = String::from_utf8_lossy(&ws.buf[..end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        ws.buf.drain(..end);
        ws
    }

    /// The TCP stream, and what was read past the handshake.
    pub fn into_parts(self) -> (TcpStream, Vec<u8>) {
        (self.tcp, self.buf)
    }

    /// Send `frame` masked, as a client must.
    pub async fn send(&mut self, frame: &RawFrame) {
        self.send_bytes(&frame.encode(Some([0x37, 0xfa, 0x21, 0x3d])))
            .await;
    }

    /// Send raw bytes; a peer that already closed is not an error.
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        let _ = self.tcp.write_all(bytes).await;
    }

    /// The next frame from the server; `None` when the TCP connection ends.
    pub async fn recv(&mut self) -> Option<RawFrame> {
        loop {
            if let Some((frame, used)) = parse(&self.buf) {
                self.buf.drain(..used);
                return Some(frame);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// Read frames until a Close frame; its code (0 for none), or `None`
    /// when TCP ends without one.
    pub async fn close_code(&mut self) -> Option<u16> {
        while let Some(frame) = self.recv().await {
            if frame.opcode == CLOSE {
                return Some(frame.close_code().unwrap_or(0));
            }
        }
        None
    }

    /// Read more bytes; false at end of stream (or a reset).
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 64 * 1024];
        let n = tokio::time::timeout(WAIT, self.tcp.read(&mut chunk))
            .await
            .expect("the server sent nothing within the wait")
            .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }
}

/// One whole unmasked frame from the front of `buf`, and the bytes it used.
fn parse(buf: &[u8]) -> Option<(RawFrame, usize)> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    assert_eq!(b1 & 0x80, 0, "the server masked a frame");
    let (len, at) = match b1 & 0x7f {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().unwrap()) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().unwrap()) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let payload = buf.get(at..at + len)?.to_vec();
    let frame = RawFrame {
        fin: b0 & 0x80 != 0,
        rsv: (b0 >> 4) & 0x7,
        opcode: b0 & 0x0f,
        payload,
    };
    Some((frame, at + len))
}
