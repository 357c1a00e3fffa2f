// Builds dist/ (what the Go binary embeds) from src/. The output has fixed
// names and no timestamps, so the same sources and lock file give the same
// bytes; `npm ci && npm run build` then `git diff dist/` shows nothing.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';

rmSync('dist', { recursive: true, force: true });
mkdirSync('dist/assets', { recursive: true });
await build({
  entryPoints: { app: 'src/main.js' },
  bundle: true,
  format: 'esm',
  target: ['es2020'],
  minify: true,
  legalComments: 'eof',
  outdir: 'dist/assets',
  logLevel: 'info',
});
await build({
  entryPoints: { app: 'src/style.css' },
  bundle: true,
  minify: true,
  outdir: 'dist/assets',
  logLevel: 'info',
});
// tickflow backtest -html inlines these into a self-contained page.
await build({
  entryPoints: { backtest: 'src/backtest.js' },
  bundle: true,
  format: 'iife',
  target: ['es2020'],
  minify: true,
  legalComments: 'eof',
  outdir: 'dist/backtest',
  logLevel: 'info',
});
await build({
  entryPoints: { backtest: 'src/backtest.css' },
  bundle: true,
  minify: true,
  outdir: 'dist/backtest',
  logLevel: 'info',
});
copyFileSync('src/index.html', 'dist/index.html');
