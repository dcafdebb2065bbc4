// Output bytes as the answer's text: byte for byte what DifySandbox (Go) answers, also for
// bytes that are not UTF-8.
import { describe, expect, it } from 'vitest';
import { decodeAsDifySandbox } from '../../runner/src/execution.js';

const bytes = (s: string) => Buffer.from(s, 'latin1');

/**
 * The rule spelled out the slow way: at each position, the longest prefix of at most four bytes
 * that Node.js decodes to one character without a replacement is a sequence; else the byte
 * becomes U+FFFD.
 */
function reference(input: Buffer): string {
  let text = '';
  for (let at = 0; at < input.length;) {
    let n = 0;
    for (let len = 1; len <= 4 && at + len <= input.length && n === 0; len++) {
      const piece = input.subarray(at, at + len);
      const decoded = piece.toString('utf8');
      if (!decoded.includes('\ufffd') && Buffer.from(decoded).equals(piece)) n = len;
    }
    // U+FFFD itself, when it was in the output, is a valid sequence of three bytes.
    if (n === 0 && input.subarray(at, at + 3).equals(Buffer.from('\ufffd'))) n = 3;
    text += n === 0 ? '\ufffd' : input.toString('utf8', at, at + n);
    at += Math.max(n, 1);
  }
  return text;
}

describe('output text', () => {
  it('keeps valid UTF-8 as it is', () => {
    const text = 'hello, 世界 😀 \u0000\n';
    expect(decodeAsDifySandbox(Buffer.from(text))).toBe(text);
  });

  it('replaces each byte of an invalid sequence with one U+FFFD, as Go does', () => {
    // What DifySandbox answered for this program's stdout (measured side by side).
    expect(decodeAsDifySandbox(bytes('a\xff\xfeb\xe4\xb8c\xf0\x9f\x98d\xc3'))).toBe(
      'a\ufffd\ufffdb\ufffd\ufffdc\ufffd\ufffd\ufffdd\ufffd',
    );
    // Surrogates, overlong forms and code points above U+10FFFF are not UTF-8 either.
    expect(decodeAsDifySandbox(bytes('\xed\xa0\x80|\xc0\xaf|\xe0\x80\xaf|\xf4\x90\x80\x80'))).toBe(
      '\ufffd\ufffd\ufffd|\ufffd\ufffd|\ufffd\ufffd\ufffd|\ufffd\ufffd\ufffd\ufffd',
    );
    // Valid sequences around invalid bytes are kept.
    expect(decodeAsDifySandbox(bytes('\xe4\xb8\x96\x80\xf0\x9f\x98\x80'))).toBe('世\ufffd😀');
  });

  it('agrees with the rule spelled out, on random bytes mostly UTF-8', () => {
    const pieces = ['a', 'é', '世', '😀', '\ufffd', '\n'].map((c) => Buffer.from(c));
    let seed = 42;
    const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let i = 0; i < 2000; i++) {
      const parts: Buffer[] = [];
      for (let j = 0; j < 12; j++)
        parts.push(
          next() < 0.7
            ? pieces[Math.floor(next() * pieces.length)]!
            : Buffer.from([Math.floor(next() * 256)]),
        );
      const input = Buffer.concat(parts);
      expect(decodeAsDifySandbox(input), input.toString('hex')).toBe(reference(input));
    }
  });

  it('decodes the largest output of invalid bytes without holding the event loop long', () => {
    // 4 MiB (SANDBOX_MAX_OUTPUT_BYTES' default) of bytes that are never UTF-8, the worst case:
    // a string grown a piece per byte took ~0.37 s here, on the loop every run shares; ~0.09 s
    // in one buffer.
    const input = Buffer.alloc(4 << 20, 0xff);
    decodeAsDifySandbox(input.subarray(0, 1 << 16)); // compiled before it is timed
    // CPU time, not the wall clock: other test files run beside this one.
    const started = process.cpuUsage();
    const text = decodeAsDifySandbox(input);
    const { user, system } = process.cpuUsage(started);
    expect(text.length).toBe(input.length);
    expect((user + system) / 1000).toBeLessThan(250);
  });
});
