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
///
/// ```
/// use conclab_kernel::jupyter::wire::{Session, WireError};
///
/// let frames = vec![b"<IDS|MSG>".to_vec(), b"sig".to_vec()];
/// let error = Session::new("key").decode(&frames).unwrap_err();
/// assert!(matches!(error, WireError::Truncated(1)), "{error}");
/// ```
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The socket failed.
    #[error("ZeroMQ: {0}")]
    Zmq(#[from] zmq::Error),
    /// No `<IDS|MSG>` frame: not a Jupyter message.
    #[error("message without the <IDS|MSG> delimiter")]
    NoDelimiter,
    /// Fewer than the signature and four JSON frames after the delimiter.
    #[error("message with {0} frames after the delimiter; at least 5 are needed")]
    Truncated(usize),
    /// Signed with another key, or altered on the way.
    #[error("message signature does not match the connection key")]
    BadSignature,
    /// A header, parent header or content frame that is not JSON.
    #[error("message frame is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// One received message, with the content kept as raw JSON so that every field the
/// kernel sent (any MIME type, any metadata) reaches the notebook unchanged.
///
/// ```
/// use conclab_kernel::jupyter::wire::Session;
///
/// let context = zmq::Context::new();
/// let (client, kernel) = (context.socket(zmq::DEALER)?, context.socket(zmq::ROUTER)?);
/// kernel.bind("inproc://message-doc")?;
/// client.connect("inproc://message-doc")?;
/// let session = Session::new("secret");
/// let id = session.send(&client, "kernel_info_request", serde_json::json!({}))?;
/// let request = session.recv(&kernel)?;
/// assert_eq!(request.msg_type(), "kernel_info_request");
/// session.reply(&kernel, &request, "kernel_info_reply", &serde_json::json!({"status": "ok"}))?;
/// let reply = session.recv(&client)?;
/// assert!(reply.is_child_of(&id));
/// assert_eq!(reply.content["status"], "ok");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Message {
    /// Its header: type, id, session, date.
    pub header: Header,
    /// The `msg_id` of the request it answers, if any.
    pub parent_msg_id: Option<String>,
    /// The content, as sent.
    pub content: Value,
    /// The ROUTER socket's routing frames before the delimiter: a reply must carry them
    /// back, or it reaches no client.
    pub identities: Vec<Vec<u8>>,
    /// The header exactly as it came, to be echoed as the parent header of answers.
    pub raw_header: Value,
}

impl Message {
    /// The message type, such as `execute_reply` (see the type's example).
    ///
    /// ```
    /// # use conclab_kernel::jupyter::wire::Session;
    /// let session = Session::new("");
    /// let frames = session.frames_for_test("status", &serde_json::json!({"execution_state": "idle"}));
    /// assert_eq!(session.decode(&frames)?.msg_type(), "status");
    /// # Ok::<(), conclab_kernel::jupyter::wire::WireError>(())
    /// ```
    pub fn msg_type(&self) -> &str {
        &self.header.msg_type
    }

    /// Whether it answers the request with this `msg_id` (see the type's example).
    ///
    /// ```
    /// # use conclab_kernel::jupyter::wire::Session;
    /// let session = Session::new("");
    /// let frames = session.frames_for_test("status", &serde_json::json!({}));
    /// assert!(!session.decode(&frames)?.is_child_of("some-request"));
    /// # Ok::<(), conclab_kernel::jupyter::wire::WireError>(())
    /// ```
    pub fn is_child_of(&self, msg_id: &str) -> bool {
        self.parent_msg_id.as_deref() == Some(msg_id)
    }
}

/// One end of a session: its id and the connection's signing key. Both the headless
/// client and the kernel hold one.
///
/// ```
/// use conclab_kernel::jupyter::wire::{Session, WireError};
///
/// let frames = Session::new("right key").frames_for_test("status", &serde_json::json!({}));
/// let forged = Session::new("wrong key").decode(&frames);
/// assert!(matches!(forged, Err(WireError::BadSignature)));
/// ```
pub struct Session {
    id: String,
    key: Vec<u8>,
}

impl Session {
    /// A session with a fresh id, signing with `key` (empty: unsigned, as in
    /// jupyter_client).
    ///
    /// ```
    /// let session = conclab_kernel::jupyter::wire::Session::new("a-key-from-the-connection-file");
    /// # let _ = session;
    /// ```
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

    /// Signs one message and lays out its frames after `identities`.
    fn signed_frames(
        &self,
        identities: &[Vec<u8>],
        msg_type: &str,
        parent: Option<&Value>,
        content: &Value,
    ) -> Result<(String, Vec<Vec<u8>>), WireError> {
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
        Ok((msg_id, frames))
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
        let (msg_id, frames) = self.signed_frames(identities, msg_type, parent, content)?;
        socket.send_multipart(frames, 0)?;
        Ok(msg_id)
    }

    /// The frames of a signed message of `msg_type`, as a socket would carry them, for
    /// tests and examples that need a message without a socket.
    ///
    /// ```
    /// use conclab_kernel::jupyter::wire::Session;
    ///
    /// let frames = Session::new("k").frames_for_test("status", &serde_json::json!({}));
    /// assert_eq!(frames[0], b"<IDS|MSG>");
    /// assert_eq!(frames.len(), 6);
    /// ```
    pub fn frames_for_test(&self, msg_type: &str, content: &Value) -> Vec<Vec<u8>> {
        self.signed_frames(&[], msg_type, None, content)
            .expect("JSON values serialize")
            .1
    }

    /// Answers `request` on the ROUTER socket it came from (shell, control or stdin):
    /// see [`Message`]'s example.
    ///
    /// ```
    /// # use conclab_kernel::jupyter::wire::Session;
    /// # let context = zmq::Context::new();
    /// # let (client, kernel) = (context.socket(zmq::DEALER)?, context.socket(zmq::ROUTER)?);
    /// # kernel.bind("inproc://reply-doc")?;
    /// # client.connect("inproc://reply-doc")?;
    /// let session = Session::new("k");
    /// session.send(&client, "comm_info_request", serde_json::json!({}))?;
    /// let request = session.recv(&kernel)?;
    /// session.reply(&kernel, &request, "comm_info_reply", &serde_json::json!({"comms": {}}))?;
    /// assert_eq!(session.recv(&client)?.msg_type(), "comm_info_reply");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
    ///
    /// ```
    /// # use conclab_kernel::jupyter::wire::Session;
    /// let context = zmq::Context::new();
    /// let (iopub, listener) = (context.socket(zmq::PUB)?, context.socket(zmq::SUB)?);
    /// iopub.bind("inproc://iopub-doc")?;
    /// listener.connect("inproc://iopub-doc")?;
    /// listener.set_subscribe(b"")?;
    /// let session = Session::new("k");
    /// std::thread::sleep(std::time::Duration::from_millis(50)); // let the SUB join
    /// session.publish(&iopub, None, "status", &serde_json::json!({"execution_state": "busy"}))?;
    /// let status = session.recv(&listener)?;
    /// assert_eq!(status.content["execution_state"], "busy");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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

    /// Receives one message, waiting for it, and checks its signature: see
    /// [`Message`]'s example.
    ///
    /// ```
    /// # use conclab_kernel::jupyter::wire::Session;
    /// # let context = zmq::Context::new();
    /// # let (a, b) = (context.socket(zmq::PAIR)?, context.socket(zmq::PAIR)?);
    /// # a.bind("inproc://recv-doc")?;
    /// # b.connect("inproc://recv-doc")?;
    /// let session = Session::new("k");
    /// session.send(&a, "is_complete_request", serde_json::json!({"code": "let x = 1;"}))?;
    /// assert_eq!(session.recv(&b)?.content["code"], "let x = 1;");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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

    /// Sends a request of `msg_type` with `content`; returns its `msg_id`, which the
    /// answers name as their parent: see [`Message`]'s example.
    ///
    /// ```
    /// # use conclab_kernel::jupyter::wire::Session;
    /// # let context = zmq::Context::new();
    /// # let socket = context.socket(zmq::DEALER)?;
    /// # socket.connect("inproc://nobody-yet")?;
    /// let id = Session::new("k").send(&socket, "kernel_info_request", serde_json::json!({}))?;
    /// assert_eq!(id.len(), 36, "a UUID");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send(
        &self,
        socket: &zmq::Socket,
        msg_type: &str,
        content: Value,
    ) -> Result<String, WireError> {
        self.send_frames(socket, &[], msg_type, None, &content)
    }

    /// Receives one message if one is waiting (non-blocking), checking its signature.
    ///
    /// ```
    /// # use conclab_kernel::jupyter::wire::Session;
    /// let context = zmq::Context::new();
    /// let socket = context.socket(zmq::PAIR)?;
    /// socket.bind("inproc://quiet")?;
    /// assert!(Session::new("k").try_recv(&socket)?.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_recv(&self, socket: &zmq::Socket) -> Result<Option<Message>, WireError> {
        match socket.recv_multipart(zmq::DONTWAIT) {
            Ok(frames) => self.decode(&frames).map(Some),
            Err(zmq::Error::EAGAIN) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Takes received frames as a message: routing identities, the delimiter, the
    /// signature (checked against this session's key) and the JSON frames.
    ///
    /// ```
    /// use conclab_kernel::jupyter::wire::{Session, WireError};
    ///
    /// let session = Session::new("k");
    /// let frames = session.frames_for_test("status", &serde_json::json!({}));
    /// assert_eq!(session.decode(&frames)?.msg_type(), "status");
    /// assert!(matches!(session.decode(&frames[1..]), Err(WireError::NoDelimiter)));
    /// # Ok::<(), WireError>(())
    /// ```
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
