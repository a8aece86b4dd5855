//! What every loopback test of the shard checks, whatever else it asserts: the user's stream is
//! whole. The dispatches of a session arrive with no gap and no repeat across every resume, and a
//! new session is marked by READY (whose own sequence number is 1).

#![allow(dead_code, clippy::expect_used)]

use std::time::Duration;

use gateway_shard::{ShardEvent, ShardEvents};

/// Checks each event against the sequence it must follow.
#[derive(Debug, Default)]
pub(crate) struct Continuity {
    expected: Option<u64>,
    /// Dispatches seen.
    pub(crate) dispatches: u64,
    /// Sessions seen start (READYs).
    pub(crate) sessions: u64,
}

impl Continuity {
    /// Checks one event; panics on a gap or a repeat.
    pub(crate) fn see(&mut self, event: &ShardEvent, scenario: &str) {
        match event {
            ShardEvent::Ready(_) => {
                self.sessions += 1;
                self.expected = Some(2);
            }
            // RESUMED takes a sequence number of its own, as Discord's does.
            ShardEvent::Resumed { .. } => self.expected = self.expected.map(|e| e + 1),
            ShardEvent::Dispatch(d) => {
                // A shard that started by resuming another's session starts where it stood.
                let expected = self.expected.unwrap_or(d.seq);
                assert_eq!(
                    d.seq, expected,
                    "{scenario}: a gap or a repeat in the user's stream"
                );
                self.expected = Some(expected + 1);
                self.dispatches += 1;
            }
            _ => {}
        }
    }
}

/// A shard's events, each checked for continuity as it is read.
#[derive(Debug)]
pub(crate) struct Checked {
    events: ShardEvents,
    /// What has been seen.
    pub(crate) seen: Continuity,
    scenario: String,
}

impl Checked {
    /// Checks `events`; failures name `scenario`.
    pub(crate) fn new(events: ShardEvents, scenario: impl Into<String>) -> Self {
        Self {
            events,
            seen: Continuity::default(),
            scenario: scenario.into(),
        }
    }

    /// The next event, which must come (bounded on tokio's clock, which tests may pause).
    pub(crate) async fn next(&mut self) -> ShardEvent {
        let event = tokio::time::timeout(Duration::from_secs(3600), self.events.next())
            .await
            .expect("no event in time")
            .expect("events ended");
        self.seen.see(&event, &self.scenario);
        event
    }

    /// Reads events until one matches.
    pub(crate) async fn until(&mut self, mut want: impl FnMut(&ShardEvent) -> bool) -> ShardEvent {
        loop {
            let event = self.next().await;
            if want(&event) {
                return event;
            }
        }
    }

    /// Reads until `n` more dispatches came.
    pub(crate) async fn dispatches(&mut self, n: u64) {
        let before = self.seen.dispatches;
        while self.seen.dispatches < before + n {
            self.next().await;
        }
    }

    /// The events, unchecked from here on.
    pub(crate) fn into_inner(self) -> ShardEvents {
        self.events
    }
}

/// The `i` of a raw dispatch named `name` whose `d` starts `{"i":N,`: the number a test gave
/// each event of a backlog, to check every one arrives once and in order.
pub(crate) fn numbered(dispatch: &gateway_model::Dispatch, name: &str) -> Option<u64> {
    let gateway_model::DispatchEvent::Other(raw) = &dispatch.event else {
        return None;
    };
    if &*raw.name != name {
        return None;
    }
    let text = raw.data.get();
    text.strip_prefix("{\"i\":")?
        .split(',')
        .next()?
        .parse()
        .ok()
}

/// An HTTP proxy on loopback, as bots run behind: `CONNECT host:port` tunnels (the websocket),
/// and a plain request in absolute form (`GET http://host:port/path`, REST over `http://`) is
/// passed on in origin form. Returns its URL and the request lines it saw.
pub(crate) async fn http_proxy() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", proxy.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = std::sync::Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut client, _)) = proxy.accept().await {
            let log = std::sync::Arc::clone(&log);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let line = head.lines().next().unwrap_or_default().to_owned();
                log.lock().unwrap().push(line.clone());
                let mut parts = line.split_whitespace();
                let (method, target) = (parts.next().unwrap_or_default(), parts.next());
                let target = target.unwrap_or_default();
                let (authority, forward) = if method == "CONNECT" {
                    (target.to_owned(), None)
                } else {
                    let rest = target.strip_prefix("http://").expect("absolute form");
                    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                    let origin = head.replacen(target, path, 1);
                    (authority.to_owned(), Some(origin))
                };
                let Ok(mut upstream) = tokio::net::TcpStream::connect(authority).await else {
                    return;
                };
                match forward {
                    None => client
                        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .await
                        .unwrap(),
                    Some(origin) => upstream.write_all(origin.as_bytes()).await.unwrap(),
                }
                // Either side may end the tunnel first; the test asserts what went through.
                drop(tokio::io::copy_bidirectional(&mut client, &mut upstream).await);
            });
        }
    });
    (url, seen)
}
