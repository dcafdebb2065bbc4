// One POST /v1/sandbox/run over a keep-alive connection, classified the way Dify's client
// would see it (api.md, "How Dify calls a sandbox"), with the stdout checked byte for byte.
import http from 'node:http';
import { performance } from 'node:perf_hooks';

export const ERROR_KINDS = [
  'http503', // backpressure: "service is unavailable" in Dify
  'httpOther', // any other non-200
  'transport', // connection refused/reset, or no answer within the request timeout
  'badBody', // body not JSON, or no data where code is 0
  'codeNonZero', // code != 0 in the envelope
  'runError', // data.error non-empty or exit_code != 0: Dify shows it to the user as a failure
  'wrongStdout', // ran, but stdout is not the expected bytes
] as const;
export type ErrorKind = (typeof ERROR_KINDS)[number];

export type Outcome =
  { ok: true; ms: number } | { ok: false; ms: number; kind: ErrorKind; detail: string };

export interface Target {
  /** A short label for tables, e.g. "ours" or "dify". */
  name: string;
  /** Base URL, e.g. http://127.0.0.1:8194 */
  url: URL;
  apiKey: string;
}

interface RawResponse {
  status: number;
  body: string;
}

function post(agent: http.Agent, t: Target, body: string, timeoutMs: number): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        agent,
        host: t.url.hostname,
        port: t.url.port === '' ? 80 : Number(t.url.port),
        path: new URL('v1/sandbox/run', withSlash(t.url)).pathname,
        method: 'POST',
        headers: {
          'Content-Type': 'application/json',
          'Content-Length': Buffer.byteLength(body),
          'X-Api-Key': t.apiKey,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
        );
        res.on('error', reject);
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

function withSlash(u: URL): URL {
  return u.pathname.endsWith('/') ? u : new URL(`${u.href}/`);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const clip = (s: string) => (s.length > 300 ? `${s.slice(0, 300)}…` : s);

/** What went wrong with a response, or null if it is the expected one. */
export function classify(
  status: number,
  text: string,
  expectedStdout: string,
): { kind: ErrorKind; detail: string } | null {
  if (status === 503) return { kind: 'http503', detail: clip(text) };
  if (status !== 200) return { kind: 'httpOther', detail: `HTTP ${status}: ${clip(text)}` };
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { kind: 'badBody', detail: `not JSON: ${clip(text)}` };
  }
  if (!isRecord(parsed)) return { kind: 'badBody', detail: `not an object: ${clip(text)}` };
  if (parsed.code !== 0)
    return {
      kind: 'codeNonZero',
      detail: `code ${String(parsed.code)}: ${String(parsed.message)}`,
    };
  const data = parsed.data;
  if (!isRecord(data)) return { kind: 'badBody', detail: `no data: ${clip(text)}` };
  const error = typeof data.error === 'string' ? data.error : '';
  if (error !== '' || (data.exit_code !== undefined && data.exit_code !== 0))
    return {
      kind: 'runError',
      detail: `exit_code ${String(data.exit_code)}: ${clip(error)} stderr: ${clip(String(data.stderr))}`,
    };
  if (data.stdout !== expectedStdout) {
    const got = typeof data.stdout === 'string' ? data.stdout : String(data.stdout);
    return {
      kind: 'wrongStdout',
      detail: `got ${got.length} chars ${JSON.stringify(clip(got))}, want ${expectedStdout.length} chars ${JSON.stringify(clip(expectedStdout))}`,
    };
  }
  return null;
}

/** Sends one request and times it from the call to the last byte of the response. */
export async function runOnce(
  agent: http.Agent,
  t: Target,
  body: string,
  expectedStdout: string,
  timeoutMs: number,
): Promise<Outcome> {
  const t0 = performance.now();
  let res: RawResponse;
  try {
    res = await post(agent, t, body, timeoutMs);
  } catch (err) {
    return {
      ok: false,
      ms: performance.now() - t0,
      kind: 'transport',
      detail: err instanceof Error ? err.message : String(err),
    };
  }
  const ms = performance.now() - t0;
  const bad = classify(res.status, res.body, expectedStdout);
  return bad === null ? { ok: true, ms } : { ok: false, ms, ...bad };
}
