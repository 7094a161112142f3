import type { ProviderState, Rejection } from '../model/types';

/**
 * Where the gateway publishes a task endpoint, as the router decided after reconciling. Providers
 * that write back (ClearML) use it; others ignore it.
 */
export type Publication =
  | { protocol: 'http'; taskId: string; endpoint: string; url: string; browserUrl: string }
  | { protocol: 'tcp'; taskId: string; endpoint: string; address: string; port: number; upstreamPort: number }
  | { protocol: 'tcp'; taskId: string; endpoint: string; unroutable: string };

/** Health of a provider for `appgw routes` and status. */
export interface ProviderStatus {
  name: string;
  state: 'pending' | 'ok' | 'degraded';
  /** Epoch ms since the provider has been degraded, or null. */
  degradedSince: number | null;
  lastError: string | null;
  lastSuccess: number | null;
  rejections: Rejection[];
}

/** What a provider knows about its health, from which its ProviderStatus follows. */
export interface ProviderHealth {
  /** The reason of the last failure, null when the last attempt succeeded. */
  error: string | null;
  /** Whether the provider has a good view to keep routing from. */
  ready: boolean;
  degradedSince: number | null;
  lastSuccess: number | null;
  rejections: Rejection[];
}

/** The status a provider reports: degraded while failing, ok once it has a good view, pending before. */
export function providerStatus(name: string, h: ProviderHealth): ProviderStatus {
  return {
    name,
    state: h.error !== null ? 'degraded' : h.ready ? 'ok' : 'pending',
    degradedSince: h.degradedSince,
    lastError: h.error,
    lastSuccess: h.lastSuccess,
    rejections: [...h.rejections],
  };
}

/**
 * A source of desired routes. A provider calls `emit` with a complete snapshot every time its
 * view changes (and may call it with the same view again); it never throws out of its loop and
 * keeps its last good view through outages.
 */
export interface Provider {
  readonly name: string;
  /** Starts watching or polling; resolves once the first attempt finished (successfully or not). */
  start(emit: (state: ProviderState, rejections: Rejection[]) => void): Promise<void>;
  stop(): Promise<void>;
  status(): ProviderStatus;
  /** Called after each reconcile with where this provider's endpoints are published. */
  published?(publications: Publication[]): void;
}
