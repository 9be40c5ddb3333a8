#!/usr/bin/env node
// ipkeeper: the CLI and daemons. Parsing and wiring live in src/cli/main.ts.
//
// Node's compile cache goes on before the rest is loaded: run from the sources, every start reads,
// type-strips and compiles a few hundred files, and with the cache a start reuses what an earlier
// one compiled (`ipkeeper --help`: 370–390 ms without, 220–330 ms with). The cache is where
// IPKEEPER_COMPILE_CACHE says, else Node's default under the temp directory; it is keyed by each
// file's content and Node's version, and a start that cannot write it runs without it
// (NODE_DISABLE_COMPILE_CACHE=1 turns it off). The image's launcher (scripts/build.ts) does the same.
import { enableCompileCache } from 'node:module';

enableCompileCache(process.env.IPKEEPER_COMPILE_CACHE || undefined);
const { main } = await import('../src/cli/main.ts');
await main(process.argv);
