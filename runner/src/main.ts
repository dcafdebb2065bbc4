// The runner's entry point: `node dist/runner/src/main.js [--config PATH]`. A configuration
// error ends start-up with one line naming the bad key.
import { pino } from 'pino';
import { ConfigError, loadConfig, type RunnerConfig } from './config.js';
import { startRunner } from './server.js';

async function main(): Promise<void> {
  const at = process.argv.indexOf('--config');
  let config: RunnerConfig;
  try {
    config = loadConfig(at > 0 ? { configPath: process.argv[at + 1] ?? '' } : {});
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`invalid configuration: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = pino({ level: config.logLevel, base: { service: 'sandboxpool-runner' } });
  const runner = await startRunner(config, logger).catch((err: Error) => {
    // What only the machine can tell (a syscall this kernel lacks, an interpreter not there).
    if (err instanceof ConfigError) {
      process.stderr.write(`invalid configuration: ${err.message}\n`);
      process.exit(2);
    }
    logger.fatal({ err }, `start-up failed: ${err.message}`);
    process.exit(1);
  });
  // The first signal drains (runs under way are answered); a second one ends at once.
  let stopping = false;
  for (const signal of ['SIGTERM', 'SIGINT'] as const)
    process.on(signal, () => {
      if (stopping) {
        logger.warn({ signal }, 'second signal: exiting without waiting');
        process.exit(1);
      }
      stopping = true;
      logger.info({ signal }, 'shutting down');
      void runner.close().then(() => process.exit(0));
    });
}

await main();
