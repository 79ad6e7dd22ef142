//! What keeps slow, idle or oversized clients from holding the server: a header deadline
//! that also closes idle connections, a body deadline, a connection limit, and a body limit
//! answered at once with a 413 the client can read.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

use crate::support::{Engine, TestServer, on_every_engine, read_response};

/// Generous: only a bound, never an expectation of how fast things are.
const BOUND: Duration = Duration::from_secs(15);

/// Whether the server closed `stream` (read 0 or an error) within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

on_every_engine!(a_client_trickling_headers_is_closed_at_the_header_deadline);
async fn a_client_trickling_headers_is_closed_at_the_header_deadline(engine: Engine) {
    let s = TestServer::start_with(
        engine,
        |c| c.header_timeout = Duration::from_millis(500),
        5,
        10,
    )
    .await;
    let stream = TcpStream::connect(s.addr).await.expect("connect");
    let (mut read, mut write) = stream.into_split();
    let head = format!("GET /api/health HTTP/1.1\r\nHost: {}\r\nX-Slow: ", s.addr);
    write.write_all(head.as_bytes()).await.expect("send");
    let trickle = tokio::spawn(async move {
        // One byte every 100 ms: the headers never end.
        while write.write_all(b"a").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let closed = loop {
        match timeout(BOUND, read.read(&mut buf)).await {
            Err(_) => break false,
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(_)) => {}
        }
    };
    trickle.abort();
    assert!(
        closed,
        "a trickling client was still connected after {BOUND:?}"
    );
    assert!(started.elapsed() < BOUND);
    s.stop().await;
}

on_every_engine!(an_idle_connection_is_closed_at_the_header_deadline);
async fn an_idle_connection_is_closed_at_the_header_deadline(engine: Engine) {
    let s = TestServer::start_with(
        engine,
        |c| c.header_timeout = Duration::from_millis(500),
        5,
        10,
    )
    .await;
    let mut silent = TcpStream::connect(s.addr).await.expect("connect");
    assert!(
        closed_within(&mut silent, BOUND).await,
        "a silent client stayed connected"
    );
    // A keep-alive connection that goes quiet after a request is closed too.
    let mut kept = TcpStream::connect(s.addr).await.expect("connect");
    let request = format!("GET /api/health HTTP/1.1\r\nHost: {}\r\n\r\n", s.addr);
    kept.write_all(request.as_bytes()).await.expect("send");
    assert_eq!(read_response(&mut kept).await.status, 200);
    assert!(
        closed_within(&mut kept, BOUND).await,
        "an idle keep-alive stayed connected"
    );
    s.stop().await;
}

on_every_engine!(connections_beyond_the_limit_wait_for_a_free_one);
async fn connections_beyond_the_limit_wait_for_a_free_one(engine: Engine) {
    let s = TestServer::start_with(
        engine,
        |c| {
            c.max_connections = 2;
            c.header_timeout = Duration::from_secs(120);
        },
        5,
        10,
    )
    .await;
    let first = TcpStream::connect(s.addr).await.expect("connect");
    let _second = TcpStream::connect(s.addr).await.expect("connect");
    let addr = s.addr;
    let third = tokio::spawn(async move {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let request =
            format!("GET /api/health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("send");
        read_response(&mut stream).await
    });
    // Both places are held by silent clients: the third is not answered...
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !third.is_finished(),
        "a third connection was served over the limit of 2"
    );
    // ...until one of them leaves.
    drop(first);
    let response = timeout(BOUND, third)
        .await
        .expect("the third connection was served once a place was free")
        .expect("task");
    assert_eq!(response.status, 200, "{}", response.head);
    s.stop().await;
}

on_every_engine!(a_body_that_stops_arriving_gets_408);
async fn a_body_that_stops_arriving_gets_408(engine: Engine) {
    let s = TestServer::start_with(
        engine,
        |c| c.body_timeout = Duration::from_millis(500),
        5,
        10,
    )
    .await;
    let mut stream = TcpStream::connect(s.addr).await.expect("connect");
    let head = format!(
        "POST /api/rules HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"rule",
        s.addr
    );
    stream.write_all(head.as_bytes()).await.expect("send");
    let response = timeout(BOUND, read_response(&mut stream))
        .await
        .expect("an answer to a stalled body");
    assert_eq!(response.status, 408, "{}", response.head);
    assert_eq!(response.json()["error"]["code"], "request_timeout");
    s.stop().await;
}

fn post_head(s: &TestServer, length: &str) -> String {
    format!(
        "POST /api/rules HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n{length}\r\n",
        s.addr
    )
}

on_every_engine!(a_declared_length_over_the_limit_is_refused_at_once);
async fn a_declared_length_over_the_limit_is_refused_at_once(engine: Engine) {
    let s = TestServer::start(engine).await;
    let mut stream = TcpStream::connect(s.addr).await.expect("connect");
    // 20 MiB declared, three bytes sent: the answer must not wait for the rest.
    let head = post_head(&s, "Content-Length: 20971520\r\n");
    stream.write_all(head.as_bytes()).await.expect("send head");
    stream.write_all(b"{\"r").await.expect("send");
    let response = timeout(BOUND, read_response(&mut stream))
        .await
        .expect("a 413 before the body arrived");
    assert_eq!(response.status, 413, "{}", response.head);
    assert_eq!(response.json()["error"]["code"], "payload_too_large");
    s.stop().await;
}

/// Like Python's `http.client`: the whole body is written before the response is read.
async fn send_all_then_read(s: &TestServer, head: &str, body: &[u8]) -> Result<u16, String> {
    let mut stream = TcpStream::connect(s.addr)
        .await
        .map_err(|e| e.to_string())?;
    stream
        .write_all(head.as_bytes())
        .await
        .map_err(|e| format!("sending the head: {e}"))?;
    stream
        .write_all(body)
        .await
        .map_err(|e| format!("sending the body: {e}"))?;
    let response = timeout(BOUND, read_response(&mut stream))
        .await
        .map_err(|_| "no response".to_string())?;
    Ok(response.status)
}

on_every_engine!(a_client_sending_a_whole_oversized_body_reads_the_413);
async fn a_client_sending_a_whole_oversized_body_reads_the_413(engine: Engine) {
    let s = TestServer::start(engine).await;
    let body = vec![b' '; 20 * 1024 * 1024];
    let head = post_head(&s, &format!("Content-Length: {}\r\n", body.len()));
    for attempt in 0..5 {
        let got = send_all_then_read(&s, &head, &body).await;
        assert_eq!(got, Ok(413), "attempt {attempt}");
    }
    // Without a declared length the limit is found while reading; the answer is the same.
    let mut chunked = Vec::new();
    for _ in 0..48 {
        chunked.extend_from_slice(format!("{:x}\r\n", 65536).as_bytes());
        chunked.extend_from_slice(&[b' '; 65536]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = post_head(&s, "Transfer-Encoding: chunked\r\n");
    for attempt in 0..3 {
        let got = send_all_then_read(&s, &head, &chunked).await;
        assert_eq!(got, Ok(413), "chunked attempt {attempt}");
    }
    // And the server still answers.
    let (status, _) = s.get_json("/api/health").await;
    assert_eq!(status, reqwest::StatusCode::OK);
    s.stop().await;
}
