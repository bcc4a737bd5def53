//! The frames the relay sends the kernel: what the cell process printed, and the markers
//! of how each cell ended, in the order the process produced them.
//!
//! A frame is a tag byte, a little-endian `u32` length and that many bytes. No frame is
//! longer than `PIPE_BUF`, so each one is a single atomic pipe write: the kernel can write
//! its own [`Event::Sync`] frames into the same pipe without ever splitting a relay frame.

use std::io::{self, Read, Write};

/// The most bytes one frame may take, header included (`PIPE_BUF` on Linux).
pub const MAX_FRAME: usize = 4096;
const HEADER: usize = 5;
/// The most payload bytes one frame carries.
pub const MAX_PAYLOAD: usize = MAX_FRAME - HEADER;

/// One thing the relay saw, or a marker the kernel wrote itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Text the cell process wrote to its stdout (not evcxr's protocol lines).
    Stdout(Vec<u8>),
    /// Text the cell process wrote to its stderr.
    Stderr(Vec<u8>),
    /// The cell's own code panicked: evcxr's `catch_unwind` caught it.
    Panic,
    /// A `?` at the top level of the cell returned an `Err` (evcxr printed it on stderr).
    UserError,
    /// The cell function returned.
    Complete,
    /// The cell process ended; the text says how ("killed by signal 9 (SIGKILL)").
    Exited(String),
    /// Written by the kernel itself: everything before it in the pipe has been read.
    Sync(u64),
    /// The relay started a cell process with this pid (the one an interrupt stops).
    Started(u32),
}

impl Event {
    fn tag(&self) -> u8 {
        match self {
            Event::Stdout(_) => 1,
            Event::Stderr(_) => 2,
            Event::Panic => 3,
            Event::UserError => 4,
            Event::Complete => 5,
            Event::Exited(_) => 6,
            Event::Sync(_) => 7,
            Event::Started(_) => 8,
        }
    }

    fn payload(&self) -> Vec<u8> {
        match self {
            Event::Stdout(bytes) | Event::Stderr(bytes) => bytes.clone(),
            Event::Exited(text) => text.as_bytes().to_vec(),
            Event::Sync(id) => id.to_le_bytes().to_vec(),
            Event::Started(pid) => pid.to_le_bytes().to_vec(),
            Event::Panic | Event::UserError | Event::Complete => Vec::new(),
        }
    }

    /// Writes the event as one or more frames; text longer than one frame is split.
    pub fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        let payload = self.payload();
        let mut chunks: Vec<&[u8]> = payload.chunks(MAX_PAYLOAD).collect();
        if chunks.is_empty() {
            chunks.push(&[]);
        }
        for chunk in chunks {
            let mut frame = Vec::with_capacity(HEADER + chunk.len());
            frame.push(self.tag());
            frame.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
            frame.extend_from_slice(chunk);
            // One write call per frame: the pipe keeps it whole.
            out.write_all(&frame)?;
        }
        Ok(())
    }

    /// Reads one frame; `Ok(None)` at the end of the stream.
    pub fn read_from(input: &mut impl Read) -> io::Result<Option<Event>> {
        let mut header = [0u8; HEADER];
        match input.read_exact(&mut header) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(error) => return Err(error),
        }
        let length = u32::from_le_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if length > MAX_PAYLOAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("relay frame of {length} bytes; at most {MAX_PAYLOAD} are sent"),
            ));
        }
        let mut payload = vec![0u8; length];
        input.read_exact(&mut payload)?;
        let text = || String::from_utf8_lossy(&payload).into_owned();
        Ok(Some(match header[0] {
            1 => Event::Stdout(payload),
            2 => Event::Stderr(payload),
            3 => Event::Panic,
            4 => Event::UserError,
            5 => Event::Complete,
            6 => Event::Exited(text()),
            7 => {
                let bytes: [u8; 8] = payload.as_slice().try_into().map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidData, "sync frame without its id")
                })?;
                Event::Sync(u64::from_le_bytes(bytes))
            }
            8 => {
                let bytes: [u8; 4] = payload.as_slice().try_into().map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidData, "start frame without its pid")
                })?;
                Event::Started(u32::from_le_bytes(bytes))
            }
            tag => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unknown relay frame tag {tag}"),
                ))
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(events: &[Event]) -> Vec<Event> {
        let mut bytes = Vec::new();
        for event in events {
            event.write_to(&mut bytes).unwrap();
        }
        let mut reader = bytes.as_slice();
        let mut out = Vec::new();
        while let Some(event) = Event::read_from(&mut reader).unwrap() {
            out.push(event);
        }
        out
    }

    #[test]
    fn every_kind_of_event_round_trips() {
        let events = vec![
            Event::Stdout(b"hello\n".to_vec()),
            Event::Stderr(b"oops\n".to_vec()),
            Event::Panic,
            Event::UserError,
            Event::Complete,
            Event::Exited("killed by signal 9 (SIGKILL)".into()),
            Event::Sync(42),
            Event::Started(1234),
        ];
        assert_eq!(round_trip(&events), events);
    }

    #[test]
    fn long_text_is_split_into_frames_no_longer_than_a_pipe_write() {
        let text = vec![b'x'; MAX_PAYLOAD * 2 + 10];
        let mut bytes = Vec::new();
        Event::Stdout(text.clone()).write_to(&mut bytes).unwrap();
        assert_eq!(bytes.len(), text.len() + 3 * HEADER);
        let parts = round_trip(&[Event::Stdout(text.clone())]);
        assert_eq!(parts.len(), 3);
        let joined: Vec<u8> = parts
            .into_iter()
            .flat_map(|event| match event {
                Event::Stdout(bytes) => bytes,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(joined, text);
    }

    #[test]
    fn a_corrupt_frame_is_an_error_not_a_guess() {
        let mut reader: &[u8] = &[99, 0, 0, 0, 0];
        assert!(Event::read_from(&mut reader).is_err());
        let mut reader: &[u8] = &[1, 0xff, 0xff, 0, 0];
        assert!(Event::read_from(&mut reader).is_err());
    }
}
