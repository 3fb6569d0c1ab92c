/**
 * The library as applications run it: the compiled dist/ (built by `npm ci` and `npm run
 * build`). Cases measuring speed or memory import it from here, not from src/, which tsx
 * would compile on the fly with helpers of its own.
 */
export * from '../dist/src/index.js';
