// The HTTP layer: routes, authentication and DifySandbox's response envelope. Everything that
// executes lives in the engine.
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import express, { type NextFunction, type Request, type Response } from 'express';
import onHeaders from 'on-headers';
import type { Logger } from 'pino';
import { LANGUAGES, type Language, type RunnerConfig } from './config.js';
import { sendAnswer } from './answer.js';
import { installPackages, listDependencies } from './dependencies.js';
import { Abandoned, Busy, type Engine } from './engine.js';
import type { RunnerMetrics } from './metrics.js';

export interface Readiness {
  ready: boolean;
  reason: string;
  /** Set at SIGTERM: /readyz answers 503, and each connection closes after its answer. */
  shuttingDown?: boolean;
}

interface AppDeps {
  config: RunnerConfig;
  engine: Engine;
  metrics: RunnerMetrics;
  logger: Logger;
  readiness: Readiness;
}

declare module 'express-serve-static-core' {
  interface Request {
    log: Logger;
  }
}

const envelope = (code: number, message: string, data: unknown = null) => ({ code, message, data });

/** body-parser's errors that are the client's, by their type, in our words. */
const CLIENT_ERRORS: Record<string, string> = {
  'entity.parse.failed': 'request body is not valid JSON',
  'encoding.unsupported': 'unsupported Content-Encoding',
  'charset.unsupported': 'unsupported charset',
  'request.aborted': 'request aborted',
  'request.size.invalid': 'request body size does not match Content-Length',
};

/** The unauthenticated probe routes, whose failures are not logged one by one. */
const PROBES = new Set(['/health', '/healthz', '/readyz', '/metrics']);

/**
 * A body DifySandbox refuses (a field missing or of the wrong type): HTTP 400 and code -400, as
 * its request binding answers (api.md said HTTP 200; DifySandbox built from its source answers
 * 400). The log line says why, beside the "answered 400" every refusal gets.
 */
function badRequest(req: express.Request, res: express.Response, message: string): void {
  req.log.warn(
    { method: req.method, path: req.originalUrl.split('?')[0], code: -400 },
    `refused: ${message}`,
  );
  res.status(400).json(envelope(-400, message));
}

/** Constant-time comparison, also in the length: both sides are hashed first. */
function keyMatches(given: string | undefined, expected: string): boolean {
  const a = createHash('sha256')
    .update(given ?? '')
    .digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b) && given !== undefined;
}

function parseLanguage(value: unknown): Language | undefined {
  return LANGUAGES.find((l) => l === value);
}

/** `/healthz` and `/metrics`, unauthenticated: on the main listener and the metrics one. */
function serveHealthAndMetrics(app: express.Express, metrics: RunnerMetrics): void {
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/metrics', async (_req, res) => {
    res.set('Content-Type', metrics.registry.contentType).send(await metrics.registry.metrics());
  });
}

/** The metrics listener: `/metrics` and `/healthz`, nothing else. */
export function createMetricsApp(metrics: RunnerMetrics): express.Express {
  const app = express();
  app.disable('x-powered-by');
  serveHealthAndMetrics(app, metrics);
  return app;
}

export function createApp({
  config,
  engine,
  metrics,
  logger,
  readiness,
}: AppDeps): express.Express {
  const tooLarge = `request body larger than ${config.maxBodyBytes} bytes`;
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);

  app.use((req, res, next) => {
    const given = req.get('x-request-id');
    const id = given !== undefined && /^[\w.-]{1,64}$/.test(given) ? given : randomUUID();
    res.set('X-Request-Id', id);
    // Decided when the headers go out: an answer of a run that began before SIGTERM too.
    onHeaders(res, () => {
      if (readiness.shuttingDown === true) res.setHeader('Connection', 'close');
    });
    req.log = logger.child({ reqId: id });
    // Runs log their own line ("execution finished"); a refused request (a wrong key, a full
    // queue, a bad body) gets this one, so that an operator sees it in the logs too.
    res.once('finish', () => {
      const path = req.originalUrl.split('?')[0];
      // Not the probes: a runner not ready would log one line per probe (every 5 s).
      if (res.statusCode >= 400 && !PROBES.has(path ?? ''))
        req.log.warn(
          { method: req.method, path, status: res.statusCode },
          `answered ${res.statusCode}`,
        );
    });
    next();
  });

  // Unauthenticated: Dify's compose health check, liveness, readiness, Prometheus.
  app.get('/health', (_req, res) => {
    res.json('ok');
  });
  serveHealthAndMetrics(app, metrics);
  app.get('/readyz', (_req, res) => {
    const shuttingDown = readiness.shuttingDown === true;
    const ready = readiness.ready && !shuttingDown;
    res
      .status(ready ? 200 : 503)
      .json({ ready, reason: shuttingDown ? 'shutting down' : readiness.reason });
  });

  const sandbox = express.Router();
  sandbox.use((req, res, next) => {
    if (!keyMatches(req.get('x-api-key'), config.apiKey)) {
      res.status(401).json(envelope(-401, 'Unauthorized'));
      return;
    }
    next();
  });
  // A body declared too large is answered before it is read (body-parser would read it all
  // first); Node.js then reads and discards the rest, so that a client still sending it gets
  // the answer rather than a broken pipe.
  sandbox.use((req, res, next) => {
    if (Number(req.get('content-length')) > config.maxBodyBytes) {
      res.status(413).json(envelope(-413, tooLarge));
      return;
    }
    next();
  });
  sandbox.use(express.json({ limit: config.maxBodyBytes, type: () => true, strict: false }));

  sandbox.post('/run', async (req, res) => {
    const body: unknown = req.body;
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      badRequest(req, res, 'request body must be a JSON object');
      return;
    }
    const {
      language,
      code,
      preload,
      enable_network: enableNetwork,
    } = body as Record<string, unknown>;
    if (typeof language !== 'string' || language === '') {
      badRequest(req, res, 'language is required');
      return;
    }
    const lang = parseLanguage(language);
    if (lang === undefined) {
      res.status(400).json(envelope(-400, 'unsupported language'));
      return;
    }
    if (typeof code !== 'string' || code === '') {
      badRequest(req, res, 'code is required and must be a string');
      return;
    }
    if (preload !== undefined && preload !== null && typeof preload !== 'string') {
      badRequest(req, res, 'preload must be a string');
      return;
    }
    if (
      enableNetwork !== undefined &&
      enableNetwork !== null &&
      typeof enableNetwork !== 'boolean'
    ) {
      badRequest(req, res, 'enable_network must be a boolean');
      return;
    }
    if (!readiness.ready) {
      // Retry-After: when a client (or a proxy in front) may try again.
      res
        .status(503)
        .set('Retry-After', '5')
        .json(envelope(-503, `sandbox not ready: ${readiness.reason}`));
      return;
    }
    // A client that gives up (Dify's read timeout) waits for nothing: its run is dropped from
    // the queue or stopped, so that the worker serves a client still waiting.
    const gone = new AbortController();
    const leave = () => {
      if (!res.writableFinished) gone.abort();
    };
    res.once('close', leave);
    // A pipelined request's answer has no socket until the previous one is written, so its
    // 'close' would not come when the client goes: watch the connection itself too.
    if (req.socket.destroyed) gone.abort();
    else req.socket.once('close', leave);
    res.once('finish', () => req.socket.off('close', leave));
    try {
      const result = await engine.run(
        {
          language: lang,
          code,
          preload: config.enablePreload && typeof preload === 'string' ? preload : '',
          // Network only when the configuration allows it; otherwise the run goes ahead
          // without network and a socket attempt says "network is disabled".
          network: enableNetwork === true && config.enableNetwork,
          abandoned: gone.signal,
        },
        req.log,
      );
      await sendAnswer(res, result);
    } catch (err) {
      if (err instanceof Busy) {
        res.status(503).set('Retry-After', '1').json(envelope(-503, 'Too many requests'));
        return;
      }
      if (err instanceof Abandoned) return; // nobody to answer
      throw err;
    }
  });

  const dependencies = (install: boolean) => async (req: Request, res: Response) => {
    // DifySandbox binds it from the query, or from a JSON body (its update route is a POST).
    const body: unknown = req.body;
    const fromBody =
      body !== null && typeof body === 'object'
        ? (body as Record<string, unknown>).language
        : undefined;
    const lang = parseLanguage(req.query.language ?? fromBody);
    if (lang === undefined) {
      res.status(400).json(envelope(-400, 'unsupported language'));
      return;
    }
    // Installs what the configuration lists and is missing (a no-op when all is there).
    if (install) await installPackages(config);
    res.json(envelope(0, 'success', { dependencies: await listDependencies(config, lang) }));
  };
  sandbox.get('/dependencies', dependencies(false));
  sandbox.post('/dependencies/update', dependencies(true));
  sandbox.get('/dependencies/refresh', dependencies(true));

  app.use('/v1/sandbox', sandbox);

  app.use((_req, res) => {
    res.status(404).json(envelope(-404, 'not found'));
  });
  // express hands body-parser and route errors here; the status says whose fault it was.
  app.use(
    (
      err: Error & { status?: number; type?: string },
      req: Request,
      res: Response,
      _next: NextFunction,
    ) => {
      // The client's fault only for what body-parser says is (by its error's type): anything
      // else, a descriptor shortage say, is the runner's, and its text (paths) stays in the log.
      const clientError =
        err.type === 'entity.too.large' ? tooLarge : CLIENT_ERRORS[err.type ?? ''];
      if (
        clientError !== undefined &&
        err.status !== undefined &&
        err.status >= 400 &&
        err.status < 500
      ) {
        res.status(err.status).json(envelope(-err.status, clientError));
        return;
      }
      req.log.error({ err }, 'request failed');
      res.status(500).json(envelope(-500, 'internal error'));
    },
  );
  return app;
}
