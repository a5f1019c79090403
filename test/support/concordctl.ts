// Runs the compiled concordctl as a child process with a deadline, capturing its output.

import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const concordctlScript = fileURLToPath(new URL('../../src/cli/concordctl.js', import.meta.url));

export interface ConcordctlResult {
  /** Exit code; null when the deadline killed it. */
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `concordctl ARGS` to completion, or until `timeoutMs` (then SIGKILL, code null). */
export function runConcordctl(args: string[], timeoutMs = 30_000): Promise<ConcordctlResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [concordctlScript, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    let killed = false;
    const timer = setTimeout(() => {
      killed = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: killed ? null : code, stdout, stderr });
    });
  });
}
