// The upstream app of the end-to-end suite: answers every request with what it received
// (method, path, query, headers, body length, and the text of a url-encoded form body up to
// 64 KiB) as JSON, or, for a browser navigating, as a
// small HTML page that shows the same JSON (and exposes it to page script as window.echo).
//
//   node echo.mjs [--host 127.0.0.1] [--port 0] [--port-file F]
import fs from 'node:fs';
import http from 'node:http';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '0' },
    'port-file': { type: 'string', default: '' },
  },
});

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

// Large identity headers (chunked sessions carry big claims) must not be refused.
const server = http.createServer({ maxHeaderSize: 256 * 1024 }, (req, res) => {
  let length = 0;
  // A url-encoded form's text is shown (the preserve_post check compares the fields).
  const form = /^application\/x-www-form-urlencoded/i.test(req.headers['content-type'] || '');
  const kept = [];
  req.on('data', (chunk) => {
    length += chunk.length;
    if (form && length <= 64 * 1024) kept.push(chunk);
  });
  req.on('end', () => {
    const url = new URL(req.url, 'http://upstream');
    const seen = {
      method: req.method,
      path: url.pathname,
      query: url.search.slice(1),
      headers: req.headers,
      body_length: length,
    };
    if (form && length <= 64 * 1024) seen.body = Buffer.concat(kept).toString('utf8');
    const json = JSON.stringify(seen, null, 2);
    // Browsers navigating (Sec-Fetch-Dest: document) get a page; everyone else JSON.
    if (req.headers['sec-fetch-dest'] === 'document') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(`<!doctype html><html><head><meta charset="utf-8"><title>echo</title></head><body>
<h1>Hello, <span id="user">${escape(req.headers.oidc_claim_sub || 'anonymous')}</span></h1>
<pre id="echo">${escape(json)}</pre>
<script>window.echo = JSON.parse(document.getElementById('echo').textContent);</script>
</body></html>`);
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(json);
  });
});

server.listen(Number(args.port), args.host, () => {
  const { port } = server.address();
  if (args['port-file']) fs.writeFileSync(args['port-file'], `${port}\n`);
  console.log(`echo: http://${args.host}:${port}`);
});

const stop = () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
