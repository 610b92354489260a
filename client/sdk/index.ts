// Huizhen browser SDK (served as /sdk/huizhen.js). A clinic's web app can run a consultation
// call with it:
//
//   import { fetchJoinInfo, openLocalMedia, HuizhenCall } from "https://edge.example/sdk/huizhen.js";
//   const info = await fetchJoinInfo(token, "https://edge.example");
//   const stream = await openLocalMedia({ height: 720 });
//   const call = await HuizhenCall.join({ url: info.node.url, certHashes: info.node.certHashes, token, stream, canvas });
//   call.on("connection-success", …); call.on("quality", (q) => show(q.summary)); call.on("ended", …);
export { HuizhenCall, videoConstraints, type CallEvents, type CallOptions, type CallStats, type Quality, type QualityLevel } from "./call.ts";
export { HuizhenError, messageFor, type ClientReason } from "./errors.ts";
export { fetchJoinInfo, measurePaths, missingFeatures, openLocalMedia, probeNode, type JoinInfo, type NetworkCheck, type PathMeasurement } from "./prejoin.ts";
export { VIDEO_CODECS, pickVideoCodec } from "./video.ts";
export type { StillImage } from "./still.ts";
export type { Member } from "./session.ts";
