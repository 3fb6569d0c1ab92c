/**
 * What a breaker's cache holds of the shared state, and how two readings of it are
 * ordered. Every reply of the library, every feed message and every snapshot carries one.
 */
import { CircuitState } from './constants.js';

export interface SharedView {
  readonly state: CircuitState;
  readonly generation: number;
  /** Names one life of the state hash; '' before it exists. A new epoch resets ordering. */
  readonly epoch: string;
}

/**
 * What execute() decides on. A new object for every change, so that outcomes of calls
 * started under an older view can be recognised and dropped. While Redis is reachable
 * the shared view is the view.
 */
export interface View extends SharedView {
  /** True while Redis is unreachable and the state is this process's own. */
  readonly local: boolean;
}

/** A breaker before anything was read: closed, generation 0, of no life yet. */
export const NEVER_WRITTEN: View = { state: CircuitState.CLOSED, generation: 0, epoch: '', local: false };

/** The view of a shared state, as execute() acts on it while Redis answers. */
export function sharedView(v: SharedView): View {
  return { state: v.state, generation: v.generation, epoch: v.epoch, local: false };
}

/** Whether `candidate` is an earlier state of the same life of the state hash than `current`. */
export function isBehind(candidate: SharedView, current: SharedView): boolean {
  return current.epoch !== '' && candidate.epoch === current.epoch && candidate.generation < current.generation;
}

/**
 * Whether `candidate` is a later state of the breaker than `current`: a higher generation
 * of the same life of the state hash, or another life altogether (the hash was recreated).
 * A breaker never written (epoch '') is generation 0 of whatever life comes first.
 */
export function isNewer(candidate: SharedView, current: SharedView): boolean {
  if (current.epoch === '') return candidate.epoch !== '' || candidate.generation > current.generation;
  if (candidate.epoch !== current.epoch) return true;
  return candidate.generation > current.generation;
}
