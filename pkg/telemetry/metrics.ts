/**
 * Prometheus metrics through prom-client. Components receive a Registry instead of using the
 * global one, so tests and several components in one process do not collide. The get-or-create
 * helpers let two instances of a component (two clients in one test) share one registry.
 */
import {
  collectDefaultMetrics,
  Counter,
  Gauge,
  Histogram,
  Registry,
  type CounterConfiguration,
  type GaugeConfiguration,
  type HistogramConfiguration,
} from 'prom-client';

export { Registry };

export interface RegistryOptions {
  /** Also collect process and Node.js runtime metrics (CPU, memory, event loop lag). */
  collectDefaultMetrics?: boolean;
  /** Labels added to every series, e.g. `{ component: 'controller' }`. */
  defaultLabels?: Record<string, string>;
}

export function createMetricsRegistry(options: RegistryOptions = {}): Registry {
  const registry = new Registry();
  if (options.defaultLabels !== undefined) registry.setDefaultLabels(options.defaultLabels);
  if (options.collectDefaultMetrics === true) collectDefaultMetrics({ register: registry });
  return registry;
}

function existing<T>(
  registry: Registry,
  name: string,
  kind: new (...args: never[]) => T,
): T | null {
  const metric = registry.getSingleMetric(name);
  if (metric === undefined) return null;
  if (!(metric instanceof kind)) {
    throw new Error(`metric ${name} is already registered with another type`);
  }
  return metric;
}

export function counter<L extends string>(
  registry: Registry,
  config: Omit<CounterConfiguration<L>, 'registers'>,
): Counter<L> {
  return (
    existing<Counter<L>>(registry, config.name, Counter) ??
    new Counter<L>({ ...config, registers: [registry] })
  );
}

export function gauge<L extends string>(
  registry: Registry,
  config: Omit<GaugeConfiguration<L>, 'registers'>,
): Gauge<L> {
  return (
    existing<Gauge<L>>(registry, config.name, Gauge) ??
    new Gauge<L>({ ...config, registers: [registry] })
  );
}

export function histogram<L extends string>(
  registry: Registry,
  config: Omit<HistogramConfiguration<L>, 'registers'>,
): Histogram<L> {
  return (
    existing<Histogram<L>>(registry, config.name, Histogram) ??
    new Histogram<L>({ ...config, registers: [registry] })
  );
}
