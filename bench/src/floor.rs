//! The floor under wshost: the benchmark's two routes served without wasm,
//! on wshost's own protocol crate (`wshost-proto`: the same handshake,
//! decoder and frames), in the two shapes issue 26 weighs.
//!
//! - `native loop` ([`serve_loop`]): uWebSockets' shape. One thread runs an
//!   epoll loop (mio) that owns every socket; a readable socket is read,
//!   its frames decoded and answered, and the replies written, inline,
//!   before the next socket's event. No task, future or waker per socket.
//! - `native tasks` ([`serve_tasks`]): wshost's shape without wshost. A
//!   task per socket on a current-thread tokio runtime reads, decodes,
//!   answers and writes, in the socket's own task.
//!
//! Either against wshost's event world says what wshost's own path (the
//! socket's pump, the route's queue, the guest call, the outbox) costs per
//! message; the two against each other, what the runtime's shape costs.
//! `/broadcast` prefixes each text message and sends it to every
//! connection of the route, as wshost's `chat` guest does; any other path
//! echoes.

use bytes::Bytes;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use tokio_tungstenite::tungstenite::Message;
use wshost_proto::decode::{Decoder, Read as Frame};
use wshost_proto::frame::{self, Kind};
use wshost_proto::http::{self, RequestHead};

use crate::native::PREFIX;

const LISTENER: Token = Token(usize::MAX);
const MAX_MESSAGE: usize = 16 << 20;
/// Bytes asked of a socket at once.
const CHUNK: usize = 64 << 10;
/// The longest request head read.
const MAX_HEAD: usize = 16 << 10;

/// What one message (or control frame) from a peer asks of the server.
enum Answer {
    /// Write this back to the peer.
    Reply(Bytes),
    /// Write this to every member of `/broadcast`.
    Everyone(Bytes),
    /// Write this back and close.
    Last(Bytes),
}

/// The answer to each thing `decoder` holds whole, in order, until it
/// needs more bytes or the connection is to close.
fn answer(decoder: &mut Decoder, broadcast: bool, mut each: impl FnMut(Answer)) -> bool {
    loop {
        let answer = match decoder.parse() {
            Ok(None) => return false,
            Ok(Some(Frame::Message(Message::Text(text)))) if broadcast => {
                let out = format!("{PREFIX}{text}");
                Answer::Everyone(frame::encode(Kind::Text, true, out.as_bytes()))
            }
            Ok(Some(Frame::Message(Message::Text(text)))) => {
                Answer::Reply(frame::encode(Kind::Text, true, text.as_bytes()))
            }
            Ok(Some(Frame::Message(Message::Binary(data)))) => {
                Answer::Reply(frame::encode(Kind::Binary, true, &data))
            }
            Ok(Some(Frame::Ping(data))) => Answer::Reply(frame::encode(Kind::Pong, true, &data)),
            Ok(Some(Frame::Message(_) | Frame::Pong)) => continue,
            Ok(Some(Frame::Close(_))) => Answer::Last(frame::encode_empty_close()),
            Err(e) => Answer::Last(frame::close(e.close_code(), "")),
        };
        let last = matches!(answer, Answer::Last(_));
        each(answer);
        if last {
            return true;
        }
    }
}

/// The request head at the start of `head`, once whole: the 101 response,
/// its decoder (holding what followed the head) and whether it asked for
/// `/broadcast`. `Err` for a head that is no handshake.
#[allow(clippy::type_complexity)]
fn handshake(head: &[u8]) -> Result<Option<(Vec<u8>, Decoder, bool)>, ()> {
    let Some((req, used)): Option<(RequestHead, usize)> = http::parse_head(head).map_err(drop)?
    else {
        return Ok(None);
    };
    let accept = http::accept_key(&req).map_err(drop)?;
    let (response, _) = http::switching_protocols((&req, &accept), None, &[], false);
    let decoder = Decoder::new(&head[used..], MAX_MESSAGE, MAX_MESSAGE);
    Ok(Some((response, decoder, req.path == "/broadcast")))
}

/// `native loop`: one epoll loop owning every socket, on this thread.
pub fn serve_loop(listen: SocketAddr) -> anyhow::Result<()> {
    let mut poll = Poll::new()?;
    let mut listener = TcpListener::bind(listen)?;
    println!("listening on http://{}", listener.local_addr()?);
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut server = Loop::default();
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; CHUNK];
    loop {
        match poll.poll(&mut events, None) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            result => result?,
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                server.accept(&listener, &poll)?;
                continue;
            }
            let id = event.token().0;
            if event.is_readable() || event.is_read_closed() {
                server.read(id, &mut scratch);
            }
            // Written as each socket's read is handled, not once per poll:
            // measured 0.91x Bun corked per poll against 0.99x so.
            server.flush(id, &poll);
        }
    }
}

#[derive(Default)]
struct Loop {
    conns: slab::Slab<Conn>,
    /// Connections on `/broadcast`.
    members: Vec<usize>,
    /// Connections written to by the socket being handled.
    touched: Vec<usize>,
}

struct Conn {
    tcp: TcpStream,
    /// The request head, until it is whole.
    head: Vec<u8>,
    /// Once it is: the decoder, and whether it is on `/broadcast`.
    open: Option<(Decoder, bool)>,
    /// What waits to be written.
    out: Vec<u8>,
    /// Reads no more, takes no more frames, and is closed once `out` is written.
    closing: bool,
}

impl Loop {
    fn accept(&mut self, listener: &TcpListener, poll: &Poll) -> io::Result<()> {
        loop {
            let mut tcp = match listener.accept() {
                Ok((tcp, _)) => tcp,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Out of descriptors and the like: the next readiness retries.
                Err(_) => return Ok(()),
            };
            let _ = tcp.set_nodelay(true);
            let entry = self.conns.vacant_entry();
            let interest = Interest::READABLE | Interest::WRITABLE;
            poll.registry()
                .register(&mut tcp, Token(entry.key()), interest)?;
            entry.insert(Conn {
                tcp,
                head: Vec::new(),
                open: None,
                out: Vec::new(),
                closing: false,
            });
        }
    }

    /// Read what socket `id` holds and queue the answers.
    fn read(&mut self, id: usize, scratch: &mut [u8]) {
        let mut answers = Vec::new();
        self.touched.push(id);
        loop {
            let Some(conn) = self.conns.get_mut(id) else {
                return;
            };
            if conn.closing {
                return;
            }
            let n = match conn.tcp.read(scratch) {
                Ok(0) => return self.closing(id),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return self.closing(id),
            };
            let bytes = &scratch[..n];
            match &mut conn.open {
                Some((decoder, _)) => decoder.buffer().extend_from_slice(bytes),
                None => {
                    conn.head.extend_from_slice(bytes);
                    match handshake(&conn.head) {
                        Ok(None) if conn.head.len() <= MAX_HEAD => {}
                        Ok(None) | Err(()) => return self.closing(id),
                        Ok(Some((response, decoder, broadcast))) => {
                            conn.out.extend_from_slice(&response);
                            conn.head = Vec::new();
                            conn.open = Some((decoder, broadcast));
                            if broadcast {
                                self.members.push(id);
                            }
                        }
                    }
                }
            }
            let Some(conn) = self.conns.get_mut(id) else {
                return;
            };
            let last = match &mut conn.open {
                Some((decoder, broadcast)) => answer(decoder, *broadcast, |a| answers.push(a)),
                None => false,
            };
            for answer in answers.drain(..) {
                match answer {
                    Answer::Reply(bytes) | Answer::Last(bytes) => self.queue(id, &bytes),
                    Answer::Everyone(bytes) => {
                        for i in 0..self.members.len() {
                            self.queue(self.members[i], &bytes);
                        }
                    }
                }
            }
            if last {
                return self.closing(id);
            }
            // A short read drained the socket (as uWebSockets and wshost
            // take it).
            if n < scratch.len() {
                return;
            }
        }
    }

    /// Socket `id` takes nothing more: what it holds is written, then it
    /// is closed.
    fn closing(&mut self, id: usize) {
        if let Some(conn) = self.conns.get_mut(id) {
            conn.closing = true;
            self.members.retain(|&m| m != id);
        }
    }

    /// `bytes` for socket `to`, unless it is closing (its Close frame, or
    /// its end, is the last thing it gets).
    fn queue(&mut self, to: usize, bytes: &[u8]) {
        if let Some(conn) = self.conns.get_mut(to)
            && !conn.closing
        {
            conn.out.extend_from_slice(bytes);
            self.touched.push(to);
        }
    }

    /// Write what the sockets touched since the last flush hold (`id`
    /// among them, as its writable event may be why it was called);
    /// close those that are done.
    fn flush(&mut self, id: usize, poll: &Poll) {
        self.touched.push(id);
        while let Some(id) = self.touched.pop() {
            let Some(conn) = self.conns.get_mut(id) else {
                continue;
            };
            let mut broken = false;
            while !conn.out.is_empty() {
                match conn.tcp.write(&conn.out) {
                    Ok(0) => broken = true,
                    Ok(n) => drop(conn.out.drain(..n)),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => broken = true,
                }
                if broken {
                    break;
                }
            }
            if broken || (conn.closing && conn.out.is_empty()) {
                self.closing(id);
                let mut conn = self.conns.remove(id);
                let _ = poll.registry().deregister(&mut conn.tcp);
            }
        }
    }
}

/// A `/broadcast` member's queue, filled by others' tasks, written by its own.
#[derive(Default)]
struct Member {
    out: RefCell<Vec<u8>>,
    filled: tokio::sync::Notify,
}

/// `native tasks`: a task per socket on a current-thread tokio runtime,
/// on this thread.
pub fn serve_tasks(listen: SocketAddr) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        println!("listening on http://{}", listener.local_addr()?);
        let members: Rc<RefCell<Vec<Rc<Member>>>> = Rc::default();
        loop {
            let (tcp, _) = listener.accept().await?;
            let _ = tcp.set_nodelay(true);
            tokio::task::spawn_local(connection(tcp, members.clone()));
        }
    })
}

async fn connection(mut tcp: tokio::net::TcpStream, members: Rc<RefCell<Vec<Rc<Member>>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; CHUNK];
    let mut head = Vec::new();
    let (mut decoder, broadcast) = loop {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        match handshake(&head) {
            Ok(None) if head.len() <= MAX_HEAD => continue,
            Ok(None) | Err(()) => return,
            Ok(Some((response, decoder, broadcast))) => {
                if tcp.write_all(&response).await.is_err() {
                    return;
                }
                break (decoder, broadcast);
            }
        }
    };
    let me = Rc::new(Member::default());
    if broadcast {
        members.borrow_mut().push(me.clone());
    }
    // What the client sent with its request head is answered first.
    let mut out = Vec::new();
    let mut last = answer_into(&mut decoder, broadcast, &members, &me, &mut out);
    loop {
        if !out.is_empty() && tcp.write_all(&out).await.is_err() {
            break;
        }
        out.clear();
        if last {
            break;
        }
        tokio::select! {
            read = tcp.read(&mut buf) => {
                let n = match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                decoder.buffer().extend_from_slice(&buf[..n]);
                last = answer_into(&mut decoder, broadcast, &members, &me, &mut out);
            }
            () = me.filled.notified() => out.append(&mut me.out.borrow_mut()),
        }
    }
    members.borrow_mut().retain(|m| !Rc::ptr_eq(m, &me));
}

/// Answer what `decoder` holds into `out`, after what others queued to
/// `me` (so frames go out in the order they were made, a Close last);
/// true when the connection is to close.
fn answer_into(
    decoder: &mut Decoder,
    broadcast: bool,
    members: &RefCell<Vec<Rc<Member>>>,
    me: &Rc<Member>,
    out: &mut Vec<u8>,
) -> bool {
    out.append(&mut me.out.borrow_mut());
    answer(decoder, broadcast, |a| match a {
        Answer::Reply(bytes) | Answer::Last(bytes) => out.extend_from_slice(&bytes),
        Answer::Everyone(bytes) => {
            for member in members.borrow().iter() {
                if Rc::ptr_eq(member, me) {
                    out.extend_from_slice(&bytes);
                } else {
                    member.out.borrow_mut().extend_from_slice(&bytes);
                    member.filled.notify_one();
                }
            }
        }
    })
}
