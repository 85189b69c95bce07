//! Frames on the wire: `len u32 LE | crc32c u32 LE | payload` (`len` counts the payload only).
//! The length is checked against the limit before anything is allocated, and the buffer grows
//! only as bytes arrive, so a peer that claims a large frame and stalls holds no large buffer.
//! A zero-length frame is a keepalive. Knows nothing of handshakes or Raft.

use std::io::{self, Read, Write};

/// The limit on handshake frames, before the peer is authenticated.
pub(crate) const HANDSHAKE_FRAME_MAX: u32 = 512;

/// Bytes before the payload.
pub(crate) const HEADER_LEN: usize = 8;

/// Why a frame could not be read.
#[derive(Debug)]
pub(crate) enum FrameError {
    /// The stream failed or ended inside a frame (timeouts included).
    Io(io::Error),
    /// The header announces more than the limit.
    TooLarge { len: u32, max: u32 },
    /// The payload does not match its checksum.
    BadCrc { expected: u32, got: u32 },
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Io(e) => write!(f, "{e}"),
            FrameError::TooLarge { len, max } => {
                write!(f, "frame of {len} bytes is over the limit of {max} bytes")
            }
            FrameError::BadCrc { expected, got } => write!(
                f,
                "frame checksum mismatch (header {expected:#010x}, payload {got:#010x})"
            ),
        }
    }
}

/// The header of a frame carrying `payload`.
pub(crate) fn header(payload: &[u8]) -> [u8; HEADER_LEN] {
    let len = u32::try_from(payload.len()).expect("payload length checked against max_frame_size");
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(&len.to_le_bytes());
    h[4..].copy_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    h
}

/// Writes one frame (not flushed).
pub(crate) fn write_frame(w: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    w.write_all(&header(payload))?;
    w.write_all(payload)
}

/// Reads one frame of at most `max` payload bytes. `Ok(None)`: the stream ended cleanly
/// between frames.
pub(crate) fn read_frame(r: &mut impl Read, max: u32) -> Result<Option<Vec<u8>>, FrameError> {
    let mut h = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match r.read(&mut h[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => {
                return Err(FrameError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "stream ended inside a frame header",
                )));
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    let len = u32::from_le_bytes(h[..4].try_into().expect("4 bytes"));
    let expected = u32::from_le_bytes(h[4..].try_into().expect("4 bytes"));
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut payload = Vec::with_capacity((len as usize).min(64 * 1024));
    r.take(u64::from(len))
        .read_to_end(&mut payload)
        .map_err(FrameError::Io)?;
    if payload.len() != len as usize {
        return Err(FrameError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "stream ended inside a frame ({} of {len} bytes)",
                payload.len()
            ),
        )));
    }
    let got = crc32c::crc32c(&payload);
    if got != expected {
        return Err(FrameError::BadCrc { expected, got });
    }
    Ok(Some(payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(payload: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        write_frame(&mut b, payload).unwrap();
        b
    }

    #[test]
    fn round_trips_and_ends_cleanly() {
        let mut b = framed(b"hello");
        b.extend(framed(b""));
        let mut r = &b[..];
        assert_eq!(read_frame(&mut r, 16).unwrap().unwrap(), b"hello");
        assert_eq!(read_frame(&mut r, 16).unwrap().unwrap(), b"");
        assert!(read_frame(&mut r, 16).unwrap().is_none());
    }

    #[test]
    fn oversized_is_refused_before_reading_the_payload() {
        // A header claiming 4 GiB and no payload at all: refused from the header alone.
        let mut h = Vec::from(u32::MAX.to_le_bytes());
        h.extend(0u32.to_le_bytes());
        let mut r = &h[..];
        assert!(matches!(
            read_frame(&mut r, 1 << 20),
            Err(FrameError::TooLarge { len: u32::MAX, .. })
        ));
        let b = framed(&[7u8; 17]);
        assert!(matches!(
            read_frame(&mut &b[..], 16),
            Err(FrameError::TooLarge { len: 17, max: 16 })
        ));
    }

    #[test]
    fn every_flipped_byte_and_every_truncation_is_an_error() {
        let b = framed(b"some payload bytes");
        for i in 0..b.len() {
            for bit in 0..8 {
                let mut c = b.clone();
                c[i] ^= 1 << bit;
                assert!(read_frame(&mut &c[..], 1024).is_err(), "byte {i} bit {bit}");
            }
        }
        for cut in 1..b.len() {
            assert!(read_frame(&mut &b[..cut], 1024).is_err(), "cut at {cut}");
        }
    }
}
