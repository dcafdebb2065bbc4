// vitest global setup of the `container` project: the images every container test uses, built
// once per run. The base image (debootstrap, since no registry can be reached) is cached by its
// tag, so it is built once per machine; the runner and squid images come from Docker's layer
// cache when nothing they copy has changed. A failure is handed to the tests, which fail with it
// (the other projects keep running).
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { GenericContainer } from 'testcontainers';
import type { TestProject } from 'vitest/node';
import { REPO_ROOT } from '../../runner/src/paths.js';
import {
  BASE_IMAGE,
  SETUP_HINT,
  ensureBaseImage,
  localCaCerts,
  type ContainerImages,
} from './docker.js';

// No container registry can be reached: testcontainers' reaper image cannot be pulled.
process.env.TESTCONTAINERS_RYUK_DISABLED ??= 'true';

const IMAGES: ContainerImages = {
  base: BASE_IMAGE,
  runner: 'sandboxpool/runner:test',
  squid: 'sandboxpool/squid:test',
};

async function timed<T>(what: string, step: () => Promise<T>): Promise<T> {
  const started = Date.now();
  const result = await step();
  console.log(`[container] ${what} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return result;
}

async function buildImages(): Promise<void> {
  await promisify(execFile)('docker', ['info'], { timeout: 20_000 }).catch((err: Error) => {
    throw new Error(`no Docker daemon answers (${err.message.split('\n')[0]}): ${SETUP_HINT}`);
  });
  await timed(`base image ${IMAGES.base}`, () => ensureBaseImage(IMAGES.base));
  const args = { BASE_IMAGE: IMAGES.base, EXTRA_CA_CERTS: localCaCerts() };
  await timed(`runner image ${IMAGES.runner}`, () =>
    GenericContainer.fromDockerfile(REPO_ROOT, 'Dockerfile.runner')
      .withBuildArgs(args)
      .build(IMAGES.runner, { deleteOnExit: false }),
  );
  await timed(`squid image ${IMAGES.squid}`, () =>
    GenericContainer.fromDockerfile(path.join(REPO_ROOT, 'manifests/docker-compose/squid'))
      .withBuildArgs({ BASE_IMAGE: IMAGES.base })
      .build(IMAGES.squid, { deleteOnExit: false }),
  );
}

export default async function setup(project: TestProject): Promise<void> {
  try {
    await buildImages();
    project.provide('containerImages', IMAGES);
    project.provide('containerSetupError', undefined);
  } catch (err) {
    const message = `container images unavailable: ${(err as Error).message}`;
    console.error(`[container] ${message}`);
    project.provide('containerImages', undefined);
    project.provide('containerSetupError', message);
  }
}
