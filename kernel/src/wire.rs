//! The Jupyter wire format: signed multipart ZeroMQ messages.
//!
//! A message on a socket is `[identities..., "<IDS|MSG>", hmac, header, parent_header,
//! metadata, content, buffers...]`, where `hmac` is the hex HMAC-SHA256 of the four JSON
//! frames under the connection key. Headers are `jupyter-protocol`'s type; contents stay
//! raw JSON, so whatever a kernel sends (any MIME type, any field) reaches the notebook.
//!
//! Both ends use it: the headless client ([`Session::send`], [`Session::try_recv`]) and the
//! kernel ([`Session::reply`], [`Session::publish`]), which must echo each request's
//! routing identities and header back as the parent of everything it answers.

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
    /// The ROUTER socket's routing frames before the delimiter: a reply must carry them
    /// back, or it reaches no client.
    pub identities: Vec<Vec<u8>>,
    /// The header exactly as it came, to be echoed as the parent header of answers.
    pub raw_header: Value,
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

    fn header(&self, msg_type: &str) -> (String, Value) {
        let msg_id = uuid::Uuid::new_v4().to_string();
        let header = json!({
            "msg_id": msg_id,
            "username": "conclab",
            "session": self.id,
            "date": chrono::Utc::now().to_rfc3339(),
            "msg_type": msg_type,
            "version": PROTOCOL_VERSION,
        });
        (msg_id, header)
    }

    /// Signs and sends one message after `identities`; returns its `msg_id`.
    fn send_frames(
        &self,
        socket: &zmq::Socket,
        identities: &[Vec<u8>],
        msg_type: &str,
        parent: Option<&Value>,
        content: &Value,
    ) -> Result<String, WireError> {
        let (msg_id, header) = self.header(msg_type);
        let header = serde_json::to_vec(&header)?;
        let parent = match parent {
            Some(parent) => serde_json::to_vec(parent)?,
            None => b"{}".to_vec(),
        };
        let metadata = b"{}".to_vec();
        let content = serde_json::to_vec(content)?;
        let signature = self.sign(&[&header, &parent, &metadata, &content]);
        let mut frames: Vec<Vec<u8>> = identities.to_vec();
        frames.extend([
            DELIMITER.to_vec(),
            signature.into_bytes(),
            header,
            parent,
            metadata,
            content,
        ]);
        socket.send_multipart(frames, 0)?;
        Ok(msg_id)
    }

    /// Answers `request` on the ROUTER socket it came from (shell, control or stdin).
    pub fn reply(
        &self,
        socket: &zmq::Socket,
        request: &Message,
        msg_type: &str,
        content: &Value,
    ) -> Result<String, WireError> {
        self.send_frames(
            socket,
            &request.identities,
            msg_type,
            Some(&request.raw_header),
            content,
        )
    }

    /// Publishes on iopub as a child of `parent` (a request's raw header), under the
    /// message type as topic, as kernels conventionally do.
    pub fn publish(
        &self,
        socket: &zmq::Socket,
        parent: Option<&Value>,
        msg_type: &str,
        content: &Value,
    ) -> Result<String, WireError> {
        self.send_frames(
            socket,
            &[msg_type.as_bytes().to_vec()],
            msg_type,
            parent,
            content,
        )
    }

    /// Receives one message, waiting for it.
    pub fn recv(&self, socket: &zmq::Socket) -> Result<Message, WireError> {
        let frames = socket.recv_multipart(0)?;
        self.decode(&frames)
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
        self.send_frames(socket, &[], msg_type, None, &content)
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
        let raw_header: Value = serde_json::from_slice(&rest[1])?;
        let header: Header = serde_json::from_value(raw_header.clone())?;
        let parent: Value = serde_json::from_slice(&rest[2])?;
        let content: Value = serde_json::from_slice(&rest[4])?;
        Ok(Message {
            header,
            parent_msg_id: parent
                .get("msg_id")
                .and_then(Value::as_str)
                .map(str::to_owned),
            content,
            identities: frames[..start].to_vec(),
            raw_header,
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
    fn a_reply_goes_back_through_the_router_to_its_sender() {
        let context = zmq::Context::new();
        let router = context.socket(zmq::ROUTER).unwrap();
        let dealer = context.socket(zmq::DEALER).unwrap();
        router.bind("inproc://wire-router").unwrap();
        dealer.connect("inproc://wire-router").unwrap();
        let session = Session::new("k");
        let id = session
            .send(&dealer, "kernel_info_request", json!({}))
            .unwrap();
        let request = session.recv(&router).unwrap();
        assert_eq!(request.identities.len(), 1, "the DEALER's routing id");
        session
            .reply(
                &router,
                &request,
                "kernel_info_reply",
                &json!({"status": "ok"}),
            )
            .unwrap();
        let reply = session.recv(&dealer).unwrap();
        assert!(reply.is_child_of(&id));
        assert_eq!(reply.content["status"], "ok");
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
