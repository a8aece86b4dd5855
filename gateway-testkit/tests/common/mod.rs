//! A small gateway client built from gateway-codec and async-tungstenite alone, to drive the
//! fake gateway in its own tests.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tokio::ConnectStream;
use async_tungstenite::tungstenite::Message;
use futures_util::StreamExt;
use gateway_codec::{Compression, DecodeError, Decoder, Limits, connect_url, encode};
use gateway_model::{Command, Heartbeat, Identify, Intents, Resume, ShardId, Token};

pub const TOKEN: &str = "testkit-token";

/// A received payload, owned.
#[derive(Debug, Clone, PartialEq)]
pub struct Got {
    pub op: u64,
    pub s: Option<u64>,
    pub t: Option<String>,
    pub d: Option<String>,
}

impl Got {
    pub fn d_value(&self) -> sonic_rs::Value {
        sonic_rs::from_str(self.d.as_deref().unwrap_or("null")).unwrap()
    }
}

/// How the stream of payloads ended.
#[derive(Debug)]
pub enum End {
    Closed(Option<u16>),
    Dropped,
    Decode(DecodeError),
}

pub struct Client {
    pub ws: WebSocketStream<ConnectStream>,
    decoder: Decoder,
    pub text_messages: usize,
    pub binary_messages: usize,
}

impl Client {
    pub async fn connect(base: &str, compression: Compression) -> Self {
        Self::connect_with(base, compression, Limits::default()).await
    }

    pub async fn connect_with(base: &str, compression: Compression, limits: Limits) -> Self {
        let url = connect_url(base, compression).unwrap();
        Self::connect_url(&url, compression, limits).await
    }

    pub async fn connect_url(url: &str, compression: Compression, limits: Limits) -> Self {
        let (ws, _) = async_tungstenite::tokio::connect_async(url).await.unwrap();
        Self {
            ws,
            decoder: Decoder::with_limits(compression, limits).unwrap(),
            text_messages: 0,
            binary_messages: 0,
        }
    }

    /// The next payload, or how the connection ended.
    pub async fn recv(&mut self) -> Result<Got, End> {
        loop {
            let Some(Ok(message)) = self.ws.next().await else {
                return Err(End::Dropped);
            };
            let bytes: Vec<u8> = match message {
                Message::Text(t) => {
                    self.text_messages += 1;
                    t.as_bytes().to_vec()
                }
                Message::Binary(b) => {
                    self.binary_messages += 1;
                    b.to_vec()
                }
                Message::Close(frame) => return Err(End::Closed(frame.map(|f| u16::from(f.code)))),
                _ => continue,
            };
            match self.decoder.push(&bytes) {
                Ok(Some(p)) => {
                    return Ok(Got {
                        op: p.op.value(),
                        s: p.seq,
                        t: p.event_name.map(|t| t.into_owned()),
                        d: p.data.map(str::to_owned),
                    });
                }
                Ok(None) => continue,
                Err(e) => return Err(End::Decode(e)),
            }
        }
    }

    /// The next payload, which must come.
    pub async fn expect(&mut self) -> Got {
        tokio::time::timeout(Duration::from_secs(600), self.recv())
            .await
            .expect("no payload in time")
            .unwrap_or_else(|e| panic!("connection ended: {e:?}"))
    }

    /// Skips payloads until one with `op` (and event name `t`, for dispatches) comes.
    pub async fn expect_op(&mut self, op: u64, t: Option<&str>) -> Got {
        loop {
            let got = self.expect().await;
            if got.op == op && (t.is_none() || got.t.as_deref() == t) {
                return got;
            }
        }
    }

    /// Reads until the connection ends; returns how.
    pub async fn expect_end(&mut self) -> End {
        loop {
            match tokio::time::timeout(Duration::from_secs(600), self.recv())
                .await
                .expect("never ended")
            {
                Ok(_) => continue,
                Err(end) => return end,
            }
        }
    }

    pub async fn send(&mut self, command: impl Into<Command>) {
        let text = encode(&command.into()).unwrap();
        self.send_text(&text).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_owned())).await.unwrap();
    }

    pub async fn heartbeat(&mut self, seq: Option<u64>) {
        self.send(Heartbeat(seq)).await;
    }

    pub async fn identify(&mut self, intents: Intents, shard: ShardId) {
        self.send(Identify::new(Token::new(TOKEN), intents).with_shard(shard))
            .await;
    }

    pub async fn resume(&mut self, session_id: &str, seq: u64) {
        self.send(Resume {
            token: Token::new(TOKEN),
            session_id: session_id.to_owned(),
            seq,
        })
        .await;
    }

    /// HELLO, IDENTIFY, READY: returns READY.
    pub async fn start(&mut self, intents: Intents, shard: ShardId) -> Got {
        let hello = self.expect().await;
        assert_eq!(hello.op, 10);
        self.identify(intents, shard).await;
        self.expect_op(0, Some("READY")).await
    }

    pub async fn close(&mut self, code: u16) {
        use async_tungstenite::tungstenite::protocol::CloseFrame;
        let frame = CloseFrame {
            code: code.into(),
            reason: "".into(),
        };
        let _ = self.ws.close(Some(frame)).await;
    }
}

/// Sends one plain HTTP request to `addr` and reads the answer to its end: status and body.
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    auth: Option<&str>,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nUser-Agent: test\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(60), tcp.read_to_string(&mut answer))
        .await
        .expect("no HTTP answer")
        .unwrap();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned());
    (status, body)
}

/// The close frame's code and reason, or how the connection ended otherwise.
pub async fn close_frame(client: &mut Client) -> Option<(u16, String)> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(60), client.ws.next())
            .await
            .expect("never closed");
        match message {
            Some(Ok(Message::Close(frame))) => {
                return frame.map(|f| (u16::from(f.code), f.reason.to_string()));
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}
