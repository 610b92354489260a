// The consultation page (/join#token=…): checks, waiting room, call, and a clear message for
// every way it can fail. The token stays in memory (and this tab's sessionStorage for a
// reload); it is taken out of the address bar at once and never sent anywhere but the edge's
// /v1/join and the media node.
import { digestHex, HuizhenCall, type CallStats, type Quality } from "../sdk/call.ts";
import { HuizhenError, messageFor } from "../sdk/errors.ts";
import { fetchJoinInfo, measurePaths, missingFeatures, networkReadiness, openLocalMedia, type JoinInfo, type PathMeasurement, type ReadinessReport } from "../sdk/prejoin.ts";
import { Connector, type OpenedTransport, type Rung } from "../sdk/connect.ts";
import { WebSocketTransport } from "../sdk/fallback-transport.ts";

type State = "loading" | "check" | "joining" | "waiting" | "call" | "reconnecting" | "ended" | "error";

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const SCREENS = ["loading", "check", "waiting", "call", "message"];

const ROLE_LABEL: Record<string, string> = { requester: "Referring clinic", consultant: "Consulting specialist" };
const KIND_LABEL: Record<string, string> = { doctor: "doctor", patient: "patient terminal", specialist: "specialist", other: "terminal" };

interface Hooks {
  state: State;
  reason?: string;
  message?: string;
  events: { at: number; type: string; detail?: unknown }[];
  info?: { role: string; hasReason: boolean };
  stats(): CallStats | undefined;
  quality(): Quality | undefined;
  latencySamples(): number[];
  resetLatencySamples(): void;
  requestStill(): number | undefined;
  stills: { id: number; bytes: number; width: number; height: number; mime: string; sha256: string }[];
  stillsSent: { id: number; bytes: number; sha256: string }[];
  leave(): Promise<void>;
  /** The media node the call is on (changes when it moves). */
  nodeId?: string;
  framesDecoded(): number;
  /** The connectivity ladder's rung of the current session (changes when the call moves). */
  transport?: { rung: Rung; url: string; ms: number; quicError?: string; badge: string };
  /** The pre-join network readiness report. */
  readiness?: ReadinessReport;
}

const hooks: Hooks = {
  state: "loading",
  events: [],
  stats: () => call?.stats(),
  quality: () => lastQuality,
  latencySamples: () => call?.latencySamples() ?? [],
  resetLatencySamples: () => call?.resetLatencySamples(),
  requestStill: () => call?.requestStill(),
  stills: [],
  stillsSent: [],
  leave: () => leave(),
  framesDecoded: () => call?.framesDecoded ?? 0,
};
// Test and support hook; not part of the UI.
(window as unknown as { __huizhen: Hooks }).__huizhen = hooks;

let token = "";
let info: JoinInfo | undefined;
let stream: MediaStream | undefined;
let call: HuizhenCall | undefined;
let lastQuality: Quality | undefined;
let successTimer: ReturnType<typeof setTimeout> | undefined;
let meterStop: (() => void) | undefined;
/** The pre-join path measurements, sent to the edge with a move. */
let measurements: PathMeasurement[] = [];
const params = new URLSearchParams(location.search);
let height = params.get("height") === "1080" ? 1080 : 720;

function record(type: string, detail?: unknown) {
  hooks.events.push({ at: Date.now(), type, detail });
}

function setState(s: State) {
  hooks.state = s;
  record(`state:${s}`);
  const screen = s === "joining" ? "check" : s === "reconnecting" ? "call" : s === "ended" || s === "error" ? "message" : s;
  $("reconnecting").hidden = s !== "reconnecting";
  for (const name of SCREENS) $(`screen-${name}`).hidden = name !== screen;
}

function showMessage(kind: "error" | "ended", title: string, text: string, retry?: () => void) {
  hooks.message = text;
  const icon = $("message-icon");
  icon.textContent = kind === "ended" ? "✓" : "!";
  icon.classList.toggle("ended", kind === "ended");
  $("message-title").textContent = title;
  $("message-text").textContent = text;
  const btn = $<HTMLButtonElement>("message-retry");
  btn.hidden = !retry;
  btn.onclick = retry ? () => retry() : null;
  setState(kind);
}

const TITLES: Record<string, string> = {
  tokenExpired: "This invitation has expired",
  tokenInvalid: "This invitation link is not valid",
  tokenInUse: "This invitation is already in use",
  consultationEnded: "The consultation has ended",
  revoked: "Access was withdrawn",
  unsupportedBrowser: "This browser cannot join",
  cameraDenied: "Camera or microphone blocked",
  cameraMissing: "No camera or microphone",
  cameraBusy: "Camera in use",
  nodeUnreachable: "The media server cannot be reached",
  edgeUnreachable: "The consultation service cannot be reached",
};

function fail(err: unknown) {
  const e = err instanceof HuizhenError ? err : new HuizhenError("internal", err instanceof Error ? err.message : String(err));
  hooks.reason = e.reason;
  record("error", e.reason);
  stopMedia();
  const retry = ["cameraDenied", "cameraMissing", "cameraBusy", "nodeUnreachable", "edgeUnreachable", "internal", "timeout", "nodeDraining"].includes(e.reason)
    ? () => location.reload()
    : undefined;
  const extra = e.reason === "tokenExpired" || e.reason === "tokenInvalid" || e.reason === "tokenInUse"
    ? " Ask the clinic that invited you for a new link."
    : "";
  showMessage("error", TITLES[e.reason] ?? "Something went wrong", e.message + extra, retry);
}

function readToken(): string {
  const frag = new URLSearchParams(location.hash.slice(1));
  const fromHash = frag.get("token");
  if (fromHash) {
    // Kept for a reload of this tab; not in frames (the demo shows two terminals in one tab).
    if (window.top === window) {
      try { sessionStorage.setItem("huizhen.token", fromHash); } catch { /* storage off */ }
    }
    history.replaceState(null, "", location.pathname + location.search);
    return fromHash;
  }
  if (window.top !== window) return "";
  try { return sessionStorage.getItem("huizhen.token") ?? ""; } catch { return ""; }
}

function renderContext(el: HTMLElement, i: JoinInfo) {
  el.replaceChildren();
  const dl = document.createElement("dl");
  const add = (k: string, v: string | undefined) => {
    if (!v) return;
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = v;
    dl.append(dt, dd);
  };
  add("Reason for consultation", i.reason);
  add("You join as", `${ROLE_LABEL[i.role] ?? i.role} — ${i.terminal.label}`);
  if (i.peer) add("With", `${i.peer.label} (${KIND_LABEL[i.peer.kind] ?? i.peer.kind})`);
  add("Reference", i.consultationId);
  el.append(dl);
}

function check(id: string, state: "wait" | "ok" | "warn" | "fail", text: string, note?: string) {
  const li = $(id);
  li.dataset.state = state;
  li.textContent = text;
  if (note) {
    const s = document.createElement("small");
    s.textContent = note;
    li.append(s);
  }
}

function stopMedia() {
  meterStop?.();
  meterStop = undefined;
  for (const t of stream?.getTracks() ?? []) t.stop();
}

async function fillDevices() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  const current = stream?.getVideoTracks()[0]?.getSettings().deviceId;
  const currentMic = stream?.getAudioTracks()[0]?.getSettings().deviceId;
  const fill = (sel: HTMLSelectElement, kind: MediaDeviceKind, selected?: string) => {
    sel.replaceChildren();
    devices.filter((d) => d.kind === kind).forEach((d, n) => {
      const o = new Option(d.label || `${kind === "videoinput" ? "Camera" : "Microphone"} ${n + 1}`, d.deviceId);
      o.selected = d.deviceId === selected;
      sel.append(o);
    });
  };
  fill($("camera-select"), "videoinput", current);
  fill($("mic-select"), "audioinput", currentMic);
  fill($("call-camera"), "videoinput", current);
}

function startMeter(s: MediaStream) {
  meterStop?.();
  const track = s.getAudioTracks()[0];
  if (!track) return;
  const ctx = new AudioContext();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 512;
  ctx.createMediaStreamSource(new MediaStream([track])).connect(analyser);
  const buf = new Float32Array(analyser.fftSize);
  const bar = $("mic-level");
  const timer = setInterval(() => {
    analyser.getFloatTimeDomainData(buf);
    let sum = 0;
    for (const v of buf) sum += v * v;
    bar.style.width = `${Math.min(100, Math.sqrt(sum / buf.length) * 400)}%`;
  }, 100);
  meterStop = () => {
    clearInterval(timer);
    void ctx.close();
  };
}

async function openMedia() {
  const prev = stream;
  stream = undefined;
  meterStop?.();
  for (const t of prev?.getTracks() ?? []) t.stop();
  check("chk-camera", "wait", "Camera and microphone");
  stream = await openLocalMedia({
    videoDeviceId: $<HTMLSelectElement>("camera-select").value || undefined,
    audioDeviceId: $<HTMLSelectElement>("mic-select").value || undefined,
    height,
  });
  $<HTMLVideoElement>("preview").srcObject = stream;
  const s = stream.getVideoTracks()[0]?.getSettings();
  check("chk-camera", "ok", "Camera and microphone", s?.width ? `camera ${s.width}×${s.height}${s.frameRate ? ` at ${Math.round(s.frameRate)} fps` : ""}` : undefined);
  startMeter(stream);
}

async function networkCheck(i: JoinInfo) {
  check("chk-network", "wait", "Connection to the media server", "checking…");
  const r = await networkReadiness(i);
  hooks.readiness = r;
  record("network-check", { best: r.best, rungs: r.rungs });
  $("readiness-report").textContent = r.text;
  $("readiness").hidden = false;
  $("readiness-copy").onclick = (e) => {
    e.preventDefault();
    void navigator.clipboard?.writeText(r.text).then(() => toast("Network report copied."), () => toast("Select the report and copy it."));
  };
  const path = r.rttMs !== undefined ? `; round trip ${Math.round(r.rttMs)} ms, jitter ${r.jitterMs!.toFixed(1)} ms, loss ${(r.loss! * 100).toFixed(1)}%` : "";
  if (r.best === "quic-datagrams") {
    // The candidates too: their numbers go with a move to another node.
    measurements = await measurePaths(i).catch(() => []);
    record("path-measurements", measurements);
    check("chk-network", "ok", "Connection to the media server", `reached over QUIC in ${Math.round(r.rungs.quicDatagrams.handshakeMs ?? 0)} ms${path}`);
  } else if (r.best === "quic-streams") {
    check("chk-network", "warn", "Connection to the media server", `QUIC datagrams are blocked here: the call will use QUIC streams${path}. See the network report below.`);
    $<HTMLDetailsElement>("readiness").open = true;
  } else if (r.best === "websocket") {
    check("chk-network", "warn", "Connection to the media server", `UDP is blocked here: the call will use the TCP fallback${path}. See the network report below.`);
    $<HTMLDetailsElement>("readiness").open = true;
  } else {
    check("chk-network", "fail", "Connection to the media server", "not reachable from this network — see the network report below");
    $<HTMLDetailsElement>("readiness").open = true;
  }
  return r.best !== "none";
}

function showTransport(o: OpenedTransport) {
  const badge = o.rung === "websocket" ? "Connected over TCP fallback (UDP blocked)" : o.rung === "quic-streams" ? "Connected over QUIC streams (datagrams blocked)" : "Connected over QUIC";
  hooks.transport = { rung: o.rung, url: o.url, ms: Math.round(o.ms), ...(o.quicError ? { quicError: o.quicError } : {}), badge };
  record("transport", { rung: o.rung, ms: Math.round(o.ms) });
  const el = $("transport-badge");
  el.textContent = o.rung === "quic" ? "" : badge;
  el.title = o.rung === "websocket"
    ? `QUIC could not be used (${o.quicError ?? "blocked"}); media runs over a WebSocket on TCP.`
    : o.rung === "quic-streams" ? "This network drops QUIC datagrams; media runs on QUIC streams (a lost packet delays what follows it)." : "";
  el.hidden = o.rung === "quic";
}

async function main() {
  setState("loading");
  token = readToken();
  if (!token) {
    return fail(new HuizhenError("tokenInvalid", "This page needs an invitation link with a consultation token."));
  }
  const missing = missingFeatures();
  if (missing.length) {
    return fail(new HuizhenError("unsupportedBrowser", `${messageFor("unsupportedBrowser")} Missing here: ${missing.join(", ")}.`));
  }
  try {
    info = await fetchJoinInfo(token);
  } catch (err) {
    return fail(err);
  }
  hooks.info = { role: info.role, hasReason: !!info.reason };
  hooks.nodeId = info.node.id;
  const badge = $("role-badge");
  badge.hidden = false;
  badge.textContent = ROLE_LABEL[info.role] ?? info.role;
  renderContext($("context"), info);
  renderContext($("call-context"), info);
  $("waiting-peer").textContent = info.peer?.label ?? "the other participant";
  $("peer-name").textContent = info.peer?.label ?? "";
  $<HTMLSelectElement>("quality-select").value = String(height);
  setState("check");
  check("chk-browser", "ok", "Browser", "WebTransport and WebCodecs available");

  try {
    await openMedia();
    await fillDevices();
  } catch (err) {
    return fail(err);
  }
  const reopen = () => openMedia().catch(fail);
  $("camera-select").onchange = reopen;
  $("mic-select").onchange = reopen;
  $<HTMLSelectElement>("quality-select").onchange = (e) => {
    height = Number((e.target as HTMLSelectElement).value) >= 1080 ? 1080 : 720;
    void reopen();
  };
  const reachable = await networkCheck(info);
  const btn = $<HTMLButtonElement>("join-btn");
  btn.disabled = false;
  if (!reachable) btn.textContent = "Try to join anyway";
  btn.onclick = () => void join();
}

async function join() {
  if (!info || !stream) return;
  const btn = $<HTMLButtonElement>("join-btn");
  btn.disabled = true;
  btn.textContent = "Joining…";
  setState("joining");
  const r = hooks.readiness;
  // Created inside the click so the browser lets it play sound.
  const audioContext = new AudioContext({ latencyHint: "interactive", sampleRate: 48000 });
  void audioContext.resume();
  meterStop?.();
  try {
    call = await HuizhenCall.join({
      url: info.node.url,
      certHashes: info.node.certHashes,
      token,
      stream,
      canvas: $<HTMLCanvasElement>("remote"),
      audioContext,
      codec: params.get("codec") ?? undefined,
      cpuAdaptation: params.get("adapt") !== "0",
      // `?simulcast=0`: one layer only (e.g. to measure one resolution end to end).
      simulcast: params.get("simulcast") !== "0",
      fallbackUrl: info.node.fallbackUrl,
      connector: new Connector({
        fallback: WebSocketTransport,
        // QUIC opened but its datagrams never came back: media rides QUIC's streams instead.
        datagramsBlocked: !!r && r.rungs.quicStreams.ok && !r.rungs.quicDatagrams.ok,
        // The check just found QUIC blocked: still try it, but race the fallback from the start.
        ...(r && !r.rungs.quicStreams.ok && r.rungs.websocket.ok ? { headStartMs: 0 } : {}),
        onOpened: showTransport,
      }),
      failover: {
        consultationId: info.consultationId,
        nodeId: info.node.id,
        // The pre-join numbers: probing again would wait on the dead node and delay the move.
        measure: async () => measurements.map(({ nodeId, rttMs, jitterMs, loss }) => ({ nodeId, rttMs, jitterMs, loss })),
      },
    });
  } catch (err) {
    void audioContext.close();
    const e = err instanceof HuizhenError ? err : new HuizhenError("nodeUnreachable", `${messageFor("nodeUnreachable")} (${err instanceof Error ? err.message : String(err)})`);
    return fail(e);
  }
  $<HTMLVideoElement>("self").srcObject = stream;
  $<HTMLVideoElement>("waiting-self").srcObject = stream;
  wireCall(call);
  if (!call.connected) setState("waiting");
}

function toast(text: string, ms = 4000) {
  const t = $("toast");
  t.textContent = text;
  t.hidden = false;
  setTimeout(() => { if (t.textContent === text) t.hidden = true; }, ms);
}

function wireCall(c: HuizhenCall) {
  c.on("joined", (j) => record("joined", { slot: j.self.slot, members: j.members.length }));
  c.on("connection-success", (e) => {
    record("connection-success", { members: e.members.length });
    setState("call");
    const s = $("success");
    $("success-text").textContent = `${info?.peer?.label ?? "The other participant"} is connected. You can see and hear each other.`;
    s.hidden = false;
    clearTimeout(successTimer);
    successTimer = setTimeout(() => { s.hidden = true; }, 6000);
  });
  c.on("peer-joined", (e) => record("peer-joined", { slot: e.member.slot }));
  // A move while alone in the room returns to the waiting room, not to "reconnecting".
  let beforeMove: State = "call";
  c.on("reconnecting", (e) => {
    record("reconnecting", e);
    if (hooks.state !== "reconnecting") beforeMove = hooks.state;
    setState("reconnecting");
  });
  c.on("moved", (e) => {
    record("moved", e);
    hooks.nodeId = e.to;
    if (!c.connected) setState(beforeMove === "waiting" ? "waiting" : "reconnecting");
  });
  c.on("resumed", (e) => {
    record("resumed", { members: e.members.length });
    setState("call");
  });
  c.on("peer-left", (e) => {
    record("peer-left", { slot: e.member.slot, reason: e.reason });
    $("waiting-note").textContent = `${info?.peer?.label ?? "The other participant"} left the consultation. You can wait here in case they rejoin, or leave.`;
    setState("waiting");
  });
  c.on("quality", (q) => {
    lastQuality = q;
    const el = $("quality");
    el.dataset.level = q.level;
    $("quality-text").textContent = q.summary;
  });
  c.on("stats", (s) => renderDetails(s));
  c.on("peer-media", (m) => {
    record("peer-media", m);
    const who = info?.peer?.label ?? "The other participant";
    $("remote-placeholder").hidden = m.camera;
    $("remote-placeholder").textContent = `${who} turned the camera off`;
    $("peer-name").textContent = `${info?.peer?.label ?? ""}${m.mic ? "" : " (microphone off)"}`;
  });
  c.on("still-requested", () => toast("The other side asked for a still of your camera; sending it now."));
  c.on("still-sent", (s) => hooks.stillsSent.push({ id: s.id, bytes: s.bytes, sha256: s.sha256 }));
  c.on("still-sent", (s) => toast(`Still sent (${s.width}×${s.height}, ${formatBytes(s.bytes)}).`));
  c.on("still-progress", (p) => {
    $("still-panel").hidden = false;
    const bar = $<HTMLProgressElement>("still-progress");
    bar.max = p.total;
    bar.value = p.received;
    $("still-status").textContent = `Receiving ${formatBytes(p.received)} of ${formatBytes(p.total)}…`;
  });
  c.on("still", async (img) => {
    hooks.stills.push({ id: img.id, bytes: img.bytes, width: img.width, height: img.height, mime: img.mime, sha256: await digestHex(img.blob) });
    record("still", { id: img.id, bytes: img.bytes });
    const url = URL.createObjectURL(img.blob);
    const el = $<HTMLImageElement>("still-img");
    el.src = url;
    el.hidden = false;
    $("still-status").textContent = `${img.width}×${img.height}, ${formatBytes(img.bytes)}, lossless (${img.mime.replace("image/", "").toUpperCase()})`;
    const save = $<HTMLAnchorElement>("still-save");
    save.href = url;
    save.download = `still-${new Date().toISOString().replace(/[:.]/g, "-")}.${img.mime === "image/png" ? "png" : "jpg"}`;
    save.hidden = false;
  });
  c.on("error", (e) => {
    record("call-error", e.reason);
    toast(e.message, 6000);
  });
  c.on("ended", ({ reason }) => {
    record("ended", reason);
    stopMedia();
    call = undefined;
    if (reason === "normal") showMessage("ended", "You left the consultation", "You can close this window.");
    else if (reason === "consultationEnded") showMessage("ended", "The consultation has ended", messageFor(reason));
    else {
      hooks.reason = reason;
      showMessage("error", TITLES[reason] ?? "The call was interrupted", messageFor(reason), ["timeout", "internal", "nodeDraining"].includes(reason) ? () => location.reload() : undefined);
    }
  });

  const mic = $<HTMLButtonElement>("mic-btn");
  mic.onclick = () => {
    c.setMicrophoneEnabled(!c.micEnabled);
    mic.setAttribute("aria-pressed", String(!c.micEnabled));
    mic.textContent = c.micEnabled ? "Mute" : "Unmute";
  };
  const cam = $<HTMLButtonElement>("cam-btn");
  cam.onclick = () => {
    c.setCameraEnabled(!c.cameraEnabled);
    cam.setAttribute("aria-pressed", String(!c.cameraEnabled));
    cam.textContent = c.cameraEnabled ? "Stop camera" : "Start camera";
  };
  $<HTMLSelectElement>("call-camera").onchange = (e) => {
    c.switchCamera((e.target as HTMLSelectElement).value, height).catch((err) => toast(`Could not switch camera: ${err.message}`));
  };
  $("still-btn").onclick = () => {
    $("still-panel").hidden = false;
    $<HTMLImageElement>("still-img").hidden = true;
    $("still-save").hidden = true;
    $<HTMLProgressElement>("still-progress").value = 0;
    $("still-status").textContent = "Asking the other side for a full-resolution still…";
    c.requestStill();
  };
  $("still-close").onclick = () => { $("still-panel").hidden = true; };
  $("leave-btn").onclick = () => void leave();
  $("waiting-leave").onclick = () => void leave();
}

async function leave() {
  if (call) await call.leave();
  else {
    stopMedia();
    showMessage("ended", "You left the consultation", "You can close this window.");
  }
}

function formatBytes(n: number): string {
  if (n > 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MB`;
  return `${Math.round(n / 1024)} KB`;
}

function renderDetails(s: CallStats) {
  const rows: [string, string][] = [
    ["Receiving", s.recv.height ? `${s.recv.width}×${s.recv.height}, ${Math.round(s.recv.fps)} fps` : "—"],
    ["Behind live", s.recv.latencyMs !== undefined ? `${Math.round(s.recv.latencyMs)} ms` : "—"],
    ["Loss", `${s.recv.lossPct.toFixed(1)}%`],
    ["Round trip", s.rttMs !== undefined ? `${Math.round(s.rttMs)} ms` : "—"],
    ["Buffer", `${Math.round(s.recv.jitterBufferMs)} ms`],
    ["Incoming", `${((s.recv.videoKbps + s.recv.audioKbps) / 1000).toFixed(1)} Mbit/s`],
    ["Sending", s.send.height ? `${s.send.width}×${s.send.height}, ${Math.round(s.send.fps)} fps, ${(s.send.videoKbps / 1000).toFixed(1)} Mbit/s` : "—"],
    ["Codec", s.send.codec ? s.send.codec.split(".")[0]!.toUpperCase().replace("AVC1", "H.264").replace("VP09", "VP9").replace("AV01", "AV1") : "—"],
  ];
  const dl = $("details");
  dl.replaceChildren(...rows.flatMap(([k, v]) => {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = v;
    return [dt, dd];
  }));
}

main().catch(fail);
