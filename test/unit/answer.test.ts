// A large answer is written in pieces: joined, they must be exactly the bytes of the whole
// answer (JSON.stringify's, as express's res.json and DifySandbox's encoder make them), for any
// text: surrogate pairs across a piece's end, lone halves, control characters, quotes.
import { describe, expect, it } from 'vitest';
import { answerEnvelope, answerPieces, jsonStringPieces } from '../../runner/src/answer.js';
import type { ExecutionResult } from '../../runner/src/execution.js';

const ALPHABET = [
  'a',
  '"',
  '\\',
  '\n',
  '\u0001',
  '\u007f',
  'é',
  '世',
  '😀',
  '\ud83d',
  '\ude00',
  '\u2028',
];

function randomText(next: () => number, length: number): string {
  let text = '';
  for (let i = 0; i < length; i++) text += ALPHABET[Math.floor(next() * ALPHABET.length)];
  return text;
}

describe('a run’s answer in pieces', () => {
  it('is JSON.stringify of the text, whatever the piece size', () => {
    let seed = 7;
    const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let i = 0; i < 3000; i++) {
      const text = randomText(next, Math.floor(next() * 40));
      for (const size of [1, 2, 3, 5, 64])
        expect([...jsonStringPieces(text, size)].join(''), JSON.stringify(text)).toBe(
          JSON.stringify(text),
        );
    }
  });

  it('is the whole envelope, byte for byte', () => {
    const result: ExecutionResult = {
      stdout: '😀'.repeat(10) + '\u0001x',
      stderr: 'Traceback\n',
      error: 'process exited with code 1\nTraceback\n',
      exitCode: 1,
      outcome: 'error',
    };
    const whole = JSON.stringify(answerEnvelope(result));
    for (const size of [1, 3, 1 << 16])
      expect([...answerPieces(result, size)].join('')).toBe(whole);
  });
});
