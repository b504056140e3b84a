//! The MQTT endpoint devices connect to (MQTT 3.1.1 and 5, QoS 0 and 1).
//!
//! Each device logs in with its own identifier (username, and client identifier when one
//! is given) and secret (password), and may publish only to
//! `wardline/v1/devices/{device_id}/readings`. It may subscribe to
//! `wardline/v1/devices/{device_id}/errors` to hear why a message was refused; MQTT 5
//! devices also get that reason in the PUBACK.
//!
//! A connection is two tasks: the reader parses every complete packet in what arrived,
//! validates the publishes and hands the valid ones to the store as one job; the writer
//! waits for those jobs in order and only then writes their PUBACKs. Reading goes on while
//! commits are in flight, so one device can have many messages in flight at once, and a
//! PUBACK still never precedes its commit. Packets are framed and encoded with rumqttc's
//! codec (`mqttbytes`), which covers both protocol versions.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::v5::mqttbytes::v5;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use wardline_domain::{DeviceId, DeviceMessage};
use wardline_service::device_certificates::certificate_fingerprint;
use wardline_service::devices::DeviceAuthError;
use wardline_service::ingest::count_rejection;
use wardline_service::{DeviceSessions, IngestService, MessageVerdict, Rejection, Wardline};
use wardline_store::{Device, StoreError};

/// Settings of the MQTT endpoint.
#[derive(Debug, Clone)]
pub struct MqttSettings {
    /// Largest MQTT packet accepted; larger ones end the connection. Payloads are
    /// limited separately (and more tightly) by the payload limits, with a precise error.
    pub max_packet_bytes: usize,
    pub connect_timeout: Duration,
    /// QoS 1 messages a client may have unacknowledged at once (MQTT 5 Receive Maximum).
    pub receive_maximum: u16,
    pub max_connections: usize,
}

impl Default for MqttSettings {
    fn default() -> Self {
        Self {
            max_packet_bytes: 1024 * 1024,
            connect_timeout: Duration::from_secs(10),
            receive_maximum: 1024,
            max_connections: 20_000,
        }
    }
}

/// Tells the endpoint of a revoked device without keeping it alive.
#[derive(Debug)]
struct Revocations(std::sync::Weak<MqttEndpoint>);

impl DeviceSessions for Revocations {
    fn disconnect(&self, device_id: &DeviceId) {
        if let Some(endpoint) = self.0.upgrade() {
            endpoint.disconnect_device(device_id);
        }
    }
}

pub use wardline_domain::topics::{errors_topic, readings_topic};

/// The MQTT endpoint.
pub struct MqttEndpoint {
    ingest: IngestService,
    service: Wardline,
    tls: Option<TlsAcceptor>,
    settings: MqttSettings,
    sessions: Mutex<HashMap<DeviceId, (u64, Arc<Notify>)>>,
    next_connection: AtomicU64,
    connections: tokio::sync::Semaphore,
}

impl std::fmt::Debug for MqttEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttEndpoint")
            .field("tls", &self.tls.is_some())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl MqttEndpoint {
    /// An endpoint storing through `service`; it registers itself to hear of revoked
    /// devices.
    pub fn new(service: Wardline, tls: Option<TlsAcceptor>, settings: MqttSettings) -> Arc<Self> {
        let connections = tokio::sync::Semaphore::new(settings.max_connections);
        let endpoint = Arc::new(Self {
            ingest: service.ingest().clone(),
            service: service.clone(),
            tls,
            settings,
            sessions: Mutex::new(HashMap::new()),
            next_connection: AtomicU64::new(1),
            connections,
        });
        service.add_device_sessions(Arc::new(Revocations(Arc::downgrade(&endpoint))));
        endpoint
    }

    /// Ends a device's connection, if it has one (after its credential is revoked).
    pub fn disconnect_device(&self, device_id: &DeviceId) {
        if let Ok(sessions) = self.sessions.lock()
            && let Some((_, kick)) = sessions.get(device_id)
        {
            kick.notify_one();
        }
    }

    /// Accepts connections until `shutdown` is cancelled.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: CancellationToken) {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = shutdown.cancelled() => break,
            };
            let (tcp, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "mqtt accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&self).connections_permit() else {
                tracing::warn!(%peer, "mqtt connection refused: connection limit reached");
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let endpoint = Arc::clone(&self);
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let _permit = permit;
                metrics::gauge!("wardline_mqtt_connections").increment(1.0);
                match endpoint.tls.clone() {
                    Some(acceptor) => {
                        match tokio::time::timeout(
                            endpoint.settings.connect_timeout,
                            acceptor.accept(tcp),
                        )
                        .await
                        {
                            Ok(Ok(tls)) => {
                                // A device certificate the handshake checked against the
                                // device CA, by the SHA-256 of its DER.
                                let certificate = tls
                                    .get_ref()
                                    .1
                                    .peer_certificates()
                                    .and_then(|chain| chain.first())
                                    .map(|leaf| certificate_fingerprint(leaf));
                                endpoint
                                    .run_connection(tls, peer, certificate, shutdown)
                                    .await
                            }
                            Ok(Err(error)) => {
                                tracing::debug!(%peer, %error, "mqtt tls handshake failed")
                            }
                            Err(_) => tracing::debug!(%peer, "mqtt tls handshake timed out"),
                        }
                    }
                    None => endpoint.run_connection(tcp, peer, None, shutdown).await,
                }
                metrics::gauge!("wardline_mqtt_connections").decrement(1.0);
            });
        }
    }

    fn connections_permit(self: Arc<Self>) -> Result<ConnectionPermit, ()> {
        if self
            .connections
            .try_acquire()
            .map(|permit| permit.forget())
            .is_err()
        {
            return Err(());
        }
        Ok(ConnectionPermit { endpoint: self })
    }

    async fn run_connection<S>(
        self: &Arc<Self>,
        stream: S,
        peer: SocketAddr,
        certificate: Option<[u8; 32]>,
        shutdown: CancellationToken,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut reader, mut writer) = tokio::io::split(stream);
        let mut buffer = BytesMut::with_capacity(16 * 1024);
        let connect = tokio::time::timeout(
            self.settings.connect_timeout,
            read_connect(&mut reader, &mut buffer, self.settings.max_packet_bytes),
        )
        .await;
        let (protocol, connect) = match connect {
            Ok(Ok(connect)) => connect,
            Ok(Err(ConnectFailure::UnsupportedVersion(level))) => {
                tracing::debug!(%peer, level, "mqtt protocol version refused");
                let mut out = BytesMut::new();
                let _ = v4::ConnAck::new(v4::ConnectReturnCode::RefusedProtocolVersion, false)
                    .write(&mut out);
                let _ = writer.write_all(&out).await;
                return;
            }
            Ok(Err(ConnectFailure::Malformed(reason))) => {
                tracing::debug!(%peer, reason, "mqtt connect malformed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "mqtt connect timed out");
                return;
            }
        };
        let device = match self.authenticate(&connect, certificate).await {
            Ok(device) => device,
            Err(refusal) => {
                metrics::counter!("wardline_mqtt_connects_refused_total", "reason" => refusal.metric()).increment(1);
                tracing::info!(%peer, reason = refusal.metric(), "mqtt connect refused");
                let mut out = BytesMut::new();
                encode_connack(protocol, Some(&refusal), &self.settings, &mut out);
                let _ = writer.write_all(&out).await;
                let _ = writer.shutdown().await;
                return;
            }
        };
        let device_id = device.id.clone();
        let mut out = BytesMut::new();
        encode_connack(protocol, None, &self.settings, &mut out);
        if writer.write_all(&out).await.is_err() {
            return;
        }
        tracing::debug!(%peer, device = %device_id, ?protocol, "device connected");
        let (connection_id, kicked) = self.register(&device_id);
        let fatal = CancellationToken::new();
        let errors_subscribed = Arc::new(AtomicBool::new(false));
        let (outbound, outbound_queue) = mpsc::channel::<Outbound>(64);
        let writer_task = tokio::spawn(write_loop(
            writer,
            outbound_queue,
            Connection {
                protocol,
                device_id: device_id.clone(),
                errors_subscribed: Arc::clone(&errors_subscribed),
            },
            fatal.clone(),
        ));
        let keep_alive = match connect.keep_alive {
            0 => None,
            seconds => Some(Duration::from_millis(u64::from(seconds) * 1500)),
        };
        let session = Session {
            endpoint: Arc::clone(self),
            protocol,
            device,
            readings_topic: readings_topic(&device_id),
            errors_topic: errors_topic(&device_id),
            errors_subscribed,
            outbound,
        };
        let ending = session
            .read_loop(
                &mut reader,
                &mut buffer,
                keep_alive,
                &kicked,
                &shutdown,
                &fatal,
            )
            .await;
        tracing::debug!(%peer, device = %device_id, reason = ending, "device disconnected");
        drop(session);
        // The writer sends the acknowledgements still owed for committed messages, then stops.
        let _ = writer_task.await;
        self.deregister(&device_id, connection_id);
    }

    /// A device logs in with its identifier and secret, or with a client certificate (and
    /// no password): then the username and client identifier, when given, must be the
    /// certificate's device.
    async fn authenticate(
        &self,
        connect: &ConnectRequest,
        certificate: Option<[u8; 32]>,
    ) -> Result<Device, Refusal> {
        let checked = match (certificate, connect.password.as_deref()) {
            (Some(fingerprint), None) => self
                .service
                .check_device_certificate(fingerprint)
                .await
                .and_then(|device| match connect.username.as_deref() {
                    Some(username) if username != device.id.as_str() => {
                        Err(DeviceAuthError::BadCredentials)
                    }
                    _ => Ok(device),
                }),
            (_, password) => {
                let Some(username) = connect.username.as_deref() else {
                    return Err(Refusal::BadCredentials);
                };
                self.service
                    .check_device_credentials(username, password.unwrap_or_default())
                    .await
            }
        };
        match checked {
            Ok(device)
                if !connect.client_id.is_empty() && connect.client_id != device.id.as_str() =>
            {
                Err(Refusal::ClientIdNotDevice)
            }
            Ok(device) => Ok(device),
            Err(DeviceAuthError::BadCredentials) => Err(Refusal::BadCredentials),
            Err(DeviceAuthError::Revoked(_)) => Err(Refusal::Revoked),
            Err(DeviceAuthError::Service(error)) => {
                tracing::error!(%error, "device authentication could not read the store");
                Err(Refusal::Unavailable)
            }
        }
    }

    fn register(&self, device_id: &DeviceId) -> (u64, Arc<Notify>) {
        let connection_id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let kick = Arc::new(Notify::new());
        if let Ok(mut sessions) = self.sessions.lock()
            && let Some((_, previous)) =
                sessions.insert(device_id.clone(), (connection_id, Arc::clone(&kick)))
        {
            // MQTT: a new connection with the same client takes the session over.
            previous.notify_one();
        }
        (connection_id, kick)
    }

    fn deregister(&self, device_id: &DeviceId, connection_id: u64) {
        if let Ok(mut sessions) = self.sessions.lock()
            && sessions
                .get(device_id)
                .is_some_and(|(id, _)| *id == connection_id)
        {
            sessions.remove(device_id);
        }
    }
}

/// Returns a connection slot when the connection ends.
struct ConnectionPermit {
    endpoint: Arc<MqttEndpoint>,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.endpoint.connections.add_permits(1);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    V311,
    V5,
}

#[derive(Debug)]
struct ConnectRequest {
    client_id: String,
    username: Option<String>,
    password: Option<Vec<u8>>,
    keep_alive: u16,
}

enum ConnectFailure {
    UnsupportedVersion(u8),
    Malformed(String),
}

#[derive(Debug)]
enum Refusal {
    BadCredentials,
    ClientIdNotDevice,
    Revoked,
    Unavailable,
}

impl Refusal {
    fn metric(&self) -> &'static str {
        match self {
            Refusal::BadCredentials => "bad_credentials",
            Refusal::ClientIdNotDevice => "client_id_not_device",
            Refusal::Revoked => "revoked",
            Refusal::Unavailable => "unavailable",
        }
    }
}

/// Reads bytes until one whole packet is buffered; returns its length, or `None` at EOF.
async fn fill_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    buffer: &mut BytesMut,
    max_packet_bytes: usize,
) -> Result<Option<usize>, String> {
    loop {
        if let Some(length) = frame_length(buffer)? {
            if length > max_packet_bytes {
                return Err(format!(
                    "packet of {length} bytes exceeds {max_packet_bytes}"
                ));
            }
            if buffer.len() >= length {
                return Ok(Some(length));
            }
        }
        match reader.read_buf(buffer).await {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(error) => return Err(error.to_string()),
        }
    }
}

/// The length of the packet at the front of `buffer`, once its fixed header is complete.
fn frame_length(buffer: &[u8]) -> Result<Option<usize>, String> {
    let mut remaining: usize = 0;
    for (index, byte) in buffer.iter().skip(1).take(4).enumerate() {
        remaining |= usize::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Ok(Some(1 + index + 1 + remaining));
        }
    }
    if buffer.len() >= 5 {
        return Err("malformed remaining length".into());
    }
    Ok(None)
}

/// The largest CONNECT accepted. It comes before authentication, from anyone who can
/// reach the port, and a device's needs a client id, a username and a secret (and MQTT 5
/// properties): a few hundred bytes. Reading up to the 1 MiB allowed for readings would
/// let each anonymous connection hold a megabyte of buffer.
const MAX_CONNECT_BYTES: usize = 4096;

async fn read_connect<R: AsyncRead + Unpin>(
    reader: &mut R,
    buffer: &mut BytesMut,
    max_packet_bytes: usize,
) -> Result<(Protocol, ConnectRequest), ConnectFailure> {
    let max_packet_bytes = max_packet_bytes.min(MAX_CONNECT_BYTES);
    let length = fill_frame(reader, buffer, max_packet_bytes)
        .await
        .map_err(ConnectFailure::Malformed)?
        .ok_or_else(|| ConnectFailure::Malformed("closed before CONNECT".into()))?;
    let frame = &buffer[..length];
    if frame.first().map(|byte| byte >> 4) != Some(1) {
        return Err(ConnectFailure::Malformed(
            "first packet is not CONNECT".into(),
        ));
    }
    let header_length = length - remaining_length_of(frame);
    let variable = &frame[header_length..];
    let name_length = match variable {
        [high, low, ..] => usize::from(u16::from_be_bytes([*high, *low])),
        _ => return Err(ConnectFailure::Malformed("CONNECT too short".into())),
    };
    let level = *variable
        .get(2 + name_length)
        .ok_or_else(|| ConnectFailure::Malformed("CONNECT without protocol level".into()))?;
    match level {
        4 => match v4::Packet::read(buffer, max_packet_bytes) {
            Ok(v4::Packet::Connect(connect)) => Ok((
                Protocol::V311,
                ConnectRequest {
                    client_id: connect.client_id,
                    username: connect.login.as_ref().map(|login| login.username.clone()),
                    password: connect.login.map(|login| login.password.into_bytes()),
                    keep_alive: connect.keep_alive,
                },
            )),
            Ok(_) => Err(ConnectFailure::Malformed("expected CONNECT".into())),
            Err(error) => Err(ConnectFailure::Malformed(error.to_string())),
        },
        5 => match v5::Packet::read(buffer, Some(max_packet_bytes as u32)) {
            Ok(v5::Packet::Connect(connect, _will, login)) => Ok((
                Protocol::V5,
                ConnectRequest {
                    client_id: connect.client_id,
                    username: login.as_ref().map(|login| login.username.clone()),
                    password: login.map(|login| login.password.into_bytes()),
                    keep_alive: connect.keep_alive,
                },
            )),
            Ok(_) => Err(ConnectFailure::Malformed("expected CONNECT".into())),
            Err(error) => Err(ConnectFailure::Malformed(error.to_string())),
        },
        other => Err(ConnectFailure::UnsupportedVersion(other)),
    }
}

/// Reads `bytes` the way the server reads what one peer sends before and after logging in:
/// a CONNECT, then every packet in the protocol version the CONNECT chose, until the first
/// incomplete or refused packet, which ends a real connection too. Returns how many packets
/// after the CONNECT were read. The fuzz targets reach the packet reader through this, so
/// they exercise the code a device's bytes reach, not a copy of it.
pub async fn read_as_peer(bytes: &[u8], max_packet_bytes: usize) -> usize {
    let mut reader = bytes;
    let mut buffer = BytesMut::new();
    let Ok((protocol, _)) = read_connect(&mut reader, &mut buffer, max_packet_bytes).await else {
        return 0;
    };
    buffer.extend_from_slice(reader);
    let mut packets = 0;
    while let Ok(Some(_)) = decode(protocol, &mut buffer, max_packet_bytes) {
        packets += 1;
    }
    packets
}

fn remaining_length_of(frame: &[u8]) -> usize {
    let mut remaining = 0usize;
    for (index, byte) in frame.iter().skip(1).take(4).enumerate() {
        remaining |= usize::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            break;
        }
    }
    remaining
}

fn encode_connack(
    protocol: Protocol,
    refusal: Option<&Refusal>,
    settings: &MqttSettings,
    out: &mut BytesMut,
) {
    match protocol {
        Protocol::V311 => {
            let code = match refusal {
                None => v4::ConnectReturnCode::Success,
                Some(Refusal::BadCredentials) => v4::ConnectReturnCode::BadUserNamePassword,
                Some(Refusal::ClientIdNotDevice) => v4::ConnectReturnCode::BadClientId,
                Some(Refusal::Revoked) => v4::ConnectReturnCode::NotAuthorized,
                Some(Refusal::Unavailable) => v4::ConnectReturnCode::ServiceUnavailable,
            };
            let _ = v4::ConnAck::new(code, false).write(out);
        }
        Protocol::V5 => {
            let (code, reason) = match refusal {
                None => (v5::ConnectReturnCode::Success, None),
                Some(Refusal::BadCredentials) => (
                    v5::ConnectReturnCode::BadUserNamePassword,
                    Some("unknown device or wrong secret"),
                ),
                Some(Refusal::ClientIdNotDevice) => (
                    v5::ConnectReturnCode::ClientIdentifierNotValid,
                    Some("the client identifier must be empty or the device id"),
                ),
                Some(Refusal::Revoked) => (
                    v5::ConnectReturnCode::NotAuthorized,
                    Some("this device is revoked"),
                ),
                Some(Refusal::Unavailable) => (
                    v5::ConnectReturnCode::ServerUnavailable,
                    Some("storage unavailable"),
                ),
            };
            let properties = v5::ConnAckProperties {
                receive_max: refusal.is_none().then_some(settings.receive_maximum),
                max_qos: Some(1),
                retain_available: Some(0),
                max_packet_size: Some(settings.max_packet_bytes as u32),
                topic_alias_max: Some(0),
                wildcard_subscription_available: Some(0),
                subscription_identifiers_available: Some(0),
                shared_subscription_available: Some(0),
                reason_string: reason.map(str::to_owned),
                session_expiry_interval: Some(0),
                assigned_client_identifier: None,
                user_properties: Vec::new(),
                server_keep_alive: None,
                response_information: None,
                server_reference: None,
                authentication_method: None,
                authentication_data: None,
            };
            let _ = v5::ConnAck {
                session_present: false,
                code,
                properties: Some(properties),
            }
            .write(out);
        }
    }
}

/// One complete packet from a connected device, whichever protocol version it spoke.
enum Incoming {
    Publish {
        topic: Bytes,
        pkid: u16,
        qos: QoS,
        payload: Bytes,
    },
    PingReq,
    Subscribe {
        pkid: u16,
        filters: Vec<String>,
    },
    Unsubscribe {
        pkid: u16,
        count: usize,
    },
    Disconnect,
    /// A packet a device must not send to a server, or QoS 2.
    Unexpected(&'static str),
}

enum DecodeFailure {
    TooLarge,
    Malformed(String),
}

fn decode(
    protocol: Protocol,
    buffer: &mut BytesMut,
    max_packet_bytes: usize,
) -> Result<Option<Incoming>, DecodeFailure> {
    match frame_length(buffer).map_err(DecodeFailure::Malformed)? {
        None => return Ok(None),
        Some(length) if length > max_packet_bytes => return Err(DecodeFailure::TooLarge),
        Some(length) if buffer.len() < length => return Ok(None),
        Some(_) => {}
    }
    match protocol {
        Protocol::V311 => match v4::Packet::read(buffer, max_packet_bytes) {
            Ok(packet) => Ok(Some(match packet {
                v4::Packet::Publish(publish) => Incoming::Publish {
                    topic: Bytes::from(publish.topic.into_bytes()),
                    pkid: publish.pkid,
                    qos: publish.qos,
                    payload: publish.payload,
                },
                v4::Packet::PingReq => Incoming::PingReq,
                v4::Packet::Subscribe(subscribe) => Incoming::Subscribe {
                    pkid: subscribe.pkid,
                    filters: subscribe
                        .filters
                        .into_iter()
                        .map(|filter| filter.path)
                        .collect(),
                },
                v4::Packet::Unsubscribe(unsubscribe) => Incoming::Unsubscribe {
                    pkid: unsubscribe.pkid,
                    count: unsubscribe.topics.len(),
                },
                v4::Packet::Disconnect => Incoming::Disconnect,
                _ => Incoming::Unexpected("packet not allowed from a device"),
            })),
            Err(error) => Err(DecodeFailure::Malformed(error.to_string())),
        },
        Protocol::V5 => {
            // rumqttc insists on a body, but an MQTT 5 DISCONNECT may have none (reason 0).
            if buffer.len() >= 2 && buffer[0] == 0xE0 && buffer[1] == 0 {
                let _ = buffer.split_to(2);
                return Ok(Some(Incoming::Disconnect));
            }
            match v5::Packet::read(buffer, Some(max_packet_bytes as u32)) {
                Ok(packet) => Ok(Some(match packet {
                    v5::Packet::Publish(publish) => Incoming::Publish {
                        topic: publish.topic,
                        pkid: publish.pkid,
                        qos: match publish.qos {
                            QoS5::AtMostOnce => QoS::AtMostOnce,
                            QoS5::AtLeastOnce => QoS::AtLeastOnce,
                            QoS5::ExactlyOnce => QoS::ExactlyOnce,
                        },
                        payload: publish.payload,
                    },
                    v5::Packet::PingReq(_) => Incoming::PingReq,
                    v5::Packet::Subscribe(subscribe) => Incoming::Subscribe {
                        pkid: subscribe.pkid,
                        filters: subscribe
                            .filters
                            .into_iter()
                            .map(|filter| filter.path)
                            .collect(),
                    },
                    v5::Packet::Unsubscribe(unsubscribe) => Incoming::Unsubscribe {
                        pkid: unsubscribe.pkid,
                        count: unsubscribe.filters.len(),
                    },
                    v5::Packet::Disconnect(_) => Incoming::Disconnect,
                    _ => Incoming::Unexpected("packet not allowed from a device"),
                })),
                Err(error) => Err(DecodeFailure::Malformed(error.to_string())),
            }
        }
    }
}

/// What the writer must send, in the order the reader saw the packets.
enum Outbound {
    Acks {
        plans: Vec<AckPlan>,
        verdicts: Option<JoinHandle<Result<Vec<MessageVerdict>, StoreError>>>,
    },
    PingResp,
    SubAck {
        pkid: u16,
        granted: Vec<bool>,
    },
    UnsubAck {
        pkid: u16,
        count: usize,
    },
    /// MQTT 5 DISCONNECT with a reason, then close.
    Disconnect {
        reason: v5::DisconnectReasonCode,
        text: String,
    },
}

enum AckPlan {
    /// Valid message number `index` of the stored batch.
    Stored { pkid: u16, qos: QoS, index: usize },
    Refused {
        pkid: u16,
        qos: QoS,
        refusal: PublishRefusal,
    },
}

enum PublishRefusal {
    Rejected(Rejection),
    ForeignTopic(String),
}

struct Connection {
    protocol: Protocol,
    device_id: DeviceId,
    errors_subscribed: Arc<AtomicBool>,
}

struct Session {
    endpoint: Arc<MqttEndpoint>,
    protocol: Protocol,
    /// The device as it was when it connected: its model decides how its messages are
    /// read (format v1, or the model's mapping template).
    device: Device,
    readings_topic: String,
    errors_topic: String,
    errors_subscribed: Arc<AtomicBool>,
    outbound: mpsc::Sender<Outbound>,
}

#[derive(Default)]
struct Burst {
    messages: Vec<DeviceMessage>,
    plans: Vec<AckPlan>,
}

impl Session {
    async fn read_loop<R: AsyncRead + Unpin>(
        &self,
        reader: &mut R,
        buffer: &mut BytesMut,
        keep_alive: Option<Duration>,
        kicked: &Notify,
        shutdown: &CancellationToken,
        fatal: &CancellationToken,
    ) -> &'static str {
        let max = self.endpoint.settings.max_packet_bytes;
        loop {
            let mut burst = Burst::default();
            loop {
                match decode(self.protocol, buffer, max) {
                    Ok(None) => break,
                    Ok(Some(packet)) => {
                        if let Err(ending) = self.handle(packet, &mut burst).await {
                            self.flush(&mut burst).await;
                            return ending;
                        }
                    }
                    Err(failure) => {
                        self.flush(&mut burst).await;
                        let (reason, text, ending) = match failure {
                            DecodeFailure::TooLarge => (
                                v5::DisconnectReasonCode::PacketTooLarge,
                                format!("packet larger than {max} bytes"),
                                "packet too large",
                            ),
                            DecodeFailure::Malformed(why) => (
                                v5::DisconnectReasonCode::MalformedPacket,
                                format!("malformed packet: {why}"),
                                "malformed packet",
                            ),
                        };
                        let _ = self
                            .outbound
                            .send(Outbound::Disconnect { reason, text })
                            .await;
                        return ending;
                    }
                }
            }
            if !self.flush(&mut burst).await {
                return "writer stopped";
            }
            let read = async {
                match keep_alive {
                    Some(limit) => tokio::time::timeout(limit, reader.read_buf(buffer))
                        .await
                        .ok(),
                    None => Some(reader.read_buf(buffer).await),
                }
            };
            tokio::select! {
                read = read => match read {
                    None => return "keep-alive expired",
                    Some(Ok(0)) => return "closed by device",
                    Some(Ok(_)) => {}
                    Some(Err(_)) => return "read failed",
                },
                () = kicked.notified() => {
                    let _ = self.outbound.send(Outbound::Disconnect {
                        reason: v5::DisconnectReasonCode::SessionTakenOver,
                        text: "another connection of this device took over, or the device was revoked".into(),
                    }).await;
                    return "taken over";
                }
                () = shutdown.cancelled() => {
                    let _ = self.outbound.send(Outbound::Disconnect {
                        reason: v5::DisconnectReasonCode::ServerShuttingDown,
                        text: "server shutting down".into(),
                    }).await;
                    return "server shutdown";
                }
                () = fatal.cancelled() => return "storage failed",
            }
        }
    }

    /// Adds one packet to the burst; `Err` ends the connection.
    async fn handle(&self, packet: Incoming, burst: &mut Burst) -> Result<(), &'static str> {
        match packet {
            Incoming::Publish {
                topic,
                pkid,
                qos,
                payload,
            } => {
                if qos == QoS::ExactlyOnce {
                    self.flush(burst).await;
                    let _ = self
                        .outbound
                        .send(Outbound::Disconnect {
                            reason: v5::DisconnectReasonCode::QoSNotSupported,
                            text: "QoS 2 is not supported; use QoS 1".into(),
                        })
                        .await;
                    return Err("qos 2");
                }
                if topic.as_ref() != self.readings_topic.as_bytes() {
                    let topic = String::from_utf8_lossy(&topic).into_owned();
                    metrics::counter!("wardline_mqtt_foreign_topic_total").increment(1);
                    tracing::warn!(device = %self.device.id, "publish to a topic the device does not own");
                    if self.protocol == Protocol::V311 {
                        // MQTT 3.1.1 has no negative PUBACK; closing is the only refusal.
                        return Err("publish to a foreign topic");
                    }
                    burst.plans.push(AckPlan::Refused {
                        pkid,
                        qos,
                        refusal: PublishRefusal::ForeignTopic(topic),
                    });
                    return Ok(());
                }
                match self.endpoint.ingest.parse_from(&self.device, &payload) {
                    Ok(message) => {
                        burst.plans.push(AckPlan::Stored {
                            pkid,
                            qos,
                            index: burst.messages.len(),
                        });
                        burst.messages.push(message);
                    }
                    Err(error) => {
                        let rejection = Rejection::Payload(error);
                        count_rejection("mqtt", &rejection);
                        burst.plans.push(AckPlan::Refused {
                            pkid,
                            qos,
                            refusal: PublishRefusal::Rejected(rejection),
                        });
                    }
                }
                Ok(())
            }
            Incoming::PingReq => {
                self.flush(burst).await;
                let _ = self.outbound.send(Outbound::PingResp).await;
                Ok(())
            }
            Incoming::Subscribe { pkid, filters } => {
                self.flush(burst).await;
                let granted: Vec<bool> = filters
                    .iter()
                    .map(|filter| *filter == self.errors_topic)
                    .collect();
                if granted.iter().any(|granted| *granted) {
                    self.errors_subscribed.store(true, Ordering::Relaxed);
                }
                let _ = self.outbound.send(Outbound::SubAck { pkid, granted }).await;
                Ok(())
            }
            Incoming::Unsubscribe { pkid, count } => {
                self.flush(burst).await;
                self.errors_subscribed.store(false, Ordering::Relaxed);
                let _ = self.outbound.send(Outbound::UnsubAck { pkid, count }).await;
                Ok(())
            }
            Incoming::Disconnect => Err("disconnect"),
            Incoming::Unexpected(why) => {
                self.flush(burst).await;
                let _ = self
                    .outbound
                    .send(Outbound::Disconnect {
                        reason: v5::DisconnectReasonCode::ProtocolError,
                        text: why.into(),
                    })
                    .await;
                Err(why)
            }
        }
    }

    /// Hands the burst's valid messages to the store and its acknowledgements to the
    /// writer; `false` if the writer has gone.
    async fn flush(&self, burst: &mut Burst) -> bool {
        if burst.plans.is_empty() {
            return true;
        }
        let messages = std::mem::take(&mut burst.messages);
        let verdicts = (!messages.is_empty()).then(|| {
            let ingest = self.endpoint.ingest.clone();
            let device_id = self.device.id.clone();
            tokio::spawn(async move { ingest.store(&device_id, "mqtt", messages).await })
        });
        self.outbound
            .send(Outbound::Acks {
                plans: std::mem::take(&mut burst.plans),
                verdicts,
            })
            .await
            .is_ok()
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut queue: mpsc::Receiver<Outbound>,
    connection: Connection,
    fatal: CancellationToken,
) {
    let mut out = BytesMut::with_capacity(8 * 1024);
    while let Some(first) = queue.recv().await {
        let mut next = Some(first);
        let mut closing = false;
        // Encode everything already queued, then write once.
        while let Some(outbound) = next.take() {
            match encode_outbound(outbound, &connection, &mut out).await {
                Ok(true) => {}
                Ok(false) => {
                    closing = true;
                    break;
                }
                Err(error) => {
                    // Durability unknown: acknowledge nothing more and drop the connection,
                    // so the device retries (idempotently) later.
                    tracing::error!(%error, device = %connection.device_id, "store failed; closing connection unacknowledged");
                    let _ = writer.write_all(&out).await;
                    fatal.cancel();
                    return;
                }
            }
            next = queue.try_recv().ok();
        }
        if writer.write_all(&out).await.is_err() || writer.flush().await.is_err() {
            fatal.cancel();
            return;
        }
        out.clear();
        if closing {
            let _ = writer.shutdown().await;
            fatal.cancel();
            return;
        }
    }
    let _ = writer.shutdown().await;
}

/// Encodes one outbound item; `Ok(false)` when the connection must close after it.
async fn encode_outbound(
    outbound: Outbound,
    connection: &Connection,
    out: &mut BytesMut,
) -> Result<bool, StoreError> {
    match outbound {
        Outbound::Acks { plans, verdicts } => {
            let verdicts = match verdicts {
                Some(handle) => handle.await.map_err(|_| StoreError::Closed)??,
                None => Vec::new(),
            };
            for plan in plans {
                encode_ack(plan, &verdicts, connection, out);
            }
            Ok(true)
        }
        Outbound::PingResp => {
            out.extend_from_slice(&[0xD0, 0x00]);
            Ok(true)
        }
        Outbound::SubAck { pkid, granted } => {
            match connection.protocol {
                Protocol::V311 => {
                    let codes = granted
                        .into_iter()
                        .map(|ok| {
                            if ok {
                                v4::SubscribeReasonCode::Success(QoS::AtMostOnce)
                            } else {
                                v4::SubscribeReasonCode::Failure
                            }
                        })
                        .collect();
                    let _ = v4::SubAck::new(pkid, codes).write(out);
                }
                Protocol::V5 => {
                    let codes = granted
                        .into_iter()
                        .map(|ok| {
                            if ok {
                                v5::SubscribeReasonCode::Success(QoS5::AtMostOnce)
                            } else {
                                v5::SubscribeReasonCode::NotAuthorized
                            }
                        })
                        .collect();
                    let _ = v5::SubAck {
                        pkid,
                        return_codes: codes,
                        properties: None,
                    }
                    .write(out);
                }
            }
            Ok(true)
        }
        Outbound::UnsubAck { pkid, count } => {
            match connection.protocol {
                Protocol::V311 => {
                    let _ = v4::UnsubAck::new(pkid).write(out);
                }
                Protocol::V5 => {
                    let _ = v5::UnsubAck {
                        pkid,
                        reasons: vec![v5::UnsubAckReason::Success; count],
                        properties: None,
                    }
                    .write(out);
                }
            }
            Ok(true)
        }
        Outbound::Disconnect { reason, text } => {
            if connection.protocol == Protocol::V5 {
                let mut disconnect = v5::Disconnect::new(reason);
                disconnect.properties = Some(v5::DisconnectProperties {
                    session_expiry_interval: None,
                    reason_string: Some(text),
                    user_properties: Vec::new(),
                    server_reference: None,
                });
                let _ = disconnect.write(out);
            }
            Ok(false)
        }
    }
}

fn encode_ack(
    plan: AckPlan,
    verdicts: &[MessageVerdict],
    connection: &Connection,
    out: &mut BytesMut,
) {
    let (pkid, qos, refusal) = match plan {
        AckPlan::Stored { pkid, qos, index } => match verdicts.get(index) {
            Some(MessageVerdict::Stored { .. }) => (pkid, qos, None),
            Some(MessageVerdict::Rejected(rejection)) => {
                (pkid, qos, Some(PublishRefusal::Rejected(rejection.clone())))
            }
            None => return,
        },
        AckPlan::Refused { pkid, qos, refusal } => (pkid, qos, Some(refusal)),
    };
    if let Some(refusal) = &refusal
        && connection.errors_subscribed.load(Ordering::Relaxed)
    {
        encode_error_publish(pkid, refusal, connection, out);
    }
    if qos != QoS::AtLeastOnce {
        return;
    }
    match connection.protocol {
        // 3.1.1 has no negative acknowledgement. A refusal that a retry may overcome (the
        // device is not assigned to a patient yet) gets no PUBACK: the device keeps the
        // reading and sends it again when it reconnects. Any other refusal is final (a
        // retry would be refused the same way): the message is acknowledged as handled,
        // and the reason went to the errors topic.
        Protocol::V311 => {
            let transient = matches!(&refusal, Some(PublishRefusal::Rejected(rejection)) if rejection.is_transient());
            if !transient {
                let _ = v4::PubAck::new(pkid).write(out);
            }
        }
        Protocol::V5 => {
            let (reason, text) = match &refusal {
                None => (v5::PubAckReason::Success, None),
                Some(PublishRefusal::ForeignTopic(topic)) => (
                    v5::PubAckReason::NotAuthorized,
                    Some(format!(
                        "device {} may not publish to {topic}",
                        connection.device_id
                    )),
                ),
                Some(PublishRefusal::Rejected(rejection)) => (
                    match rejection {
                        Rejection::Payload(_) => v5::PubAckReason::PayloadFormatInvalid,
                        Rejection::Revoked(_) => v5::PubAckReason::NotAuthorized,
                        Rejection::NotAssigned { .. }
                        | Rejection::UnknownDevice(_)
                        | Rejection::SeqConflict { .. } => {
                            v5::PubAckReason::ImplementationSpecificError
                        }
                    },
                    Some(rejection.to_string()),
                ),
            };
            let _ = v5::PubAck {
                pkid,
                reason,
                properties: text.map(|reason_string| v5::PubAckProperties {
                    reason_string: Some(reason_string),
                    user_properties: Vec::new(),
                }),
            }
            .write(out);
        }
    }
}

fn encode_error_publish(
    pkid: u16,
    refusal: &PublishRefusal,
    connection: &Connection,
    out: &mut BytesMut,
) {
    let body = match refusal {
        PublishRefusal::ForeignTopic(topic) => serde_json::json!({
            "packet_id": pkid,
            "kind": "foreign_topic",
            "field": "topic",
            "reason": format!("device {} may not publish to {topic}", connection.device_id),
        }),
        PublishRefusal::Rejected(Rejection::Payload(error)) => serde_json::json!({
            "packet_id": pkid,
            "kind": error.kind.as_str(),
            "field": error.field,
            "reason": error.reason,
        }),
        PublishRefusal::Rejected(rejection @ Rejection::SeqConflict { .. }) => serde_json::json!({
            "packet_id": pkid,
            "kind": rejection.kind(),
            "field": "seq",
            "reason": rejection.to_string(),
        }),
        PublishRefusal::Rejected(rejection) => serde_json::json!({
            "packet_id": pkid,
            "kind": rejection.kind(),
            "reason": rejection.to_string(),
        }),
    };
    let topic = errors_topic(&connection.device_id);
    let payload = Bytes::from(body.to_string());
    match connection.protocol {
        Protocol::V311 => {
            let _ = v4::Publish::new(topic, QoS::AtMostOnce, payload).write(out);
        }
        Protocol::V5 => {
            let _ = v5::Publish::new(topic, QoS5::AtMostOnce, payload, None).write(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;

    /// A CONNECT that announces 100 kB is refused once its header is read, before the
    /// rest arrives: an unauthenticated peer cannot make the server buffer it.
    #[tokio::test]
    async fn an_oversized_connect_is_refused_from_its_header() {
        let (mut peer, mut server_side) = tokio::io::duplex(64 * 1024);
        // CONNECT, remaining length 100,000 (variable-length encoding; 100,004 bytes with
        // its header), then 5 kB of it.
        let mut bytes = vec![0x10, 0xa0, 0x8d, 0x06];
        bytes.extend(std::iter::repeat_n(0u8, 5000));
        peer.write_all(&bytes).await.expect("write");
        let mut buffer = BytesMut::new();
        let read = tokio::time::timeout(
            Duration::from_secs(2),
            read_connect(&mut server_side, &mut buffer, 1024 * 1024),
        )
        .await
        .expect("refused without waiting for the rest");
        match read {
            Err(ConnectFailure::Malformed(reason)) => {
                assert!(reason.contains("100004 bytes exceeds 4096"), "{reason}")
            }
            Err(ConnectFailure::UnsupportedVersion(level)) => panic!("version {level}"),
            Ok(_) => panic!("an oversized CONNECT was accepted"),
        }
        assert!(buffer.len() < 16 * 1024, "{} bytes buffered", buffer.len());
        drop(peer);
    }

    /// The fuzz targets' entry reads a CONNECT and the packets after it in its protocol,
    /// and stops at the first packet a connection would stop at.
    #[tokio::test]
    async fn read_as_peer_reads_what_follows_the_connect() {
        let mut bytes = BytesMut::new();
        let mut connect = v4::Connect::new("dev-1");
        connect.set_login("dev-1", "secret");
        connect.write(&mut bytes).expect("connect");
        for seq in 1..=2 {
            let mut publish = v4::Publish::new(
                "wardline/v1/devices/dev-1/readings",
                QoS::AtLeastOnce,
                format!("{{\"seq\":{seq}}}"),
            );
            publish.pkid = seq;
            publish.write(&mut bytes).expect("publish");
        }
        v4::PingReq.write(&mut bytes).expect("ping");
        assert_eq!(read_as_peer(&bytes, 1024).await, 3);
        // A PUBLISH over the packet limit ends the reading there.
        let mut long = bytes.clone();
        let mut too_long = v4::Publish::new("t", QoS::AtLeastOnce, vec![b'x'; 2000]);
        too_long.pkid = 3;
        too_long.write(&mut long).expect("publish");
        v4::PingReq.write(&mut long).expect("ping");
        assert_eq!(read_as_peer(&long, 1024).await, 3);
        // Without a CONNECT first nothing is read.
        let publish_first = bytes.split_off(bytes.len() - 2);
        assert_eq!(read_as_peer(&publish_first, 1024).await, 0);
    }

    fn decode_all(protocol: Protocol, bytes: &[u8]) {
        let mut buffer = BytesMut::from(bytes);
        // Stop at the first incomplete or refused packet, as the connection would.
        while let Ok(Some(_)) = decode(protocol, &mut buffer, 1024) {}
    }

    proptest! {
        #[test]
        fn hostile_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            decode_all(Protocol::V311, &bytes);
            decode_all(Protocol::V5, &bytes);
            let _ = frame_length(&bytes);
        }

        #[test]
        fn hostile_packets_with_valid_headers_never_panic(kind in 0u8..16, flags in 0u8..16, body in proptest::collection::vec(any::<u8>(), 0..120)) {
            let mut bytes = vec![(kind << 4) | flags, body.len() as u8];
            bytes.extend_from_slice(&body);
            decode_all(Protocol::V311, &bytes);
            decode_all(Protocol::V5, &bytes);
        }
    }

    #[tokio::test]
    async fn hostile_connects_are_refused_without_panicking() {
        let mut runner = proptest::test_runner::TestRunner::default();
        for _ in 0..500 {
            let body = proptest::collection::vec(any::<u8>(), 0..80)
                .new_tree(&mut runner)
                .map(|tree| tree.current())
                .unwrap_or_default();
            for level in [3u8, 4, 5, 6] {
                let mut frame = vec![0x10, 0, 0, 4, b'M', b'Q', b'T', b'T', level];
                frame.extend_from_slice(&body);
                frame[1] = (frame.len() - 2).min(127) as u8;
                frame.truncate(2 + usize::from(frame[1]));
                let mut buffer = BytesMut::new();
                let _ = read_connect(&mut frame.as_slice(), &mut buffer, 1024).await;
            }
        }
    }

    #[test]
    fn frame_length_reads_the_remaining_length() {
        assert_eq!(frame_length(&[0x30]), Ok(None));
        assert_eq!(frame_length(&[0x30, 0x05]), Ok(Some(7)));
        assert_eq!(frame_length(&[0x30, 0x80, 0x01]), Ok(Some(131)));
        assert!(frame_length(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01]).is_err());
    }
}
