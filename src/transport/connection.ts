// One TCP socket plus its frame decoder. The owner swaps `handler` as the connection moves from
// handshake to steady state; frames are dispatched synchronously so a handler change takes effect
// for the very next frame in the same socket chunk.

import type { Socket } from 'node:net';
import { TransportError } from './errors.js';
import { encodeFrame, FrameDecoder, type FrameHandler, type FrameType } from './frame.js';

/** How long a rejected connection may linger while its last frame flushes. */
const LINGER_MS = 1000;

export type CloseListener = (error: Error | undefined) => void;

export class Connection {
  handler: FrameHandler;
  /** Wall-clock ms of the last byte received / last frame written (liveness, keepalive). */
  lastReceiveMs = Date.now();
  lastWriteMs = Date.now();
  private readonly decoder: FrameDecoder;
  private readonly closeListeners: CloseListener[] = [];
  private closedFlag = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    readonly socket: Socket,
    frameBytesMax: number,
    keepAliveDelayMs: number,
  ) {
    this.handler = (type) => {
      throw new TransportError('FRAME_UNEXPECTED', `frame type ${type} before the connection was set up`);
    };
    this.decoder = new FrameDecoder(frameBytesMax, (type, payload) => this.handler(type, payload));
    socket.setNoDelay(true);
    socket.setKeepAlive(true, keepAliveDelayMs);
    socket.on('data', (chunk: Buffer) => {
      this.lastReceiveMs = Date.now();
      try {
        this.decoder.push(chunk);
      } catch (error) {
        this.close(error instanceof Error ? error : new Error(String(error)));
      }
    });
    socket.on('error', (error) => this.close(error));
    socket.on('close', () => this.close(undefined));
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  onClose(listener: CloseListener): void {
    if (this.closedFlag) throw new Error('transport invariant violated: onClose after close');
    this.closeListeners.push(listener);
  }

  /** One deadline at a time (handshake, snapshot ack); firing it closes the connection. */
  setDeadline(ms: number, error: () => TransportError): void {
    this.clearDeadline();
    this.timer = setTimeout(() => this.close(error()), ms);
  }

  clearDeadline(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  writeFrame(type: FrameType, payload: Uint8Array): boolean {
    return this.socket.write(encodeFrame(type, payload));
  }

  /** Send a last frame, then close once it is flushed (used to explain a rejection). */
  endWithFrame(type: FrameType, payload: Uint8Array, error: Error): void {
    if (this.closedFlag) return;
    this.decoder.stop();
    this.socket.end(encodeFrame(type, payload));
    // A peer that never closes its side must not keep the socket (and the process) alive.
    const linger = setTimeout(() => this.socket.destroy(), LINGER_MS);
    this.socket.once('close', () => clearTimeout(linger));
    this.finish(error);
  }

  close(error: Error | undefined): void {
    if (this.closedFlag) return;
    this.decoder.stop();
    this.socket.destroy();
    this.finish(error);
  }

  private finish(error: Error | undefined): void {
    this.closedFlag = true;
    this.clearDeadline();
    const listeners = this.closeListeners.splice(0);
    for (const listener of listeners) listener(error);
  }

  /** Resolves when the socket can take more data; rejects if the connection closes first. */
  waitDrain(): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.closedFlag) {
        reject(new TransportError('CLOSED', 'connection closed'));
        return;
      }
      const onClose: CloseListener = (error) => {
        this.socket.off('drain', onDrain);
        reject(error ?? new TransportError('CLOSED', 'connection closed while waiting for drain'));
      };
      const onDrain = (): void => {
        const at = this.closeListeners.indexOf(onClose);
        if (at >= 0) this.closeListeners.splice(at, 1);
        resolve();
      };
      this.socket.once('drain', onDrain);
      this.closeListeners.push(onClose);
    });
  }
}
