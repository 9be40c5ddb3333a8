#!/usr/bin/env node
// ipkeeper: the CLI and daemons. Parsing and wiring live in src/cli/main.ts.
import { main } from '../src/cli/main.ts';

await main(process.argv);
