// S12: the HTTP surface: no key, wrong key, key prefixes, huge bodies, malformed JSON, wrong
// types, unknown language, slow clients, oversized headers. Each gets a clear 4xx (HTTP 400 and a
// -400 envelope for bad fields, as DifySandbox); the suite checks the runner serves afterwards.
import net from 'node:net';
import type { Attack, Context, HttpAttack, Language } from './types.js';

async function post(
  c: Context,
  body: string,
  headers: Record<string, string>,
): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${c.runnerPort}/v1/sandbox/run`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body,
  });
  return { status: res.status, body: await res.text() };
}

const withKey = (c: Context) => ({ 'X-Api-Key': c.apiKey });

/** Raw bytes over a socket, for what fetch refuses to send; resolves with the status line. */
function raw(c: Context, chunks: string[]): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const s = net.connect(c.runnerPort, '127.0.0.1');
    let answer = '';
    s.setTimeout(20_000, () => s.destroy(new Error('no answer within 20 s')));
    s.on('data', (d) => (answer += d.toString('latin1')));
    s.on('error', reject);
    s.on('close', () => {
      const m = /^HTTP\/1\.1 (\d{3})/.exec(answer);
      resolve({ status: m === null ? 0 : Number(m[1]), body: answer.split('\r\n\r\n')[1] ?? '' });
    });
    s.on('connect', () => {
      for (const chunk of chunks) s.write(chunk);
    });
  });
}

/** Holds a request open mid-body (a slow client) while another client runs code. */
async function stallWhileServing(
  c: Context,
  language: Language,
): Promise<{ status: number; body: string }> {
  const s = net.connect(c.runnerPort, '127.0.0.1');
  s.on('error', () => undefined);
  await new Promise((r) => s.once('connect', r));
  s.write(
    `POST /v1/sandbox/run HTTP/1.1\r\nHost: x\r\nX-Api-Key: ${c.apiKey}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"lang`,
  );
  try {
    const code = language === 'python3' ? 'print(1)' : 'console.log(1)';
    return await post(c, JSON.stringify({ language, code }), withKey(c));
  } finally {
    s.destroy();
  }
}

function perLanguage(language: Language): HttpAttack[] {
  const run = JSON.stringify({ language, code: 'print(1)' });
  return [
    { name: 'no key', language, http: (c) => post(c, run, {}), status: [401], code: -401 },
    {
      name: 'a wrong key of the same length',
      language,
      http: (c) =>
        post(c, run, { 'X-Api-Key': c.apiKey.replace(/.$/, (ch) => (ch === 'x' ? 'y' : 'x')) }),
      status: [401],
      code: -401,
    },
    {
      name: 'the key with a byte added, and a prefix of it',
      language,
      http: async (c) => {
        const a = await post(c, run, { 'X-Api-Key': `${c.apiKey}0` });
        const b = await post(c, run, { 'X-Api-Key': c.apiKey.slice(0, 4) });
        return a.status === b.status ? a : { status: 0, body: '' };
      },
      status: [401],
      code: -401,
    },
    {
      name: 'a body over the size limit',
      language,
      http: (c) =>
        post(c, JSON.stringify({ language, code: `# ${'x'.repeat(300_000)}` }), withKey(c)),
      status: [413],
      code: -413,
    },
    {
      name: 'malformed JSON',
      language,
      http: (c) => post(c, `{"language": "${language}", "code": "print(1)"`, withKey(c)),
      status: [400],
      code: -400,
    },
    {
      name: 'wrong types for every field',
      language,
      http: (c) =>
        post(
          c,
          JSON.stringify({
            language: [language],
            code: { toString: 1 },
            preload: 5,
            enable_network: 'yes',
          }),
          withKey(c),
        ),
      status: [400],
      code: -400,
    },
    {
      name: 'a prototype-polluting body',
      language,
      http: (c) =>
        post(
          c,
          `{"__proto__": {"language": "${language}", "code": "print(1)"}, "constructor": {"prototype": {"x": 1}}}`,
          withKey(c),
        ),
      status: [400],
      code: -400,
    },
    {
      name: 'a slow client stalling mid-body while others are served',
      language,
      http: (c) => stallWhileServing(c, language),
      status: [200],
      code: 0,
    },
    {
      name: 'oversized headers',
      language,
      http: (c) =>
        raw(c, [
          `POST /v1/sandbox/run HTTP/1.1\r\nHost: x\r\nX-Api-Key: ${c.apiKey}\r\nX-Pad: ${'a'.repeat(40_000)}\r\nContent-Length: 2\r\n\r\n{}`,
        ]),
      status: [431],
    },
  ];
}

export const attacks: Attack[] = [...perLanguage('python3'), ...perLanguage('nodejs')];
