//! A Redis relay that widens a race window for a test, as if a session's writer took `delay`
//! between loading the session and saving it. Nothing in the shipped code waits. Two holds,
//! chosen per command:
//! - a held **command** (a session save) reaches Redis `delay` after the client sent it; it
//!   runs on a connection of its own, opened with the client connection's handshake (`AUTH`,
//!   `HELLO`, `SELECT`, `CLIENT SETNAME`), so every other command of the client keeps
//!   reaching Redis at once, in order, as it would while a writer computes;
//! - a held **answer** (to a session load) reaches the client `delay` after Redis gave it:
//!   the load happened, and the writer learns of it, and saves, that much later.
//!
//! Answers go back in the order the client sent the commands (RESP has no other way), so an
//! answer queued behind a held one reaches the client when the held one does. Tests give the
//! replica a large pool, so its other commands rarely queue behind one.
//!
//! A connection that subscribes (the lock wake-ups) is relayed as it is from then on.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{mpsc, oneshot},
    task::JoinHandle,
};

/// Picks commands by their arguments (the command's name first).
pub type Pick = Arc<dyn Fn(&[Vec<u8>]) -> bool + Send + Sync>;

/// What a [`HoldingProxy`] holds, and for how long.
#[derive(Clone)]
pub struct Hold {
    /// How long each hold lasts.
    pub delay: Duration,
    /// Commands that reach Redis `delay` after the client sent them.
    pub commands: Pick,
    /// Commands whose answer reaches the client `delay` after Redis gave it.
    pub answers: Pick,
}

/// Picks no command.
pub fn nothing() -> Pick {
    Arc::new(|_: &[Vec<u8>]| false)
}

/// A relay on `127.0.0.1:0` in front of one Redis; stops on drop.
#[derive(Debug)]
pub struct HoldingProxy {
    /// Where clients connect.
    addr: SocketAddr,
    /// Commands held so far.
    held: Arc<AtomicU64>,
    /// The accept loop (its connections stop with it).
    task: JoinHandle<()>,
}

impl HoldingProxy {
    /// Relays to the Redis at `upstream`, holding what `hold` picks.
    pub async fn start(upstream: SocketAddr, hold: Hold) -> HoldingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let held = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn({
            let held = Arc::clone(&held);
            async move {
                let mut conns = tokio::task::JoinSet::new();
                while let Ok((client, _)) = listener.accept().await {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        continue;
                    };
                    let relay = Relay {
                        upstream,
                        hold: hold.clone(),
                        held: Arc::clone(&held),
                    };
                    conns.spawn(relay.run(client, server));
                    while conns.try_join_next().is_some() {}
                }
            }
        });
        HoldingProxy { addr, held, task }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many commands or answers were held so far.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::SeqCst)
    }
}

impl Drop for HoldingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether `args` run one of `scripts` (each a SHA1 and its body): `EVALSHA <sha>` or
/// `EVAL <body>`.
fn runs_one_of(args: &[Vec<u8>], scripts: &[(String, String)]) -> bool {
    let (Some(name), Some(script)) = (args.first(), args.get(1)) else {
        return false;
    };
    if name.eq_ignore_ascii_case(b"EVALSHA") {
        scripts
            .iter()
            .any(|(sha, _)| sha.as_bytes() == script.as_slice())
    } else if name.eq_ignore_ascii_case(b"EVAL") {
        scripts
            .iter()
            .any(|(_, text)| text.as_bytes() == script.as_slice())
    } else {
        false
    }
}

/// Picks the app's session saves: one of `scripts` (each a SHA1 and its body), or a
/// `SET … XX` (the last-write-wins save; a new session's `SET … NX` writes over nothing loaded
/// and passes at once).
pub fn session_saves(scripts: Vec<(String, String)>) -> Pick {
    Arc::new(move |args: &[Vec<u8>]| {
        runs_one_of(args, &scripts)
            || (args.first().is_some_and(|n| n.eq_ignore_ascii_case(b"SET"))
                && args.iter().skip(3).any(|a| a.eq_ignore_ascii_case(b"XX")))
    })
}

/// Picks the app's session loads: the lock's acquire script (`acquire`: its SHA1 and body),
/// which reads the record as it takes the lock, and the optimistic peek (`MGET` of the record
/// and the lock).
pub fn session_loads(acquire: (String, String)) -> Pick {
    let scripts = [acquire];
    Arc::new(move |args: &[Vec<u8>]| {
        runs_one_of(args, &scripts)
            || args
                .first()
                .is_some_and(|n| n.eq_ignore_ascii_case(b"MGET"))
    })
}

/// One client connection's relay.
struct Relay {
    upstream: SocketAddr,
    hold: Hold,
    held: Arc<AtomicU64>,
}

/// Where the answer to one command comes from, in the order the client sent them.
enum Slot {
    /// The next answer on the relayed connection, passed on at once or held for a while.
    Relayed(Option<Duration>),
    /// A held command's answer, from its own connection.
    Held(oneshot::Receiver<Vec<u8>>),
    /// Everything that comes on the relayed connection from now on (a subscriber).
    Rest,
}

impl Relay {
    async fn run(self, client: TcpStream, server: TcpStream) {
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (mut client_rd, mut client_wr) = client.into_split();
        let (mut server_rd, mut server_wr) = server.into_split();
        let (slots, mut next_slot) = mpsc::unbounded_channel::<Slot>();

        let answers = async move {
            let mut buf = Vec::new();
            while let Some(slot) = next_slot.recv().await {
                let answer = match slot {
                    Slot::Relayed(hold) => match read_frame(&mut server_rd, &mut buf).await {
                        Some(frame) => {
                            if let Some(delay) = hold {
                                tokio::time::sleep(delay).await;
                            }
                            frame
                        }
                        None => return,
                    },
                    Slot::Held(answer) => match answer.await {
                        Ok(frame) => frame,
                        Err(_) => b"-ERR the holding proxy lost a held command\r\n".to_vec(),
                    },
                    Slot::Rest => {
                        if client_wr.write_all(&buf).await.is_err() {
                            return;
                        }
                        let _ = tokio::io::copy(&mut server_rd, &mut client_wr).await;
                        return;
                    }
                };
                if client_wr.write_all(&answer).await.is_err() {
                    return;
                }
            }
        };

        let commands = async move {
            let mut buf = Vec::new();
            let mut handshake: Vec<Vec<u8>> = Vec::new();
            while let Some((raw, args)) = read_command(&mut client_rd, &mut buf).await {
                let name = args
                    .first()
                    .map(|n| n.to_ascii_uppercase())
                    .unwrap_or_default();
                if (self.hold.commands)(&args) {
                    self.held.fetch_add(1, Ordering::SeqCst);
                    let (answer, answered) = oneshot::channel();
                    if slots.send(Slot::Held(answered)).is_err() {
                        return;
                    }
                    tokio::spawn(run_held(
                        self.upstream,
                        self.hold.delay,
                        handshake.clone(),
                        raw,
                        answer,
                    ));
                    continue;
                }
                let subscribes = matches!(
                    name.as_slice(),
                    b"SUBSCRIBE" | b"PSUBSCRIBE" | b"SSUBSCRIBE" | b"MONITOR"
                );
                if matches!(name.as_slice(), b"AUTH" | b"HELLO" | b"SELECT")
                    || (name == b"CLIENT"
                        && args
                            .get(1)
                            .is_some_and(|sub| sub.eq_ignore_ascii_case(b"SETNAME")))
                {
                    handshake.push(raw.clone());
                }
                let slot = if subscribes {
                    Slot::Rest
                } else if (self.hold.answers)(&args) {
                    self.held.fetch_add(1, Ordering::SeqCst);
                    Slot::Relayed(Some(self.hold.delay))
                } else {
                    Slot::Relayed(None)
                };
                if slots.send(slot).is_err() || server_wr.write_all(&raw).await.is_err() {
                    return;
                }
                if subscribes {
                    if server_wr.write_all(&buf).await.is_ok() {
                        let _ = tokio::io::copy(&mut client_rd, &mut server_wr).await;
                    }
                    return;
                }
            }
        };

        // Either side closing ends the relay: dropping both halves closes both connections.
        tokio::select! {
            () = answers => {}
            () = commands => {}
        }
    }
}

/// Sends `raw` to Redis after `delay` on a connection of its own (after the client's
/// handshake), and hands over Redis's answer.
async fn run_held(
    upstream: SocketAddr,
    delay: Duration,
    handshake: Vec<Vec<u8>>,
    raw: Vec<u8>,
    answer: oneshot::Sender<Vec<u8>>,
) {
    tokio::time::sleep(delay).await;
    let frame = async {
        let mut server = TcpStream::connect(upstream).await.ok()?;
        let _ = server.set_nodelay(true);
        let mut buf = Vec::new();
        for command in &handshake {
            server.write_all(command).await.ok()?;
            read_frame(&mut server, &mut buf).await?;
        }
        server.write_all(&raw).await.ok()?;
        read_frame(&mut server, &mut buf).await
    };
    let frame = frame
        .await
        .unwrap_or_else(|| b"-ERR the holding proxy could not run a held command\r\n".to_vec());
    let _ = answer.send(frame);
}

/// Reads one client command (a RESP array of bulk strings): its bytes and its arguments.
async fn read_command(
    stream: &mut (impl AsyncRead + Unpin),
    buf: &mut Vec<u8>,
) -> Option<(Vec<u8>, Vec<Vec<u8>>)> {
    loop {
        if let Some((len, args)) = parse_command(buf) {
            let raw = buf.drain(..len).collect();
            return Some((raw, args));
        }
        fill(stream, buf).await?;
    }
}

/// Reads one answer (any RESP2 or RESP3 frame, an attribute with the frame it precedes).
async fn read_frame(stream: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        if let Some(len) = frame_len(buf, 0) {
            return Some(buf.drain(..len).collect());
        }
        fill(stream, buf).await?;
    }
}

/// Appends what the stream has; `None` once it is closed.
async fn fill(stream: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 16 * 1024];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Some(())
        }
    }
}

/// The line starting at `at` (without its CRLF) and where the next one starts.
fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(at..)?;
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    Some((&rest[..end], at + end + 2))
}

/// A decimal number (possibly negative) in a RESP header line.
fn number(digits: &[u8]) -> Option<i64> {
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The length of the complete frame starting at `at`, if the buffer holds all of it.
fn frame_len(buf: &[u8], at: usize) -> Option<usize> {
    Some(frame_end(buf, at)? - at)
}

/// Where the complete frame starting at `at` ends.
fn frame_end(buf: &[u8], at: usize) -> Option<usize> {
    let kind = *buf.get(at)?;
    let (header, next) = line(buf, at + 1)?;
    match kind {
        b'+' | b'-' | b':' | b',' | b'#' | b'_' | b'(' => Some(next),
        b'$' | b'!' | b'=' => {
            let n = number(header)?;
            if n < 0 {
                return Some(next);
            }
            let end = next + usize::try_from(n).ok()? + 2;
            (buf.len() >= end).then_some(end)
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n = number(header)?;
            if n < 0 {
                return Some(next);
            }
            let items = usize::try_from(n).ok()? * if matches!(kind, b'%' | b'|') { 2 } else { 1 };
            let mut end = next;
            for _ in 0..items {
                end = frame_end(buf, end)?;
            }
            if kind == b'|' {
                // An attribute comes before the frame it describes.
                end = frame_end(buf, end)?;
            }
            Some(end)
        }
        _ => None,
    }
}

/// A complete command at the start of `buf`: its length and its arguments.
fn parse_command(buf: &[u8]) -> Option<(usize, Vec<Vec<u8>>)> {
    if buf.first() != Some(&b'*') {
        // An inline command (what a person types): one line of words.
        let (text, next) = line(buf, 0)?;
        let args = text
            .split(|b| *b == b' ')
            .filter(|w| !w.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        return Some((next, args));
    }
    let (header, mut at) = line(buf, 1)?;
    let n = usize::try_from(number(header)?).ok()?;
    let mut args = Vec::with_capacity(n);
    for _ in 0..n {
        if buf.get(at) != Some(&b'$') {
            return None;
        }
        let (len, start) = line(buf, at + 1)?;
        let end = start + usize::try_from(number(len)?).ok()?;
        args.push(buf.get(start..end)?.to_vec());
        at = end + 2;
        if buf.len() < at {
            return None;
        }
    }
    Some((at, args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_measured_whole_or_not_at_all() {
        assert_eq!(frame_len(b"+OK\r\n", 0), Some(5));
        assert_eq!(frame_len(b"$3\r\nabc\r\n", 0), Some(9));
        assert_eq!(frame_len(b"$3\r\nab", 0), None);
        assert_eq!(frame_len(b"$-1\r\n", 0), Some(5));
        assert_eq!(frame_len(b"*2\r\n:1\r\n$1\r\nx\r\n+rest", 0), Some(15));
        assert_eq!(frame_len(b"*2\r\n:1\r\n", 0), None);
        assert_eq!(frame_len(b"%1\r\n+k\r\n+v\r\n", 0), Some(12));
    }

    #[test]
    fn commands_are_split_into_arguments() {
        let (len, args) = parse_command(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1").expect("complete");
        assert_eq!(len, 20);
        assert_eq!(args, vec![b"GET".to_vec(), b"k".to_vec()]);
        assert!(parse_command(b"*2\r\n$3\r\nGET\r\n").is_none());
    }

    fn args(words: &[&str]) -> Vec<Vec<u8>> {
        words.iter().map(|w| w.as_bytes().to_vec()).collect()
    }

    #[test]
    fn only_session_saves_are_picked_as_saves() {
        let saves = session_saves(vec![("abc".into(), "return 1".into())]);
        assert!(saves(&args(&["EVALSHA", "abc", "1", "k"])));
        assert!(saves(&args(&["eval", "return 1", "0"])));
        assert!(saves(&args(&["SET", "k", "v", "PX", "10", "XX"])));
        assert!(!saves(&args(&["SET", "k", "v", "PX", "10", "NX"])));
        assert!(!saves(&args(&["SET", "k", "XX"])));
        assert!(!saves(&args(&["EVALSHA", "def", "1", "k"])));
        assert!(!saves(&args(&["GET", "k"])));
    }

    #[test]
    fn only_session_loads_are_picked_as_loads() {
        let loads = session_loads(("acq".into(), "return 2".into()));
        assert!(loads(&args(&["EVALSHA", "acq", "2", "r", "l"])));
        assert!(loads(&args(&["MGET", "r", "l"])));
        assert!(!loads(&args(&["EVALSHA", "abc", "1", "k"])));
        assert!(!loads(&args(&["GET", "r"])));
    }
}
