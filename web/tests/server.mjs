// Starts the real `wardline serve` binary for the browser tests, on ephemeral loopback
// ports with TLS and a temporary data folder, and talks to its API as an admin and as
// devices would (HTTPS, trusting the server's own CA).

import { spawn } from 'node:child_process';
import { X509Certificate, createHash, createHmac } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

/**
 * Starts a server. `env`: more environment for it (e.g. a TURN server's settings,
 * `WARDLINE_TURN_URLS`, `WARDLINE_TURN_SECRET_FILE`, `WARDLINE_TURN_RELAY_ONLY`).
 */
export async function startServer({ env = {} } = {}) {
  const binary = path.resolve(here, '..', process.env.WARDLINE_BIN ?? '../target/debug/wardline');
  if (!existsSync(binary)) {
    throw new Error(`no wardline binary at ${binary}: build it (cargo build -p wardline) or set WARDLINE_BIN`);
  }
  const data = mkdtempSync(path.join(tmpdir(), 'wardline-web-'));
  const listenFile = path.join(data, 'listen.json');
  const child = spawn(
    binary,
    ['serve', '--mqtt-listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', '--data-dir', path.join(data, 'server'), '--listen-file', listenFile],
    { env: { ...process.env, RUST_LOG: 'warn', ...env }, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let exited = null;
  child.on('exit', (code, signal) => (exited = signal ?? code));
  const adminPassword = new Promise((resolve) => {
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      // The first start names the file that holds the admin's one-time password; it is
      // read from there, never printed.
      const match = /one-time password is in (.+) \(readable/.exec(line);
      if (match) resolve(readFileSync(match[1], 'utf8').trim());
    });
  });
  const deadline = Date.now() + 30_000;
  let report;
  while (!report) {
    if (exited !== null) throw new Error(`wardline exited early (${exited})`);
    if (Date.now() > deadline) throw new Error('wardline did not start within 30 s');
    try {
      report = JSON.parse(readFileSync(listenFile, 'utf8'));
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  const ca = readFileSync(report.ca_path, 'utf8');
  const port = Number(report.http.split(':').pop());
  const server = {
    url: `https://localhost:${port}`,
    ca,
    /** base64 SHA-256 of the CA's public key, for Chromium's --ignore-certificate-errors-spki-list. */
    caSpki: createHash('sha256').update(new X509Certificate(ca).publicKey.export({ type: 'spki', format: 'der' })).digest('base64'),
    adminPassword: await Promise.race([adminPassword, new Promise((_, reject) => setTimeout(() => reject(new Error('no admin password file named')), 5000))]),
    request: (method, urlPath, { token, body, headers } = {}) => request(server, method, urlPath, token, body, headers),
    /** Freezes the server (SIGSTOP): its connections stay open and nothing answers, as in a hang. */
    pause() {
      child.kill('SIGSTOP');
    },
    resume() {
      child.kill('SIGCONT');
    },
    async stop() {
      if (exited === null) {
        child.kill('SIGTERM');
        await new Promise((resolve) => {
          const timer = setTimeout(() => { child.kill('SIGKILL'); resolve(); }, 5000);
          child.on('exit', () => { clearTimeout(timer); resolve(); });
        });
      }
      rmSync(data, { recursive: true, force: true });
    },
  };
  return server;
}

function request(server, method, urlPath, token, body, extraHeaders = {}) {
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = https.request(
      `${server.url}${urlPath}`,
      {
        method,
        ca: server.ca,
        headers: {
          Accept: 'application/json',
          ...(token ? { Authorization: `Bearer ${token}` } : {}),
          ...(payload ? { 'Content-Type': 'application/json', 'Content-Length': payload.length } : {}),
          ...extraHeaders,
        },
      },
      (response) => {
        const parts = [];
        response.on('data', (part) => parts.push(part));
        response.on('end', () => {
          const text = Buffer.concat(parts).toString('utf8');
          let json = null;
          try { json = text ? JSON.parse(text) : null; } catch { json = null; }
          resolve({ status: response.statusCode, headers: response.headers, json, text });
        });
      },
    );
    req.on('error', reject);
    if (payload) req.write(payload);
    req.end();
  });
}

/** Calls the API and fails with the server's error unless the status is 2xx. */
export async function ok(server, method, urlPath, options) {
  const response = await server.request(method, urlPath, options);
  if (response.status < 200 || response.status > 299) {
    throw new Error(`${method} ${urlPath}: ${response.status} ${response.text}`);
  }
  return response.json;
}

/** A synthetic lead-II ECG at 360 Hz, as ADC counts (gain 200/mV, baseline 1024). */
export function syntheticEcg(startSeconds, count, rate = 360, heartRate = 72) {
  const beat = 60 / heartRate;
  const wave = (t, center, width, height) => height * Math.exp(-(((t - center) / width) ** 2));
  const samples = new Array(count);
  for (let i = 0; i < count; i++) {
    const t = (startSeconds + i / rate) % beat;
    const mv =
      wave(t, 0.2, 0.025, 0.15) + // P
      wave(t, 0.33, 0.008, -0.12) + // Q
      wave(t, 0.35, 0.011, 1.3) + // R
      wave(t, 0.375, 0.01, -0.3) + // S
      wave(t, 0.6, 0.05, 0.3) + // T
      0.02 * Math.sin(2 * Math.PI * 0.3 * (startSeconds + i / rate)); // breathing wander
    samples[i] = Math.round(1024 + 200 * mv);
  }
  return samples;
}

/**
 * The six-digit code of a base-32 TOTP secret for a 30-second time step (RFC 6238 with
 * HMAC-SHA-1), computed as an authenticator app would, independently of the server.
 */
export function totpCode(secret, step) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const char of secret.replace(/[\s=]/g, '').toUpperCase()) {
    const value = alphabet.indexOf(char);
    if (value < 0) throw new Error(`not base 32: ${char}`);
    bits += value.toString(2).padStart(5, '0');
  }
  const key = Buffer.from(bits.match(/.{8}/g).map((byte) => parseInt(byte, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = createHmac('sha1', key).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const value = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return String(value).padStart(6, '0');
}

/**
 * The first administrator's session, ready to work: its one-time password changed to
 * `password` and a second factor set up (administrators do nothing else before).
 * Returns the API token.
 */
export async function adminSession(server, password) {
  const { token } = await ok(server, 'POST', '/api/v1/auth/login', { body: { username: 'admin', password: server.adminPassword } });
  await ok(server, 'POST', '/api/v1/me/password', { token, body: { current_password: server.adminPassword, new_password: password } });
  server.adminPassword = password;
  const setup = await ok(server, 'POST', '/api/v1/me/second-factor', { token });
  await ok(server, 'POST', '/api/v1/me/second-factor/confirm', { token, body: { one_time_code: totpCode(setup.secret, Math.floor(Date.now() / 30_000)) } });
  return token;
}
