// followStream: a whole stream read from its first message for as long as the reader runs, and
// read again from the first whenever it ends. The case that found it: nats.js's ordered consumer,
// its stream made again (sequence back at 1), carried on at the old stream's next sequence and
// skipped every message below it.
import { rm, stat, truncate } from "node:fs/promises";
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager, jetstream, type JetStreamManager, type JsMsg } from "@nats-io/jetstream";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startNatsServer, type NatsServerHandle } from "../../src/infra/nats-launcher.ts";
import { followStream, type FollowStreamOptions } from "../../src/nats/follow-stream.ts";
import { until } from "../gateway/client-support.ts";

let server: NatsServerHandle;
let nc: NatsConnection;
let jsm: JetStreamManager;
const STREAM = "FOLLOW_T";
const config = { name: STREAM, subjects: ["ft.>"] };

beforeAll(async () => {
  server = await startNatsServer();
  nc = await connect({ servers: server.url });
  jsm = await jetstreamManager(nc);
});

afterAll(async () => {
  await nc?.close().catch(() => undefined);
  await server?.stop();
});

interface Reader {
  seen: { seq: number; body: string; read: number }[];
  begins: number[];
  ends: number;
  warnings: string[];
  stop(): Promise<void>;
}

const readers: Reader[] = [];
afterEach(async () => {
  for (const r of readers.splice(0)) await r.stop();
  await jsm.streams.delete(STREAM).catch(() => undefined);
});

/** Start a reader; `seen` has every message with the read (0, 1, …) that delivered it. */
function follow(extra: Partial<FollowStreamOptions> = {}): Reader {
  const ac = new AbortController();
  const r: Reader = { seen: [], begins: [], ends: 0, warnings: [], stop: () => Promise.resolve() };
  const done = followStream(nc, jetstream(nc), jsm, {
    stream: STREAM,
    what: "test feed",
    begin: (lastSeq) => {
      r.begins.push(lastSeq);
      const read = r.begins.length - 1;
      return (m: JsMsg) => r.seen.push({ seq: m.seq, body: m.string(), read });
    },
    ended: () => r.ends++,
    onWarning: (w) => r.warnings.push(w),
    signal: ac.signal,
    ...extra,
  });
  r.stop = async () => {
    ac.abort();
    await done;
  };
  readers.push(r);
  return r;
}

async function publish(prefix: string, n: number): Promise<void> {
  const js = jetstream(nc);
  for (let i = 0; i < n; i++) await js.publish(`ft.${prefix}`, `${prefix}-${i}`);
}

const bodies = (r: Reader, read: number) => r.seen.filter((s) => s.read === read).map((s) => s.body);

describe("followStream", () => {
  it("reads the stream from its first message and keeps following it; begin learns where it stood", async () => {
    await jsm.streams.add(config);
    await publish("a", 5);
    const r = follow();
    await until(() => r.seen.length === 5);
    await publish("b", 3);
    await until(() => r.seen.length === 8);
    expect(r.begins).toEqual([5]);
    expect(bodies(r, 0)).toEqual(["a-0", "a-1", "a-2", "a-3", "a-4", "b-0", "b-1", "b-2"]);
    expect(r.warnings).toEqual([]);
  });

  const ways = [
    { how: "", advisories: true, abortOnMissingResource: true },
    { how: " (told by the advisory alone)", advisories: true, abortOnMissingResource: false },
    { how: " (told by the read's notices and the stream's creation time alone)", advisories: false, abortOnMissingResource: false },
  ];
  for (const { how, advisories, abortOnMissingResource } of ways) {
    it(`a stream made again under the read (sequence back at 1) is read again from its first message${how}`, { timeout: 60_000 }, async () => {
      await jsm.streams.add(config);
      await publish("old", 300);
      const r = follow({ advisories, abortOnMissingResource, expiresMs: 2_000 });
      await until(() => r.seen.length === 300);
      await jsm.streams.delete(STREAM);
      await jsm.streams.add(config);
      await publish("new", 20); // seq 1..20: below where the old read stood
      await until(() => bodies(r, r.begins.length - 1).length === 20, 30_000);
      expect(r.begins.length).toBeGreaterThanOrEqual(2);
      expect(bodies(r, r.begins.length - 1)).toEqual(Array.from({ length: 20 }, (_, i) => `new-${i}`));
      expect(r.ends).toBe(r.begins.length - 1);
      expect(r.warnings.some((w) => w.includes("test feed ended"))).toBe(true);
    });
  }

  it("the read on the old stream hands over nothing from the new one (400 messages past the old position)", { timeout: 60_000 }, async () => {
    await jsm.streams.add(config);
    await publish("old", 300);
    // Only the read's own notices. Were nats.js to make its consumer again before one said the
    // stream was gone, it would start at the old next sequence (301) on the new stream.
    const r = follow({ advisories: false, abortOnMissingResource: false, expiresMs: 2_000 });
    await until(() => r.seen.length === 300);
    await jsm.streams.delete(STREAM);
    await jsm.streams.add(config);
    await publish("new", 400);
    await until(() => bodies(r, r.begins.length - 1).length === 400, 30_000);
    expect(bodies(r, 0).filter((b) => b.startsWith("new-"))).toEqual([]);
    expect(bodies(r, r.begins.length - 1)).toEqual(Array.from({ length: 400 }, (_, i) => `new-${i}`));
  });

  it("a stream that is not there yet: each try warns, and the read starts once it exists", async () => {
    const r = follow();
    await until(() => r.warnings.length >= 1);
    expect(r.begins).toEqual([]);
    expect(r.ends).toBeGreaterThanOrEqual(1);
    await jsm.streams.add(config);
    await publish("late", 2);
    await until(() => r.seen.length === 2, 15_000);
    expect(bodies(r, r.begins.length - 1)).toEqual(["late-0", "late-1"]);
  });

  it("a handler that throws on a message: the read goes on from that message, backing off each time", { timeout: 30_000 }, async () => {
    await jsm.streams.add(config);
    await publish("ok", 2);
    await jetstream(nc).publish("ft.bad", "bad");
    let tries = 0;
    const r = follow({
      begin: () => (m: JsMsg) => {
        if (m.string() !== "bad") return;
        tries++;
        throw new Error("handler refused it");
      },
    });
    await new Promise((res) => setTimeout(res, 3_500));
    // 250, 500, 1000, 2000 ms between tries: five at most in 3.5 s (every 250 ms would be 14).
    expect(tries).toBeGreaterThanOrEqual(2);
    expect(tries).toBeLessThanOrEqual(5);
    expect(r.ends).toBe(0); // never read again from the first: the same message each time
    expect(r.warnings.some((w) => w.includes("going on from FOLLOW_T's message 3"))).toBe(true);
  });

  it("stopping it ends the read and the loop, without a warning", async () => {
    await jsm.streams.add(config);
    await publish("s", 2);
    const r = follow();
    await until(() => r.seen.length === 2);
    await r.stop();
    await publish("s", 2);
    await new Promise((res) => setTimeout(res, 300));
    expect(r.seen.length).toBe(2);
    expect(r.warnings).toEqual([]);
    expect(r.ends).toBe(1);
  });

  it("a server restart (its ordered consumers lost with it): the read goes on where it stopped, nothing read twice, never ended", { timeout: 60_000 }, async () => {
    await jsm.streams.add(config); // file storage, the default
    await publish("pre", 10);
    const local = await connect({ servers: server.url, reconnectTimeWait: 200, maxReconnectAttempts: -1 });
    const ljsm = await jetstreamManager(local);
    const ac = new AbortController();
    const seen: number[] = [];
    const warnings: string[] = [];
    let reads = 0;
    let ends = 0;
    const done = followStream(local, jetstream(local), ljsm, {
      stream: STREAM,
      what: "outage feed",
      begin: () => {
        reads++;
        return (m) => seen.push(m.seq);
      },
      ended: () => ends++,
      onWarning: (w) => warnings.push(w),
      signal: ac.signal,
      expiresMs: 2_000,
    });
    try {
      await until(() => seen.length === 10);
      // The newest message read, deleted since (as an authority trims its previous heartbeat):
      // the stream is told by the newest still stored.
      await jsm.streams.deleteMessage(STREAM, 10, false);
      await server.kill();
      await server.restart();
      for (let i = 0; i < 150 && !(await jsm.streams.info(STREAM).then(() => true, () => false)); i++) await new Promise((res) => setTimeout(res, 100));
      await publish("post", 5);
      await until(() => seen.length >= 15, 30_000);
      await new Promise((res) => setTimeout(res, 300));
      expect(seen).toEqual(Array.from({ length: 15 }, (_, i) => i + 1));
      expect(reads).toBe(1);
      expect(ends).toBe(0);
      // (Whether nats.js ended the read, or made its consumer again itself, depends on timing.)
      for (const w of warnings) if (!/^outage feed( ended|: going on from FOLLOW_T's message 11$)/.test(w)) expect.fail(w);
    } finally {
      ac.abort();
      await done;
      await local.close();
    }
  });

  it("a server crash that lost the stream's newest messages, with new ones stored at their sequences since: read again from the first, nothing skipped", { timeout: 60_000 }, async () => {
    await jsm.streams.add(config); // file storage, the default
    const blk = join(server.storeDir, "jetstream", "$G", "streams", STREAM, "msgs", "1.blk");
    const settled = async (): Promise<number> => {
      let size = -1;
      for (let i = 0; i < 50; i++) {
        await new Promise((res) => setTimeout(res, 100));
        const now = (await stat(blk)).size;
        if (now === size) return size;
        size = now;
      }
      return size;
    };
    await publish("pre", 7);
    const sizeAt7 = await settled();
    await publish("late", 3); // seq 8..10: the ones the crash will lose
    await settled();
    // The reader comes back slowly (as a loaded one would): new messages land first.
    const slow = await connect({ servers: server.url, reconnectTimeWait: 3_000, maxReconnectAttempts: -1 });
    const ac = new AbortController();
    const seen: { body: string; read: number }[] = [];
    let reads = 0;
    let ends = 0;
    const done = followStream(slow, jetstream(slow), await jetstreamManager(slow), {
      stream: STREAM,
      what: "crash feed",
      begin: () => {
        const read = reads++;
        return (m) => seen.push({ body: m.string(), read });
      },
      ended: () => ends++,
      onWarning: () => undefined,
      signal: ac.signal,
      expiresMs: 2_000,
    });
    const pub = await (async () => {
      await until(() => seen.length === 10);
      await server.kill();
      // The crash: the last three records never reached the disk.
      await truncate(blk, sizeAt7);
      await rm(blk.replace(/1\.blk$/, "1.idx"), { force: true });
      await server.restart();
      return connect({ servers: server.url });
    })();
    try {
      const info = await (await jetstreamManager(pub)).streams.info(STREAM);
      expect(info.state.last_seq).toBe(7);
      const pjs = jetstream(pub);
      for (let i = 0; i < 3; i++) expect((await pjs.publish("ft.after", `after-${i}`)).seq).toBe(8 + i);
      await until(() => seen.some((s) => s.body === "after-2"), 30_000);
      // Read again from the first (what the crash lost never comes back), the new ones included.
      expect(ends).toBeGreaterThanOrEqual(1);
      expect(seen.filter((s) => s.read === reads - 1).map((s) => s.body)).toEqual([...Array.from({ length: 7 }, (_, i) => `pre-${i}`), "after-0", "after-1", "after-2"]);
    } finally {
      ac.abort();
      await done;
      await slow.close();
      await pub.close();
    }
  });

  it("an account not allowed JetStream's advisories: said once, and the read (and its stream made again) still works", { timeout: 60_000 }, async () => {
    const locked = await startNatsServer({ config: `no_auth_user: svc\nauthorization {\n  users = [\n    { user: svc, password: svc, permissions: { subscribe: { allow: [">"], deny: ["$JS.EVENT.>"] } } }\n  ]\n}\n` });
    const lnc = await connect({ servers: locked.url });
    const ac = new AbortController();
    try {
      const ljsm = await jetstreamManager(lnc);
      const ljs = jetstream(lnc);
      await ljsm.streams.add(config);
      for (let i = 0; i < 50; i++) await ljs.publish("ft.old", `old-${i}`);
      const seen: string[][] = [];
      const warnings: string[] = [];
      const done = followStream(lnc, ljs, ljsm, {
        stream: STREAM,
        what: "locked feed",
        begin: () => {
          const mine: string[] = [];
          seen.push(mine);
          return (m) => mine.push(m.string());
        },
        onWarning: (w) => warnings.push(w),
        signal: ac.signal,
        expiresMs: 2_000,
      });
      await until(() => seen[0]?.length === 50);
      await until(() => warnings.length >= 1);
      await ljsm.streams.delete(STREAM);
      await ljsm.streams.add(config);
      for (let i = 0; i < 5; i++) await ljs.publish("ft.new", `new-${i}`);
      await until(() => seen.length >= 2 && seen[seen.length - 1]!.length === 5, 30_000);
      expect(seen[seen.length - 1]).toEqual(["new-0", "new-1", "new-2", "new-3", "new-4"]);
      expect(warnings.filter((w) => w.includes("advisories for FOLLOW_T refused"))).toHaveLength(1);
      ac.abort();
      await done;
    } finally {
      ac.abort();
      await lnc.close();
      await locked.stop();
    }
  });
});
