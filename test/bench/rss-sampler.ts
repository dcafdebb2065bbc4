// The RSS sampler's process (see rss.ts): samples the tree every INTERVAL_MS with synchronous
// reads, away from the process that times requests. Sends "ready" after its first sample and
// the peaks when told to stop.
// Usage (through RssSampler): rss-sampler.ts PID INTERVAL_MS
import { sampleTree, type RssPeaks } from './rss.js';

const pid = Number(process.argv[2]);
const intervalMs = Number(process.argv[3]);
const peaks: RssPeaks = { serverKiB: 0, totalKiB: 0, processes: 0, samples: 0 };

function tick(): void {
  const s = sampleTree(pid, false);
  if (s === null) return;
  peaks.samples++;
  peaks.serverKiB = Math.max(peaks.serverKiB, s.serverKiB);
  peaks.totalKiB = Math.max(peaks.totalKiB, s.totalKiB);
  peaks.processes = Math.max(peaks.processes, s.processes);
}

tick();
process.send?.('ready');
const timer = setInterval(tick, intervalMs);
process.once('message', () => {
  clearInterval(timer);
  process.send?.(peaks, () => process.exit(0));
});
// The harness is gone (killed): stop too.
process.once('disconnect', () => process.exit(0));
