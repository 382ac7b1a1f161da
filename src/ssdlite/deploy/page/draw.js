// Boxes, class names and scores drawn on a canvas, and listed: the one drawing of the browser pages (`ssdlite
// serve`'s page, which asks the service, and the page of `ssdlite export --format web`, which detects in the
// browser). The colours are `ssdlite predict`'s palette (ssdlite.deploy.draw.PALETTE), given by each page.
"use strict";

const MIN_VIEW_PX = 512; // smaller images are shown enlarged to this

// Draw `image` (an ImageBitmap or a video frame's canvas) on `canvas` with the detections scored >= threshold,
// and list them in `list`. A detection is {box: {xmin, ymin, xmax, ymax} in the image's pixels, score, label
// (the class name), class_id (1..K)}. Returns how many were drawn.
function drawDetections(canvas, list, image, detections, threshold, colours) {
  const ctx = canvas.getContext("2d");
  // A small image is drawn enlarged, so that its labels stay readable; boxes are scaled with it.
  const scale = Math.max(1, MIN_VIEW_PX / Math.max(image.width, image.height));
  canvas.width = Math.round(image.width * scale);
  canvas.height = Math.round(image.height * scale);
  ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
  const shown = detections.filter((d) => d.score >= threshold);
  const line = Math.max(2, Math.round(Math.max(canvas.width, canvas.height) / 300)); // thicker on large photos
  const fontPx = Math.max(12, 6 * line);
  ctx.font = `${fontPx}px system-ui, sans-serif`;
  ctx.textBaseline = "top";
  list.replaceChildren();
  for (const d of shown) {
    const { xmin, ymin, xmax, ymax } = d.box;
    const [x, y, w, h] = [xmin * scale, ymin * scale, (xmax - xmin) * scale, (ymax - ymin) * scale];
    const colour = colours[(d.class_id - 1) % colours.length];
    const text = `${d.label} ${d.score.toFixed(2)}`;
    ctx.lineWidth = line;
    ctx.strokeStyle = colour;
    ctx.strokeRect(x, y, w, h);
    const width = ctx.measureText(text).width + 6;
    const top = y >= fontPx + 4 ? y - fontPx - 4 : y; // above the box, or inside it at the top edge
    ctx.fillStyle = colour;
    ctx.fillRect(x - line / 2, top, width, fontPx + 4);
    ctx.fillStyle = "#fff";
    ctx.fillText(text, x + 3 - line / 2, top + 2);

    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = colour;
    item.append(swatch, `${text} at (${xmin.toFixed(0)}, ${ymin.toFixed(0)}, ${xmax.toFixed(0)}, ${ymax.toFixed(0)})`);
    list.append(item);
  }
  return shown.length;
}

// "3 boxes with score >= 0.30 (of 12 >= 0.05)", and the count as #count's data-boxes (what the tests read).
function showCount(element, shown, threshold, total, lowest) {
  element.textContent = `${shown} box${shown === 1 ? "" : "es"} with score ≥ ${threshold.toFixed(2)} (of ${total} ≥ ${lowest})`;
  element.dataset.boxes = String(shown);
}

// The page's inputs: the file chooser, a drop on #drop, a paste anywhere (each gives `onFile(file)`), the webcam
// button (`onCamera()`) and the score slider (its value shown, then `onThreshold()`).
function connectInputs(onFile, onCamera, onThreshold) {
  const $ = (id) => document.getElementById(id);
  $("file").addEventListener("change", (event) => onFile(event.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    onFile(event.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (event) => {
    const item = Array.from(event.clipboardData.items).find((i) => i.type.startsWith("image/"));
    if (item) onFile(item.getAsFile());
  });
  $("camera").addEventListener("click", onCamera);
  $("threshold").addEventListener("input", () => {
    showThreshold();
    onThreshold();
  });
}

// The slider's value beside it.
function showThreshold() {
  const value = Number(document.getElementById("threshold").value);
  document.getElementById("threshold-value").textContent = value.toFixed(2);
}

// ---- The webcam, shared by both pages: opened into #video, each frame copied to a canvas, closed. ----
// Returns the MediaStream, or null after `onError(message)` when there is no webcam (or no permission).
async function openCamera(onError) {
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (err) {
    onError(`No webcam: ${err.message}`);
    return null;
  }
  const video = document.getElementById("video");
  video.srcObject = stream;
  await video.play();
  document.getElementById("camera").textContent = "Stop the webcam";
  return stream;
}

// The current frame of #video drawn into `canvas` (resized to the frame), which is returned.
function grabFrame(canvas) {
  const video = document.getElementById("video");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  return canvas;
}

function closeCamera(stream) {
  for (const track of stream.getTracks()) track.stop();
  document.getElementById("video").srcObject = null;
  document.getElementById("camera").textContent = "Use the webcam";
}
