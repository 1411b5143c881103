/**
 * The dashboard's HTML: the login form, and the page the bundled client script
 * (`web/dashboard_client.ts`, served as `/assets/dashboard.js`) fills from the API. Plain HTML, no
 * CDN: everything the page loads comes from this server.
 *
 * @module
 */

/**
 * Escapes text for HTML content and attribute values.
 *
 * @param text any text
 * @returns the text with `& < > " '` escaped
 */
export function escapeHtml(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;").replaceAll("'", "&#39;");
}

const STYLE = `
:root { --bg:#f6f7f9; --fg:#1d2330; --muted:#5b6475; --line:#d5d9e0; --accent:#2f6fde;
  --storage:#2f6fde; --network:#d9822b; --bad:#c23b3b; --good:#2e8b57; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.4 system-ui, sans-serif; background:var(--bg); color:var(--fg); }
header { display:flex; align-items:center; justify-content:space-between; padding:8px 16px;
  background:#1d2330; color:#fff; }
header h1 { font-size:16px; margin:0; }
main { display:grid; grid-template-columns:repeat(auto-fit, minmax(min(360px, 100%), 1fr)); gap:12px;
  padding:12px; }
section { background:#fff; border:1px solid var(--line); border-radius:6px; padding:10px 12px;
  min-width:0; }
section h2 { font-size:14px; margin:0 0 8px; }
table { border-collapse:collapse; width:100%; font-size:12px; }
.scroll { overflow-x:auto; max-width:100%; }
h3 { font-size:13px; margin:8px 0 4px; overflow-wrap:anywhere; }
.job .what { overflow-wrap:anywhere; }
th, td { text-align:left; padding:2px 6px; border-bottom:1px solid var(--line); }
.muted { color:var(--muted); }
.cells { display:flex; flex-wrap:wrap; gap:2px; margin-bottom:8px; }
.cell { width:14px; height:14px; border-radius:2px; background:#e3e6eb; }
.cell[data-state=allocated], .cell[data-state=bound] { background:#8fa9c9; }
.cell[data-state=listening] { background:#f0c419; }
.cell[data-state=connecting], .cell[data-state=pairing] { background:#9b59b6; }
.cell[data-state=connected] { background:var(--good); }
.cell[data-state=closed], .cell[data-state=releasing] { background:#7f8c8d; }
.cell[data-state=reset], .cell[data-state=refused], .cell.corrupt { background:var(--bad); }
.legend span { display:inline-flex; align-items:center; gap:3px; margin-right:8px; font-size:12px; }
.legend .cell { width:10px; height:10px; }
.bar { height:8px; background:#e3e6eb; border-radius:4px; overflow:hidden; }
.bar > div { height:100%; background:var(--accent); }
.status-dead, .status-fenced, .state-failed, .state-cancelled, .error { color:var(--bad); }
.state-succeeded { color:var(--good); }
.job { border-top:1px solid var(--line); padding:6px 0; }
.job:first-child { border-top:0; }
.job .row { display:flex; gap:8px; flex-wrap:wrap; align-items:baseline; font-size:12px; }
.job svg { width:100%; height:60px; background:#fafbfc; border:1px solid var(--line); }
.chart-key .storage { color:var(--storage); } .chart-key .network { color:var(--network); }
form { display:grid; gap:4px; margin-bottom:10px; padding-bottom:8px; border-bottom:1px solid var(--line); }
form label { display:grid; grid-template-columns:90px 1fr; gap:6px; align-items:center; font-size:12px; }
input[type=text], select { width:100%; min-width:0; padding:3px 5px; }
button { justify-self:start; padding:3px 10px; }
.login { max-width:360px; margin:80px auto; }
`;

function document(title: string, body: string, head = ""): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>${head}
<link rel="icon" href="data:,">
<style>${STYLE}</style></head>
<body>${body}</body></html>`;
}

/**
 * The login form: the token goes to `POST /login`.
 *
 * @param error what to say above the form (a wrong token), or nothing
 * @returns the HTML page
 */
export function loginPage(error?: string): string {
  const said = error === undefined
    ? ""
    : `<p class="error" id="login-error">${escapeHtml(error)}</p>`;
  return document(
    "lanfree: log in",
    `<section class="login"><h2>lanfree dashboard</h2>${said}
<form method="post" action="/login">
<label>Token <input type="password" name="token" id="token" autocomplete="current-password" required></label>
<button type="submit">Log in</button></form>
<p class="muted">The token is the one <code>deno task serve</code> printed (or LANFREE_TOKEN).</p>
</section>`,
  );
}

const FORMS = `
<form data-kind="backup" id="form-backup"><strong>Backup</strong>
<label>Source <input type="text" name="source" placeholder="/path/to/tree"></label>
<label>Repository <input type="text" name="repo" required></label>
<label>Agent <input type="text" name="agent" placeholder="host:port (optional)"></label>
<label>Incremental <input type="checkbox" name="incremental"></label>
<label>Channel <select name="channel"><option value="auto">auto (storage, else network)</option>
<option value="storage">storage only</option><option value="network">network only</option></select></label>
<button type="submit">Start backup</button><output class="error"></output></form>
<form data-kind="restore" id="form-restore"><strong>Restore</strong>
<label>Repository <input type="text" name="repo" required></label>
<label>Snapshot <input type="text" name="snapshot" placeholder="latest"></label>
<label>Target <input type="text" name="target" required></label>
<label>Overwrite <input type="checkbox" name="overwrite"></label>
<button type="submit">Start restore</button><output class="error"></output></form>
<form data-kind="verify" id="form-verify"><strong>Verify</strong>
<label>Repository <input type="text" name="repo" required></label>
<label>Snapshot <input type="text" name="snapshot" placeholder="all"></label>
<button type="submit">Start verify</button><output class="error"></output></form>`;

/**
 * The dashboard of a logged-in browser: the region map, jobs, snapshots and job forms, filled
 * by `/assets/dashboard.js`.
 *
 * @param csrfToken the session's CSRF token (the script sends it on state-changing requests)
 * @returns the HTML page
 */
export function dashboardPage(csrfToken: string): string {
  return document(
    "lanfree dashboard",
    `<header><h1>lanfree</h1><span id="clock" class="muted"></span>
<button id="logout" type="button">Log out</button></header>
<main>
<section id="region"><h2>Storage region</h2><div id="region-body" class="muted">loading…</div></section>
<section id="jobs"><h2>Jobs</h2><div id="jobs-body" class="muted">loading…</div></section>
<section id="snapshots"><h2>Snapshots</h2>
<form id="snapshots-form"><label>Repository <input type="text" name="repo"></label>
<button type="submit">Show</button><output class="error"></output></form>
<div id="snapshots-body"></div></section>
<section id="start"><h2>Start a job</h2>${FORMS}</section>
</main>
<script type="module" src="/assets/dashboard.js"></script>`,
    `\n<meta name="csrf-token" content="${escapeHtml(csrfToken)}">`,
  );
}
