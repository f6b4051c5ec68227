//! A minimal HTTP/1.1 keep-alive client connection for the throughput hot path, in the style of
//! wrk: the request is a prebuilt byte string, the response head is parsed in place with
//! `httparse` (the parser hyper uses) and the body is skipped without being copied out.
//! Content-Length, chunked and close-delimited bodies are all handled. Nothing is allocated per
//! request; the read buffer grows only for unusually large heads or chunk lines.
//!
//! The checker modes use reqwest instead: there, correctness matters more than cycles.

use std::io;
use std::ops::Range;

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Initial read buffer: a typical response head fits many times over.
const INITIAL_BUFFER: usize = 16 * 1024;
/// A head or chunk-size line longer than this is refused rather than buffered without bound.
const MAX_BUFFER: usize = 1024 * 1024;
/// Headers parsed per response.
const MAX_HEADERS: usize = 64;

/// Why an exchange failed. Any of them leaves the connection unusable.
#[derive(Debug, Error)]
pub enum ExchangeError {
    /// A socket error.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The server closed the connection before the response was complete.
    #[error("connection closed before the response was complete")]
    Closed,
    /// Not a valid HTTP/1.x response.
    #[error("malformed response: {0}")]
    Malformed(String),
}

/// What the caller needs from a response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Status code.
    pub status: u16,
    /// Whether the connection may carry another request.
    pub keep_alive: bool,
}

/// How the body's end is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the server closes the connection.
    UntilClose,
}

/// One HTTP/1.1 connection.
#[derive(Debug)]
pub struct Http1 {
    stream: TcpStream,
    /// Bytes read but not yet consumed live in `buf[pos..filled]`.
    buf: Vec<u8>,
    pos: usize,
    filled: usize,
}

impl Http1 {
    /// Wraps a connected stream.
    pub fn new(stream: TcpStream) -> Http1 {
        Http1 {
            stream,
            buf: vec![0; INITIAL_BUFFER],
            pos: 0,
            filled: 0,
        }
    }

    /// Sends `request` (a complete request without body, or with its body included) and reads
    /// the whole response. `on_header` sees every response header. `head_request` must be set
    /// for HEAD, whose response has no body whatever its headers say.
    pub async fn exchange(
        &mut self,
        request: &[u8],
        head_request: bool,
        on_header: impl FnMut(&str, &[u8]),
    ) -> Result<Head, ExchangeError> {
        self.stream.write_all(request).await?;
        let (mut head, framing) = self.read_head(head_request, on_header).await?;
        match framing {
            Framing::Empty => {}
            Framing::Length(n) => self.skip(n).await?,
            Framing::Chunked => self.skip_chunked().await?,
            Framing::UntilClose => {
                self.skip_until_close().await?;
                head.keep_alive = false;
            }
        }
        Ok(head)
    }

    async fn read_head(
        &mut self,
        head_request: bool,
        mut on_header: impl FnMut(&str, &[u8]),
    ) -> Result<(Head, Framing), ExchangeError> {
        loop {
            if self.filled > self.pos {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut response = httparse::Response::new(&mut headers);
                match response.parse(&self.buf[self.pos..self.filled]) {
                    Ok(httparse::Status::Complete(length)) => {
                        let status = response.code.unwrap_or(0);
                        // HTTP/1.0 closes by default, HTTP/1.1 keeps alive by default.
                        let mut close = response.version == Some(0);
                        let mut content_length = None;
                        let mut chunked = false;
                        for header in response.headers.iter() {
                            let name = header.name;
                            if name.eq_ignore_ascii_case("content-length") {
                                content_length = Some(parse_length(header.value)?);
                            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                                chunked = has_token(header.value, b"chunked");
                            } else if name.eq_ignore_ascii_case("connection") {
                                if has_token(header.value, b"close") {
                                    close = true;
                                } else if has_token(header.value, b"keep-alive") {
                                    close = false;
                                }
                            }
                            on_header(name, header.value);
                        }
                        let framing = if head_request
                            || (100..200).contains(&status)
                            || status == 204
                            || status == 304
                        {
                            Framing::Empty
                        } else if chunked {
                            Framing::Chunked
                        } else if let Some(n) = content_length {
                            Framing::Length(n)
                        } else {
                            Framing::UntilClose
                        };
                        self.pos += length;
                        let head = Head {
                            status,
                            keep_alive: !close,
                        };
                        return Ok((head, framing));
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(error) => return Err(ExchangeError::Malformed(error.to_string())),
                }
            }
            self.fill().await?;
        }
    }

    /// Reads more bytes, first moving unconsumed ones to the front of the buffer.
    async fn fill(&mut self) -> Result<(), ExchangeError> {
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.filled, 0);
            self.filled -= self.pos;
            self.pos = 0;
        }
        if self.filled == self.buf.len() {
            if self.buf.len() >= MAX_BUFFER {
                return Err(ExchangeError::Malformed(
                    "response head or chunk line over 1 MiB".to_owned(),
                ));
            }
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let read = self.stream.read(&mut self.buf[self.filled..]).await?;
        if read == 0 {
            return Err(ExchangeError::Closed);
        }
        self.filled += read;
        Ok(())
    }

    /// Consumes `n` body bytes.
    async fn skip(&mut self, mut n: u64) -> Result<(), ExchangeError> {
        loop {
            let available = (self.filled - self.pos) as u64;
            if available >= n {
                // n <= available, which fits in usize.
                self.pos += n as usize;
                return Ok(());
            }
            n -= available;
            self.pos = 0;
            self.filled = 0;
            self.fill().await?;
        }
    }

    /// Consumes one line, CRLF included, and returns where it was in the buffer.
    async fn line(&mut self) -> Result<Range<usize>, ExchangeError> {
        loop {
            if let Some(i) = self.buf[self.pos..self.filled]
                .iter()
                .position(|b| *b == b'\n')
            {
                let line = self.pos..self.pos + i + 1;
                self.pos += i + 1;
                return Ok(line);
            }
            self.fill().await?;
        }
    }

    async fn skip_chunked(&mut self) -> Result<(), ExchangeError> {
        loop {
            let line = self.line().await?;
            let size = parse_chunk_size(&self.buf[line])?;
            if size == 0 {
                // Trailers, if any, end with an empty line.
                loop {
                    let trailer = self.line().await?;
                    if self.buf[trailer].trim_ascii().is_empty() {
                        return Ok(());
                    }
                }
            }
            // The chunk's data and its CRLF.
            self.skip(size.saturating_add(2)).await?;
        }
    }

    async fn skip_until_close(&mut self) -> Result<(), ExchangeError> {
        loop {
            self.pos = 0;
            self.filled = 0;
            match self.fill().await {
                Ok(()) => {}
                Err(ExchangeError::Closed) => return Ok(()),
                Err(error) => return Err(error),
            }
        }
    }
}

fn parse_length(value: &[u8]) -> Result<u64, ExchangeError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| ExchangeError::Malformed("bad Content-Length".to_owned()))
}

fn parse_chunk_size(line: &[u8]) -> Result<u64, ExchangeError> {
    let digits = line
        .split(|b| *b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    std::str::from_utf8(digits)
        .ok()
        .and_then(|d| u64::from_str_radix(d, 16).ok())
        .ok_or_else(|| ExchangeError::Malformed("bad chunk size".to_owned()))
}

/// Whether a comma-separated header value contains `token` (case-insensitive).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    /// Serves `responses` verbatim, one per request, on a real loopback socket, and returns
    /// a client connected to it.
    async fn serve(responses: Vec<&'static [u8]>) -> Http1 {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut buf = vec![0u8; 4096];
            for response in responses {
                // One request per response; the test requests are small.
                let _ = socket.read(&mut buf).await.expect("read");
                // Split the response in two writes to exercise partial parsing.
                let (a, b) = response.split_at(response.len() / 2);
                socket.write_all(a).await.expect("write");
                socket.flush().await.expect("flush");
                tokio::task::yield_now().await;
                socket.write_all(b).await.expect("write");
            }
        });
        Http1::new(TcpStream::connect(addr).await.expect("connect"))
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    #[tokio::test]
    async fn keeps_alive_across_content_length_and_chunked_bodies() {
        let mut http = serve(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Served-By: a\r\n\r\nhello",
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer: x\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        ])
        .await;
        let mut served_by = Vec::new();
        let head = http
            .exchange(GET, false, |name, value| {
                if name.eq_ignore_ascii_case("x-served-by") {
                    served_by.push(value.to_vec());
                }
            })
            .await
            .expect("first");
        assert_eq!(
            head,
            Head {
                status: 200,
                keep_alive: true
            }
        );
        assert_eq!(served_by, vec![b"a".to_vec()]);
        let head = http.exchange(GET, false, |_, _| {}).await.expect("chunked");
        assert_eq!(head.status, 201);
        let head = http
            .exchange(GET, false, |_, _| {})
            .await
            .expect("no content");
        assert_eq!(head.status, 204);
        let head = http.exchange(GET, false, |_, _| {}).await.expect("close");
        assert_eq!(
            head,
            Head {
                status: 404,
                keep_alive: false
            }
        );
    }

    #[tokio::test]
    async fn close_delimited_body_ends_the_connection() {
        let mut http = serve(vec![b"HTTP/1.0 200 OK\r\n\r\nuntil the end"]).await;
        let head = http
            .exchange(GET, false, |_, _| {})
            .await
            .expect("read to close");
        assert_eq!(
            head,
            Head {
                status: 200,
                keep_alive: false
            }
        );
    }

    #[tokio::test]
    async fn head_request_has_no_body_whatever_the_length_says() {
        let mut http = serve(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        ])
        .await;
        assert_eq!(
            http.exchange(GET, true, |_, _| {})
                .await
                .expect("head")
                .status,
            200
        );
        assert_eq!(
            http.exchange(GET, false, |_, _| {})
                .await
                .expect("get")
                .status,
            200
        );
    }

    #[tokio::test]
    async fn truncated_and_garbage_responses_are_errors() {
        let mut http = serve(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"]).await;
        assert!(matches!(
            http.exchange(GET, false, |_, _| {}).await,
            Err(ExchangeError::Closed)
        ));
        let mut http = serve(vec![b"SMTP ready\r\n\r\n"]).await;
        assert!(matches!(
            http.exchange(GET, false, |_, _| {}).await,
            Err(ExchangeError::Malformed(_))
        ));
    }

    #[test]
    fn tokens_and_sizes_parse() {
        assert!(has_token(b"keep-alive, Close", b"close"));
        assert!(!has_token(b"closed", b"close"));
        assert_eq!(parse_chunk_size(b"1A\r\n").expect("hex"), 26);
        assert!(parse_chunk_size(b"zz\r\n").is_err());
    }
}
