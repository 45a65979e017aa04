/**
 * The spool directory's small files: the lock naming the owner process, the cursor naming the first record not yet
 * confirmed, and the list of segment files.
 */
import {
  closeSync,
  existsSync,
  fsyncSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import { parseSegmentName } from "./format.js";

const CURSOR_FILE = "cursor";
const LOCK_FILE = "lock";
const CURSOR_MAGIC = 0x5350_4331; // "SPC1"

/** Makes a file created or renamed in `dir` durable. */
export function fsyncDir(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** The seq the cursor file names (the first not done), or undefined when it is missing or damaged. */
export function readCursor(dir: string): number | undefined {
  const path = join(dir, CURSOR_FILE);
  if (!existsSync(path)) return undefined;
  const b = readFileSync(path);
  if (
    b.length !== 16 ||
    b.readUInt32BE(12) !== CURSOR_MAGIC ||
    b.readUInt32BE(8) !== crc32(b.subarray(0, 8))
  ) {
    return undefined;
  }
  return Number(b.readBigUInt64BE(0));
}

/**
 * The cursor file, rewritten at most every `everyMs` (unless forced) and only when it changed. No fsync: a cursor
 * lost in a power cut is an older one, and older only means readings sent again (the store's key absorbs them). The
 * rename makes a process crash leave the old cursor or the new one, never half.
 */
export class CursorFile {
  #written = -1;
  #at = 0;

  constructor(
    private readonly dir: string,
    private readonly everyMs: number,
  ) {}

  write(seq: number, force: boolean): void {
    if (seq === this.#written) return;
    if (!force && Date.now() - this.#at < this.everyMs) return;
    const b = Buffer.alloc(16);
    b.writeBigUInt64BE(BigInt(seq), 0);
    b.writeUInt32BE(crc32(b.subarray(0, 8)), 8);
    b.writeUInt32BE(CURSOR_MAGIC, 12);
    const tmp = join(this.dir, `${CURSOR_FILE}.tmp`);
    writeFileSync(tmp, b);
    renameSync(tmp, join(this.dir, CURSOR_FILE));
    this.#written = seq;
    this.#at = Date.now();
  }
}

/** The segment files of a spool directory, oldest first. */
export function listSegments(dir: string): { first: number; path: string }[] {
  return readdirSync(dir)
    .map((name) => ({ first: parseSegmentName(name), path: join(dir, name) }))
    .filter((s): s is { first: number; path: string } => s.first !== undefined)
    .sort((a, b) => a.first - b.first);
}

/**
 * Claims the directory for this process: two gateways appending to one spool would interleave their records. The
 * lock file names the owner's pid; a lock whose process is gone (killed) is taken over. Best effort on one host: a
 * pid is not unique across containers sharing a volume.
 */
export function takeLock(dir: string): void {
  const path = join(dir, LOCK_FILE);
  if (existsSync(path)) {
    const owner = Number(readFileSync(path, "utf8").trim());
    if (Number.isSafeInteger(owner) && owner > 0 && owner !== process.pid && processAlive(owner)) {
      throw new Error(
        `spool ${dir} is in use by process ${owner} (another gateway?); give each gateway its own SPOOL_PATH`,
      );
    }
  }
  writeFileSync(path, `${process.pid}\n`);
}

export function releaseLock(dir: string): void {
  rmSync(join(dir, LOCK_FILE), { force: true });
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
