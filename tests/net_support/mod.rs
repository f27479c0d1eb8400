//! A peer built by hand from docs/transport.md, with `snow` and the frame helpers: it runs
//! the Noise XX handshake honestly and then sends whatever bytes a test wants, so tests can
//! play impersonators, replayers and peers that break the framing after the handshake.
#![allow(dead_code)]

use anyhow::{bail, Context};
use asyncpay::crypto::keys::SecretKey;
use asyncpay::net::frame::{put_frame, split_message, take_frame, MAX_FRAME_LEN};
use asyncpay::net::handshake::{Binding, Role, NOISE_PARAMS, PROLOGUE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};

pub fn key(byte: u8) -> SecretKey {
    SecretKey::from_bytes([byte; 32]).expect("small nonzero scalar")
}

pub struct RawPeer {
    pub stream: TcpStream,
    transport: snow::TransportState,
    pub handshake_hash: Vec<u8>,
    buf: Vec<u8>,
}

async fn write_frame(stream: &mut TcpStream, body: &[u8]) -> anyhow::Result<()> {
    let mut out = Vec::new();
    put_frame(&mut out, body);
    stream.write_all(&out).await?;
    Ok(())
}

async fn read_frame(stream: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<Vec<u8>> {
    loop {
        if let Some(frame) = take_frame(buf, 0, MAX_FRAME_LEN)? {
            return Ok(frame);
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("stream closed");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn builder() -> (snow::Builder<'static>, snow::Keypair) {
    let builder = snow::Builder::new(NOISE_PARAMS.parse().expect("supported params"));
    let keypair = builder.generate_keypair().expect("rng works");
    (builder, keypair)
}

impl RawPeer {
    /// Connects and runs the Noise XX handshake as initiator; sends no binding.
    pub async fn initiate(addr: impl ToSocketAddrs) -> anyhow::Result<Self> {
        let mut stream = TcpStream::connect(addr).await?;
        let (builder, keypair) = builder();
        let mut noise = builder
            .local_private_key(&keypair.private)?
            .prologue(PROLOGUE)?
            .build_initiator()?;
        let (mut msg, mut payload, mut buf) = (vec![0u8; 1024], vec![0u8; 1024], Vec::new());
        let n = noise.write_message(&[], &mut msg)?;
        write_frame(&mut stream, &msg[..n]).await?;
        let frame = read_frame(&mut stream, &mut buf).await?;
        noise.read_message(&frame, &mut payload)?;
        let n = noise.write_message(&[], &mut msg)?;
        write_frame(&mut stream, &msg[..n]).await?;
        let handshake_hash = noise.get_handshake_hash().to_vec();
        Ok(Self {
            stream,
            transport: noise.into_transport_mode()?,
            handshake_hash,
            buf,
        })
    }

    /// Accepts one connection and runs the Noise XX handshake as responder; sends no binding.
    pub async fn respond(listener: &TcpListener) -> anyhow::Result<Self> {
        let (mut stream, _) = listener.accept().await?;
        let (builder, keypair) = builder();
        let mut noise = builder
            .local_private_key(&keypair.private)?
            .prologue(PROLOGUE)?
            .build_responder()?;
        let (mut msg, mut payload, mut buf) = (vec![0u8; 1024], vec![0u8; 1024], Vec::new());
        let frame = read_frame(&mut stream, &mut buf).await?;
        noise.read_message(&frame, &mut payload)?;
        let n = noise.write_message(&[], &mut msg)?;
        write_frame(&mut stream, &msg[..n]).await?;
        let frame = read_frame(&mut stream, &mut buf).await?;
        noise.read_message(&frame, &mut payload)?;
        let handshake_hash = noise.get_handshake_hash().to_vec();
        Ok(Self {
            stream,
            transport: noise.into_transport_mode()?,
            handshake_hash,
            buf,
        })
    }

    /// Encrypts `plaintext` as one frame and sends it.
    pub async fn send_frame(&mut self, plaintext: &[u8]) -> anyhow::Result<()> {
        let mut ciphertext = vec![0u8; plaintext.len() + 16];
        let n = self.transport.write_message(plaintext, &mut ciphertext)?;
        write_frame(&mut self.stream, &ciphertext[..n]).await
    }

    /// Sends a message the way an honest peer does (header, then chunks).
    pub async fn send_message(&mut self, message: &[u8]) -> anyhow::Result<()> {
        for chunk in split_message(message)? {
            self.send_frame(&chunk).await?;
        }
        Ok(())
    }

    /// Receives one frame and decrypts it.
    pub async fn recv_frame(&mut self) -> anyhow::Result<Vec<u8>> {
        let frame = read_frame(&mut self.stream, &mut self.buf).await?;
        let mut plaintext = vec![0u8; frame.len()];
        let n = self
            .transport
            .read_message(&frame, &mut plaintext)
            .context("decrypting a frame")?;
        plaintext.truncate(n);
        Ok(plaintext)
    }

    /// Signs and sends an honest binding for `role`.
    pub async fn send_binding(&mut self, key: &SecretKey, role: Role) -> anyhow::Result<()> {
        let binding = Binding::sign(key, role, &self.handshake_hash, &[7u8; 32]);
        self.send_message(&binding.to_bytes()).await
    }

    /// Whether the other end closed the stream (reads until end of stream or 2 s).
    pub async fn sees_close(&mut self) -> bool {
        let mut sink = [0u8; 1024];
        let wait = async {
            loop {
                match self.stream.read(&mut sink).await {
                    Ok(0) | Err(_) => return true,
                    Ok(_) => continue,
                }
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(2), wait)
            .await
            .unwrap_or(false)
    }
}
