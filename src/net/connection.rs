//! The tokio driver: listening, connecting, the handshake exchange and encrypted messages.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use snow::{HandshakeState, StatelessTransportState};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};

use crate::crypto::keys::{PublicKey, SecretKey};
use crate::net::frame::{
    put_frame, split_message, take_frame, Assembler, MAX_FRAME_LEN, MAX_HANDSHAKE_FRAME_LEN,
    TAG_LEN,
};
use crate::net::handshake::{noise_handshake, Binding, Role};
use crate::net::NetError;

type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// Settings both ends may tune.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetConfig {
    /// Time allowed from the start of a connection (TCP connect included, for the connecting
    /// side) to the end of the binding exchange.
    pub handshake_timeout: Duration,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Which node keys a listener lets in: a fixed set, or a callback asked after the peer has
/// proven its key.
#[derive(Clone)]
pub struct Allow(Arc<dyn Fn(&PublicKey) -> bool + Send + Sync>);

impl Allow {
    /// Lets in exactly these node keys.
    pub fn keys(keys: impl IntoIterator<Item = PublicKey>) -> Self {
        let keys: HashSet<PublicKey> = keys.into_iter().collect();
        Self(Arc::new(move |key| keys.contains(key)))
    }

    /// Asks `permits` for each peer (e.g. to consult a channel table that changes).
    pub fn from_fn(permits: impl Fn(&PublicKey) -> bool + Send + Sync + 'static) -> Self {
        Self(Arc::new(permits))
    }

    /// Whether `key` may connect.
    pub fn permits(&self, key: &PublicKey) -> bool {
        (self.0)(key)
    }
}

impl fmt::Debug for Allow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Allow(..)")
    }
}

/// A TCP listener that completes the handshake with each peer before handing it out.
#[derive(Debug)]
pub struct Listener {
    tcp: TcpListener,
    key: Arc<SecretKey>,
    allow: Allow,
    config: NetConfig,
}

impl Listener {
    /// Binds to `addr` (use port 0 for a free port) as node `key`, letting in the peers
    /// `allow` permits.
    pub async fn bind(
        addr: impl ToSocketAddrs,
        key: Arc<SecretKey>,
        allow: Allow,
    ) -> Result<Self, NetError> {
        Ok(Self {
            tcp: TcpListener::bind(addr).await?,
            key,
            allow,
            config: NetConfig::default(),
        })
    }

    /// Replaces the default settings.
    pub fn with_config(mut self, config: NetConfig) -> Self {
        self.config = config;
        self
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> Result<SocketAddr, NetError> {
        Ok(self.tcp.local_addr()?)
    }

    /// This node's key, which connecting peers must expect.
    pub fn public_key(&self) -> PublicKey {
        self.key.public_key()
    }

    /// Accepts the next TCP connection and runs the handshake on it.
    ///
    /// A peer that fails the handshake yields an error and its connection is dropped; the
    /// listener itself stays usable. While one handshake runs no other connection is
    /// accepted: a server with many peers uses [`Listener::accept_incoming`] and runs
    /// [`Incoming::handshake`] in a task of its own.
    pub async fn accept(&self) -> Result<Connection, NetError> {
        self.accept_incoming().await?.handshake().await
    }

    /// Accepts the next TCP connection without running the handshake yet.
    pub async fn accept_incoming(&self) -> Result<Incoming, NetError> {
        let (stream, remote_addr) = self.tcp.accept().await?;
        Ok(Incoming {
            stream,
            remote_addr,
            key: Arc::clone(&self.key),
            allow: self.allow.clone(),
            config: self.config,
        })
    }
}

/// An accepted TCP connection whose handshake has not run yet.
#[derive(Debug)]
pub struct Incoming {
    stream: TcpStream,
    remote_addr: SocketAddr,
    key: Arc<SecretKey>,
    allow: Allow,
    config: NetConfig,
}

impl Incoming {
    /// The peer's TCP address (not an identity).
    pub fn remote_addr(&self) -> SocketAddr {
        self.remote_addr
    }

    /// Runs the responder's handshake: Noise XX, then the peer's binding, which must verify
    /// and name a permitted key, then ours.
    pub async fn handshake(self) -> Result<Connection, NetError> {
        self.handshake_within(None).await
    }

    /// [`Incoming::handshake`], but the peer's first handshake message must arrive within
    /// `first_message` (a connecting node sends it at once; a socket that stays silent is
    /// dropped long before the handshake timeout).
    pub async fn handshake_within(
        self,
        first_message: Option<Duration>,
    ) -> Result<Connection, NetError> {
        let Incoming {
            stream,
            remote_addr,
            key,
            allow,
            config,
        } = self;
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let result = tokio::time::timeout(
            config.handshake_timeout,
            respond(Box::new(read), Box::new(write), &key, &allow, first_message),
        )
        .await;
        let connection = flatten_timeout(result, config.handshake_timeout)?;
        tracing::debug!(peer = %connection.peer(), %remote_addr, "peer accepted");
        Ok(connection)
    }
}

/// Connects to `addr` as node `key`, expecting the node there to be `expected`.
pub async fn connect(
    addr: impl ToSocketAddrs,
    key: &SecretKey,
    expected: PublicKey,
) -> Result<Connection, NetError> {
    connect_with(addr, key, expected, NetConfig::default()).await
}

/// [`connect`] with explicit settings.
pub async fn connect_with(
    addr: impl ToSocketAddrs,
    key: &SecretKey,
    expected: PublicKey,
    config: NetConfig,
) -> Result<Connection, NetError> {
    let attempt = async {
        let stream = TcpStream::connect(addr).await?;
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        initiate(Box::new(read), Box::new(write), key, expected).await
    };
    let result = tokio::time::timeout(config.handshake_timeout, attempt).await;
    let connection = flatten_timeout(result, config.handshake_timeout)?;
    tracing::debug!(peer = %connection.peer(), "connected to peer");
    Ok(connection)
}

/// Runs the initiator's handshake over any byte stream (a TCP stream, a Unix socket, an
/// in-memory pipe), without a timeout of its own.
pub async fn initiate_on<S>(
    stream: S,
    key: &SecretKey,
    expected: PublicKey,
) -> Result<Connection, NetError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(stream);
    initiate(Box::new(read), Box::new(write), key, expected).await
}

/// Runs the responder's handshake over any byte stream, without a timeout of its own.
pub async fn respond_on<S>(
    stream: S,
    key: &SecretKey,
    allow: &Allow,
) -> Result<Connection, NetError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(stream);
    respond(Box::new(read), Box::new(write), key, allow, None).await
}

fn flatten_timeout(
    result: Result<Result<Connection, NetError>, tokio::time::error::Elapsed>,
    after: Duration,
) -> Result<Connection, NetError> {
    result.map_err(|_| NetError::HandshakeTimeout { after })?
}

async fn initiate(
    read: BoxRead,
    mut write: BoxWrite,
    key: &SecretKey,
    expected: PublicKey,
) -> Result<Connection, NetError> {
    let mut frames = FrameReader::new(read);
    let mut noise = noise_handshake(Role::Initiator)?;
    let mut buf = vec![0u8; MAX_HANDSHAKE_FRAME_LEN];
    // -> e
    write_handshake(&mut noise, &mut write, &mut buf).await?;
    // <- e, ee, s, es
    read_handshake(&mut noise, &mut frames, &mut buf).await?;
    // -> s, se
    write_handshake(&mut noise, &mut write, &mut buf).await?;
    let h = handshake_hash(&noise);
    let (mut reader, mut writer) = into_transport(noise, frames, write)?;

    // Ours first: the listener decides on its allow-list before it reveals anything.
    let ours = Binding::sign(key, Role::Initiator, &h, &rand::random());
    writer.send(&ours.to_bytes()).await?;
    // A listener that does not admit our key hangs up instead of answering.
    let answer = match reader.recv().await {
        Err(NetError::Closed) => return Err(NetError::Refused),
        Err(NetError::Io(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof
            ) =>
        {
            return Err(NetError::Refused)
        }
        other => other?,
    };
    let theirs = Binding::parse(&answer)?;
    if theirs.key != expected {
        return Err(NetError::UnexpectedPeer {
            expected: Box::new(expected),
            claimed: Box::new(theirs.key),
        });
    }
    let peer = theirs.verify(Role::Responder, &h)?;
    Ok(Connection::new(peer, reader, writer))
}

async fn respond(
    read: BoxRead,
    mut write: BoxWrite,
    key: &SecretKey,
    allow: &Allow,
    first_message: Option<Duration>,
) -> Result<Connection, NetError> {
    let mut frames = FrameReader::new(read);
    let mut noise = noise_handshake(Role::Responder)?;
    let mut buf = vec![0u8; MAX_HANDSHAKE_FRAME_LEN];
    // <- e
    match first_message {
        Some(after) => {
            tokio::time::timeout(after, read_handshake(&mut noise, &mut frames, &mut buf))
                .await
                .map_err(|_| NetError::FirstMessageTimeout { after })??
        }
        None => read_handshake(&mut noise, &mut frames, &mut buf).await?,
    }
    // -> e, ee, s, es
    write_handshake(&mut noise, &mut write, &mut buf).await?;
    // <- s, se
    read_handshake(&mut noise, &mut frames, &mut buf).await?;
    let h = handshake_hash(&noise);
    let (mut reader, mut writer) = into_transport(noise, frames, write)?;

    let theirs = Binding::parse(&reader.recv().await?)?;
    let peer = theirs.verify(Role::Initiator, &h)?;
    if !allow.permits(&peer) {
        return Err(NetError::UnknownPeer {
            peer: Box::new(peer),
        });
    }
    let ours = Binding::sign(key, Role::Responder, &h, &rand::random());
    writer.send(&ours.to_bytes()).await?;
    Ok(Connection::new(peer, reader, writer))
}

fn handshake_hash(noise: &HandshakeState) -> Vec<u8> {
    noise.get_handshake_hash().to_vec()
}

async fn write_handshake(
    noise: &mut HandshakeState,
    write: &mut BoxWrite,
    buf: &mut [u8],
) -> Result<(), NetError> {
    let len = noise.write_message(&[], buf).map_err(NetError::Noise)?;
    let mut out = Vec::with_capacity(2 + len);
    put_frame(&mut out, &buf[..len]);
    write.write_all(&out).await?;
    write.flush().await?;
    Ok(())
}

async fn read_handshake(
    noise: &mut HandshakeState,
    frames: &mut FrameReader,
    buf: &mut [u8],
) -> Result<(), NetError> {
    let frame = frames.next_frame(0, MAX_HANDSHAKE_FRAME_LEN).await?;
    let payload = noise.read_message(&frame, buf).map_err(NetError::Noise)?;
    if payload != 0 {
        return Err(NetError::UnexpectedHandshakePayload { len: payload });
    }
    Ok(())
}

fn into_transport(
    noise: HandshakeState,
    frames: FrameReader,
    write: BoxWrite,
) -> Result<(ConnectionReader, ConnectionWriter), NetError> {
    let transport = Arc::new(
        noise
            .into_stateless_transport_mode()
            .map_err(NetError::Noise)?,
    );
    // The peer is filled in once its binding verifies; until then the halves stay private.
    let placeholder = None;
    Ok((
        ConnectionReader {
            peer: placeholder,
            frames,
            transport: Arc::clone(&transport),
            nonce: 0,
            assembler: Assembler::default(),
            plaintext: vec![0u8; MAX_FRAME_LEN],
        },
        ConnectionWriter {
            peer: placeholder,
            write,
            transport,
            nonce: 0,
            ciphertext: vec![0u8; MAX_FRAME_LEN],
        },
    ))
}

/// Buffers raw bytes and cuts frames out of them. Reading is cancel safe: bytes that
/// arrive are kept in the buffer even if the future that asked for a frame is dropped.
struct FrameReader {
    read: BoxRead,
    buf: Vec<u8>,
}

impl FrameReader {
    fn new(read: BoxRead) -> Self {
        Self {
            read,
            buf: Vec::with_capacity(MAX_FRAME_LEN + 2),
        }
    }

    /// The next frame, or `Closed` if the stream ends cleanly between frames.
    async fn next_frame(&mut self, min_len: usize, max_len: usize) -> Result<Vec<u8>, NetError> {
        loop {
            if let Some(frame) = take_frame(&mut self.buf, min_len, max_len)? {
                return Ok(frame);
            }
            self.fill().await?;
        }
    }

    /// Reads more bytes; end of stream is `Closed` with nothing buffered, `Truncated`
    /// in the middle of a frame.
    async fn fill(&mut self) -> Result<(), NetError> {
        self.buf.reserve(16 * 1024);
        let n = self.read.read_buf(&mut self.buf).await?;
        if n == 0 {
            return Err(if self.buf.is_empty() {
                NetError::Closed
            } else {
                NetError::Truncated {
                    buffered: self.buf.len(),
                }
            });
        }
        Ok(())
    }
}

/// An authenticated, encrypted connection to a peer node.
pub struct Connection {
    reader: ConnectionReader,
    writer: ConnectionWriter,
}

impl Connection {
    fn new(peer: PublicKey, mut reader: ConnectionReader, mut writer: ConnectionWriter) -> Self {
        reader.peer = Some(peer);
        writer.peer = Some(peer);
        Self { reader, writer }
    }

    /// The peer's node key, proven by its binding signature.
    pub fn peer(&self) -> PublicKey {
        self.reader.peer()
    }

    /// Sends one message of at most [`MAX_MESSAGE_LEN`](crate::net::MAX_MESSAGE_LEN) bytes.
    pub async fn send(&mut self, message: &[u8]) -> Result<(), NetError> {
        self.writer.send(message).await
    }

    /// Receives the next message. Cancel safe.
    pub async fn recv(&mut self) -> Result<Vec<u8>, NetError> {
        self.reader.recv().await
    }

    /// Ends our direction of the stream (see [`ConnectionWriter::shutdown`]); receiving
    /// still works until the peer closes its own.
    pub async fn shutdown(&mut self) -> Result<(), NetError> {
        self.writer.shutdown().await
    }

    /// Splits into a reader and a writer that can move to different tasks.
    pub fn into_split(self) -> (ConnectionReader, ConnectionWriter) {
        (self.reader, self.writer)
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.peer())
            .finish_non_exhaustive()
    }
}

/// The receiving half of a [`Connection`].
pub struct ConnectionReader {
    peer: Option<PublicKey>,
    frames: FrameReader,
    transport: Arc<StatelessTransportState>,
    nonce: u64,
    assembler: Assembler,
    plaintext: Vec<u8>,
}

impl ConnectionReader {
    /// The peer's node key.
    pub fn peer(&self) -> PublicKey {
        self.peer
            .expect("halves leave the handshake only after the peer is known")
    }

    /// Receives the next message.
    ///
    /// Cancel safe: if the future is dropped (e.g. in `tokio::select!`), bytes already read
    /// stay buffered and the next call continues where this one stopped. `Closed` means the
    /// peer ended the stream cleanly between messages.
    pub async fn recv(&mut self) -> Result<Vec<u8>, NetError> {
        loop {
            // Everything between taking a frame and storing its plaintext is synchronous,
            // so cancellation can only happen while waiting for bytes.
            while let Some(frame) = take_frame(&mut self.frames.buf, TAG_LEN, MAX_FRAME_LEN)? {
                let len = self
                    .transport
                    .read_message(self.nonce, &frame, &mut self.plaintext)
                    .map_err(|_| NetError::Decrypt { frame: self.nonce })?;
                self.nonce += 1;
                if let Some(message) = self.assembler.push(&self.plaintext[..len])? {
                    return Ok(message);
                }
            }
            if let Err(err) = self.frames.fill().await {
                return Err(match err {
                    NetError::Closed if self.assembler.is_partial() => {
                        NetError::Truncated { buffered: 0 }
                    }
                    other => other,
                });
            }
        }
    }
}

impl fmt::Debug for ConnectionReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionReader")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

/// The sending half of a [`Connection`].
pub struct ConnectionWriter {
    peer: Option<PublicKey>,
    write: BoxWrite,
    transport: Arc<StatelessTransportState>,
    nonce: u64,
    ciphertext: Vec<u8>,
}

impl ConnectionWriter {
    /// The peer's node key.
    pub fn peer(&self) -> PublicKey {
        self.peer
            .expect("halves leave the handshake only after the peer is known")
    }

    /// Sends one message of at most [`MAX_MESSAGE_LEN`](crate::net::MAX_MESSAGE_LEN)
    /// bytes, as one or two frames in a single write.
    ///
    /// Not cancel safe: a send dropped half way leaves a partial message on the wire, after
    /// which the peer sees an error; drop the connection rather than sending again.
    pub async fn send(&mut self, message: &[u8]) -> Result<(), NetError> {
        let chunks = split_message(message)?;
        let mut out = Vec::with_capacity(message.len() + chunks.len() * (2 + TAG_LEN) + 4);
        for chunk in chunks {
            let len = self
                .transport
                .write_message(self.nonce, &chunk, &mut self.ciphertext)
                .map_err(NetError::Noise)?;
            self.nonce += 1;
            put_frame(&mut out, &self.ciphertext[..len]);
        }
        self.write.write_all(&out).await?;
        self.write.flush().await?;
        Ok(())
    }

    /// Ends our direction of the stream; the peer's `recv` then returns
    /// [`NetError::Closed`].
    pub async fn shutdown(&mut self) -> Result<(), NetError> {
        Ok(self.write.shutdown().await?)
    }
}

impl fmt::Debug for ConnectionWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionWriter")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}
