#!/usr/bin/env node
// Removes build output so that tests of deleted files never run from a stale dist/.
import { rmSync } from 'node:fs';

rmSync('dist', { recursive: true, force: true });
