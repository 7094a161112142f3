import type { ProviderState, Rejection, Snapshot } from '../../router/model/types';
import { emptySnapshot } from '../../router/model/types';
import type { Provider, ProviderStatus, Publication } from '../../router/providers/provider';

/** A provider whose snapshots the test sets directly. */
export class ManualProvider implements Provider {
  private emit: ((s: ProviderState, r: Rejection[]) => void) | null = null;
  snapshot: Snapshot = emptySnapshot();
  publications: Publication[] = [];

  constructor(readonly name = 'manual') {}

  async start(emit: (s: ProviderState, r: Rejection[]) => void): Promise<void> {
    this.emit = emit;
    this.set(this.snapshot);
  }
  async stop(): Promise<void> {
    this.emit = null;
  }
  set(snapshot: Snapshot): void {
    this.snapshot = snapshot;
    this.emit?.({ kind: 'ready', snapshot, at: Date.now(), degradedSince: null, error: null }, []);
  }
  status(): ProviderStatus {
    return { name: this.name, state: 'ok', degradedSince: null, lastError: null, lastSuccess: Date.now(), rejections: [] };
  }
  published(p: Publication[]): void {
    this.publications = p;
  }
}
