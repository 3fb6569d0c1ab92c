/**
 * Follows a Redis Cluster's slot map while something says it may have changed: a call to
 * a node got no answer, or the cluster refused one with CLUSTERDOWN, or a node's connection
 * was lost. While that lasts the map is read again every REFRESH_MS; when a reading shows
 * another primary for some slot (a replica promoted, a slot moved), the breakers are told
 * at once, so that those that could not reach their shard try again without waiting for
 * their next retry (docs/architecture.md, "Degrade, never fail the caller"). It reads
 * nothing while the cluster is healthy, and stops SUSPECT_FOR_MS after the last sign.
 */
import type { Cluster } from 'ioredis';

/** How often the slot map is read while a change is suspected, in ms. */
const REFRESH_MS = 200;
/** How long after the last sign of trouble the map is still followed, in ms. */
const SUSPECT_FOR_MS = 3000;
const SLOTS = 16384;

/** The primary of every slot, as one string: two readings differ when any slot moved. */
function primariesBySlot(cluster: Cluster): string {
  const runs: string[] = [];
  let last: string | undefined;
  for (let slot = 0; slot < SLOTS; slot += 1) {
    const primary = cluster.slots[slot]?.[0] ?? '';
    if (primary !== last) runs.push(`${slot}:${primary}`);
    last = primary;
  }
  return runs.join(',');
}

/** A timer callback shared by every watcher: no closure is kept per refresh. */
function refreshTopology(topology: ClusterTopology): void {
  topology.refresh();
}

export class ClusterTopology {
  private timer: NodeJS.Timeout | undefined;
  private until = 0;
  private seen: string | undefined;
  private stopped = false;

  /** @param changed called when a reading shows a slot served by another primary */
  constructor(
    private readonly cluster: Cluster,
    private readonly changed: () => void,
  ) {}

  /** Something says the map may be changing: follow it for a while. */
  suspect(): void {
    if (this.stopped) return;
    this.until = performance.now() + SUSPECT_FOR_MS;
    this.seen ??= primariesBySlot(this.cluster);
    this.timer ??= setTimeout(refreshTopology, REFRESH_MS, this);
  }

  /** @internal Reads the map again; tells when it changed; goes on while trouble is suspected. */
  refresh(): void {
    this.timer = undefined;
    if (this.stopped) return;
    this.cluster.refreshSlotsCache(() => {
      if (this.stopped) return;
      const now = primariesBySlot(this.cluster);
      if (now !== this.seen) {
        this.seen = now;
        this.changed();
      }
      if (performance.now() < this.until) this.timer ??= setTimeout(refreshTopology, REFRESH_MS, this);
      else this.seen = undefined;
    });
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
