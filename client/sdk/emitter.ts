// A small typed event emitter: `on` returns the unsubscribe function.

export class Emitter<E extends Record<string, unknown>> {
  private handlers = new Map<keyof E, Set<(v: never) => void>>();

  on<K extends keyof E>(event: K, fn: (v: E[K]) => void): () => void {
    let set = this.handlers.get(event);
    if (!set) this.handlers.set(event, (set = new Set()));
    set.add(fn as (v: never) => void);
    return () => set!.delete(fn as (v: never) => void);
  }

  protected emit<K extends keyof E>(event: K, value: E[K]): void {
    for (const fn of this.handlers.get(event) ?? []) {
      try {
        (fn as (v: E[K]) => void)(value);
      } catch (err) {
        console.error(`huizhen: a ${String(event)} handler threw`, err);
      }
    }
  }
}
