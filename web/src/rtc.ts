// The media of a visit's room: one RTCPeerConnection per other participant (a mesh; a
// visit has a patient and a few care team members), negotiated with the "perfect
// negotiation" pattern over Wardline's signalling (POST .../room/signal, received on the
// room's event stream). The media itself goes browser to browser, or through the TURN
// server the room entry names.
//
// Who starts: a participant who arrives says `hello` to the room; everyone already there
// answers a hello by opening a connection to the newcomer and offering. Both sides may
// still offer at once (two arriving together, a renegotiation after a camera switch); the
// "polite" side (the higher user id) then gives way and takes the other's offer.
//
// Every message carries the sender's `session`, an id of its page load, so that a
// participant who reloads is told apart from the connection to the page they left, and
// messages meant for an old connection are dropped.

import type { SignalKind } from './visits';

export type PeerState = 'new' | 'connecting' | 'connected' | 'disconnected' | 'failed' | 'closed';

/** How well media from a peer arrives here, over the last few seconds. */
export interface Quality {
  poor: boolean;
  /** Why it is poor, in words ("packet loss 8 %"). */
  reasons: string[];
  lossPercent: number | null;
  rttMs: number | null;
  fps: number | null;
  framesDecoded: number;
  /** The selected candidate pair's types (host, srflx, prflx, relay). */
  localCandidate: string | null;
  remoteCandidate: string | null;
}

/** What a peer says about itself: how it receives us, and its camera and microphone. */
export interface RemoteReport {
  poor: boolean;
  reasons: string[];
  camera: boolean;
  microphone: boolean;
}

export interface Peer {
  readonly id: string;
  readonly pc: RTCPeerConnection;
  readonly stream: MediaStream;
  readonly polite: boolean;
  remoteSession: string;
  state: PeerState;
  quality: Quality | null;
  report: RemoteReport | null;
}

export interface MeshEvents {
  /** A connection to a participant was opened (the page adds their video). */
  onPeer(peer: Peer): void;
  /** Its state, tracks, quality or report changed. */
  onPeerChange(peer: Peer): void;
  /** The connection was closed (the participant left or reloaded). */
  onPeerClosed(peer: Peer): void;
}

type Send = (kind: SignalKind, to: string | undefined, data: Record<string, unknown>) => void;

/** Thresholds for "the connection is poor". */
const POOR_LOSS_PERCENT = 5;
const POOR_RTT_MS = 400;
const POOR_FPS = 8;

interface Negotiation {
  makingOffer: boolean;
  ignoreOffer: boolean;
  settingRemoteAnswer: boolean;
  /** Incoming messages are applied one at a time, in order. */
  queue: Promise<void>;
  /** Counters at the previous stats reading, for rates over the interval. */
  last: { packetsLost: number; packetsReceived: number; framesDecoded: number; time: number } | null;
}

export class Mesh {
  readonly peers = new Map<string, Peer>();
  readonly session = crypto.randomUUID();
  private local: MediaStream | null = null;
  private readonly negotiation = new WeakMap<Peer, Negotiation>();
  private closed = false;

  private readonly events: MeshEvents;

  constructor(
    private readonly me: string,
    private readonly config: RTCConfiguration,
    private readonly send: Send,
    events: MeshEvents,
  ) {
    // A closed connection's late news (a track ending, statistics read as it closed)
    // does not bring it back.
    this.events = {
      onPeer: events.onPeer,
      onPeerClosed: events.onPeerClosed,
      onPeerChange: (peer) => {
        if (this.peers.get(peer.id) === peer) events.onPeerChange(peer);
      },
    };
  }

  /** Says to the room (or to one participant) that this page has no connection yet. */
  hello(to?: string): void {
    this.send('hello', to, { session: this.session });
  }

  /** Sets (or replaces) this side's camera and microphone on every connection. */
  setLocalStream(stream: MediaStream | null): void {
    this.local = stream;
    for (const peer of this.peers.values()) void this.attachLocal(peer);
  }

  /** Switches one track (another camera or microphone) without renegotiating. */
  async replaceTrack(track: MediaStreamTrack): Promise<void> {
    for (const peer of this.peers.values()) {
      const transceiver = this.transceiverOf(peer, track.kind);
      if (transceiver?.sender.track) await transceiver.sender.replaceTrack(track);
      else await this.attachLocal(peer);
    }
  }

  /** A signalling message from another participant. */
  receive(from: string, kind: SignalKind, data: unknown): void {
    if (this.closed || from === this.me) return;
    const body = (data ?? {}) as Record<string, unknown>;
    const session = typeof body.session === 'string' ? body.session : '';
    if (!session) return;
    // Meant for a connection of an earlier load of this page.
    if (typeof body.to_session === 'string' && body.to_session !== this.session) return;
    let peer = this.peers.get(from);
    switch (kind) {
      case 'hello':
        // A page that says hello has no connection with us: a new arrival, or a reload
        // (a new session). A hello from the session we are connected to is a repeat.
        if (peer && peer.remoteSession === session && peer.state !== 'failed' && peer.state !== 'closed') return;
        if (peer) this.close(peer.id);
        peer = this.open(from, session);
        // Opening with our tracks (or receive-only transceivers) makes us offer.
        void this.attachLocal(peer, true);
        return;
      case 'bye':
        if (peer && peer.remoteSession === session) this.close(peer.id);
        return;
      case 'offer':
        if (!peer || peer.remoteSession !== session) {
          if (peer) this.close(peer.id);
          peer = this.open(from, session);
        }
        break;
      default:
        if (!peer || peer.remoteSession !== session) return;
    }
    const target = peer;
    const state = this.negotiation.get(target);
    if (!state) return;
    state.queue = state.queue.then(() => this.apply(target, kind, body)).catch((error) => {
      console.warn(`signalling with ${from}: ${String(error)}`);
    });
  }

  /** Closes the connection to one participant. */
  close(id: string): void {
    const peer = this.peers.get(id);
    if (!peer) return;
    this.peers.delete(id);
    peer.pc.close();
    peer.state = 'closed';
    for (const track of peer.stream.getTracks()) peer.stream.removeTrack(track);
    this.events.onPeerClosed(peer);
  }

  /** Says goodbye to everyone and closes every connection. */
  closeAll(sayBye: boolean): void {
    if (this.closed) return;
    if (sayBye) this.send('bye', undefined, { session: this.session });
    this.closed = true;
    for (const id of [...this.peers.keys()]) this.close(id);
  }

  /** Reads each connection's statistics into its `quality`. */
  async measure(): Promise<void> {
    await Promise.all([...this.peers.values()].map((peer) => this.measurePeer(peer).catch(() => undefined)));
  }

  private open(id: string, remoteSession: string): Peer {
    const pc = new RTCPeerConnection(this.config);
    const peer: Peer = {
      id,
      pc,
      stream: new MediaStream(),
      // The participant whose id sorts higher gives way when both offer at once.
      polite: this.me > id,
      remoteSession,
      state: 'new',
      quality: null,
      report: null,
    };
    const state: Negotiation = { makingOffer: false, ignoreOffer: false, settingRemoteAnswer: false, queue: Promise.resolve(), last: null };
    this.negotiation.set(peer, state);
    this.peers.set(id, peer);
    const to = id;
    const envelope = (extra: Record<string, unknown>) => ({ session: this.session, to_session: remoteSession, ...extra });

    pc.addEventListener('negotiationneeded', async () => {
      if (this.peers.get(id) !== peer) return;
      try {
        state.makingOffer = true;
        await pc.setLocalDescription();
        if (pc.localDescription) this.send('offer', to, envelope({ description: pc.localDescription.toJSON() }));
      } catch (error) {
        console.warn(`offering to ${id}: ${String(error)}`);
      } finally {
        state.makingOffer = false;
      }
    });
    pc.addEventListener('icecandidate', ({ candidate }) => {
      if (candidate && this.peers.get(id) === peer) this.send('candidate', to, envelope({ candidate: candidate.toJSON() }));
    });
    pc.addEventListener('track', ({ track }) => {
      if (!peer.stream.getTracks().includes(track)) peer.stream.addTrack(track);
      track.addEventListener('ended', () => {
        peer.stream.removeTrack(track);
        this.events.onPeerChange(peer);
      });
      this.events.onPeerChange(peer);
    });
    pc.addEventListener('connectionstatechange', () => {
      if (this.peers.get(id) !== peer) return;
      peer.state = pc.connectionState;
      // A path that failed (a network change) is looked for again; the impolite side
      // asks, so that both do not restart at once.
      if (pc.connectionState === 'failed' && !peer.polite) pc.restartIce();
      this.events.onPeerChange(peer);
    });
    this.events.onPeer(peer);
    return peer;
  }

  /** The first live transceiver of a kind. */
  private transceiverOf(peer: Peer, kind: string): RTCRtpTransceiver | undefined {
    return peer.pc.getTransceivers().find((transceiver) => transceiver.receiver.track.kind === kind && transceiver.currentDirection !== 'stopped' && transceiver.direction !== 'stopped');
  }

  /**
   * Puts this side's tracks on the connection: on the transceiver of their kind when
   * there is one (after an offer), else as new ones; with no track of a kind, a
   * receive-only transceiver, so that the other side's media still comes (a patient
   * whose browser refused the camera still sees the clinician). `initiate`: this side
   * opened the connection and creates what it offers.
   */
  private async attachLocal(peer: Peer, initiate = false): Promise<void> {
    const pc = peer.pc;
    if (pc.signalingState === 'closed') return;
    for (const kind of ['audio', 'video'] as const) {
      const track = this.local?.getTracks().find((candidate) => candidate.kind === kind) ?? null;
      const transceiver = this.transceiverOf(peer, kind);
      if (transceiver) {
        if (transceiver.sender.track !== track) await transceiver.sender.replaceTrack(track);
        // The stream id only groups the tracks on the other side (not every browser has it).
        if (track && this.local && typeof transceiver.sender.setStreams === 'function') transceiver.sender.setStreams(this.local);
        const direction: RTCRtpTransceiverDirection = track ? 'sendrecv' : 'recvonly';
        if (transceiver.direction !== direction) transceiver.direction = direction;
      } else if (track && this.local) {
        // addTrack (not addTransceiver): if the other side offers at the same time, its
        // offer takes this track's transceiver instead of adding another.
        pc.addTrack(track, this.local);
      } else if (initiate) {
        pc.addTransceiver(kind, { direction: 'recvonly' });
      }
    }
  }

  private async apply(peer: Peer, kind: SignalKind, body: Record<string, unknown>): Promise<void> {
    const state = this.negotiation.get(peer);
    const pc = peer.pc;
    if (!state || pc.signalingState === 'closed') return;
    if (kind === 'offer' || kind === 'answer') {
      const description = body.description as RTCSessionDescriptionInit | undefined;
      if (!description?.type) return;
      const readyForOffer = !state.makingOffer && (pc.signalingState === 'stable' || state.settingRemoteAnswer);
      const collision = description.type === 'offer' && !readyForOffer;
      state.ignoreOffer = !peer.polite && collision;
      if (state.ignoreOffer) return;
      state.settingRemoteAnswer = description.type === 'answer';
      try {
        // For the polite side, taking an offer in a collision rolls its own back.
        await pc.setRemoteDescription(description);
      } finally {
        state.settingRemoteAnswer = false;
      }
      if (description.type === 'offer') {
        // The offer's transceivers carry this side's tracks too.
        await this.attachLocal(peer);
        await pc.setLocalDescription();
        if (pc.localDescription) {
          this.send('answer', peer.id, { session: this.session, to_session: peer.remoteSession, description: pc.localDescription.toJSON() });
        }
      }
      return;
    }
    if (kind === 'candidate') {
      const candidate = body.candidate as RTCIceCandidateInit | undefined;
      if (!candidate) return;
      try {
        await pc.addIceCandidate(candidate);
      } catch (error) {
        // Candidates of an offer this side ignored fail to apply; that is expected.
        if (!state.ignoreOffer) throw error;
      }
      return;
    }
    if (kind === 'quality') {
      peer.report = {
        poor: body.poor === true,
        reasons: Array.isArray(body.reasons) ? body.reasons.filter((reason): reason is string => typeof reason === 'string').slice(0, 4) : [],
        camera: body.camera !== false,
        microphone: body.microphone !== false,
      };
      this.events.onPeerChange(peer);
    }
  }

  private async measurePeer(peer: Peer): Promise<void> {
    const state = this.negotiation.get(peer);
    if (!state || peer.pc.connectionState === 'closed') return;
    const reports: Record<string, unknown>[] = [];
    (await peer.pc.getStats()).forEach((report: Record<string, unknown>) => reports.push(report));
    const byId = new Map(reports.map((report) => [report.id as string, report]));
    const video = (reports.find((report) => report.type === 'inbound-rtp' && report.kind === 'video') ?? null) as Record<string, number> | null;
    let audioLost = 0;
    let audioReceived = 0;
    for (const report of reports) {
      if (report.type === 'inbound-rtp' && report.kind === 'audio') {
        audioLost += Number(report.packetsLost ?? 0);
        audioReceived += Number(report.packetsReceived ?? 0);
      }
    }
    type Pair = { currentRoundTripTime?: number; localCandidateId?: string; remoteCandidateId?: string };
    const selectedPairId = reports.find((report) => report.type === 'transport' && typeof report.selectedCandidatePairId === 'string')?.selectedCandidatePairId as string | undefined;
    const selected = ((selectedPairId ? byId.get(selectedPairId) : undefined) ??
      reports.find((report) => report.type === 'candidate-pair' && report.state === 'succeeded' && report.nominated) ??
      null) as Pair | null;
    const now = performance.now();
    const v = video;
    const framesDecoded = v ? Number(v.framesDecoded ?? 0) : 0;
    const packetsLost = (v ? Number(v.packetsLost ?? 0) : 0) + audioLost;
    const packetsReceived = (v ? Number(v.packetsReceived ?? 0) : 0) + audioReceived;
    const last = state.last;
    let lossPercent: number | null = null;
    let fps: number | null = v && typeof v.framesPerSecond === 'number' ? v.framesPerSecond : null;
    if (last) {
      const lost = packetsLost - last.packetsLost;
      const received = packetsReceived - last.packetsReceived;
      if (lost + received >= 20) lossPercent = Math.max(0, (100 * lost) / (lost + received));
      const seconds = (now - last.time) / 1000;
      if (fps === null && seconds > 0) fps = (framesDecoded - last.framesDecoded) / seconds;
    }
    state.last = { packetsLost, packetsReceived, framesDecoded, time: now };
    const rttMs = typeof selected?.currentRoundTripTime === 'number' ? Math.round(selected.currentRoundTripTime * 1000) : null;
    const candidateType = (id?: string) => (id ? ((byId.get(id)?.candidateType as string | undefined) ?? null) : null);
    const reasons: string[] = [];
    if (lossPercent !== null && lossPercent > POOR_LOSS_PERCENT) reasons.push(`packet loss ${Math.round(lossPercent)} %`);
    if (rttMs !== null && rttMs > POOR_RTT_MS) reasons.push(`delay ${rttMs} ms`);
    // A camera turned off sends (almost) no frames: that is not a poor connection.
    const cameraOn = peer.report?.camera !== false;
    if (cameraOn && fps !== null && framesDecoded > 0 && fps < POOR_FPS) reasons.push(`${Math.round(fps)} frames per second`);
    peer.quality = {
      poor: peer.state === 'connected' && reasons.length > 0,
      reasons,
      lossPercent,
      rttMs,
      fps,
      framesDecoded,
      localCandidate: candidateType(selected?.localCandidateId),
      remoteCandidate: candidateType(selected?.remoteCandidateId),
    };
    this.events.onPeerChange(peer);
  }
}
