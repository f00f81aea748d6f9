// Window/level for the study image: the PNG is drawn on a canvas and each grey value v is
// shown as clamp((v - (level - window / 2)) / window * 255). Sliders or drag on the image.
(function () {
  "use strict";
  const img = document.getElementById("image");
  const canvas = document.getElementById("canvas");
  const win = document.getElementById("window");
  const lev = document.getElementById("level");
  let source = null;
  let shown = null;

  function render() {
    if (!source) return;
    const w = Number(win.value), l = Number(lev.value), lo = l - w / 2;
    const s = source.data, d = shown.data;
    for (let i = 0; i < s.length; i += 4) {
      for (let c = 0; c < 3; c++) {
        d[i + c] = Math.max(0, Math.min(255, ((s[i + c] - lo) / w) * 255));
      }
      d[i + 3] = 255;
    }
    canvas.getContext("2d").putImageData(shown, 0, 0);
  }

  function start() {
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    const ctx = canvas.getContext("2d");
    ctx.drawImage(img, 0, 0);
    source = ctx.getImageData(0, 0, canvas.width, canvas.height);
    shown = ctx.createImageData(canvas.width, canvas.height);
    img.hidden = true;
    canvas.hidden = false;
    document.getElementById("wl").hidden = false;
    render();
  }

  let drag = null;
  canvas.addEventListener("pointerdown", (e) => {
    drag = { x: e.clientX, y: e.clientY, w: Number(win.value), l: Number(lev.value) };
    canvas.setPointerCapture(e.pointerId);
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!drag) return;
    win.value = drag.w + (e.clientX - drag.x);
    lev.value = drag.l - (e.clientY - drag.y);
    render();
  });
  canvas.addEventListener("pointerup", () => { drag = null; });
  win.addEventListener("input", render);
  lev.addEventListener("input", render);
  document.getElementById("reset").addEventListener("click", () => {
    win.value = 256; lev.value = 128; render();
  });
  // One answer per image: a double click must not send the form twice.
  const form = document.getElementById("answer");
  form.addEventListener("submit", () => {
    setTimeout(() => form.querySelectorAll("button").forEach((b) => { b.disabled = true; }), 0);
  });
  if (img.complete && img.naturalWidth) start(); else img.addEventListener("load", start);
})();
