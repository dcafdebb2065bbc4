// Output bytes as the answer's text: byte for byte what DifySandbox (Go) answers, also for
// bytes that are not UTF-8.
import { describe, expect, it } from 'vitest';
import { decodeAsDifySandbox } from '../../runner/src/execution.js';

const bytes = (s: string) => Buffer.from(s, 'latin1');

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
});
