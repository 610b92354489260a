// Huizhen browser SDK (served as /sdk/huizhen.js). A clinic's web app can run a consultation
// call with it:
//
//   import { fetchJoinInfo, openLocalMedia, HuizhenCall } from "https://edge.example/sdk/huizhen.js";
//   const info = await fetchJoinInfo(token, "https://edge.example");
//   const stream = await openLocalMedia({ height: 720 });
//   const report = await networkReadiness(info);   // rungs that work from here, RTT, uplink, what IT should open
//   const call = await HuizhenCall.join({ url: info.node.url, certHashes: info.node.certHashes, fallbackUrl: info.node.fallbackUrl, token, stream, canvas });
//   call.on("connection-success", …); call.on("quality", (q) => show(q.summary)); call.on("ended", …);
export { HuizhenCall, videoConstraints, type CallEvents, type CallOptions, type CallStats, type Quality, type QualityLevel } from "./call.ts";
export { HuizhenError, messageFor, type ClientReason } from "./errors.ts";
export {
  fetchJoinInfo, measurePaths, missingFeatures, networkReadiness, openLocalMedia, probeNode,
  type JoinInfo, type NetworkCheck, type PathMeasurement, type ReadinessReport, type RungCheck, type UplinkMeasure,
} from "./prejoin.ts";
export { Connector, LadderError, openLadder, type LadderOptions, type LadderTarget, type OpenedTransport, type Rung } from "./connect.ts";
export { WebSocketTransport } from "./fallback-transport.ts";
export { VIDEO_CODECS, pickVideoCodec } from "./video.ts";
export type { StillImage } from "./still.ts";
export type { Member } from "./session.ts";
