//! The Jupyter wire format: signed multipart ZeroMQ messages.
//!
//! A message on a socket is `[identities..., "<IDS|MSG>", hmac, header, parent_header,
//! metadata, content, buffers...]`, where `hmac` is the hex HMAC-SHA256 of the four JSON
//! frames under the connection key. Headers are `jupyter-protocol`'s type; contents stay
//! raw JSON, so whatever a kernel sends (any MIME type, any field) reaches the notebook.

use hmac::{Hmac, Mac};
use jupyter_protocol::Header;
use serde_json::{json, Value};
use sha2::Sha256;

const DELIMITER: &[u8] = b"<IDS|MSG>";
/// The protocol version we speak (the one evcxr 0.22 announces).
const PROTOCOL_VERSION: &str = "5.3";

/// Why a frame sequence could not be taken as a message.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("ZeroMQ: {0}")]
    Zmq(#[from] zmq::Error),
    #[error("message without the <IDS|MSG> delimiter")]
    NoDelimiter,
    #[error("message with {0} frames after the delimiter; at least 5 are needed")]
    Truncated(usize),
    #[error("message signature does not match the connection key")]
    BadSignature,
    #[error("message frame is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// One received message, with the content kept as raw JSON so that every field the
/// kernel sent (any MIME type, any metadata) reaches the notebook unchanged.
#[derive(Debug, Clone)]
pub struct Message {
    pub header: Header,
    pub parent_msg_id: Option<String>,
    pub content: Value,
}

impl Message {
    pub fn msg_type(&self) -> &str {
        &self.header.msg_type
    }

    pub fn is_child_of(&self, msg_id: &str) -> bool {
        self.parent_msg_id.as_deref() == Some(msg_id)
    }
}

/// The client side of a session: its id and signing key.
pub struct Session {
    id: String,
    key: Vec<u8>,
}

impl Session {
    pub fn new(key: &str) -> Self {
        Session {
            id: uuid::Uuid::new_v4().to_string(),
            key: key.as_bytes().to_vec(),
        }
    }

    fn mac(&self) -> Option<Hmac<Sha256>> {
        // An empty key means "unsigned", as in jupyter_client.
        if self.key.is_empty() {
            return None;
        }
        Some(Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length"))
    }

    fn sign(&self, frames: &[&[u8]]) -> String {
        match self.mac() {
            None => String::new(),
            Some(mut mac) => {
                for frame in frames {
                    mac.update(frame);
                }
                hex::encode(mac.finalize().into_bytes())
            }
        }
    }

    /// Sends a request of `msg_type` with `content`; returns its `msg_id`.
    pub fn send(
        &self,
        socket: &zmq::Socket,
        msg_type: &str,
        content: Value,
    ) -> Result<String, WireError> {
        let msg_id = uuid::Uuid::new_v4().to_string();
        let header = json!({
            "msg_id": msg_id,
            "username": "conclab",
            "session": self.id,
            "date": chrono::Utc::now().to_rfc3339(),
            "msg_type": msg_type,
            "version": PROTOCOL_VERSION,
        });
        let header = serde_json::to_vec(&header)?;
        let parent = b"{}".to_vec();
        let metadata = b"{}".to_vec();
        let content = serde_json::to_vec(&content)?;
        let signature = self.sign(&[&header, &parent, &metadata, &content]);
        socket.send_multipart(
            [
                DELIMITER.to_vec(),
                signature.into_bytes(),
                header,
                parent,
                metadata,
                content,
            ],
            0,
        )?;
        Ok(msg_id)
    }

    /// Receives one message if one is waiting (non-blocking), checking its signature.
    pub fn try_recv(&self, socket: &zmq::Socket) -> Result<Option<Message>, WireError> {
        match socket.recv_multipart(zmq::DONTWAIT) {
            Ok(frames) => self.decode(&frames).map(Some),
            Err(zmq::Error::EAGAIN) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    pub fn decode(&self, frames: &[Vec<u8>]) -> Result<Message, WireError> {
        let start = frames
            .iter()
            .position(|frame| frame == DELIMITER)
            .ok_or(WireError::NoDelimiter)?;
        let rest = &frames[start + 1..];
        if rest.len() < 5 {
            return Err(WireError::Truncated(rest.len()));
        }
        let expected = self.sign(&[&rest[1], &rest[2], &rest[3], &rest[4]]);
        if !constant_time_eq(expected.as_bytes(), &rest[0]) {
            return Err(WireError::BadSignature);
        }
        let header: Header = serde_json::from_slice(&rest[1])?;
        let parent: Value = serde_json::from_slice(&rest[2])?;
        let content: Value = serde_json::from_slice(&rest[4])?;
        Ok(Message {
            header,
            parent_msg_id: parent
                .get("msg_id")
                .and_then(Value::as_str)
                .map(str::to_owned),
            content,
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (zmq::Context, zmq::Socket, zmq::Socket) {
        let context = zmq::Context::new();
        let a = context.socket(zmq::PAIR).unwrap();
        let b = context.socket(zmq::PAIR).unwrap();
        a.bind("inproc://wire-test").unwrap();
        b.connect("inproc://wire-test").unwrap();
        (context, a, b)
    }

    #[test]
    fn signed_message_round_trips() {
        let (_context, a, b) = pair();
        let session = Session::new("secret");
        let id = session
            .send(&a, "execute_request", json!({"code": "1 + 1"}))
            .unwrap();
        let frames = b.recv_multipart(0).unwrap();
        let message = session.decode(&frames).unwrap();
        assert_eq!(message.header.msg_id, id);
        assert_eq!(message.msg_type(), "execute_request");
        assert_eq!(message.content["code"], "1 + 1");
    }

    #[test]
    fn tampered_message_is_rejected() {
        let (_context, a, b) = pair();
        let session = Session::new("secret");
        session.send(&a, "kernel_info_request", json!({})).unwrap();
        let mut frames = b.recv_multipart(0).unwrap();
        let last = frames.len() - 1;
        frames[last] = br#"{"evil": true}"#.to_vec();
        assert!(matches!(
            session.decode(&frames),
            Err(WireError::BadSignature)
        ));
        let other = Session::new("another key");
        session.send(&a, "kernel_info_request", json!({})).unwrap();
        let frames = b.recv_multipart(0).unwrap();
        assert!(matches!(
            other.decode(&frames),
            Err(WireError::BadSignature)
        ));
    }

    #[test]
    fn frames_without_delimiter_are_rejected() {
        let session = Session::new("k");
        let frames = vec![b"just".to_vec(), b"noise".to_vec()];
        assert!(matches!(
            session.decode(&frames),
            Err(WireError::NoDelimiter)
        ));
    }
}
