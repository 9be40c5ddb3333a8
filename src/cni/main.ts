/**
 * @module cni/main
 * The `ipkeeper` CNI plugin's entry point (`npm run build` bundles it into a single executable).
 */

import { main } from './process.ts';

main();
