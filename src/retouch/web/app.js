// The editor page: state, events and drawing. Every server call goes through api.js.
import * as api from "./api.js";
import { MaskBrush } from "./mask.js";

const $ = (id) => document.getElementById(id);
const el = {
  drop: $("drop"), file: $("file"), stage: $("stage"), frame: $("frame"),
  before: $("img-before"), after: $("img-after"), autoMask: $("auto-mask"), mask: $("mask"),
  compareBox: $("compare-box"), compare: $("compare"), compareLine: $("compare-line"), stageInfo: $("stage-info"),
  form: $("edit-form"), instruction: $("instruction"), method: $("method"), editBtn: $("edit-btn"),
  strength: $("strength"), strengthOut: $("strength-out"), strengthHint: $("strength-hint"),
  maskTools: $("mask-tools"), maskState: $("mask-state"), toolErase: $("tool-erase"), toolBrush: $("tool-brush"),
  brushSize: $("brush-size"), brushSizeOut: $("brush-size-out"), maskClear: $("mask-clear"), maskFile: $("mask-file"),
  maskShow: $("mask-show"), autoShow: $("auto-show"), autoUse: $("auto-use"),
  progressBox: $("progress-box"), progress: $("progress"), progressText: $("progress-text"), error: $("error"),
  undo: $("undo"), redo: $("redo"), download: $("download"), history: $("history"),
  token: $("token"), serverStatus: $("server-status"),
};

const state = {
  methods: [],
  session: null, // api.js's session object
  file: null, // the picked file, kept to start over with another method
  fileStem: "image",
  busy: false,
  pendingStrength: null, // a slider move that arrived while an edit ran
  urls: { before: null, after: null },
  shown: { before: null, after: null, autoMask: null }, // turn keys the images show
  autoMaskBlob: null,
};

const brush = new MaskBrush(el.mask);

// -- small helpers -------------------------------------------------------------------------------
function methodInfo(name) {
  return state.methods.find((m) => m.name === name) || { name };
}

function takesStrength(name) {
  const m = methodInfo(name);
  if (typeof m.strength === "boolean") return m.strength;
  if (typeof m.takes_strength === "boolean") return m.takes_strength;
  if (Array.isArray(m.inputs)) return m.inputs.includes("strength");
  return name === "turbo";
}

function usable(m) {
  // the page edits (task "edit"); the fill tasks (inpaint, erase, outpaint) have their own commands
  return !(m.reference || m.runnable === false) && (!m.task || m.task === "edit");
}

function currentTurn() {
  const s = state.session;
  return s ? s.turns[s.current] : null;
}

function showError(err) {
  if (!err) {
    el.error.hidden = true;
    el.error.textContent = "";
    return;
  }
  if (err.name === "AbortError") return;
  const words = err instanceof api.ApiError ? err.message : `Something went wrong in the page: ${err.message || err}`;
  el.error.textContent = words;
  el.error.hidden = false;
  if (!(err instanceof api.ApiError)) console.error(err);
}

function setUrl(slot, blob) {
  if (state.urls[slot]) URL.revokeObjectURL(state.urls[slot]);
  state.urls[slot] = blob ? URL.createObjectURL(blob) : null;
  return state.urls[slot];
}

function fmt(x, digits = 2) {
  return typeof x === "number" ? x.toFixed(digits) : "";
}

// -- the server ----------------------------------------------------------------------------------
async function connect() {
  try {
    const h = await api.health();
    el.serverStatus.textContent = h && h.status ? `server ${h.status}` : "server ready";
    const methods = await api.listMethods();
    state.methods = methods.filter(usable);
    el.method.replaceChildren(
      ...state.methods.map((m) => {
        const o = document.createElement("option");
        o.value = m.name;
        o.textContent = m.description ? `${m.name} — ${m.description}` : m.name;
        return o;
      }),
    );
    const preferred = state.methods.find((m) => m.default) || state.methods.find((m) => m.name === "turbo") || state.methods[0];
    if (preferred) el.method.value = preferred.name;
    showError(null);
  } catch (e) {
    el.serverStatus.textContent = "server unreachable";
    showError(e);
  }
  render();
}

// -- opening an image ----------------------------------------------------------------------------
// A session holds one image and one method: the server captions and inverts the image once, when it is opened.
async function openFile(file, { keepMask = false } = {}) {
  if (!file) return;
  if (state.busy) {
    showError(new api.ApiError("Wait until the current edit or upload has finished, then open the image again."));
    return;
  }
  if (file.type && !file.type.startsWith("image/")) {
    showError(new api.ApiError(`“${file.name}” is not an image (it is ${file.type}). Pick a PNG, JPEG or WebP file.`));
    return;
  }
  showError(null);
  const method = el.method.value;
  const t0 = performance.now();
  setBusy(true, `Uploading; ${method} reads and inverts the image once…`);
  const tick = setInterval(() => {
    el.progressText.textContent = `Uploading; ${method} reads and inverts the image once… ${((performance.now() - t0) / 1000).toFixed(1)} s`;
  }, 200);
  try {
    const session = await api.createSession(file, { method });
    const old = state.session;
    state.file = file;
    state.fileStem = (file.name || "image").replace(/\.[^.]*$/, "") || "image";
    state.shown = { before: null, after: null, autoMask: null };
    state.session = session;
    if (old) api.deleteSession(old.id);
    const sameSize = old && old.width === session.width && old.height === session.height;
    if (!(keepMask && sameSize)) {
      brush.reset(session.width, session.height);
      brush.size = Math.max(2, Math.round(Math.max(session.width, session.height) / 12));
      el.brushSize.max = String(Math.max(16, Math.round(Math.max(session.width, session.height) / 2)));
      el.brushSize.value = String(brush.size);
    }
    el.autoShow.checked = false;
    if (!keepMask) el.strength.value = "1"; // a new picture starts at the method's own strength
    await refreshImages();
  } catch (e) {
    showError(e);
  } finally {
    clearInterval(tick);
    setBusy(false);
  }
}

// Another method: the session starts over on the same file (its inversion belongs to the old method).
async function methodChanged() {
  const s = state.session;
  if (!s || !state.file || s.method === el.method.value) return render();
  await openFile(state.file, { keepMask: true });
}

// -- images of the session -----------------------------------------------------------------------
async function refreshImages() {
  const s = state.session;
  if (!s) return;
  const first = s.turns[0];
  const cur = currentTurn();
  const jobs = [];
  if (state.shown.before !== first.key) {
    jobs.push(api.turnImage(s.id, first.index).then((b) => loadImg(el.before, setUrl("before", b)).then(() => (state.shown.before = first.key))));
  }
  if (state.shown.after !== cur.key) {
    jobs.push(api.turnImage(s.id, cur.index).then((b) => loadImg(el.after, setUrl("after", b)).then(() => (state.shown.after = cur.key))));
  }
  await Promise.all(jobs);
  await refreshAutoMask();
  render();
}

function loadImg(img, url) {
  return new Promise((resolve, reject) => {
    img.onload = () => resolve();
    img.onerror = () => reject(new api.ApiError("The browser could not show the image the server sent."));
    img.src = url;
  });
}

async function refreshAutoMask() {
  const s = state.session;
  const cur = currentTurn();
  const want = el.autoShow.checked && s && cur && cur.index > 0;
  if (!want) {
    el.autoMask.hidden = true;
    state.autoMaskBlob = null;
    state.shown.autoMask = null;
    return;
  }
  if (state.shown.autoMask !== cur.key) {
    const blob = await api.turnMask(s.id, cur.index);
    state.autoMaskBlob = blob;
    state.shown.autoMask = cur.key;
    if (blob) await drawAutoMask(blob);
  }
  el.autoMask.hidden = !state.autoMaskBlob;
}

// The grey mask (255 = fully edited) as a translucent cyan overlay at the image's own size.
async function drawAutoMask(blob) {
  const bmp = await createImageBitmap(blob);
  const c = el.autoMask;
  c.width = bmp.width;
  c.height = bmp.height;
  const x = c.getContext("2d", { willReadFrequently: true });
  x.drawImage(bmp, 0, 0);
  const d = x.getImageData(0, 0, c.width, c.height);
  for (let i = 0; i < d.data.length; i += 4) {
    const v = d.data[i];
    d.data[i] = 0;
    d.data[i + 1] = 200;
    d.data[i + 2] = 255;
    d.data[i + 3] = Math.round(v * 0.45);
  }
  x.putImageData(d, 0, 0);
}

// -- editing -------------------------------------------------------------------------------------
function setBusy(busy, text = "") {
  state.busy = busy;
  el.progressBox.hidden = !busy;
  el.progress.removeAttribute("value"); // indeterminate until the first progress event
  el.progressText.textContent = text;
  document.body.classList.toggle("busy", busy);
  render();
}

async function runEdit(fields, label) {
  const s = state.session;
  const t0 = performance.now();
  setBusy(true, `${label}…`);
  const tick = setInterval(() => {
    if (el.progress.hasAttribute("value")) return;
    el.progressText.textContent = `${label}… ${((performance.now() - t0) / 1000).toFixed(1)} s`;
  }, 200);
  try {
    const next = await api.edit(s.id, fields, {
      onProgress: ({ stage, step, steps }) => {
        if (!steps) return;
        el.progress.max = steps;
        el.progress.value = step;
        const what = stage === "prepare" ? "reading the image, " : "";
        el.progressText.textContent = `${label}… ${what}step ${step} of ${steps}`;
      },
    });
    state.session = next;
    // the mask stays for the next edit, hidden so the result shows; painting shows it again
    if (fields.mask) el.maskShow.checked = false;
    showError(null);
    await refreshImages();
  } finally {
    clearInterval(tick);
    setBusy(false);
  }
}

async function submitEdit(ev) {
  ev.preventDefault();
  if (!state.session || state.busy) return;
  const instruction = el.instruction.value.trim();
  if (!instruction) {
    showError(new api.ApiError("Type an instruction first, e.g. “make the star blue”."));
    el.instruction.focus();
    return;
  }
  const fields = { instruction };
  if (takesStrength(state.session.method)) fields.strength = el.strength.value;
  try {
    if (!brush.isEmpty()) fields.mask = await brush.toPng();
    await runEdit(fields, "Editing");
  } catch (e) {
    showError(e);
  }
}

// The slider re-renders the current turn at the new strength: the server keeps the turn's caption and mask and
// reuses the session's cached inversion, so only the edit's evaluations run again.
async function strengthChanged() {
  const cur = currentTurn();
  if (!state.session || !cur || cur.index === 0 || !takesStrength(state.session.method)) return;
  if (state.busy) {
    state.pendingStrength = el.strength.value;
    return;
  }
  const fields = { strength: el.strength.value, replace: "true" };
  try {
    await runEdit(fields, `Re-rendering at strength ${fmt(Number(el.strength.value))}`);
  } catch (e) {
    showError(e);
  }
  if (state.pendingStrength !== null) {
    const v = state.pendingStrength;
    state.pendingStrength = null;
    if (v !== String(currentTurn()?.strength)) strengthChanged();
  }
}

async function history(step) {
  if (!state.session || state.busy) return;
  try {
    state.session = await (step < 0 ? api.undo(state.session.id) : api.redo(state.session.id));
    showError(null);
    const cur = currentTurn();
    if (cur && typeof cur.strength === "number") el.strength.value = String(cur.strength);
    await refreshImages();
  } catch (e) {
    showError(e);
  }
}

async function download() {
  const s = state.session;
  const cur = currentTurn();
  if (!s || !cur) return;
  try {
    const blob = await api.turnImage(s.id, cur.index); // the server's bytes: the record stays in the PNG's text chunks
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = cur.index === 0 ? `${state.fileStem}.png` : `${state.fileStem}-edit${cur.index}.png`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  } catch (e) {
    showError(e);
  }
}

// -- drawing the page ----------------------------------------------------------------------------
function fitImage() {
  const s = state.session;
  if (!s) return;
  const area = el.stage.parentElement.getBoundingClientRect();
  const maxW = Math.max(64, area.width - 4);
  const maxH = Math.max(64, window.innerHeight * 0.75);
  const scale = Math.min(maxW / s.width, maxH / s.height);
  el.before.style.width = `${Math.floor(s.width * scale)}px`;
  el.before.style.setProperty("--fit-w", `${Math.floor(s.width * scale)}px`);
  const rendering = scale >= 2 ? "pixelated" : "auto";
  for (const node of [el.before, el.after, el.autoMask, el.mask]) node.style.imageRendering = rendering;
}

function describeTurn(t, session) {
  const li = document.createElement("li");
  li.dataset.index = t.index;
  if (t.index === 0) {
    li.append(`original, ${session.width}×${session.height} px`);
    if (session.sourceCaption) {
      const cap = document.createElement("span");
      cap.className = "caption";
      cap.textContent = cap.title = session.sourceCaption;
      li.append(cap);
    }
  } else {
    const r = t.record;
    const title = document.createElement("span");
    title.className = "instruction";
    title.textContent = t.instruction || t.caption || "(edit)";
    li.append(title);
    const cost = document.createElement("span");
    cost.className = "cost";
    const parts = [t.method || r.method];
    if (typeof t.strength === "number") parts.push(`strength ${fmt(t.strength)}`);
    if (r.nfe_edit !== undefined) parts.push(`${r.nfe_inversion ?? 0}+${r.nfe_edit} evaluations`);
    if (typeof r.seconds === "number") parts.push(`${fmt(r.seconds)} s`);
    cost.textContent = ` · ${parts.filter(Boolean).join(" · ")}`;
    li.append(cost);
    if (t.caption) {
      const cap = document.createElement("span");
      cap.className = "caption";
      cap.textContent = cap.title = t.caption;
      li.append(cap);
    }
  }
  li.classList.toggle("current", t.index === session.current);
  li.classList.toggle("undone", t.index > session.current);
  return li;
}

function render() {
  const s = state.session;
  const has = Boolean(s);
  const cur = currentTurn();
  el.drop.hidden = has;
  el.stage.hidden = !has;
  const ready = has && !state.busy;
  el.instruction.disabled = !has;
  el.method.disabled = state.busy || state.methods.length === 0;
  el.editBtn.disabled = !ready || state.methods.length === 0;
  const strengthOk = takesStrength(s ? s.method : el.method.value);
  el.strength.disabled = !has || !strengthOk;
  el.strengthOut.textContent = fmt(Number(el.strength.value));
  el.strengthHint.textContent = !strengthOk
    ? "This method has no strength setting."
    : cur && cur.index > 0
      ? "Moving the slider re-renders the current edit from the cached inversion."
      : "The strength of the next edit (0: unchanged, 1: as described, up to 1.5: beyond it).";
  el.maskTools.disabled = !has;
  brush.enabled = has && !state.busy;
  el.mask.classList.toggle("hidden-mask", !el.maskShow.checked);
  const cover = brush.coverage();
  el.maskState.textContent = cover > 0 ? `${(100 * cover).toFixed(1)}% of the image` : "none: the method chooses";
  el.brushSizeOut.textContent = `${brush.size} px`;
  el.autoUse.disabled = !state.autoMaskBlob || !el.autoShow.checked;
  el.undo.disabled = !ready || !s || s.current <= 0;
  el.redo.disabled = !ready || !s || s.current >= s.turns.length - 1;
  el.download.disabled = !ready || !cur;
  if (!has) return;
  fitImage();
  const edited = cur.index > 0;
  el.compareBox.hidden = !edited;
  el.compareLine.hidden = !edited;
  el.frame.style.setProperty("--split", edited ? `${el.compare.value}%` : "0%");
  el.stageInfo.textContent = `${s.width}×${s.height} px · ${edited ? `edit ${cur.index} of ${s.turns.length - 1}` : "no edit yet"}`;
  el.history.replaceChildren(...s.turns.map((t) => describeTurn(t, s)));
}

// -- events --------------------------------------------------------------------------------------
for (const input of [el.file, $("file2")]) {
  input.addEventListener("change", () => {
    const f = input.files[0];
    input.value = "";
    openFile(f);
  });
}
// a file dropped anywhere on the page opens it (one listener: the drop zone's events bubble up to it)
document.addEventListener("dragover", (e) => {
  e.preventDefault();
  el.drop.classList.add("over");
});
document.addEventListener("dragleave", () => el.drop.classList.remove("over"));
document.addEventListener("drop", (e) => {
  e.preventDefault();
  el.drop.classList.remove("over");
  const f = e.dataTransfer && e.dataTransfer.files[0];
  if (f) openFile(f);
});
el.drop.addEventListener("keydown", (e) => {
  if (e.key === "Enter" || e.key === " ") el.file.click();
});
el.form.addEventListener("submit", submitEdit);
el.instruction.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) {
    e.preventDefault();
    el.form.requestSubmit();
  }
});
el.method.addEventListener("change", methodChanged);
el.strength.addEventListener("input", () => (el.strengthOut.textContent = fmt(Number(el.strength.value))));
el.strength.addEventListener("change", strengthChanged);
el.toolBrush.addEventListener("change", () => (brush.erase = false));
el.toolErase.addEventListener("change", () => (brush.erase = true));
el.brushSize.addEventListener("input", () => {
  brush.size = Number(el.brushSize.value);
  render();
});
el.maskClear.addEventListener("click", () => brush.clear());
el.maskShow.addEventListener("change", render);
el.maskFile.addEventListener("change", async () => {
  const f = el.maskFile.files[0];
  el.maskFile.value = "";
  if (!f || !state.session) return;
  try {
    const { resized, from } = await brush.load(f);
    showError(null);
    if (resized) {
      showError(new api.ApiError(`The mask was ${from[0]}×${from[1]} px and was stretched to the image's ${state.session.width}×${state.session.height}; check it before editing.`));
    }
  } catch {
    showError(new api.ApiError(`“${f.name}” could not be read as a picture; a mask is a black-and-white image (white = edit).`));
  }
  render();
});
el.autoShow.addEventListener("change", async () => {
  try {
    await refreshAutoMask();
    if (el.autoShow.checked && currentTurn()?.index > 0 && !state.autoMaskBlob) {
      showError(new api.ApiError("This server does not report the mask of an edit."));
    }
  } catch (e) {
    showError(e);
  }
  render();
});
el.autoUse.addEventListener("click", async () => {
  if (!state.autoMaskBlob) return;
  await brush.load(state.autoMaskBlob);
  el.autoShow.checked = false;
  await refreshAutoMask();
  render();
});
el.compare.addEventListener("input", render);
el.undo.addEventListener("click", () => history(-1));
el.redo.addEventListener("click", () => history(1));
el.download.addEventListener("click", download);
document.addEventListener("keydown", (e) => {
  if (e.target instanceof HTMLTextAreaElement || e.target instanceof HTMLInputElement) return;
  if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "z") {
    e.preventDefault();
    history(e.shiftKey ? 1 : -1);
  } else if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "y") {
    e.preventDefault();
    history(1);
  }
});
el.token.value = api.getToken();
el.token.addEventListener("change", () => {
  api.setToken(el.token.value.trim());
  connect();
});
brush.onchange = render;
window.addEventListener("resize", render);
connect();
brush.onstart = () => {
  el.maskShow.checked = true;
  render();
};
