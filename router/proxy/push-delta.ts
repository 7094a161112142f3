import type { PushData } from '../model/push-payload';

/**
 * Data pushes as deltas. The proxy keeps the pushed data as one shared-dict entry per record
 * (`r:<route key>`, `t:<token id>`, `u:<user id>`) holding the record's JSON. After a full
 * snapshot, the router sends only what changed against the version the proxy holds: the records
 * to set (already encoded, stored as they are) and the keys to delete. A revocation among ten
 * thousand tokens is then a few hundred bytes instead of the whole table (1.9 MB at 12,000
 * tokens, ~100 ms for the proxy to take in). The proxy refuses a delta unless it holds exactly the
 * base version of the same epoch (409), and the router then sends a full snapshot.
 */

/** What the proxy holds after a push: each shared-dict key's JSON, and the settings' JSON. */
export interface Encoded {
  records: Map<string, string>;
  settings: string;
}

/**
 * The shared-dict entries a snapshot becomes at the proxy. With `cache`, a record object seen
 * before is not serialised again (token sources hand out the same object for an unchanged token;
 * records must not be modified once pushed): a change among 12,000 tokens then costs a few
 * milliseconds of the router's time instead of serialising them all.
 */
export function encodeData(data: PushData, cache?: WeakMap<object, string>): Encoded {
  const json = (v: object): string => {
    let s = cache?.get(v);
    if (s === undefined) {
      s = JSON.stringify(v);
      cache?.set(v, s);
    }
    return s;
  };
  const records = new Map<string, string>();
  for (const k in data.routes) records.set('r:' + k, json(data.routes[k]!));
  for (const k in data.tokens) records.set('t:' + k, json(data.tokens[k]!));
  for (const k in data.users) records.set('u:' + k, json(data.users[k]!));
  return { records, settings: JSON.stringify(data.settings) };
}

/** What changed between two encodings. */
export interface DataDiff {
  set: Record<string, string>;
  del: string[];
  /** The new settings' JSON, or null when unchanged. */
  settings: string | null;
}

/** Pure. The changes from `prev` to `next`, or null when there are none. */
export function diffData(prev: Encoded, next: Encoded): DataDiff | null {
  const set: Record<string, string> = {};
  const del: string[] = [];
  let n = 0;
  for (const [k, v] of next.records) {
    if (prev.records.get(k) !== v) {
      set[k] = v;
      n += 1;
    }
  }
  for (const k of prev.records.keys()) {
    if (!next.records.has(k)) del.push(k);
  }
  const settings = prev.settings === next.settings ? null : next.settings;
  if (n === 0 && del.length === 0 && settings === null) return null;
  return { set, del: del.sort(), settings };
}

/** Pure. The body of a delta push of `diff` from version `base` to `version`. */
export function deltaBody(epoch: string, version: number, base: number, diff: DataDiff): string {
  const head = `{"delta":true,"epoch":${JSON.stringify(epoch)},"version":${version},"base":${base}`;
  const settings = diff.settings === null ? '' : `,"settings":${diff.settings}`;
  return `${head},"set":${JSON.stringify(diff.set)},"del":${JSON.stringify(diff.del)}${settings}}`;
}

/** Pure. The body of a full push (what the proxy keeps: everything in `data`, nothing else). */
export function fullBody(epoch: string, version: number, data: PushData): string {
  const json = JSON.stringify(data);
  return `{"epoch":${JSON.stringify(epoch)},"version":${version},${json.slice(1)}`;
}
