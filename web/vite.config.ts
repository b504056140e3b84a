import { defineConfig } from 'vite';

// The production build is embedded into the wardline binary by crates/web/build.rs.
// `npm run dev` serves the app with hot reload and forwards /api to a running server
// (WARDLINE_URL, default https://localhost:8443; its certificate is not checked, for
// local development only).
export default defineConfig({
  build: {
    target: 'es2022',
    sourcemap: false,
    // No data: URLs and no inline code: the server's CSP allows only 'self'.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    chunkSizeWarningLimit: 300,
  },
  server: {
    proxy: {
      '/api': {
        target: process.env.WARDLINE_URL ?? 'https://localhost:8443',
        secure: false,
        changeOrigin: false,
      },
    },
  },
});
