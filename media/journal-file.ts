// The event journal's file on Deno (media/journal.ts holds the logic): `<dir>/events.jsonl`,
// mode 600 in a mode-700 directory, held by one node process at a time (an advisory lock on
// `<dir>/lock`, released by the OS however the process ends). Thin adapter: typed here so
// `tsc` with Node's types needs no Deno declarations.
import type { JournalStore } from "./journal.ts";

interface FsFileLike {
  write(p: Uint8Array): Promise<number>;
  syncData(): Promise<void>;
  tryLock(exclusive?: boolean): Promise<boolean>;
  close(): void;
}
interface DenoFs {
  mkdir(path: string, opts?: { recursive?: boolean; mode?: number }): Promise<void>;
  open(path: string, opts: { read?: boolean; write?: boolean; append?: boolean; create?: boolean; truncate?: boolean; mode?: number }): Promise<FsFileLike>;
  readTextFile(path: string): Promise<string>;
  rename(from: string, to: string): Promise<void>;
  errors: { NotFound: new (...a: never[]) => Error };
}

function denoFs(): DenoFs {
  const d = (globalThis as { Deno?: DenoFs }).Deno;
  if (!d) throw new Error("the event journal's file needs Deno");
  return d;
}

export class JournalFileError extends Error {
  override name = "JournalFileError";
}

const FILE = "events.jsonl";

async function writeAll(f: FsFileLike, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await f.write(bytes.subarray(off));
}

export class JournalFile implements JournalStore {
  private constructor(
    private readonly fs: DenoFs,
    readonly dir: string,
    private readonly lock: FsFileLike,
    private file: FsFileLike,
  ) {}

  /** Opens (creating) `dir` and its journal; refuses a directory another live process holds. */
  static async open(dir: string): Promise<JournalFile> {
    const fs = denoFs();
    try {
      await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw new JournalFileError(`cannot create ${dir}: ${(err as Error)?.message ?? err}`);
    }
    let lock: FsFileLike;
    try {
      lock = await fs.open(`${dir}/lock`, { write: true, create: true, mode: 0o600 });
    } catch (err) {
      throw new JournalFileError(`cannot write in ${dir}: ${(err as Error)?.message ?? err}`);
    }
    if (!(await lock.tryLock(true))) {
      lock.close();
      throw new JournalFileError(`${dir} is in use by another media node process (one state directory per node)`);
    }
    const file = await fs.open(`${dir}/${FILE}`, { write: true, append: true, create: true, mode: 0o600 });
    return new JournalFile(fs, dir, lock, file);
  }

  get path(): string {
    return `${this.dir}/${FILE}`;
  }

  async read(): Promise<string> {
    try {
      return await this.fs.readTextFile(this.path);
    } catch (err) {
      if (err instanceof this.fs.errors.NotFound) return "";
      throw err;
    }
  }

  async append(text: string, sync: boolean): Promise<void> {
    await writeAll(this.file, new TextEncoder().encode(text));
    if (sync) await this.file.syncData();
  }

  async replace(text: string): Promise<void> {
    const tmp = `${this.path}.tmp`;
    const f = await this.fs.open(tmp, { write: true, create: true, truncate: true, mode: 0o600 });
    try {
      await writeAll(f, new TextEncoder().encode(text));
      await f.syncData();
    } finally {
      f.close();
    }
    await this.fs.rename(tmp, this.path);
    // The rename itself reaches the disk with the directory's sync.
    try {
      const d = await this.fs.open(this.dir, { read: true });
      try { await d.syncData(); } finally { d.close(); }
    } catch { /* not every platform syncs a directory handle; the rename is still atomic */ }
    this.file.close();
    this.file = await this.fs.open(this.path, { write: true, append: true, create: true, mode: 0o600 });
  }

  async close(): Promise<void> {
    this.file.close();
    this.lock.close(); // closing releases the lock
  }
}
