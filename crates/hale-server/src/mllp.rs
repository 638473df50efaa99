//! The MLLP listener (`hale serve --mllp ADDR`): HL7 v2 messages over TCP, each framed
//! `<VT> message <FS><CR>` (HL7 v2.5.1 Appendix C, the minimal lower layer protocol).
//!
//! One message in flight per connection: a message is received through
//! [`crate::hl7::receive`] (kept with what it wrote before its `AA` is sent) and its
//! acknowledgement written before the next frame is read. A frame larger than
//! `hl7.max_frame_bytes` is answered `AR` and dropped; a connection that sends nothing
//! for `hl7.idle_timeout_secs` is closed; beyond `hl7.max_connections` a new connection
//! is closed as it arrives. With `hl7.tls_cert` and `hl7.tls_key` the listener speaks
//! TLS (rustls; TLS 1.2 and 1.3), the frames inside it.

use std::sync::Arc;
use std::time::Duration;

use hale_repository::Gate;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::Hl7;

/// Start of a frame (vertical tab).
pub const START: u8 = 0x0b;
/// End of a frame: file separator, carriage return.
pub const END: [u8; 2] = [0x1c, 0x0d];

/// `bytes` framed for MLLP.
pub fn frame(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 3);
    out.push(START);
    out.extend_from_slice(bytes);
    out.extend_from_slice(&END);
    out
}

/// What reading the next frame of a connection gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A whole message (between the start and end bytes).
    Message(Vec<u8>),
    /// A frame beyond the limit: its first bytes (enough for its header), the rest
    /// read and dropped.
    TooLarge(Vec<u8>),
    /// The peer closed the connection (anything after the last whole frame is dropped).
    Closed,
}

/// Reads frames from a byte stream, keeping what follows a frame for the next one.
pub struct Decoder {
    buf: Vec<u8>,
    max: usize,
}

impl Decoder {
    pub fn new(max: usize) -> Self {
        Decoder { buf: Vec::new(), max }
    }

    /// The next frame of `r`, waiting at most `idle` for each read (`None`: timed out).
    pub async fn next<R: AsyncReadExt + Unpin>(&mut self, r: &mut R, idle: Duration) -> std::io::Result<Option<Frame>> {
        let mut chunk = [0u8; 16 * 1024];
        let mut oversized: Option<Vec<u8>> = None;
        loop {
            // bytes before a start byte are noise between frames (a stray CR or LF)
            match self.buf.iter().position(|b| *b == START) {
                Some(p) => {
                    self.buf.drain(..p);
                }
                None if oversized.is_none() => self.buf.clear(),
                None => {}
            }
            if let Some(end) = self.buf.windows(2).position(|w| w == END) {
                let body: Vec<u8> = self.buf[1..end].to_vec();
                self.buf.drain(..end + 2);
                return Ok(Some(match oversized {
                    Some(head) => Frame::TooLarge(head),
                    None if body.len() > self.max => Frame::TooLarge(body[..body.len().min(4096)].to_vec()),
                    None => Frame::Message(body),
                }));
            }
            if self.buf.len() > self.max + 2 {
                // keep the head for the answer, drop the rest but the last byte (a
                // frame end may straddle two reads)
                if oversized.is_none() {
                    oversized = Some(self.buf[1..self.buf.len().min(4096)].to_vec());
                }
                let keep = self.buf.len() - 1;
                self.buf.drain(1..keep);
            }
            let n = match tokio::time::timeout(idle, r.read(&mut chunk)).await {
                Err(_) => return Ok(None),
                Ok(r) => r?,
            };
            if n == 0 {
                return Ok(Some(Frame::Closed));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// The `AR` for a frame beyond the limit: answered to its header when it can be read.
fn too_large(head: &[u8], max: usize) -> Vec<u8> {
    let first = head.split(|b| *b == b'\r' || *b == b'\n').next().unwrap_or_default();
    let control = format!("HALE{}", uuid::Uuid::now_v7().simple());
    let text = format!("the message is larger than the {max} bytes this interface accepts; nothing of it is kept");
    let time = crate::hl7::now_dtm();
    match hale_hl7v2::Message::parse(first) {
        Ok(msg) => {
            let e = hale_hl7v2::AckError { location: "MSH".into(), code: "100", text };
            hale_hl7v2::ack(&msg, hale_hl7v2::AckCode::Ar, &control, &time, std::slice::from_ref(&e)).into_bytes()
        }
        Err(_) => format!("MSH|^~\\&|HALE||||{time}||ACK|{control}|P|2.5.1\rMSA|AR|\rERR||MSH|100^Segment sequence error^HL70357|E||||{text}\r")
            .into_bytes(),
    }
}

/// The TLS acceptor of `hl7.tls_cert` and `hl7.tls_key` (PEM files), when both are set.
pub fn tls_acceptor(cfg: &Hl7) -> Result<Option<tokio_rustls::TlsAcceptor>, String> {
    crate::tls_acceptor(&cfg.tls_cert, &cfg.tls_key, "hl7.")
}

/// Serves MLLP connections on `listener` until the task is dropped (over TLS when
/// `tls` is given).
pub async fn serve(listener: TcpListener, gate: Gate, cfg: Hl7, tls: Option<tokio_rustls::TlsAcceptor>) {
    let slots = Arc::new(Semaphore::new(cfg.max_connections));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "an MLLP connection could not be accepted");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max = cfg.max_connections, "MLLP connection refused: too many open");
            drop(stream);
            continue;
        };
        let (gate, cfg, tls) = (gate.clone(), cfg.clone(), tls.clone());
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let ended = match tls {
                None => connection(stream, gate, &cfg).await,
                Some(acceptor) => {
                    let idle = Duration::from_secs(cfg.idle_timeout_secs);
                    match tokio::time::timeout(idle, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => connection(s, gate, &cfg).await,
                        Ok(Err(e)) => Err(e),
                        Err(_) => Err(std::io::Error::other("the TLS handshake timed out")),
                    }
                }
            };
            if let Err(e) = ended {
                tracing::info!(%peer, error = %e, "MLLP connection ended");
            }
            drop(slot);
        });
    }
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, gate: Gate, cfg: &Hl7) -> std::io::Result<()> {
    let repo = gate.system("hl7");
    let mut decoder = Decoder::new(cfg.max_frame_bytes);
    let idle = Duration::from_secs(cfg.idle_timeout_secs);
    loop {
        let answer = match decoder.next(&mut stream, idle).await? {
            None | Some(Frame::Closed) => return Ok(()),
            Some(Frame::TooLarge(head)) => {
                tracing::warn!(max = cfg.max_frame_bytes, "an HL7 v2 message beyond the frame limit was refused");
                too_large(&head, cfg.max_frame_bytes)
            }
            Some(Frame::Message(bytes)) => {
                let sent = crate::hl7::receive(&repo, &bytes).await;
                tracing::info!(code = sent.code.code(), summary = %sent.summary, "HL7 v2 message received over MLLP");
                metrics::counter!("hale_hl7_messages_total", "answer" => sent.code.code()).increment(1);
                // in enhanced mode MSH-15 says whether the sender wants this answer
                let header = bytes.split(|b| *b == b'\r' || *b == b'\n').next().unwrap_or_default();
                if hale_hl7v2::Message::parse(header).is_ok_and(|m| !hale_hl7v2::ack_wanted(&m, sent.code)) {
                    continue;
                }
                sent.ack.into_bytes()
            }
        };
        stream.write_all(&frame(&answer)).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn frames(input: &[u8], max: usize, chunk: usize) -> Vec<Frame> {
        // the input in small writes, so frame ends straddle reads
        let (mut a, mut b) = tokio::io::duplex(64);
        let data = input.to_vec();
        let writer = tokio::spawn(async move {
            for c in data.chunks(chunk) {
                a.write_all(c).await.ok();
            }
        });
        let mut d = Decoder::new(max);
        let mut out = Vec::new();
        loop {
            match d.next(&mut b, Duration::from_secs(5)).await {
                Ok(Some(Frame::Closed)) | Ok(None) | Err(_) => break,
                Ok(Some(f)) => out.push(f),
            }
        }
        writer.await.ok();
        out
    }

    #[tokio::test]
    async fn frames_are_read_whatever_the_reads_split() {
        let mut input = b"\r\n".to_vec();
        input.extend(frame(b"MSH|one\r"));
        input.extend(b"\n");
        input.extend(frame(b"MSH|two\r"));
        for chunk in [1, 2, 3, 7, 1000] {
            let got = frames(&input, 100, chunk).await;
            assert_eq!(
                got,
                vec![Frame::Message(b"MSH|one\r".to_vec()), Frame::Message(b"MSH|two\r".to_vec())],
                "{chunk}"
            );
        }
    }

    #[tokio::test]
    async fn a_frame_beyond_the_limit_is_dropped_and_the_next_one_read() {
        let big: Vec<u8> = b"MSH|big\r".iter().copied().chain(std::iter::repeat_n(b'x', 5000)).collect();
        let mut input = frame(&big);
        input.extend(frame(b"MSH|next\r"));
        for chunk in [1, 5, 333, 10_000] {
            let got = frames(&input, 1000, chunk).await;
            assert_eq!(got.len(), 2, "{chunk}");
            assert!(matches!(&got[0], Frame::TooLarge(h) if h.starts_with(b"MSH|big\r")), "{chunk}");
            assert_eq!(got[1], Frame::Message(b"MSH|next\r".to_vec()), "{chunk}");
        }
    }

    #[test]
    fn tls_needs_a_readable_certificate_and_its_key() {
        let cfg = |cert: &str, key: &str| Hl7 { tls_cert: cert.into(), tls_key: key.into(), ..Hl7::default() };
        assert!(tls_acceptor(&cfg("", "")).is_ok_and(|a| a.is_none()));
        assert!(tls_acceptor(&cfg("/x.crt", "")).is_err_and(|e| e.contains("go together")));
        assert!(
            tls_acceptor(&cfg("/nonexistent.crt", "/nonexistent.key")).is_err_and(|e| e.contains("/nonexistent.crt"))
        );
    }

    #[test]
    fn the_answer_to_a_frame_too_large_echoes_its_control_id() {
        let ack = too_large(b"MSH|^~\\&|LAB|HOSP|HALE|CLINIC|20260101||ORU^R01|C42|P|2.5.1\rPID|", 10);
        let text = String::from_utf8(ack).unwrap_or_default();
        assert!(text.contains("\rMSA|AR|C42\r"), "{text}");
        assert!(text.contains("larger than the 10 bytes"), "{text}");
    }
}
