// A run's answer, DifySandbox's envelope, written a piece at a time when it is large. Built
// whole (express's res.json), the answer of a run with 4 MiB of control bytes on stdout and
// stderr is a 50 MB string (each such byte takes six characters, and stderr is there twice,
// also in `error`), and then a 50 MB buffer: the runner's memory rose by ~190 MB for one such
// answer. In pieces of 64 Ki characters, with the socket's backpressure, it stays at the
// outputs themselves. The bytes are the same: the pieces joined are JSON.stringify's.
import type { Response } from 'express';
import type { ExecutionResult } from './execution.js';

/** Answers with this many characters of output or more are written in pieces. */
const PIECEWISE_FROM_CHARS = 1 << 20;
const PIECE_CHARS = 1 << 16;

/**
 * JSON.stringify(TEXT), a piece at a time: the quotes, and the JSON of slices of TEXT between
 * them. A slice never ends between the two halves of a surrogate pair (JSON.stringify escapes
 * a half that stands alone, in the slice, and keeps a pair), so the pieces joined are exactly
 * JSON.stringify(TEXT).
 */
export function* jsonStringPieces(text: string, pieceChars = PIECE_CHARS): Generator<string> {
  yield '"';
  for (let at = 0; at < text.length;) {
    let end = Math.min(text.length, at + pieceChars);
    const last = text.charCodeAt(end - 1);
    const next = text.charCodeAt(end); // NaN past the end
    if (last >= 0xd800 && last <= 0xdbff && next >= 0xdc00 && next <= 0xdfff)
      end += end - 1 > at ? -1 : 1;
    yield JSON.stringify(text.slice(at, end)).slice(1, -1);
    at = end;
  }
  yield '"';
}

/** The pieces of the JSON of answerEnvelope(RESULT). */
export function* answerPieces(
  result: ExecutionResult,
  pieceChars = PIECE_CHARS,
): Generator<string> {
  yield '{"code":0,"message":"success","data":{"stdout":';
  yield* jsonStringPieces(result.stdout, pieceChars);
  yield ',"stderr":';
  yield* jsonStringPieces(result.stderr, pieceChars);
  yield ',"error":';
  yield* jsonStringPieces(result.error, pieceChars);
  yield `,"exit_code":${JSON.stringify(result.exitCode)}}}`;
}

/** RESULT's answer whole: the object the pieces are the JSON of. */
export function answerEnvelope(result: ExecutionResult) {
  return {
    code: 0,
    message: 'success',
    data: {
      stdout: result.stdout,
      stderr: result.stderr,
      error: result.error,
      exit_code: result.exitCode,
    },
  };
}

/**
 * Sends RESULT's answer: whole when it is small (with a Content-Length), else in pieces (chunked),
 * each written once the socket took the last. Stops when the client goes away.
 */
export async function sendAnswer(res: Response, result: ExecutionResult): Promise<void> {
  const chars = result.stdout.length + result.stderr.length + result.error.length;
  if (chars < PIECEWISE_FROM_CHARS) {
    res.json(answerEnvelope(result));
    return;
  }
  res.status(200).set('Content-Type', 'application/json; charset=utf-8');
  // Plain listeners, not events.once: an 'error' on the response must not become a rejection.
  const gone = new Promise<false>((resolve) => res.once('close', () => resolve(false)));
  const drained = () => new Promise<true>((resolve) => res.once('drain', () => resolve(true)));
  for (const piece of answerPieces(result)) {
    if (res.destroyed) return;
    if (!res.write(piece) && !(await Promise.race([drained(), gone]))) return;
  }
  res.end();
}
