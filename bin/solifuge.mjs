#!/usr/bin/env node
// Entry point installed as `solifuge`: runs the compiled CLI (dist/, built by `npm install`).
import { main } from '../dist/cli/solifuge.js';

process.exitCode = await main(process.argv.slice(2));
