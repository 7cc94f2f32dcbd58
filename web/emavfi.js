// EMA-VFI web extension: a frame-count summary on the interpolate/retime nodes and the weights status of
// the selected variant on the loader. One extension, everything namespaced "emavfi".
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const EXT = "emavfi.ui";
const INTERPOLATE = "EMAVFI_Interpolate";
const RETIME = "EMAVFI_Retime";
const LOADER = "EMAVFI_LoadModel";
const DOWNLOAD_EVENT = "emavfi.download";

const STYLE = `
.emavfi-info { font: 12px/1.35 sans-serif; color: var(--input-text, #ddd); background: var(--comfy-input-bg, #222);
  border-radius: 6px; padding: 4px 8px; box-sizing: border-box; overflow: hidden; white-space: nowrap;
  text-overflow: ellipsis; }
.emavfi-info[data-state="missing"], .emavfi-info[data-state="error"] { color: #f5a97f; }
.emavfi-info[data-state="ready"], .emavfi-info[data-state="local"] { color: #a6da95; }
.emavfi-info[data-state="downloading"] { color: #8aadf4; }
`;

function widget(node, name) {
  return node.widgets?.find((w) => w.name === name);
}

function formatFps(fps) {
  if (!(fps > 0)) return "?";
  return Number.isInteger(fps) ? String(fps) : fps.toFixed(3).replace(/0+$/, "").replace(/\.$/, "");
}

// Count of timesteps per input pair from the widgets, or null when the timesteps text does not parse
// (the server reports the exact error). Mirrors the node: explicit timesteps win over the multiplier.
export function stepsPerPair(multiplier, timesteps) {
  const text = (timesteps ?? "").trim();
  if (!text) return multiplier >= 1 ? multiplier : null;
  const values = text.split(/[\s,;]+/).filter(Boolean).map((item) => {
    const [num, den, ...rest] = item.split("/");
    return den === undefined ? Number(num) : rest.length ? NaN : Number(num) / Number(den);
  });
  if (!values.length || values.some((t) => !Number.isFinite(t) || t <= 0 || t >= 1)) return null;
  return values.length + 1;
}

export function framesOut(framesIn, steps) {
  return framesIn >= 2 && steps ? (framesIn - 1) * steps + 1 : null;
}

function addInfoWidget(node, name, initial) {
  const el = document.createElement("div");
  el.className = `emavfi-info ${name}`;
  el.textContent = initial;
  // Added after the input widgets, and never serialized: neither in the workflow nor in the prompt.
  const w = node.addDOMWidget(name, "emavfi_info", el, {
    serialize: false,
    hideOnZoom: false,
    margin: 6,
    getValue: () => el.textContent,
    setValue: () => {},
    getMinHeight: () => 36,
    getMaxHeight: () => 36,
  });
  w.serialize = false;
  return el;
}

function onWidgetChange(node, names, fn) {
  for (const name of names) {
    const w = widget(node, name);
    if (!w) continue;
    const previous = w.callback;
    w.callback = function (...args) {
      const r = previous?.apply(this, args);
      fn();
      return r;
    };
  }
}

function isLinked(node, name) {
  return node.inputs?.find((i) => i.name === name)?.link != null;
}

// ---------------------------------------------------------------- interpolate / retime summary
function interpolateSummary(node, run) {
  const steps = stepsPerPair(widget(node, "multiplier")?.value, widget(node, "timesteps")?.value);
  const framesIn = run?.frames_in ?? null;
  const fpsIn = isLinked(node, "fps") ? run?.fps_in ?? null : widget(node, "fps")?.value ?? null;
  const fpsOut = fpsIn > 0 && steps ? fpsIn * steps : fpsIn === 0 ? 0 : null;
  let out = "?"; // timesteps that do not parse: the node reports the error when queued
  if (steps && framesIn !== null) out = String(framesOut(framesIn, steps));
  else if (steps) out = `(N\u22121)\u00d7${steps}+1`;
  return `${framesIn ?? "N"} frames in \u2192 ${out} frames out (fps ${formatFps(fpsIn)} \u2192 ${formatFps(fpsOut)})`;
}

function retimeSummary(node, run) {
  const src = widget(node, "source_fps")?.value;
  const dst = widget(node, "target_fps")?.value;
  const speed = widget(node, "speed")?.value ?? 1;
  const framesIn = run?.frames_in ?? null;
  let out = "?";
  if (run && run.source_fps === src && run.target_fps === dst && run.speed === speed) out = String(run.frames_out);
  else if (framesIn !== null && src > 0 && dst > 0 && speed > 0) {
    out = `~${Math.floor(((framesIn - 1) * dst) / (speed * src) + 1e-9) + 1}`;
  }
  return `${framesIn ?? "N"} frames in \u2192 ${out} frames out (fps ${formatFps(src)} \u2192 ${formatFps(dst)})`;
}

function setupSummary(node, kind) {
  const el = addInfoWidget(node, "emavfi_summary", "");
  node.emavfiRun = null; // the node's "emavfi" ui output of the last execution
  const render = () => {
    const run = node.emavfiRun;
    el.textContent = kind === INTERPOLATE ? interpolateSummary(node, run) : retimeSummary(node, run);
    el.title = [run?.report, run?.warning].filter(Boolean).join("\n");
  };
  const watched = kind === INTERPOLATE ? ["multiplier", "timesteps", "fps"] : ["source_fps", "target_fps", "speed"];
  onWidgetChange(node, watched, render);
  node.emavfiRender = render;
  render();
}

// ---------------------------------------------------------------- loader weights status
const statusCache = new Map(); // variant -> last status object (shared by all loader nodes)

function basename(path) {
  return path ? String(path).split(/[\\/]/).pop() : "";
}

function describeStatus(status, weights) {
  if (weights && weights !== "(download)") return ["local", `weights: ${weights} (local file)`];
  if (!status) return ["", "weights: checking\u2026"];
  const variant = status.variant ?? "";
  switch (status.state) {
    case "downloading": {
      const pct = status.total ? Math.floor((100 * status.downloaded) / status.total) : null;
      return ["downloading", `${variant}: downloading${pct === null ? "\u2026" : ` ${pct}%`}`];
    }
    case "local":
      return ["ready", `${variant}: local file ${basename(status.path)}`];
    case "cached":
      return ["ready", `${variant}: downloaded`];
    case "missing":
      return ["missing", `${variant}: not downloaded yet (downloads on first run)`];
    default:
      return ["error", `${variant}: ${status.message ?? "status unknown"}`];
  }
}

function setupLoader(node) {
  const el = addInfoWidget(node, "emavfi_status", "weights: checking\u2026");
  const render = () => {
    const variant = widget(node, "variant")?.value;
    const [state, text] = describeStatus(statusCache.get(variant), widget(node, "weights")?.value);
    el.dataset.state = state;
    el.textContent = text;
  };
  const refresh = async () => {
    const variant = widget(node, "variant")?.value;
    if (!variant) return;
    const repo = widget(node, "repo")?.value ?? "";
    try {
      const query = `variant=${encodeURIComponent(variant)}&repo=${encodeURIComponent(repo)}`;
      const res = await api.fetchApi(`/emavfi/status?${query}`);
      const body = await res.json().catch(() => null); // a 400 carries {state: "error", message}
      statusCache.set(variant, body ?? { variant, state: "error", message: `HTTP ${res.status}` });
    } catch (err) {
      statusCache.set(variant, { variant, state: "error", message: String(err) });
    }
    render();
  };
  onWidgetChange(node, ["variant", "repo"], refresh);
  onWidgetChange(node, ["weights"], render);
  node.emavfiRender = render;
  node.emavfiRefresh = refresh;
  render();
  refresh();
}

function loaderNodes() {
  return (app.graph?._nodes ?? []).filter((n) => n.comfyClass === LOADER || n.type === LOADER);
}

app.registerExtension({
  name: EXT,

  setup() {
    const style = document.createElement("style");
    style.id = "emavfi-style";
    style.textContent = STYLE;
    document.head.appendChild(style);

    api.addEventListener(DOWNLOAD_EVENT, (event) => {
      const status = event.detail;
      if (!status?.variant) return;
      statusCache.set(status.variant, status);
      for (const node of loaderNodes()) node.emavfiRender?.();
    });
  },

  async beforeRegisterNodeDef(nodeType, nodeData) {
    const kind = nodeData?.name;
    if (kind !== INTERPOLATE && kind !== RETIME && kind !== LOADER) return;

    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function (...args) {
      const r = onNodeCreated?.apply(this, args);
      if (kind === LOADER) setupLoader(this);
      else setupSummary(this, kind);
      return r;
    };

    // Widget values restored from a saved workflow do not fire callbacks: render again after configure,
    // and grow a node saved smaller than its widgets need (e.g. before this extension was installed).
    const onConfigure = nodeType.prototype.onConfigure;
    nodeType.prototype.onConfigure = function (...args) {
      const r = onConfigure?.apply(this, args);
      const [minWidth, minHeight] = this.computeSize();
      if (this.size[0] < minWidth || this.size[1] < minHeight) {
        this.setSize([Math.max(this.size[0], minWidth), Math.max(this.size[1], minHeight)]);
      }
      if (kind === LOADER) this.emavfiRefresh?.();
      else this.emavfiRender?.();
      return r;
    };

    if (kind !== LOADER) {
      const onExecuted = nodeType.prototype.onExecuted;
      nodeType.prototype.onExecuted = function (output) {
        const r = onExecuted?.apply(this, arguments);
        const run = output?.emavfi?.[0];
        if (run) {
          this.emavfiRun = run;
          this.emavfiRender?.();
        }
        return r;
      };
    } else {
      const onExecuted = nodeType.prototype.onExecuted;
      nodeType.prototype.onExecuted = function (output) {
        const r = onExecuted?.apply(this, arguments);
        this.emavfiRefresh?.();
        return r;
      };
    }
  },
});
