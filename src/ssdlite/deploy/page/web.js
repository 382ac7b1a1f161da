// The page of `ssdlite export --format web`: the model runs in the browser, in MediaPipe Tasks' ObjectDetector
// (WebAssembly, from the folder's mediapipe/: no CDN, no server beyond the static files). A file, a drop, a paste
// or the webcam; drawn by draw.js as `ssdlite serve`'s page draws. The detector is asked for every detection
// down to the slider's lowest score, so the slider filters the drawn boxes without running the model again.
// `window.ssdlite.detections` holds the last image's detections ({box, score, label, class_id} in its pixels),
// for scripts and tests.
import { FilesetResolver, ObjectDetector } from "./mediapipe/vision_bundle.mjs";

const LOWEST_SCORE = 0.05; // the slider's minimum
const $ = (id) => document.getElementById(id);
const state = { meta: null, detector: null, mode: "IMAGE", image: null, detections: [], stream: null };
window.ssdlite = state;

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

// MediaPipe's detections -> {box: {xmin, ymin, xmax, ymax} in pixels, score, label, class_id 1..K}, best first.
function converted(result) {
  return result.detections
    .map((d) => {
      const c = d.categories[0];
      const b = d.boundingBox; // whole pixels: MediaPipe rounds the model's boxes
      // With the labels packed in the model, MediaPipe names the class and leaves its index at -1.
      const id = c.categoryName ? state.meta.classes.indexOf(c.categoryName) + 1 : c.index + 1;
      return {
        box: { xmin: b.originX, ymin: b.originY, xmax: b.originX + b.width, ymax: b.originY + b.height },
        score: c.score,
        label: c.categoryName || state.meta.classes[c.index] || `class${id}`,
        class_id: id,
      };
    })
    .sort((a, b) => b.score - a.score);
}

async function runningMode(mode) {
  if (state.mode !== mode) {
    await state.detector.setOptions({ runningMode: mode });
    state.mode = mode;
  }
}

function draw(ms) {
  if (!state.image) return;
  const threshold = Number($("threshold").value);
  const shown = drawDetections($("canvas"), $("detections"), state.image, state.detections, threshold, state.meta.colors);
  showCount($("count"), shown, threshold, state.detections.length, LOWEST_SCORE);
  if (ms !== undefined) $("latency").textContent = `${ms.toFixed(1)} ms in the browser (MediaPipe, WebAssembly on the CPU)`;
}

async function showFile(file) {
  if (!file || !state.detector) return;
  stopCamera();
  setStatus(`Detecting in ${file.name || "the pasted image"}…`);
  try {
    const image = await createImageBitmap(file, { imageOrientation: "from-image" });
    await runningMode("IMAGE");
    const started = performance.now();
    const result = state.detector.detect(image);
    const ms = performance.now() - started;
    state.image = image;
    state.detections = converted(result);
    draw(ms);
    setStatus(`${file.name || "Pasted image"}: ${image.width} x ${image.height} px`);
  } catch (err) {
    setStatus(`Cannot detect in ${file.name || "the pasted image"}: ${err.message}`, true);
  }
}

// ---- The webcam: each frame detected as it comes (MediaPipe's video mode), drawn on that frame. ----
async function startCamera() {
  state.stream = await openCamera((message) => setStatus(message, true));
  if (!state.stream) return;
  await runningMode("VIDEO");
  setStatus("Webcam: detecting continuously.");
  const frame = document.createElement("canvas");
  const step = () => {
    if (!state.stream) return;
    const started = performance.now();
    state.detections = converted(state.detector.detectForVideo(grabFrame(frame), started));
    state.image = frame;
    draw(performance.now() - started);
    requestAnimationFrame(step);
  };
  requestAnimationFrame(step);
}

function stopCamera() {
  if (!state.stream) return;
  closeCamera(state.stream);
  state.stream = null;
}

async function setUp() {
  connectInputs(showFile, () => (state.stream ? stopCamera() : startCamera()), () => draw());
  try {
    const answer = await fetch("metadata.json");
    state.meta = await answer.json();
    const m = state.meta;
    $("model").textContent = `${m.arch} at ${m.input_size} px; ${m.classes.length} classes: ${m.classes.join(", ")} (ssdlite ${m.version})`;
    setStatus("Loading MediaPipe…");
    const fileset = await FilesetResolver.forVisionTasks("./mediapipe/wasm");
    state.detector = await ObjectDetector.createFromOptions(fileset, {
      baseOptions: { modelAssetPath: "model.tflite", delegate: "CPU" },
      scoreThreshold: LOWEST_SCORE,
      maxResults: -1,
      runningMode: "IMAGE",
    });
  } catch (err) {
    const hint = location.protocol === "file:" ? " (open the folder through a web server, e.g. python -m http.server)" : "";
    setStatus(`Cannot load the model: ${err.message}${hint}`, true);
    return;
  }
  $("threshold").value = state.meta.default_score_threshold;
  showThreshold();
  setStatus("Ready: choose, drop or paste an image, or use the webcam.");
}

setUp();
