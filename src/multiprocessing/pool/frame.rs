//! The pool's wire protocol: the frames between the parent and a worker, and how a worker
//! ends.
//!
//! Both directions use the codec's framing (a little-endian `u32` length, then the body).
//! A task frame's body is `chunk id (u64) | trampoline address (u64) | callable length
//! (u32) | callable bytes | arguments`; a result frame's body is `chunk id (u64) |
//! outcome`. The arguments and the outcome are bincode, which only the job's own types
//! read (see `task.rs`).

/// A chunk of tasks, as the parent sends it to a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TaskFrame<'a> {
    /// The chunk's id, which its result frame carries back.
    pub(crate) chunk: u64,
    /// The address of the job's `run_chunk` instantiation (see `task.rs`).
    pub(crate) tramp: usize,
    /// The callable's bytes.
    pub(crate) callable: &'a [u8],
    /// The chunk's arguments, encoded.
    pub(crate) args: &'a [u8],
}

/// Chunk id, trampoline, callable length.
const TASK_HEAD: usize = 8 + 8 + 4;

impl<'a> TaskFrame<'a> {
    /// Appends the frame, its length prefix included, to `out`.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        let body = TASK_HEAD + self.callable.len() + self.args.len();
        out.reserve(4 + body);
        out.extend_from_slice(&(body as u32).to_le_bytes());
        out.extend_from_slice(&self.chunk.to_le_bytes());
        out.extend_from_slice(&(self.tramp as u64).to_le_bytes());
        out.extend_from_slice(&(self.callable.len() as u32).to_le_bytes());
        out.extend_from_slice(self.callable);
        out.extend_from_slice(self.args);
    }

    /// Reads a frame's body (after the length prefix); `None` if it is malformed.
    pub(crate) fn decode(body: &'a [u8]) -> Option<TaskFrame<'a>> {
        let (chunk, rest) = split_u64(body)?;
        let (tramp, rest) = split_u64(rest)?;
        let (len, rest) = rest.split_first_chunk::<4>()?;
        let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
        let callable = rest.get(..len)?;
        Some(TaskFrame {
            chunk,
            tramp: usize::try_from(tramp).ok()?,
            callable,
            args: &rest[len..],
        })
    }
}

/// A chunk's outcome, as a worker sends it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ResultFrame<'a> {
    /// The id of the chunk this answers.
    pub(crate) chunk: u64,
    /// The chunk's outcome, encoded.
    pub(crate) outcome: &'a [u8],
}

impl<'a> ResultFrame<'a> {
    /// Appends the frame, its length prefix included, to `out`.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(4 + 8 + self.outcome.len());
        out.extend_from_slice(&((8 + self.outcome.len()) as u32).to_le_bytes());
        out.extend_from_slice(&self.chunk.to_le_bytes());
        out.extend_from_slice(self.outcome);
    }

    /// Reads a frame's body (after the length prefix); `None` if it is malformed.
    pub(crate) fn decode(body: &'a [u8]) -> Option<ResultFrame<'a>> {
        let (chunk, outcome) = split_u64(body)?;
        Some(ResultFrame { chunk, outcome })
    }
}

fn split_u64(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<8>()?;
    Some((u64::from_le_bytes(*head), rest))
}

/// How a worker process ends: its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub(crate) enum WorkerExit {
    /// The pool closed the task socket, the worker reached its task limit, or the parent
    /// is gone.
    Done = 0,
    /// A panic escaped the worker's loop (a task's own panic never does).
    Panicked = 1,
    /// A task frame could not be read: the two sides disagree on the protocol.
    BadFrame = 2,
    /// The pool's initializer panicked or could not decode its arguments.
    InitFailed = 3,
}

impl WorkerExit {
    /// The exit code.
    pub(crate) fn code(self) -> i32 {
        self as i32
    }

    /// The worker exit that `code` stands for, if any.
    pub(crate) fn from_code(code: i32) -> Option<WorkerExit> {
        [
            WorkerExit::Done,
            WorkerExit::Panicked,
            WorkerExit::BadFrame,
            WorkerExit::InitFailed,
        ]
        .into_iter()
        .find(|exit| exit.code() == code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::multiprocessing::codec::take_frame;

    #[test]
    fn a_task_frame_round_trips() {
        let frame = TaskFrame {
            chunk: 7,
            tramp: 0xdead_beef,
            callable: &[1, 2, 3],
            args: b"arguments",
        };
        let mut wire = Vec::new();
        frame.encode_into(&mut wire);
        let mut start = 0;
        let (a, b) = take_frame(&wire, &mut start).unwrap();
        assert_eq!(start, wire.len());
        assert_eq!(TaskFrame::decode(&wire[a..b]), Some(frame));
        // An empty callable (a fn item is zero-sized) and empty arguments.
        let bare = TaskFrame {
            callable: &[],
            args: &[],
            ..frame
        };
        let mut wire = Vec::new();
        bare.encode_into(&mut wire);
        assert_eq!(TaskFrame::decode(&wire[4..]), Some(bare));
    }

    #[test]
    fn a_result_frame_round_trips() {
        let frame = ResultFrame {
            chunk: u64::MAX,
            outcome: b"outcome",
        };
        let mut wire = Vec::new();
        frame.encode_into(&mut wire);
        assert_eq!(ResultFrame::decode(&wire[4..]), Some(frame));
    }

    #[test]
    fn malformed_frames_are_refused() {
        assert_eq!(TaskFrame::decode(&[0; 19]), None);
        let mut wire = Vec::new();
        TaskFrame {
            chunk: 1,
            tramp: 2,
            callable: &[9; 16],
            args: &[],
        }
        .encode_into(&mut wire);
        assert_eq!(TaskFrame::decode(&wire[4..wire.len() - 1]), None);
        assert_eq!(ResultFrame::decode(&[0; 7]), None);
    }

    #[test]
    fn exit_codes_are_named() {
        for exit in [
            WorkerExit::Done,
            WorkerExit::Panicked,
            WorkerExit::BadFrame,
            WorkerExit::InitFailed,
        ] {
            assert_eq!(WorkerExit::from_code(exit.code()), Some(exit));
        }
        assert_eq!(WorkerExit::from_code(9), None);
    }
}
