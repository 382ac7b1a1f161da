// The page of `ssdlite serve`: send an image (file, drop, paste or webcam frame) to POST /v1/detect and draw the
// answer (drawDetections, showCount: draw.js, shared with the page of `ssdlite export --format web`). The service
// is asked for every detection down to the slider's lowest score, so moving the slider filters the drawn boxes at
// once, without asking again.
"use strict";

const LOWEST_SCORE = 0.05; // the slider's minimum
const $ = (id) => document.getElementById(id);

const state = {
  meta: null, // GET /v1/metadata
  key: "", // the API key typed in, kept in this page's memory only
  image: null, // the ImageBitmap the boxes belong to
  answer: null, // the last POST /v1/detect answer
  roundTripMs: 0,
  stream: null, // the webcam's MediaStream while it runs
};

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers);
  if (state.key) headers.Authorization = "Bearer " + state.key;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    // Every error of the service is {"error": {"status", "kind", "message"}}.
    throw new ApiError(response.status, body && body.error ? body.error.message : `${response.status} ${response.statusText}`);
  }
  return body;
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

async function loadMetadata() {
  try {
    state.meta = await api("/v1/metadata");
  } catch (err) {
    if (err.status === 401) {
      $("key-form").hidden = false;
      setStatus("Enter the API key to use this service.", true);
    } else {
      setStatus(`Cannot read the model's description: ${err.message}`, true);
    }
    return;
  }
  $("key-form").hidden = true;
  const m = state.meta;
  $("model").textContent = `${m.model.arch} at ${m.input_size} px on ${m.backend}; ${m.classes.length} classes: ${m.classes.join(", ")} (ssdlite ${m.version})`;
  $("threshold").value = m.default_score_threshold;
  showThreshold();
  setStatus("Ready: choose, drop or paste an image, or use the webcam.");
}

async function detect(blob) {
  const params = new URLSearchParams({ score_threshold: LOWEST_SCORE, max_detections: state.meta.max_detections });
  const started = performance.now();
  const answer = await api("/v1/detect?" + params, {
    method: "POST",
    headers: { "Content-Type": blob.type || "application/octet-stream" },
    body: blob,
  });
  state.roundTripMs = performance.now() - started;
  return answer;
}

async function showFile(file) {
  if (!file) return;
  if (!state.meta) {
    setStatus("The model's description is not loaded yet.", true);
    return;
  }
  stopCamera();
  setStatus(`Detecting in ${file.name || "the pasted image"}…`);
  try {
    const answer = await detect(file);
    // The service applies the EXIF orientation; so does the browser with "from-image": boxes and pixels agree.
    state.image = await createImageBitmap(file, { imageOrientation: "from-image" });
    state.answer = answer;
    draw();
    setStatus(`${file.name || "Pasted image"}: ${answer.image.width} x ${answer.image.height} px`);
  } catch (err) {
    setStatus(err.message, true);
  }
}

function draw() {
  const { image, answer } = state;
  if (!image || !answer) return;
  const threshold = Number($("threshold").value);
  const shown = drawDetections($("canvas"), $("detections"), image, answer.detections, threshold, state.meta.colors);
  showCount($("count"), shown, threshold, answer.detections.length, LOWEST_SCORE);
  const t = answer.timing_ms;
  $("latency").textContent =
    `${state.roundTripMs.toFixed(0)} ms round trip; in the service: queue ${t.queue.toFixed(1)}, ` +
    `preprocess ${t.preprocess.toFixed(1)}, inference ${t.inference.toFixed(1)}, postprocess ${t.postprocess.toFixed(1)} ms`;
}

// ---- The webcam: one frame in flight at a time, each frame's boxes drawn on that frame. ----
async function startCamera() {
  if (!state.meta) return;
  state.stream = await openCamera((message) => setStatus(message, true));
  if (!state.stream) return;
  setStatus("Webcam: detecting continuously.");
  const grab = document.createElement("canvas");
  while (state.stream) {
    grabFrame(grab);
    const blob = await new Promise((resolve) => grab.toBlob(resolve, "image/jpeg", 0.85));
    try {
      const answer = await detect(blob);
      state.image = await createImageBitmap(grab);
      state.answer = answer;
      draw();
    } catch (err) {
      setStatus(err.message, true);
      await new Promise((resolve) => setTimeout(resolve, 1000)); // e.g. 503 busy: wait before the next frame
    }
  }
}

function stopCamera() {
  if (!state.stream) return;
  closeCamera(state.stream);
  state.stream = null;
}

function setUp() {
  connectInputs(showFile, () => (state.stream ? stopCamera() : startCamera()), draw);
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.key = $("key").value.trim();
    loadMetadata();
  });
  loadMetadata();
}

setUp();
