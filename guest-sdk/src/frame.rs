use crate::{Frame, Opcode};

impl Frame {
    /// The payload as text, for text frames (the host has checked it is UTF-8).
    pub fn text(&self) -> Option<&str> {
        match self.opcode {
            Opcode::Text => std::str::from_utf8(&self.data).ok(),
            _ => None,
        }
    }

    /// The payload as text whatever the opcode, invalid UTF-8 replaced.
    pub fn text_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.data)
    }

    /// True for the peer's Close frame (Swoole's `CloseFrame`).
    pub fn is_close(&self) -> bool {
        self.opcode == Opcode::Close
    }

    /// The close status code, when this is a Close frame that carried one.
    pub fn close_code(&self) -> Option<u16> {
        self.close.as_ref().map(|c| c.code)
    }
}
