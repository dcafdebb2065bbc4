// The operator's pool gauges, read from the watch cache at each scrape.
import { describe, expect, it } from 'vitest';
import { OperatorMetrics } from '../../operator/metrics.js';

describe('operator metrics', () => {
  it('report each pool ready or not, and none for a pool scaled to 0 on purpose', async () => {
    const m = new OperatorMetrics();
    m.poolsSource = () => [
      { namespace: 'a', name: 'serving', ready: true, scaledToZero: false },
      { namespace: 'a', name: 'broken', ready: false, scaledToZero: false },
      { namespace: 'b', name: 'parked', ready: false, scaledToZero: true },
    ];
    const text = await m.registry.metrics();
    expect(text).toMatch(/^sandboxpool_operator_managed_pools 3$/m);
    expect(text).toMatch(
      /^sandboxpool_operator_pool_ready\{pool_namespace="a",pool="serving"\} 1$/m,
    );
    expect(text).toMatch(
      /^sandboxpool_operator_pool_ready\{pool_namespace="a",pool="broken"\} 0$/m,
    );
    // Else SandboxPoolNotReady would fire for as long as it is parked.
    expect(text).not.toMatch(/pool="parked"/);
  });
});
