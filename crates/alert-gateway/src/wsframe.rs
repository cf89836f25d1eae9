//! The WebSocket wire format (RFC 6455) as the gateway speaks it: frames it sends, encoded
//! once and shared, and the few frames a client sends it.
//!
//! Why not a WebSocket library for the writes: frames from a server are not masked, so an
//! alert's frame is the same bytes for every client. The feed encodes each batch's frames
//! once (`feed::FeedBatch`), and each client's task writes those shared bytes with one write,
//! instead of re-framing and copying every message into a per-client buffer. The read side
//! is small too: the page sends nothing but control frames (ping, close), which are
//! answered here; data frames are bounded in size and ignored.

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Close code: the peer broke the protocol.
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// Close code: a frame larger than we accept.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Close reasons are limited to 123 bytes (a control frame's 125 minus the code).
pub const MAX_CLOSE_REASON: usize = 123;

/// Appends one final, unmasked frame (what a server sends) to `out`.
pub fn encode_into(out: &mut BytesMut, opcode: u8, payload: &[u8]) {
    out.reserve(payload.len() + 10);
    out.put_u8(0x80 | opcode);
    match payload.len() {
        n @ 0..=125 => out.put_u8(n as u8),
        n @ 126..=0xFFFF => {
            out.put_u8(126);
            out.put_u16(n as u16);
        }
        n => {
            out.put_u8(127);
            out.put_u64(n as u64);
        }
    }
    out.put_slice(payload);
}

/// One final text frame.
pub fn text(payload: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 10);
    encode_into(&mut out, OP_TEXT, payload.as_bytes());
    out.freeze()
}

/// A close frame with `code` and `reason` (cut, on a character boundary, to what fits).
pub fn close(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    let mut out = BytesMut::with_capacity(payload.len() + 2);
    encode_into(&mut out, OP_CLOSE, &payload);
    out.freeze()
}

/// The answer to a client's close frame: its code echoed (RFC 6455 §5.5.1), or no code if it
/// gave none or one that may not be sent (1005, 1006, 1015, unassigned ranges).
pub fn close_reply(code: Option<u16>) -> Bytes {
    match code.filter(|c| matches!(c, 1000..=1003 | 1007..=1014 | 3000..=4999)) {
        Some(c) => close(c, ""),
        None => Bytes::from_static(&[0x80 | OP_CLOSE, 0]),
    }
}

/// The answer to a ping: a pong with the same payload.
pub fn pong(payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 2);
    encode_into(&mut out, OP_PONG, payload);
    out.freeze()
}

/// A frame from a client, unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFrame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Bytes,
}

impl ClientFrame {
    /// The status code of a close frame, if it carries one.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == OP_CLOSE && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// Why a client's bytes are not acceptable; the connection is closed with [`Self::code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("client frames must be masked")]
    Unmasked,
    #[error("reserved bits set without a negotiated extension")]
    Reserved,
    #[error("unknown opcode {0:#x}")]
    Opcode(u8),
    #[error("control frames must be final and at most 125 bytes")]
    Control,
    #[error("frame of {0} bytes is larger than the {1} accepted")]
    TooBig(u64, usize),
    #[error("continuation frame without a fragmented message, or a new message inside one")]
    Continuation,
}

/// Whether a client's data frames follow RFC 6455 §5.4: a continuation only inside a
/// fragmented message, and no new message before the last fragment.
#[derive(Debug, Default)]
pub struct Fragments {
    inside: bool,
}

impl Fragments {
    pub fn check(&mut self, f: &ClientFrame) -> Result<(), FrameError> {
        match f.opcode {
            OP_CONTINUATION if !self.inside => Err(FrameError::Continuation),
            OP_CONTINUATION => {
                self.inside = !f.fin;
                Ok(())
            }
            OP_TEXT | OP_BINARY if self.inside => Err(FrameError::Continuation),
            OP_TEXT | OP_BINARY => {
                self.inside = !f.fin;
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

impl FrameError {
    pub fn code(&self) -> u16 {
        match self {
            FrameError::TooBig(..) => CLOSE_TOO_BIG,
            _ => CLOSE_PROTOCOL_ERROR,
        }
    }
}

/// Cuts client frames out of the bytes read so far (`buf`), consuming each frame it returns.
/// `Ok(None)`: a frame is not complete yet, read more into `buf`.
pub fn decode_client(buf: &mut BytesMut, max_payload: usize) -> Result<Option<ClientFrame>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    let fin = b0 & 0x80 != 0;
    if b0 & 0x70 != 0 {
        return Err(FrameError::Reserved);
    }
    let opcode = b0 & 0x0F;
    if !matches!(opcode, OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG) {
        return Err(FrameError::Opcode(opcode));
    }
    if b1 & 0x80 == 0 {
        return Err(FrameError::Unmasked);
    }
    let (len, header) = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            (u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes")), 10)
        }
        n => (u64::from(n), 2),
    };
    if opcode >= OP_CLOSE && (!fin || len > 125) {
        return Err(FrameError::Control);
    }
    if len > max_payload as u64 {
        return Err(FrameError::TooBig(len, max_payload));
    }
    let len = len as usize;
    if buf.len() < header + 4 + len {
        buf.reserve(header + 4 + len - buf.len());
        return Ok(None);
    }
    let mask: [u8; 4] = buf[header..header + 4].try_into().expect("4 bytes");
    buf.advance(header + 4);
    let mut payload = buf.split_to(len);
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
    Ok(Some(ClientFrame { fin, opcode, payload: payload.freeze() }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn continuations_only_inside_a_fragmented_message() {
        let f = |opcode, fin| ClientFrame { fin, opcode, payload: Bytes::new() };
        let mut m = Fragments::default();
        assert!(m.check(&f(OP_CONTINUATION, true)).is_err(), "stray continuation");
        let mut m = Fragments::default();
        assert!(m.check(&f(OP_TEXT, false)).is_ok());
        assert!(m.check(&f(OP_PING, true)).is_ok(), "control frames may come between fragments");
        assert!(m.check(&f(OP_TEXT, true)).is_err(), "a new message inside a fragmented one");
        let mut m = Fragments::default();
        assert!(m.check(&f(OP_BINARY, false)).is_ok());
        assert!(m.check(&f(OP_CONTINUATION, false)).is_ok());
        assert!(m.check(&f(OP_CONTINUATION, true)).is_ok());
        assert!(m.check(&f(OP_CONTINUATION, true)).is_err(), "the message ended");
        assert!(m.check(&f(OP_TEXT, true)).is_ok());
    }

    use super::*;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocket};
    use tokio_tungstenite::tungstenite::Message;

    /// A socket that records what tungstenite writes and has nothing to read.
    #[derive(Default)]
    struct Recorder(Vec<u8>);

    impl std::io::Read for Recorder {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::WouldBlock.into())
        }
    }

    impl std::io::Write for Recorder {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The bytes tungstenite sends for `msg` in `role`.
    fn tungstenite_bytes(role: Role, msg: Message) -> Vec<u8> {
        let mut ws = WebSocket::from_raw_socket(Recorder::default(), role, None);
        ws.send(msg).unwrap();
        std::mem::take(&mut ws.get_mut().0)
    }

    #[test]
    fn text_frames_are_the_bytes_tungstenite_sends_as_a_server() {
        // Every length encoding: 7 bits, 16 bits (both ends), 64 bits.
        for n in [0, 1, 125, 126, 127, 4_000, 65_535, 65_536, 200_000] {
            let payload: String = (0..n).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
            let ours = text(&payload);
            assert_eq!(&ours[..], &tungstenite_bytes(Role::Server, Message::text(payload))[..], "{n} bytes");
        }
        let json = r#"{"type":"alert","alert":{"reason":"température 95.2 °C > 90.0 °C"}}"#;
        assert_eq!(&text(json)[..], &tungstenite_bytes(Role::Server, Message::text(json))[..]);
    }

    #[test]
    fn close_and_pong_frames_are_the_bytes_tungstenite_sends() {
        let reason = "too slow: 3 alerts behind; reconnect with after=<last event_id>";
        let theirs = tungstenite_bytes(
            Role::Server,
            Message::Close(Some(CloseFrame { code: CloseCode::from(4008), reason: reason.into() })),
        );
        assert_eq!(&close(4008, reason)[..], &theirs[..]);
        assert_eq!(
            &pong(b"are you there")[..],
            &tungstenite_bytes(Role::Server, Message::Pong("are you there".into()))[..]
        );
    }

    #[test]
    fn a_close_is_answered_with_its_code_or_none() {
        assert_eq!(
            &close_reply(Some(1000))[..],
            &tungstenite_bytes(
                Role::Server,
                Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() }))
            )[..]
        );
        assert_eq!(&close_reply(Some(4001))[..], &[0x88, 2, 0x0F, 0xA1]);
        assert_eq!(&close_reply(None)[..], &tungstenite_bytes(Role::Server, Message::Close(None))[..]);
        assert_eq!(&close_reply(Some(1005))[..], &[0x88, 0]);
    }

    #[test]
    fn long_close_reasons_are_cut_on_a_character_boundary() {
        let reason = "é".repeat(100); // 200 bytes
        let frame = close(4008, &reason);
        let payload = &frame[2..];
        assert_eq!(frame[1] as usize, payload.len());
        assert!(payload.len() <= 125);
        assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 4008);
        let cut = std::str::from_utf8(&payload[2..]).expect("still UTF-8");
        assert_eq!(cut, "é".repeat(61));
    }

    #[test]
    fn decodes_what_a_tungstenite_client_sends_even_in_pieces() {
        let big = "x".repeat(70_000);
        let msgs = [
            Message::Ping("hello".into()),
            Message::text("short"),
            Message::text(big.clone()),
            Message::Pong(Bytes::new()),
            Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "bye".into() })),
        ];
        let mut wire = Vec::new();
        for m in msgs {
            wire.extend(tungstenite_bytes(Role::Client, m));
        }
        // Byte by byte at first, then the rest at once: a frame split anywhere still decodes.
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for (i, b) in wire.iter().enumerate() {
            if i > 300 {
                buf.extend_from_slice(&wire[i..]);
            } else {
                buf.put_u8(*b);
            }
            while let Some(f) = decode_client(&mut buf, 128 * 1024).unwrap() {
                got.push(f);
            }
            if i > 300 {
                break;
            }
        }
        assert!(buf.is_empty());
        let summary: Vec<(u8, usize)> = got.iter().map(|f| (f.opcode, f.payload.len())).collect();
        assert_eq!(summary, [(OP_PING, 5), (OP_TEXT, 5), (OP_TEXT, 70_000), (OP_PONG, 0), (OP_CLOSE, 5)]);
        assert_eq!(&got[0].payload[..], b"hello");
        assert_eq!(&got[2].payload[..], big.as_bytes());
        assert_eq!(got[4].close_code(), Some(1000));
        assert_eq!(&got[4].payload[2..], b"bye");
    }

    #[test]
    fn refuses_what_a_client_must_not_send() {
        let decode = |bytes: &[u8], max| decode_client(&mut BytesMut::from(bytes), max);
        // A server-style (unmasked) frame.
        assert_eq!(decode(&text("hi"), 1024), Err(FrameError::Unmasked));
        let masked = tungstenite_bytes(Role::Client, Message::text("x".repeat(2_000)));
        assert_eq!(decode(&masked, 1024), Err(FrameError::TooBig(2_000, 1024)));
        assert_eq!(FrameError::TooBig(2_000, 1024).code(), CLOSE_TOO_BIG);
        let mut rsv = masked.clone();
        rsv[0] |= 0x40;
        assert_eq!(decode(&rsv, 4096), Err(FrameError::Reserved));
        assert_eq!(decode(&[0x83, 0x80, 0, 0, 0, 0], 1024), Err(FrameError::Opcode(3)));
        // A fragmented ping, and a ping over 125 bytes.
        assert_eq!(decode(&[0x09, 0x80, 0, 0, 0, 0], 1024), Err(FrameError::Control));
        assert_eq!(decode(&[0x89, 0xFE, 0, 200], 1024), Err(FrameError::Control));
        assert_eq!(FrameError::Control.code(), CLOSE_PROTOCOL_ERROR);
        // Incomplete headers wait for more bytes.
        assert_eq!(decode(&[0x81], 1024), Ok(None));
        assert_eq!(decode(&[0x81, 0xFE, 0], 1024), Ok(None));
        assert_eq!(decode(&masked[..100], 4096), Ok(None));
    }
}
