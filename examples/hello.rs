//! A program that embeds hawkey: the same binary is the master (with
//! hawkey's whole command line) and, re-executed by it, every worker.
//!
//! ```sh
//! cargo run --example hello -- run -c hawkey.yaml
//! curl http://127.0.0.1:8080/
//! ```
//!
//! The worker is a plain blocking accept loop on the inherited socket; the
//! stop signal (SIGTERM) ends it by its default action, which is all a
//! server without in-flight work to drain needs.

use std::io::{Read, Write};

use hawkey::worker::{BoxError, Socket, Worker};

fn app(mut worker: Worker) -> Result<(), BoxError> {
    let slot = worker.slot();
    let Some(listener) = worker.take_listeners().into_iter().next() else {
        return Err("no listening socket was passed".into());
    };
    let Socket::Tcp(listener) = listener.socket else {
        return Err("this example serves TCP only".into());
    };
    // Accepting from here on: tell the master.
    worker.ready()?;
    for stream in listener.incoming() {
        let mut stream = stream?;
        // Read the request head before answering: closing a socket with
        // unread data makes the kernel reset the connection.
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                break;
            }
            request.extend_from_slice(&buf[..n]);
        }
        let body = format!("hello from worker {slot}\n");
        write!(
            stream,
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )?;
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    hawkey::main(app)
}
