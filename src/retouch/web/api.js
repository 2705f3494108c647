// The one module of the page that talks to the retouch HTTP API (`retouch serve`, docs/serve.md).
// Every route, field name and response shape the page depends on is here; app.js sees plain objects:
//   session = {id, method, width, height, sourceCaption, prepare, current, turns: [turn]}   (turn 0: the upload)
//   turn    = {index, key, instruction, caption, method, strength, hasMask, record}
// and every failure is an ApiError whose message is a sentence for a person, never a bare status code.

const TOKEN_KEY = "retouch.token";

export class ApiError extends Error {
  constructor(message, { status = 0, problem = null } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.problem = problem;
  }
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function headers(extra = {}) {
  const h = { ...extra };
  const token = getToken();
  if (token) h.Authorization = `Bearer ${token}`;
  return h;
}

// A problem body (RFC 9457) or any failed response -> words.
async function failure(resp) {
  let problem = null;
  try {
    problem = await resp.json();
  } catch {
    problem = null;
  }
  let detail = problem && (problem.detail || problem.title);
  if (detail) detail = String(detail).charAt(0).toUpperCase() + String(detail).slice(1);
  let message;
  if (resp.status === 401 || resp.status === 403) {
    message = "This server wants an access token. Paste the token under “Server token” and try again.";
    if (detail) message += ` (${detail})`;
  } else if (resp.status === 429) {
    const wait = resp.headers.get("Retry-After");
    const unit = wait === "1" ? "second" : "seconds";
    message = `The server is busy with other edits. Try again${wait ? ` in ${wait} ${unit}` : " in a moment"}.`;
  } else if (resp.status === 413) {
    message = detail ? `The upload is too large: ${detail}` : "The upload is too large for this server.";
  } else if (resp.status === 404) {
    const hint = "The server may have restarted or dropped this session: open the image again.";
    message = detail ? `${detail}. ${hint}` : hint;
  } else if (resp.status === 408 || resp.status === 504) {
    message = detail ? `The edit took too long: ${detail}` : "The edit took longer than the server allows.";
  } else if (detail) {
    message = String(detail);
  } else if (resp.status >= 500) {
    message = "The server failed while handling the request. Its log says why.";
  } else {
    message = `The server refused the request (${resp.statusText || "no reason given"}).`;
  }
  return new ApiError(message, { status: resp.status, problem });
}

async function call(path, { method = "GET", body = undefined, accept = "application/json", signal } = {}) {
  let resp;
  try {
    resp = await fetch(path, { method, body, headers: headers({ Accept: accept }), signal });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError("Cannot reach the retouch server. Is `retouch serve` still running?");
  }
  if (!resp.ok) throw await failure(resp);
  return resp;
}

async function json(path, opts) {
  return (await call(path, opts)).json();
}

// -- shapes: the server's JSON (docs/serve.md: SESSION, TURN, RECORD) -> the page's objects --------------
function toTurn(t, session) {
  const record = t.record || {};
  return {
    index: t.index,
    // a replaced turn keeps its index: the key changes with what the turn shows
    key: `${t.index}:${record.target_caption ?? t.caption ?? ""}:${record.strength ?? t.strength ?? ""}:${record.seconds ?? ""}:${t.has_mask}`,
    instruction: t.instruction ?? null,
    caption: t.caption ?? record.target_caption ?? null,
    method: record.method ?? session.method ?? null,
    strength: t.strength ?? record.strength ?? null,
    hasMask: Boolean(t.has_mask),
    record,
  };
}

function toSession(s) {
  return {
    id: s.id,
    method: s.method,
    width: s.width,
    height: s.height,
    sourceCaption: s.source_caption ?? null,
    prepare: s.prepare || {},
    current: s.current,
    turns: (s.turns || []).map((t) => toTurn(t, s)),
  };
}

// -- routes ---------------------------------------------------------------------------------------
export async function health() {
  return json("/healthz");
}

// [{name, strength, default, ...}]; the server leaves out the reference methods, which cannot run on a request
export async function listMethods() {
  const body = await json("/v1/methods");
  return (Array.isArray(body) ? body : body.methods).map((m) => (typeof m === "string" ? { name: m } : m));
}

// Upload an image once; the server captions and inverts it here for every later edit of this session.
export async function createSession(file, { method } = {}) {
  const form = new FormData();
  form.append("image", file, file.name || "image.png");
  if (method) form.append("method", method);
  return toSession(await json("/v1/sessions", { method: "POST", body: form }));
}

export async function getSession(id) {
  return toSession(await json(`/v1/sessions/${encodeURIComponent(id)}`));
}

export async function deleteSession(id) {
  await call(`/v1/sessions/${encodeURIComponent(id)}`, { method: "DELETE" }).catch(() => {});
}

// One edit of the session. fields: {instruction | target_prompt, strength, mask (Blob), replace}.  With replace the
// server re-renders the current turn (keeping its caption and mask unless given) instead of adding one.
// onProgress({stage, step, steps}) is called from the session's event stream while the edit runs.
export async function edit(id, fields, { onProgress, signal } = {}) {
  const form = new FormData();
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined || v === null || v === "") continue;
    if (v instanceof Blob) form.append(k, v, `${k}.png`);
    else form.append(k, String(v));
  }
  const stop = new AbortController();
  const watching = onProgress ? watchSession(id, onProgress, stop.signal) : Promise.resolve();
  try {
    return toSession(await json(`/v1/sessions/${encodeURIComponent(id)}/edits`, { method: "POST", body: form, signal }));
  } finally {
    stop.abort();
    await watching;
  }
}

async function watchSession(id, onProgress, signal) {
  try {
    const resp = await fetch(`/v1/sessions/${encodeURIComponent(id)}/events`, {
      headers: headers({ Accept: "text/event-stream" }),
      signal,
    });
    if (!resp.ok) return; // progress is a nicety: the edit's own answer decides success
    for await (const ev of readEvents(resp, signal)) {
      if (ev.event !== "progress" || !ev.data) continue;
      const d = JSON.parse(ev.data);
      if (d.state === "running") onProgress({ stage: d.stage, step: d.step, steps: d.steps });
    }
  } catch {
    // aborted when the edit answers, or the stream failed: either way nothing to report
  }
}

export async function undo(id) {
  return toSession(await json(`/v1/sessions/${encodeURIComponent(id)}/undo`, { method: "POST" }));
}

export async function redo(id) {
  return toSession(await json(`/v1/sessions/${encodeURIComponent(id)}/redo`, { method: "POST" }));
}

// A turn's PNG exactly as the server wrote it (the edit's record in its text chunks); turn 0 is the upload.
export async function turnImage(id, index) {
  return (await call(`/v1/sessions/${encodeURIComponent(id)}/turns/${index}/image`, { accept: "image/png" })).blob();
}

// The mask a turn's edit applied (the user's, or the method's automatic one) as a grey PNG; null where the server
// has none (turn 0, or a server without the route).
export async function turnMask(id, index) {
  try {
    return (await call(`/v1/sessions/${encodeURIComponent(id)}/turns/${index}/mask`, { accept: "image/png" })).blob();
  } catch (e) {
    if (e instanceof ApiError && (e.status === 404 || e.status === 405)) return null;
    throw e;
  }
}

// Server-sent events from a fetch() response: yields {event, data}.
async function* readEvents(resp, signal) {
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  try {
    for (;;) {
      if (signal?.aborted) return;
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let cut;
      while ((cut = buf.search(/\r?\n\r?\n/)) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut).replace(/^\r?\n\r?\n/, "");
        const ev = { event: "message", data: "" };
        for (const line of block.split(/\r?\n/)) {
          if (line.startsWith(":")) continue;
          const i = line.indexOf(":");
          const field = i < 0 ? line : line.slice(0, i);
          const val = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
          if (field === "event") ev.event = val;
          else if (field === "data") ev.data += (ev.data ? "\n" : "") + val;
        }
        if (ev.data || ev.event !== "message") yield ev;
      }
    }
  } finally {
    reader.releaseLock();
  }
}
