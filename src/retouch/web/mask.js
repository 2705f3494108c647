// The mask brush: a canvas at the image's own pixel size over the picture (white = edit in the mask sent to the
// server), painted with round strokes, erased, cleared, loaded from a file or from a turn's automatic mask, and
// written as an 8-bit greyscale PNG (mode L), which is what `retouch.edit.check_mask` accepts.

const PAINT = [255, 64, 96]; // the colour strokes show in; only their coverage counts

export class MaskBrush {
  constructor(canvas) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d", { willReadFrequently: true });
    this.size = 24; // brush diameter in image pixels
    this.erase = false;
    this.enabled = true;
    this.onchange = () => {};
    this.onstart = () => {};
    this._last = null;
    canvas.addEventListener("pointerdown", (e) => this._down(e));
    canvas.addEventListener("pointermove", (e) => this._move(e));
    for (const t of ["pointerup", "pointercancel", "pointerleave"]) canvas.addEventListener(t, () => this._up());
  }

  reset(width, height) {
    this.canvas.width = width;
    this.canvas.height = height;
    this.clear();
  }

  clear() {
    this.ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    this.onchange();
  }

  // pixels of the image under a pointer event (the canvas is shown scaled by CSS)
  _point(e) {
    const r = this.canvas.getBoundingClientRect();
    return [((e.clientX - r.left) * this.canvas.width) / r.width, ((e.clientY - r.top) * this.canvas.height) / r.height];
  }

  _stroke(from, to) {
    const c = this.ctx;
    c.globalCompositeOperation = this.erase ? "destination-out" : "source-over";
    c.strokeStyle = c.fillStyle = `rgb(${PAINT.join(",")})`;
    c.lineWidth = this.size;
    c.lineCap = c.lineJoin = "round";
    c.beginPath();
    c.moveTo(...from);
    c.lineTo(...to);
    c.stroke();
    c.beginPath();
    c.arc(...to, this.size / 2, 0, 2 * Math.PI);
    c.fill();
    c.globalCompositeOperation = "source-over";
  }

  _down(e) {
    if (!this.enabled || e.button !== 0) return;
    this.canvas.setPointerCapture?.(e.pointerId);
    this.onstart();
    this._last = this._point(e);
    this._stroke(this._last, this._last);
  }

  _move(e) {
    if (!this._last) return;
    const p = this._point(e);
    this._stroke(this._last, p);
    this._last = p;
  }

  _up() {
    if (!this._last) return;
    this._last = null;
    this.onchange();
  }

  coverage() {
    const { width, height } = this.canvas;
    if (!width || !height) return 0;
    const a = this.ctx.getImageData(0, 0, width, height).data;
    let n = 0;
    for (let i = 3; i < a.length; i += 4) if (a[i] >= 128) n++;
    return n / (width * height);
  }

  isEmpty() {
    return this.coverage() === 0;
  }

  // Replace the mask by a picture's brightness (white = edit), resized to the image if it has another size.
  async load(blob) {
    const bmp = await createImageBitmap(blob);
    const { width, height } = this.canvas;
    const resized = bmp.width !== width || bmp.height !== height;
    const tmp = new OffscreenCanvas(width, height);
    const t = tmp.getContext("2d", { willReadFrequently: true });
    t.drawImage(bmp, 0, 0, width, height);
    const src = t.getImageData(0, 0, width, height);
    const out = this.ctx.createImageData(width, height);
    for (let i = 0; i < src.data.length; i += 4) {
      const alpha = src.data[i + 3] / 255;
      const lum = (0.299 * src.data[i] + 0.587 * src.data[i + 1] + 0.114 * src.data[i + 2]) * alpha;
      if (lum > 127) {
        out.data.set(PAINT, i);
        out.data[i + 3] = 255;
      }
    }
    this.ctx.putImageData(out, 0, 0);
    this.onchange();
    return { resized, from: [bmp.width, bmp.height] };
  }

  // The mask as a greyscale PNG blob (0 or 255 per pixel), the image's size.
  async toPng() {
    const { width, height } = this.canvas;
    const a = this.ctx.getImageData(0, 0, width, height).data;
    const grey = new Uint8Array(width * height);
    for (let i = 0; i < grey.length; i++) grey[i] = a[4 * i + 3] >= 128 ? 255 : 0;
    return encodeGreyPng(width, height, grey);
  }
}

// -- a minimal PNG writer for one 8-bit grey channel (canvas.toBlob can only write RGBA) ----------------------
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  const typed = new TextEncoder().encode(type);
  out.set(typed, 4);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

export async function encodeGreyPng(width, height, grey) {
  if (typeof CompressionStream === "undefined") throw new Error("This browser cannot write PNG masks (no CompressionStream).");
  const raw = new Uint8Array((width + 1) * height); // filter byte 0 (none) before each row
  for (let y = 0; y < height; y++) raw.set(grey.subarray(y * width, (y + 1) * width), y * (width + 1) + 1);
  const zlib = new Uint8Array(await new Response(new Blob([raw]).stream().pipeThrough(new CompressionStream("deflate"))).arrayBuffer());
  const ihdr = new Uint8Array(13);
  const v = new DataView(ihdr.buffer);
  v.setUint32(0, width);
  v.setUint32(4, height);
  ihdr.set([8, 0, 0, 0, 0], 8); // bit depth 8, colour type 0 (grey), deflate, no filter method, no interlace
  const sig = new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]);
  return new Blob([sig, chunk("IHDR", ihdr), chunk("IDAT", zlib), chunk("IEND", new Uint8Array())], { type: "image/png" });
}
