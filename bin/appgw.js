#!/usr/bin/env node
// Entry point of the `appgw` CLI (called by bin/appgw): runs the TypeScript sources through tsx.
require('tsx/cjs');
require('../router/cli.ts').main(process.argv).then(
  (code) => { if (typeof code === 'number') process.exitCode = code; },
  (err) => { process.stderr.write(`appgw: internal error: ${err && err.stack ? err.stack : err}\n`); process.exitCode = 1; },
);
