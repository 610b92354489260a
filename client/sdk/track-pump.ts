// Reading a MediaStreamTrackProcessor: every frame is closed after its handler (WebCodecs
// frames hold decoder/camera memory until closed), and the loop ends when the track ends or a
// newer reader has replaced this one (camera switch).

export async function pumpTrack<T extends { close(): void }>(
  reader: ReadableStreamDefaultReader<T>,
  isCurrent: () => boolean,
  handle: (item: T) => void | Promise<void>,
  onError: (err: Error) => void,
): Promise<void> {
  for (;;) {
    let r: ReadableStreamReadResult<T>;
    try {
      r = await reader.read();
    } catch {
      return;
    }
    if (r.done || !isCurrent()) {
      r.value?.close();
      return;
    }
    const item = r.value;
    try {
      await handle(item);
    } catch (err) {
      onError(err instanceof Error ? err : new Error(String(err)));
    } finally {
      item.close();
    }
  }
}
