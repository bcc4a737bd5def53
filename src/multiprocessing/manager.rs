//! `Manager`: a server process that owns shared lists and dicts; proxies talk to it over
//! a Unix socket.
//!
//! The server is forked by [`Manager::new`]. It listens on an abstract Unix socket (no
//! file to clean up) bound before the fork, so a proxy can connect at once. Each proxy
//! opens its own connection per process (a child forked after the proxy was made notices
//! the pid changed and connects anew), and the server serves each connection on a thread
//! of its own: every request is one locked step on the server, so `append` from many
//! processes never loses an item. Values are stored as bincode bytes, so the server needs
//! no knowledge of your types. A read-modify-write made of two requests (`get` then
//! `insert`) is not atomic, as in Python: guard it with a [`Lock`](super::Lock).

use std::collections::HashMap;
use std::io::ErrorKind;
use std::marker::PhantomData;
use std::os::fd::{AsFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sync::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::codec;
use super::fork::{self, Pid};
use super::MpError;
use crate::os::fd::{self as os_fd, PollFd, PollFlags};
use crate::os::process::{PidFd, Signal};

type Bytes = Vec<u8>;

#[derive(Serialize, Deserialize)]
enum Req {
    NewList,
    NewDict,
    Append(u64, Bytes),
    Extend(u64, Vec<Bytes>),
    Get(u64, usize),
    Set(u64, usize, Bytes),
    Pop(u64),
    Len(u64),
    All(u64),
    Clear(u64),
    Insert(u64, Bytes, Bytes),
    Lookup(u64, Bytes),
    Remove(u64, Bytes),
    Items(u64),
    Shutdown,
}

#[derive(Serialize, Deserialize)]
enum Resp {
    Done,
    Id(u64),
    Value(Option<Bytes>),
    Len(usize),
    List(Vec<Bytes>),
    Items(Vec<(Bytes, Bytes)>),
    Err(String),
}

enum Obj {
    List(Vec<Bytes>),
    Dict(Vec<(Bytes, Bytes)>),
}

/// Python's `multiprocessing.Manager()`: a server process owning shared lists and dicts.
///
/// Make it before forking the processes that use it. Dropping it (or [`shutdown`]) stops
/// the server and reaps it.
///
/// [`shutdown`]: Manager::shutdown
///
/// ```
/// use conclab::multiprocessing::{Manager, Process};
///
/// let manager = Manager::new().unwrap();
/// let shared_list = manager.list::<String>().unwrap();
/// Process::spawn(|| shared_list.append("Hello from process".to_string()).unwrap())
///     .unwrap()
///     .join()
///     .unwrap();
/// assert_eq!(shared_list.to_vec().unwrap(), vec!["Hello from process"]);
/// println!("{shared_list:?}"); // ListProxy(["Hello from process"])
/// ```
pub struct Manager {
    name: Arc<String>,
    pid: Pid,
    pidfd: PidFd,
    owner: u32,
    lifeline: Option<OwnedFd>,
    control: Conn,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager").field("pid", &self.pid).finish()
    }
}

/// A per-process connection to the server.
struct Conn {
    name: Arc<String>,
    stream: Mutex<Option<(u32, UnixStream)>>,
}

impl Conn {
    fn new(name: Arc<String>) -> Conn {
        Conn {
            name,
            stream: Mutex::new(None),
        }
    }

    fn call(&self, req: &Req) -> Result<Resp, MpError> {
        let me = std::process::id();
        let mut guard = self.stream.lock();
        if guard.as_ref().is_none_or(|(pid, _)| *pid != me) {
            // A connection inherited through fork is shared with the parent: make our own.
            // Dropping closes only this process's copy of the descriptor.
            guard.take();
            let addr = SocketAddr::from_abstract_name(self.name.as_bytes())
                .map_err(|e| MpError::io("name the manager's socket", &e))?;
            let stream = UnixStream::connect_addr(&addr).map_err(|e| match e.kind() {
                ErrorKind::ConnectionRefused | ErrorKind::NotFound => MpError::Eof,
                _ => MpError::io("connect to the manager", &e),
            })?;
            *guard = Some((me, stream));
        }
        let Some((_, stream)) = guard.as_ref() else {
            return Err(MpError::Eof);
        };
        let frame = codec::frame(req)?;
        let fd = stream.as_fd();
        let result = codec::write_all(fd, &frame, true).and_then(|()| codec::read_frame(fd));
        match result {
            Ok(bytes) => match codec::decode::<Resp>(&bytes)? {
                Resp::Err(msg) => Err(MpError::Manager(msg)),
                resp => Ok(resp),
            },
            Err(e) => {
                *guard = None;
                Err(e)
            }
        }
    }
}

impl Manager {
    /// Forks the server process.
    ///
    /// ```
    /// let m = conclab::multiprocessing::Manager::new().unwrap();
    /// assert!(m.pid() > 0);
    /// ```
    pub fn new() -> Result<Manager, MpError> {
        let owner = std::process::id();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!("conclab-manager-{owner}-{nanos}");
        let addr = SocketAddr::from_abstract_name(name.as_bytes())
            .map_err(|e| MpError::io("name the manager's socket", &e))?;
        let listener = UnixListener::bind_addr(&addr)
            .map_err(|e| MpError::io("bind the manager's socket", &e))?;
        let (life_read, life_write) = codec::pipe()?;
        fork::warn_if_threads("Manager::new");
        // SAFETY: the child runs `serve`, which never returns.
        let Some(pid) = (unsafe { fork::fork_raw(None)? }) else {
            drop(life_write);
            serve(listener, life_read);
        };
        drop(listener);
        drop(life_read);
        let pidfd = fork::pidfd_open(pid)?;
        let name = Arc::new(name);
        Ok(Manager {
            control: Conn::new(Arc::clone(&name)),
            name,
            pid,
            pidfd,
            owner,
            lifeline: Some(life_write),
        })
    }

    /// The server's process id.
    ///
    /// ```
    /// let m = conclab::multiprocessing::Manager::new().unwrap();
    /// assert_ne!(m.pid() as u32, std::process::id());
    /// ```
    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// A new empty shared list (Python's `manager.list()`).
    ///
    /// ```
    /// let m = conclab::multiprocessing::Manager::new().unwrap();
    /// let l = m.list::<i32>().unwrap();
    /// assert!(l.is_empty().unwrap());
    /// ```
    pub fn list<T: Serialize + DeserializeOwned>(&self) -> Result<ListProxy<T>, MpError> {
        match self.control.call(&Req::NewList)? {
            Resp::Id(id) => Ok(ListProxy {
                conn: Conn::new(Arc::clone(&self.name)),
                id,
                _t: PhantomData,
            }),
            _ => Err(unexpected()),
        }
    }

    /// A new empty shared dict (Python's `manager.dict()`), keeping insertion order.
    ///
    /// ```
    /// let m = conclab::multiprocessing::Manager::new().unwrap();
    /// let d = m.dict::<String, i32>().unwrap();
    /// d.insert("a".into(), 1).unwrap();
    /// assert_eq!(d.get(&"a".into()).unwrap(), Some(1));
    /// ```
    pub fn dict<K, V>(&self) -> Result<DictProxy<K, V>, MpError>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        match self.control.call(&Req::NewDict)? {
            Resp::Id(id) => Ok(DictProxy {
                conn: Conn::new(Arc::clone(&self.name)),
                id,
                _t: PhantomData,
            }),
            _ => Err(unexpected()),
        }
    }

    /// Stops the server and reaps it; proxies then fail with [`MpError::Eof`].
    ///
    /// ```
    /// use conclab::multiprocessing::{Manager, MpError};
    /// let m = Manager::new().unwrap();
    /// let l = m.list::<u8>().unwrap();
    /// m.shutdown().unwrap();
    /// assert_eq!(l.len(), Err(MpError::Eof));
    /// ```
    pub fn shutdown(mut self) -> Result<(), MpError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), MpError> {
        if self.lifeline.is_none() {
            return Ok(());
        }
        let _ = self.control.call(&Req::Shutdown);
        self.lifeline = None;
        let deadline = Instant::now() + Duration::from_secs(5);
        let ended = codec::wait_readable(self.pidfd.as_fd(), Some(Duration::from_secs(5)))?;
        if !ended || Instant::now() > deadline {
            self.pidfd
                .signal(Signal::SIGKILL)
                .map_err(|e| MpError::io("send a signal to the manager", &e))?;
        }
        fork::reap(self.pid).map(|_| ())
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        if std::process::id() != self.owner {
            if let Some(fd) = self.lifeline.take() {
                drop(fd);
            }
            return;
        }
        let _ = self.stop();
    }
}

fn unexpected() -> MpError {
    MpError::Manager("the server sent an answer of the wrong kind".into())
}

/// The server process: accept connections, serve each on its own thread, stop on
/// `Shutdown` or when every holder of the lifeline pipe (the parent and its later
/// children) is gone.
fn serve(listener: UnixListener, lifeline: OwnedFd) -> ! {
    let info = fork::ChildInfo::new("manager", Some("Manager".to_string()));
    // SAFETY: `info` lives in this frame, which never returns: it ends in `child_exit`.
    unsafe { fork::child_enter(&info) };
    let objects: Arc<Mutex<HashMap<u64, Obj>>> = Arc::new(Mutex::new(HashMap::new()));
    loop {
        let mut fds = [
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(lifeline.as_fd(), PollFlags::POLLIN),
        ];
        if os_fd::poll(&mut fds, None).unwrap_or(0) == 0 {
            continue;
        }
        let (incoming, orphaned) = (os_fd::has_events(&fds[0]), os_fd::has_events(&fds[1]));
        if orphaned {
            fork::child_exit(0);
        }
        if incoming {
            if let Ok((stream, _)) = listener.accept() {
                let objects = Arc::clone(&objects);
                std::thread::spawn(move || handle(stream, objects));
            }
        }
    }
}

fn handle(stream: UnixStream, objects: Arc<Mutex<HashMap<u64, Obj>>>) {
    let fd = stream.as_fd();
    while let Ok(bytes) = codec::read_frame(fd) {
        let (resp, stop) = match codec::decode::<Req>(&bytes) {
            Ok(Req::Shutdown) => (Resp::Done, true),
            Ok(req) => (apply(&mut objects.lock(), req), false),
            Err(e) => (Resp::Err(e.to_string()), false),
        };
        let Ok(frame) = codec::frame(&resp) else {
            return;
        };
        let _ = codec::write_all(fd, &frame, true);
        if stop {
            fork::child_exit(0);
        }
    }
}

fn apply(objects: &mut HashMap<u64, Obj>, req: Req) -> Resp {
    let missing = || Resp::Err("no such shared object".into());
    match req {
        Req::NewList | Req::NewDict => {
            let id = objects.len() as u64;
            let obj = if matches!(req, Req::NewList) {
                Obj::List(Vec::new())
            } else {
                Obj::Dict(Vec::new())
            };
            objects.insert(id, obj);
            Resp::Id(id)
        }
        Req::Append(id, v) => match objects.get_mut(&id) {
            Some(Obj::List(l)) => {
                l.push(v);
                Resp::Done
            }
            _ => missing(),
        },
        Req::Extend(id, vs) => match objects.get_mut(&id) {
            Some(Obj::List(l)) => {
                l.extend(vs);
                Resp::Done
            }
            _ => missing(),
        },
        Req::Get(id, i) => match objects.get(&id) {
            Some(Obj::List(l)) => Resp::Value(l.get(i).cloned()),
            _ => missing(),
        },
        Req::Set(id, i, v) => match objects.get_mut(&id) {
            Some(Obj::List(l)) => match l.get_mut(i) {
                Some(slot) => {
                    *slot = v;
                    Resp::Done
                }
                None => Resp::Err(format!("index {i} is out of range for length {}", l.len())),
            },
            _ => missing(),
        },
        Req::Pop(id) => match objects.get_mut(&id) {
            Some(Obj::List(l)) => Resp::Value(l.pop()),
            _ => missing(),
        },
        Req::Len(id) => match objects.get(&id) {
            Some(Obj::List(l)) => Resp::Len(l.len()),
            Some(Obj::Dict(d)) => Resp::Len(d.len()),
            None => missing(),
        },
        Req::All(id) => match objects.get(&id) {
            Some(Obj::List(l)) => Resp::List(l.clone()),
            _ => missing(),
        },
        Req::Clear(id) => match objects.get_mut(&id) {
            Some(Obj::List(l)) => {
                l.clear();
                Resp::Done
            }
            Some(Obj::Dict(d)) => {
                d.clear();
                Resp::Done
            }
            None => missing(),
        },
        Req::Insert(id, k, v) => match objects.get_mut(&id) {
            Some(Obj::Dict(d)) => {
                match d.iter_mut().find(|(key, _)| *key == k) {
                    Some((_, slot)) => *slot = v,
                    None => d.push((k, v)),
                }
                Resp::Done
            }
            _ => missing(),
        },
        Req::Lookup(id, k) => match objects.get(&id) {
            Some(Obj::Dict(d)) => {
                Resp::Value(d.iter().find(|(key, _)| *key == k).map(|(_, v)| v.clone()))
            }
            _ => missing(),
        },
        Req::Remove(id, k) => match objects.get_mut(&id) {
            Some(Obj::Dict(d)) => {
                let pos = d.iter().position(|(key, _)| *key == k);
                Resp::Value(pos.map(|p| d.remove(p).1))
            }
            _ => missing(),
        },
        Req::Items(id) => match objects.get(&id) {
            Some(Obj::Dict(d)) => Resp::Items(d.clone()),
            _ => missing(),
        },
        Req::Shutdown => Resp::Done,
    }
}

fn decode_opt<T: DeserializeOwned>(resp: Resp) -> Result<Option<T>, MpError> {
    match resp {
        Resp::Value(Some(b)) => Ok(Some(codec::decode(&b)?)),
        Resp::Value(None) => Ok(None),
        _ => Err(unexpected()),
    }
}

fn expect_done(resp: Resp) -> Result<(), MpError> {
    match resp {
        Resp::Done => Ok(()),
        _ => Err(unexpected()),
    }
}

fn expect_len(resp: Resp) -> Result<usize, MpError> {
    match resp {
        Resp::Len(n) => Ok(n),
        _ => Err(unexpected()),
    }
}

/// A shared list living in a [`Manager`]'s server (Python's `ListProxy`). Every method is
/// one request, done atomically on the server. A clone is another handle to the same list.
///
/// ```
/// use conclab::multiprocessing::{Manager, Process};
/// let m = Manager::new().unwrap();
/// let l = m.list().unwrap();
/// let kids: Vec<_> = (0..3).map(|i| Process::spawn(|| l.append(i).unwrap()).unwrap()).collect();
/// kids.into_iter().for_each(|k| k.join().unwrap());
/// let mut all = l.to_vec().unwrap();
/// all.sort();
/// assert_eq!(all, vec![0, 1, 2]);
/// ```
pub struct ListProxy<T> {
    conn: Conn,
    id: u64,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> Clone for ListProxy<T> {
    fn clone(&self) -> Self {
        ListProxy {
            conn: Conn::new(Arc::clone(&self.conn.name)),
            id: self.id,
            _t: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned + std::fmt::Debug> std::fmt::Debug for ListProxy<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.to_vec() {
            Ok(v) => f.debug_tuple("ListProxy").field(&v).finish(),
            Err(e) => write!(f, "ListProxy(<{e}>)"),
        }
    }
}

impl<T: Serialize + DeserializeOwned> ListProxy<T> {
    /// Appends an item.
    ///
    /// ```
    /// let m = conclab::multiprocessing::Manager::new().unwrap();
    /// let l = m.list().unwrap();
    /// l.append(1).unwrap();
    /// assert_eq!(l.to_vec().unwrap(), vec![1]);
    /// ```
    pub fn append(&self, item: T) -> Result<(), MpError> {
        expect_done(
            self.conn
                .call(&Req::Append(self.id, codec::encode(&item)?))?,
        )
    }

    /// Appends every item, in one request.
    ///
    /// ```
    /// let m = conclab::multiprocessing::Manager::new().unwrap();
    /// let l = m.list().unwrap();
    /// l.extend([1, 2, 3]).unwrap();
    /// assert_eq!(l.len().unwrap(), 3);
    /// ```
    pub fn extend(&self, items: impl IntoIterator<Item = T>) -> Result<(), MpError> {
        let items = items
            .into_iter()
            .map(|i| codec::encode(&i))
            .collect::<Result<Vec<_>, _>>()?;
        expect_done(self.conn.call(&Req::Extend(self.id, items))?)
    }

    /// The item at `index`, `None` past the end.
    ///
    /// ```
    /// let m = conclab::multiprocessing::Manager::new().unwrap();
    /// let l = m.list().unwrap();
    /// l.append('x').unwrap();
    /// assert_eq!(l.get(0).unwrap(), Some('x'));
    /// assert_eq!(l.get(1).unwrap(), None);
    /// ```
    pub fn get(&self, index: usize) -> Result<Option<T>, MpError> {
        decode_opt(self.conn.call(&Req::Get(self.id, index))?)
    }

    /// Replaces the item at `index`.
    ///
    /// ```
    /// let m = conclab::multiprocessing::Manager::new().unwrap();
    /// let l = m.list().unwrap();
    /// l.append(1).unwrap();
    /// l.set(0, 5).unwrap();
    /// assert!(l.set(3, 5).is_err());
    /// assert_eq!(l.to_vec().unwrap(), vec![5]);
    /// ```
    pub fn set(&self, index: usize, item: T) -> Result<(), MpError> {
        expect_done(
            self.conn
                .call(&Req::Set(self.id, index, codec::encode(&item)?))?,
        )
    }

    /// Removes and returns the last item.
    ///
    /// ```
    /// let m = conclab::multiprocessing::Manager::new().unwrap();
    /// let l = m.list().unwrap();
    /// l.extend([1, 2]).unwrap();
    /// assert_eq!(l.pop().unwrap(), Some(2));
    /// ```
    pub fn pop(&self) -> Result<Option<T>, MpError> {
        decode_opt(self.conn.call(&Req::Pop(self.id))?)
    }

    /// The number of items.
    ///
    /// ```
    /// let m = conclab::multiprocessing::Manager::new().unwrap();
    /// assert_eq!(m.list::<u8>().unwrap().len().unwrap(), 0);
    /// ```
    pub fn len(&self) -> Result<usize, MpError> {
        expect_len(self.conn.call(&Req::Len(self.id))?)
    }

    /// Whether the list is empty.
    ///
    /// ```
    /// let m = conclab::multiprocessing::Manager::new().unwrap();
    /// assert!(m.list::<u8>().unwrap().is_empty().unwrap());
    /// ```
    pub fn is_empty(&self) -> Result<bool, MpError> {
        Ok(self.len()? == 0)
    }

    /// A copy of the whole list.
    ///
    /// ```
    /// let m = conclab::multiprocessing::Manager::new().unwrap();
    /// let l = m.list().unwrap();
    /// l.extend(["a", "b"].map(String::from)).unwrap();
    /// assert_eq!(l.to_vec().unwrap(), vec!["a", "b"]);
    /// ```
    pub fn to_vec(&self) -> Result<Vec<T>, MpError> {
        match self.conn.call(&Req::All(self.id))? {
            Resp::List(items) => items.iter().map(|b| codec::decode(b)).collect(),
            _ => Err(unexpected()),
        }
    }

    /// Removes every item.
    ///
    /// ```
    /// let m = conclab::multiprocessing::Manager::new().unwrap();
    /// let l = m.list().unwrap();
    /// l.append(1).unwrap();
    /// l.clear().unwrap();
    /// assert!(l.is_empty().unwrap());
    /// ```
    pub fn clear(&self) -> Result<(), MpError> {
        expect_done(self.conn.call(&Req::Clear(self.id))?)
    }
}

type DictTypes<K, V> = fn(K, V) -> (K, V);

/// A shared dict living in a [`Manager`]'s server (Python's `DictProxy`), in insertion
/// order. Each method is one atomic request; `get` followed by `insert` is not.
///
/// ```
/// use conclab::multiprocessing::{Manager, Process};
/// let m = Manager::new().unwrap();
/// let d = m.dict::<String, u32>().unwrap();
/// Process::spawn(|| d.insert(format!("child-{}", std::process::id()), 1).unwrap())
///     .unwrap()
///     .join()
///     .unwrap();
/// assert_eq!(d.len().unwrap(), 1);
/// ```
pub struct DictProxy<K, V> {
    conn: Conn,
    id: u64,
    _t: PhantomData<DictTypes<K, V>>,
}

impl<K, V> Clone for DictProxy<K, V> {
    fn clone(&self) -> Self {
        DictProxy {
            conn: Conn::new(Arc::clone(&self.conn.name)),
            id: self.id,
            _t: PhantomData,
        }
    }
}

impl<K, V> std::fmt::Debug for DictProxy<K, V>
where
    K: Serialize + DeserializeOwned + std::fmt::Debug,
    V: Serialize + DeserializeOwned + std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.items() {
            Ok(items) => f.debug_map().entries(items).finish(),
            Err(e) => write!(f, "DictProxy(<{e}>)"),
        }
    }
}

impl<K, V> DictProxy<K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    /// Sets `key` to `value` (Python's `d[key] = value`).
    ///
    /// ```
    /// let m = conclab::multiprocessing::Manager::new().unwrap();
    /// let d = m.dict().unwrap();
    /// d.insert(1, "one".to_string()).unwrap();
    /// d.insert(1, "uno".to_string()).unwrap();
    /// assert_eq!(d.items().unwrap(), vec![(1, "uno".to_string())]);
    /// ```
    pub fn insert(&self, key: K, value: V) -> Result<(), MpError> {
        let req = Req::Insert(self.id, codec::encode(&key)?, codec::encode(&value)?);
        expect_done(self.conn.call(&req)?)
    }

    /// The value for `key`, if any.
    ///
    /// ```
    /// let m = conclab::multiprocessing::Manager::new().unwrap();
    /// let d = m.dict::<u8, u8>().unwrap();
    /// assert_eq!(d.get(&1).unwrap(), None);
    /// ```
    pub fn get(&self, key: &K) -> Result<Option<V>, MpError> {
        decode_opt(self.conn.call(&Req::Lookup(self.id, codec::encode(key)?))?)
    }

    /// Removes `key` and returns its value, if it was there.
    ///
    /// ```
    /// let m = conclab::multiprocessing::Manager::new().unwrap();
    /// let d = m.dict().unwrap();
    /// d.insert('k', 2).unwrap();
    /// assert_eq!(d.remove(&'k').unwrap(), Some(2));
    /// assert_eq!(d.remove(&'k').unwrap(), None);
    /// ```
    pub fn remove(&self, key: &K) -> Result<Option<V>, MpError> {
        decode_opt(self.conn.call(&Req::Remove(self.id, codec::encode(key)?))?)
    }

    /// Whether `key` is present.
    ///
    /// ```
    /// let m = conclab::multiprocessing::Manager::new().unwrap();
    /// let d = m.dict().unwrap();
    /// d.insert(3, ()).unwrap();
    /// assert!(d.contains_key(&3).unwrap());
    /// ```
    pub fn contains_key(&self, key: &K) -> Result<bool, MpError> {
        self.conn
            .call(&Req::Lookup(self.id, codec::encode(key)?))
            .map(|r| matches!(r, Resp::Value(Some(_))))
    }

    /// The number of entries.
    ///
    /// ```
    /// let m = conclab::multiprocessing::Manager::new().unwrap();
    /// assert_eq!(m.dict::<u8, u8>().unwrap().len().unwrap(), 0);
    /// ```
    pub fn len(&self) -> Result<usize, MpError> {
        expect_len(self.conn.call(&Req::Len(self.id))?)
    }

    /// Whether the dict is empty.
    ///
    /// ```
    /// let m = conclab::multiprocessing::Manager::new().unwrap();
    /// assert!(m.dict::<u8, u8>().unwrap().is_empty().unwrap());
    /// ```
    pub fn is_empty(&self) -> Result<bool, MpError> {
        Ok(self.len()? == 0)
    }

    /// A copy of all entries in insertion order.
    ///
    /// ```
    /// let m = conclab::multiprocessing::Manager::new().unwrap();
    /// let d = m.dict().unwrap();
    /// d.insert("b".to_string(), 2).unwrap();
    /// d.insert("a".to_string(), 1).unwrap();
    /// assert_eq!(d.items().unwrap(), vec![("b".to_string(), 2), ("a".to_string(), 1)]);
    /// ```
    pub fn items(&self) -> Result<Vec<(K, V)>, MpError> {
        match self.conn.call(&Req::Items(self.id))? {
            Resp::Items(items) => items
                .iter()
                .map(|(k, v)| Ok((codec::decode(k)?, codec::decode(v)?)))
                .collect(),
            _ => Err(unexpected()),
        }
    }

    /// Removes every entry.
    ///
    /// ```
    /// let m = conclab::multiprocessing::Manager::new().unwrap();
    /// let d = m.dict().unwrap();
    /// d.insert(1, 1).unwrap();
    /// d.clear().unwrap();
    /// assert!(d.is_empty().unwrap());
    /// ```
    pub fn clear(&self) -> Result<(), MpError> {
        expect_done(self.conn.call(&Req::Clear(self.id))?)
    }
}
