// Chromium APIs the DOM lib of this TypeScript does not declare yet (Insertable Streams for
// MediaStreamTrack). Only the parts the SDK uses.

interface MediaStreamTrackProcessorInit {
  track: MediaStreamTrack;
  maxBufferSize?: number;
}

interface MediaStreamTrackProcessor<T = VideoFrame | AudioData> {
  readonly readable: ReadableStream<T>;
}

declare var MediaStreamTrackProcessor: {
  prototype: MediaStreamTrackProcessor;
  new <T = VideoFrame | AudioData>(init: MediaStreamTrackProcessorInit): MediaStreamTrackProcessor<T>;
} | undefined;
