import type { Backend, EphemeralRoute, Rejection, Snapshot, StaticBinding, TcpRoute } from '../model/types';
import { emptySnapshot } from '../model/types';
import { type Checked, checkEndpointName, checkHost, checkPort, checkPrincipal, checkRouteName, checkTaskId, routeId, show, printable } from '../model/validate';

/**
 * The label scheme of the docker provider: how a container asks the gateway to route to it. This
 * module only reads container summaries (as `GET /containers/json` returns them) and validates
 * their labels; talking to the Docker engine is the job of docker-provider.ts.
 *
 * | label                                  | meaning                                                                |
 * |----------------------------------------|------------------------------------------------------------------------|
 * | `appgw.enable=true`                    | required; other containers are ignored                                 |
 * | `appgw.port`                           | HTTP port inside the container: the default endpoint `/service/<id>/`  |
 * | `appgw.strip_prefix`                   | `true` (default) or `false`, for `appgw.port`                          |
 * | `appgw.route`                          | bind `appgw.port` as a backend of that static route instead            |
 * | `appgw.tcp.port`                       | a default TCP endpoint (a port from the TCP pool)                      |
 * | `appgw.endpoints.<name>.port`          | a named endpoint `/service/<id>-<name>/` (or TCP)                      |
 * | `appgw.endpoints.<name>.protocol`      | `http` (default) or `tcp`                                              |
 * | `appgw.endpoints.<name>.strip_prefix`  | `true` (default) or `false`, http only                                 |
 * | `appgw.endpoints.<name>.route`         | bind as a backend of that static route, http only                      |
 * | `appgw.id`                             | route id [a-z0-9]{1,40}; default the first 12 chars of the container id |
 * | `appgw.owner`                          | user id allowed besides admins; default none (admins only)             |
 * | `appgw.address`                        | backend address; default the container's IP (see `appgw.network`)     |
 * | `appgw.network`                        | the network whose IP is used; default the first, by name, with an IP   |
 *
 * A container needs at least one of `appgw.port`, `appgw.tcp.port`, `appgw.endpoints.<name>.port`.
 * Docs: docs/docker.md.
 */

/** The provider name of routes found on containers. */
export const DOCKER_PROVIDER = 'docker';

/** The label every routed container carries; the engine is asked for these containers only. */
export const ENABLE_LABEL = 'appgw.enable';

const PREFIX = 'appgw.';
const ENDPOINTS_PREFIX = 'appgw.endpoints.';
const CONTAINER_LABELS = ['appgw.enable', 'appgw.id', 'appgw.owner', 'appgw.address', 'appgw.network'];
const DEFAULT_HTTP_LABELS = ['appgw.port', 'appgw.strip_prefix', 'appgw.route'];
const TCP_LABELS = ['appgw.tcp.port'];
const ENDPOINT_FIELDS = ['port', 'protocol', 'strip_prefix', 'route'];
const KNOWN = [...CONTAINER_LABELS, ...DEFAULT_HTTP_LABELS, ...TCP_LABELS];

/** Bounds on what the engine's answer may hold; beyond them containers or endpoints are rejected. */
export const DOCKER_LIMITS = {
  containers: 10_000,
  endpointsPerContainer: 64,
  /** Longest accepted value of an `appgw.*` label. */
  labelValueChars: 1024,
} as const;

/**
 * The part of an Engine API ContainerSummary (`GET /containers/json`) this module reads. The
 * values come from whoever started the container, so every field is checked before use.
 */
export interface ContainerSummary {
  Id?: unknown;
  Names?: unknown;
  Labels?: unknown;
  State?: unknown;
  Created?: unknown;
  NetworkSettings?: { Networks?: Record<string, { IPAddress?: unknown; GlobalIPv6Address?: unknown } | null> | null } | null;
}

/** A complete view built from containers, plus the labels that were refused. */
export interface DockerView {
  snapshot: Snapshot;
  rejections: Rejection[];
}

/**
 * Pure. The snapshot of the running containers labelled `appgw.enable=true`, in a stable order
 * (oldest container first, so that on a clash of ids the container already routed keeps its id).
 * Each bad label value becomes a Rejection naming the container and the label; the container (or,
 * for an endpoint's own labels, that endpoint) is skipped and everything else kept. Never throws.
 */
export function buildDockerSnapshot(containers: readonly unknown[], provider = DOCKER_PROVIDER): DockerView {
  const b = new Builder(provider);
  const listed = Array.isArray(containers) ? containers : [];
  const enabled = listed.filter(isEnabled).sort(byAge);
  const max = DOCKER_LIMITS.containers;
  enabled.slice(0, max).forEach((c) => b.container(c));
  if (enabled.length > max) {
    b.reject('docker engine', `${enabled.length} containers carry ${ENABLE_LABEL}=true; only the ${max} oldest are routed`);
  }
  return { snapshot: b.snapshot, rejections: b.rejections };
}

/**
 * Escapes control, format (bidi overrides, zero-width) and separator characters, so that a reason
 * echoing a hostile value stays one honest line in logs, status and the UI.
 */

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function labelsOf(c: ContainerSummary): Record<string, unknown> {
  return isRecord(c.Labels) ? c.Labels : {};
}

/** Running and labelled `appgw.enable=true` (the engine filters too; this holds for any input). */
function isEnabled(c: unknown): c is ContainerSummary {
  if (!isRecord(c)) return false;
  const s = c as ContainerSummary;
  if (labelsOf(s)[ENABLE_LABEL] !== 'true') return false;
  return typeof s.State !== 'string' || s.State.toLowerCase() === 'running';
}

function byAge(a: ContainerSummary, b: ContainerSummary): number {
  const ca = typeof a.Created === 'number' && Number.isFinite(a.Created) ? a.Created : 0;
  const cb = typeof b.Created === 'number' && Number.isFinite(b.Created) ? b.Created : 0;
  if (ca !== cb) return ca - cb;
  const ia = String(a.Id);
  const ib = String(b.Id);
  return ia < ib ? -1 : ia > ib ? 1 : 0;
}

/** A label key as shown in a message: as is when it is plain, quoted and cut otherwise. */
function labelName(key: string): string {
  return /^[a-z0-9._-]{1,100}$/.test(key) ? key : show(key);
}

class Reject extends Error {
  constructor(
    readonly label: string | null,
    reason: string,
  ) {
    super(reason);
  }
}

function need<T>(c: Checked<T>, label: string | null): T {
  if (!c.ok) throw new Reject(label, c.reason);
  return c.value;
}

/** One endpoint's labels: the default HTTP endpoint, the default TCP endpoint, or a named one. */
interface EndpointLabels {
  /** '' for the default endpoints; named endpoints carry the raw name from the label key. */
  name: string;
  named: boolean;
  keys: { port: string; protocol?: string; strip_prefix?: string; route?: string };
  fixedProtocol: 'http' | 'tcp' | null;
}

/** Accumulates the snapshot, the rejections and the ids earlier containers claimed. */
class Builder {
  readonly snapshot = emptySnapshot();
  readonly rejections: Rejection[] = [];
  private readonly taskIds = new Map<string, string>();

  constructor(private readonly provider: string) {}

  reject(source: string, reason: string): void {
    this.rejections.push({ provider: this.provider, source: printable(source), reason: printable(reason) });
  }

  container(c: ContainerSummary): void {
    const where = describe(c);
    try {
      this.containerRoutes(c, where);
    } catch (e) {
      if (!(e instanceof Reject)) throw e;
      this.reject(e.label ? `${where} label ${e.label}` : where, e.message);
    }
  }

  private containerRoutes(c: ContainerSummary, where: string): void {
    const labels = labelsOf(c);
    const value = (key: string): string | undefined => labelValue(labels, key);

    const unknown = Object.keys(labels).filter((k) => k.startsWith(PREFIX) && !KNOWN.includes(k) && !k.startsWith(ENDPOINTS_PREFIX));
    if (unknown.length > 0) {
      throw new Reject(labelName(unknown.sort()[0]!), `unknown label; expected ${KNOWN.join(', ')} or ${ENDPOINTS_PREFIX}<name>.{${ENDPOINT_FIELDS.join(',')}}`);
    }
    if (typeof c.Id !== 'string' || !/^[0-9a-f]{12,64}$/.test(c.Id)) throw new Reject(null, `the engine gave a container id ${show(c.Id)} that is not hex`);

    const idLabel = value('appgw.id');
    const taskId = idLabel === undefined ? c.Id.slice(0, 12) : need(checkTaskId(idLabel), 'appgw.id');
    const ownerLabel = value('appgw.owner');
    const owner = ownerLabel === undefined ? null : need(checkPrincipal(ownerLabel), 'appgw.owner');
    const host = this.address(c, value);

    const endpoints = endpointsOf(labels);
    if (endpoints.length === 0) {
      throw new Reject(null, `nothing to route: set appgw.port, appgw.tcp.port or ${ENDPOINTS_PREFIX}<name>.port`);
    }
    if (endpoints.length > DOCKER_LIMITS.endpointsPerContainer) {
      throw new Reject(null, `${endpoints.length} endpoints are declared; at most ${DOCKER_LIMITS.endpointsPerContainer} are allowed`);
    }
    const first = this.taskIds.get(taskId);
    if (first !== undefined) throw new Reject(idLabel === undefined ? null : 'appgw.id', `route id ${show(taskId)} is already used by ${first}`);
    this.taskIds.set(taskId, where);

    const httpIds = new Set<string>();
    const tcpIds = new Set<string>();
    for (const ep of endpoints) {
      try {
        this.endpoint(ep, value, { taskId, owner, host }, httpIds, tcpIds);
      } catch (e) {
        if (!(e instanceof Reject)) throw e;
        this.reject(e.label ? `${where} label ${e.label}` : where, e.message);
      }
    }
  }

  /** `appgw.address`, else the IP on `appgw.network`, else on the first network (by name) with one. */
  private address(c: ContainerSummary, value: (key: string) => string | undefined): string {
    const explicit = value('appgw.address');
    const network = value('appgw.network');
    if (explicit !== undefined) {
      if (network !== undefined) throw new Reject('appgw.network', 'appgw.address and appgw.network exclude each other');
      return need(checkHost(explicit), 'appgw.address');
    }
    const raw = c.NetworkSettings?.Networks;
    const networks = isRecord(raw) ? raw : {};
    const ipOf = (n: unknown): unknown => {
      if (!isRecord(n)) return undefined;
      if (typeof n.IPAddress === 'string' && n.IPAddress !== '') return n.IPAddress;
      if (typeof n.GlobalIPv6Address === 'string' && n.GlobalIPv6Address !== '') return n.GlobalIPv6Address;
      return undefined;
    };
    if (network !== undefined) {
      if (!Object.prototype.hasOwnProperty.call(networks, network)) {
        const names = Object.keys(networks).sort().slice(0, 10).map((n) => show(n));
        throw new Reject('appgw.network', `the container is not on network ${show(network)} (it is on ${names.length > 0 ? names.join(', ') : 'no network'})`);
      }
      const ip = ipOf(networks[network]);
      if (ip === undefined) throw new Reject('appgw.network', `the container has no IP address on network ${show(network)}; set appgw.address`);
      return need(engineHost(ip, network), 'appgw.network');
    }
    for (const name of Object.keys(networks).sort()) {
      const ip = ipOf(networks[name]);
      if (ip !== undefined) return need(engineHost(ip, name), null);
    }
    throw new Reject(null, 'the container has no IP address on any network (network_mode host or none?); set appgw.address');
  }

  private endpoint(
    ep: EndpointLabels,
    value: (key: string) => string | undefined,
    task: { taskId: string; owner: string | null; host: string },
    httpIds: Set<string>,
    tcpIds: Set<string>,
  ): void {
    const endpoint = ep.named ? need(checkEndpointName(ep.name), labelName(ep.keys.port)) : '';
    if (ep.named && endpoint === '') throw new Reject(labelName(ep.keys.port), 'a named endpoint needs a name: appgw.endpoints.<name>.port');
    const portLabel = value(ep.keys.port);
    if (portLabel === undefined) {
      const set = [ep.keys.protocol, ep.keys.strip_prefix, ep.keys.route].find((k) => k !== undefined && value(k) !== undefined)!;
      throw new Reject(labelName(set), `needs ${labelName(ep.keys.port)} as well`);
    }
    const port = need(checkPort(portLabel), labelName(ep.keys.port));
    const backend: Backend = { host: task.host, port };
    let protocol = ep.fixedProtocol;
    if (protocol === null) {
      const p = ep.keys.protocol === undefined ? undefined : value(ep.keys.protocol);
      if (p !== undefined && p !== 'http' && p !== 'tcp') throw new Reject(labelName(ep.keys.protocol!), `protocol ${show(p)} must be http or tcp`);
      protocol = p === 'tcp' ? 'tcp' : 'http';
    }
    const strip = ep.keys.strip_prefix === undefined ? undefined : value(ep.keys.strip_prefix);
    const route = ep.keys.route === undefined ? undefined : value(ep.keys.route);
    const id = routeId(task.taskId, endpoint);

    if (protocol === 'tcp') {
      if (strip !== undefined) throw new Reject(labelName(ep.keys.strip_prefix!), 'applies to http endpoints only');
      if (route !== undefined) throw new Reject(labelName(ep.keys.route!), 'applies to http endpoints only');
      if (tcpIds.has(id)) throw new Reject(labelName(ep.keys.port), `tcp route id ${show(id)} is declared twice`);
      tcpIds.add(id);
      const r: TcpRoute = { id, taskId: task.taskId, endpoint, owner: task.owner, backend, allowCidrs: null, provider: this.provider };
      this.snapshot.tcp.push(r);
      return;
    }
    if (httpIds.has(id)) throw new Reject(labelName(ep.keys.port), `route id ${show(id)} is declared twice`);
    if (route !== undefined) {
      const name = need(checkRouteName(route), labelName(ep.keys.route!));
      if (strip !== undefined) throw new Reject(labelName(ep.keys.strip_prefix!), `strip_prefix is set by the static route ${show(name)}, not by a bound endpoint`);
      httpIds.add(id);
      const binding: StaticBinding = { route: name, taskId: task.taskId, endpoint, backend, provider: this.provider };
      this.snapshot.bindings.push(binding);
      return;
    }
    const stripPrefix = strip === undefined ? true : need(checkBoolLabel(strip), labelName(ep.keys.strip_prefix!));
    httpIds.add(id);
    const r: EphemeralRoute = { id, taskId: task.taskId, endpoint, owner: task.owner, company: null, backend, stripPrefix, provider: this.provider };
    this.snapshot.ephemeral.push(r);
  }
}

/** `container <name> (<short id>)`, with anything odd in the engine's answer quoted. */
function describe(c: ContainerSummary): string {
  const names = Array.isArray(c.Names) ? c.Names : [];
  const raw = typeof names[0] === 'string' ? names[0].replace(/^\//, '') : '';
  const name = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(raw) ? raw : show(raw);
  const id = typeof c.Id === 'string' && /^[0-9a-f]{12,64}$/.test(c.Id) ? c.Id.slice(0, 12) : show(c.Id);
  return `container ${name} (${id})`;
}

/**
 * The value of an `appgw.*` label, or undefined when absent. Values are used exactly as written:
 * no trimming, no control characters, bounded length.
 */
function labelValue(labels: Record<string, unknown>, key: string): string | undefined {
  if (!Object.prototype.hasOwnProperty.call(labels, key)) return undefined;
  const v = labels[key];
  const label = labelName(key);
  if (typeof v !== 'string') throw new Reject(label, `must be a string, got ${show(v)}`);
  if (v.length > DOCKER_LIMITS.labelValueChars) throw new Reject(label, `is longer than ${DOCKER_LIMITS.labelValueChars} characters`);
  if (/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u.test(v)) throw new Reject(label, `${show(v)} contains control or invisible characters`);
  if (v !== v.trim()) throw new Reject(label, `${show(v)} has leading or trailing spaces`);
  return v;
}

function checkBoolLabel(v: string): Checked<boolean> {
  if (v === 'true') return { ok: true, value: true };
  if (v === 'false') return { ok: true, value: false };
  return { ok: false, reason: `must be true or false, got ${show(v)}` };
}

/** An address the engine reported; validated like any label, since the engine echoes configuration. */
function engineHost(ip: unknown, network: string): Checked<string> {
  const h = checkHost(ip);
  return h.ok ? h : { ok: false, reason: `the engine reports an unusable address on network ${show(network)}: ${h.reason}` };
}

/**
 * The endpoints a container declares, default HTTP and TCP first, then named ones sorted by name.
 * Named endpoint labels are `appgw.endpoints.<name>.<field>`; the name is everything up to the last
 * dot (checked later, so that a bad name is reported against its own labels).
 */
function endpointsOf(labels: Record<string, unknown>): EndpointLabels[] {
  const out: EndpointLabels[] = [];
  const has = (k: string) => Object.prototype.hasOwnProperty.call(labels, k);
  if (DEFAULT_HTTP_LABELS.some(has)) {
    out.push({ name: '', named: false, fixedProtocol: 'http', keys: { port: 'appgw.port', strip_prefix: 'appgw.strip_prefix', route: 'appgw.route' } });
  }
  if (has('appgw.tcp.port')) out.push({ name: '', named: false, fixedProtocol: 'tcp', keys: { port: 'appgw.tcp.port' } });
  const named = new Map<string, EndpointLabels>();
  for (const key of Object.keys(labels)) {
    if (!key.startsWith(ENDPOINTS_PREFIX)) continue;
    const rest = key.slice(ENDPOINTS_PREFIX.length);
    const dot = rest.lastIndexOf('.');
    const field = dot < 0 ? '' : rest.slice(dot + 1);
    if (dot < 0 || !ENDPOINT_FIELDS.includes(field)) {
      throw new Reject(labelName(key), `unknown label; named endpoints use ${ENDPOINTS_PREFIX}<name>.{${ENDPOINT_FIELDS.join(',')}}`);
    }
    const name = rest.slice(0, dot);
    if (!named.has(name)) {
      const base = `${ENDPOINTS_PREFIX}${name}.`;
      named.set(name, {
        name,
        named: true,
        fixedProtocol: null,
        keys: { port: `${base}port`, protocol: `${base}protocol`, strip_prefix: `${base}strip_prefix`, route: `${base}route` },
      });
    }
  }
  const names = [...named.keys()].sort();
  return [...out, ...names.map((n) => named.get(n)!)];
}
