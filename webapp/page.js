// The page's side of the app: renders the Panel document the worker sends, keeps it in sync,
// and hands chosen or dropped files to the worker as File objects (never as base64).
"use strict";

(() => {
  const statusLine = document.getElementById("loading-status");
  if (location.protocol === "file:") {
    explainHowToOpen();
    return;
  }
  const worker = new Worker("worker.js");
  const timing = (window.qidicomTiming = { start: performance.timeOrigin });
  let jsdoc = null;
  let busy = false; // a patch is being applied in the worker
  let queue = []; // document events waiting for the worker
  let applyingPatch = 0;
  // The last change sent to the worker and answered: when it was sent, when the worker's
  // answer was applied, and two animation frames later (painted); for the tests and benchmark.
  const answers = (window.qidicomAnswers = { last: null });
  let sentAt = null;

  // Opened by double-clicking index.html: browsers start no worker and fetch nothing for a
  // file:// page, so the app would wait forever. Say how to open it instead.
  function explainHowToOpen() {
    let folder = decodeURIComponent(location.pathname.replace(/[^/]*$/, ""));
    if (/^\/[A-Za-z]:\//.test(folder)) folder = folder.slice(1).replaceAll("/", "\\"); // Windows: C:\...
    document.getElementById("site-folder").textContent = folder;
    document.getElementById("open-from-file").hidden = false;
    document.getElementById("inputs").hidden = true;
    document.getElementById("app-section").hidden = true;
    statusLine.textContent = "";
    document.body.dataset.appState = "file-url";
  }

  function setState(state, message) {
    document.body.dataset.appState = state;
    if (message !== undefined) statusLine.textContent = message;
  }

  function sendEvents(events) {
    busy = true;
    if (sentAt === null) sentAt = performance.now();
    worker.postMessage({ type: "patch", patch: jsdoc.create_json_patch(events) });
  }

  function onDocumentChange(event) {
    if (applyingPatch > 0 || event.setter_id === "py") return;
    if (dragWindow(event)) return; // applied here; the mapper's new range goes to the worker instead
    applyPageSide(event);
    if (busy) {
      // Keep only the latest value of an attribute while the worker is busy.
      if (event.model && event.attr) {
        queue = queue.filter((old) => !(old.model === event.model && old.attr === event.attr));
      }
      queue.push(event);
      return;
    }
    sendEvents([event]);
  }

  // A document change from the worker. One the page cannot apply is logged (and the tests
  // fail on that line) rather than thrown, so that the worker's next changes still apply.
  function applyPatch(msg) {
    applyingPatch += 1;
    try {
      jsdoc.apply_json_patch(msg.patch, msg.buffers);
    } catch (error) {
      console.error("qidicom: a document update from the worker failed", error);
    } finally {
      applyingPatch -= 1;
    }
    if (sentAt !== null) {
      const last = (answers.last = { sent: sentAt, applied: performance.now(), painted: null });
      sentAt = null;
      requestAnimationFrame(() => requestAnimationFrame(() => (last.painted = performance.now())));
    }
  }

  // ----------------------------------------------------------------------------- the preview, page-side

  // Window presets, overlay opacity, segment visibility and the map's threshold and opacity
  // change only colour-mapper ranges, palettes and alpha: they are made here at once, so that
  // only a new slice waits for the worker. The worker's Python (webapp/preview/view.py)
  // describes each preview in its base mapper's tags (the presets' ranges, the full segment
  // palette) and marks its widgets with the CSS class qi-ctl-<preview>-<control>; the models
  // changed here are sent to the worker like any other change, so Python's state stays the
  // page's. window.qidicomPageSide counts the changes made here and times the last one, from
  // the widget's change to the second animation frame after it (painted), for the tests and
  // the benchmark.
  const pageSide = (window.qidicomPageSide = { applied: 0, last: null });
  const CONTROL = /^qi-ctl-(\d+)-([a-z-]+)$/;

  function previewSide(key) {
    const mapper = jsdoc.get_model_by_name(`qi-${key}-window`);
    const at = mapper ? mapper.tags.indexOf("qi-page-side") : -1;
    return at >= 0 ? { mapper, ...JSON.parse(mapper.tags[at + 1]) } : null;
  }

  function modelsTagged(tag) {
    return [...jsdoc.all_models].filter((model) => Array.isArray(model.tags) && model.tags.includes(tag));
  }

  function applyPageSide(event) {
    const model = event.model;
    const classes = model && Array.isArray(model.css_classes) ? model.css_classes : [];
    const match = classes.map((name) => CONTROL.exec(name)).find(Boolean);
    if (!match || !["value", "active"].includes(event.attr)) return;
    const [, key, control] = match;
    if (control === "drag") {
      dragModes.set(key, model.active);
      return;
    }
    const started = performance.now();
    const side = previewSide(key);
    if (!side) return;
    const mapperOf = (name) => jsdoc.get_model_by_name(name);
    if (control === "window") {
      const range = side.window.presets[model.value];
      if (!range) return;
      side.mapper.setv({ low: range[0], high: range[1] });
    } else if (control === "opacity" && side.segments) {
      for (const glyph of modelsTagged(side.segments.glyphs)) glyph.global_alpha = model.value;
    } else if (control === "visible" && side.segments) {
      const shown = new Set(model.active.map((index) => side.segments.numbers[index]));
      const palette = side.segments.palette.map((colour, number) =>
        side.segments.numbers.includes(number) && !shown.has(number) ? side.segments.transparent : colour);
      mapperOf(side.segments.mapper).palette = palette;
    } else if (control === "threshold" && side.map) {
      mapperOf(side.map.mapper).low = model.value;
    } else if (control === "map-opacity" && side.map) {
      for (const glyph of modelsTagged(side.map.glyphs)) glyph.global_alpha = model.value;
    } else {
      return;
    }
    pageSide.applied += 1;
    const last = (pageSide.last = { control, started, applied: performance.now(), painted: null });
    requestAnimationFrame(() => requestAnimationFrame(() => (last.painted = performance.now())));
  }

  // A drag on a plane changes the series' window here too (webapp/preview/view.py's
  // drag_window, the same formula), so a drag repaints at once: the plane's pan events are
  // not sent; the mapper's new range is, and the worker's window text follows it. In "pan"
  // mode Bokeh's pan tool moves the view in the page and the worker has nothing to do either.
  const dragModes = new Map(); // preview key -> the Drag buttons' active index (0: window)
  const PLANE = /^qi-(\d+)-(axial|sagittal|coronal)$/;

  function dragWindow(event) {
    const data = event.msg_type === "bokeh_event" ? event.msg_data : null;
    if (!data || data.event_name !== "pan") return false;
    const match = data.origin && typeof data.origin.name === "string" ? PLANE.exec(data.origin.name) : null;
    const side = match ? previewSide(match[1]) : null;
    if (!side || !side.window.drag) return false;
    if ((dragModes.get(match[1]) ?? 0) !== 0) return true;
    const started = performance.now();
    const { mapper } = side;
    const width = mapper.high - mapper.low;
    const factor = Math.max(width, 1) / side.window.drag_scale;
    const centre = (mapper.low + mapper.high) / 2 - (data.delta_y || 0) * factor;
    const widened = Math.max(width + (data.delta_x || 0) * factor, 1e-6);
    mapper.setv({ low: centre - widened / 2, high: centre + widened / 2 });
    pageSide.applied += 1;
    const last = (pageSide.last = { control: "drag", started, applied: performance.now(), painted: null,
                                    window: [mapper.low, mapper.high] });
    requestAnimationFrame(() => requestAnimationFrame(() => (last.painted = performance.now())));
    return true;
  }

  async function render(msg) {
    const docsJson = JSON.parse(msg.docs_json);
    const renderItems = JSON.parse(msg.render_items);
    const rootIds = JSON.parse(msg.root_ids);
    const host = document.getElementById("app-root");
    const roots = {};
    rootIds.forEach((id, index) => {
      let element = host;
      if (index > 0) {
        element = document.createElement("div");
        element.id = `app-root-${index}`;
        host.after(element);
      }
      roots[id] = element.id;
    });
    renderItems[0].roots = roots;
    renderItems[0].root_ids = rootIds;
    const [views] = await Bokeh.embed.embed_items(docsJson, renderItems);
    jsdoc = [...views.roots.values()][0].model.document;
    jsdoc.on_change(onDocumentChange, false);
    worker.postMessage({ type: "rendered" });
  }

  worker.onmessage = async (event) => {
    const msg = event.data;
    switch (msg.type) {
      case "status":
        statusLine.textContent = `${msg.message}…`;
        timing[`worker_${msg.stage}`] = msg.elapsed; // ms since the worker started
        break;
      case "render":
        timing.worker_rendered = msg.elapsed;
        timing.rendered = performance.now();
        await render(msg);
        break;
      case "ready":
        timing.ready = performance.now();
        console.info(`qidicom ready ${Math.round(timing.ready)} ms after navigation`);
        setState("ready", "");
        registerServiceWorker();
        break;
      case "stage-loaded":
        document.body.dataset[camel(`stage-${msg.stage}`)] = "loaded";
        break;
      case "stack-ready":
        timing.stackReady = performance.now();
        document.body.dataset.stack = "ready";
        break;
      case "patch":
        applyPatch(msg);
        break;
      case "idle":
        sentAt = null; // answered (with or without changes)
        if (queue.length) {
          const events = queue;
          queue = [];
          sendEvents(events);
        } else {
          busy = false;
        }
        break;
      case "conversions":
        onConversions(JSON.parse(msg.description));
        break;
      case "files-read":
        document.body.dataset[camel(`${msg.mode}-${msg.role}-files`)] = String(msg.count);
        break;
      case "sample-loaded":
        sampleButton.disabled = false;
        document.body.dataset.sample = msg.failed ? "failed" : "loaded";
        if (!msg.failed) document.body.dataset[camel(`sample-${msg.mode}`)] = "loaded";
        if (!msg.failed && document.body.dataset.appState === "ready") statusLine.textContent = "";
        break;
      case "notice":
        statusLine.textContent = msg.message;
        break;
      case "fatal":
        setState("failed", msg.message);
        break;
    }
  };
  worker.onerror = (event) => {
    console.error(event);
    setState("failed", "The app stopped unexpectedly. Reload the page to start again.");
  };

  // ----------------------------------------------------------------------------- modes and inputs

  // What each mode takes comes from qidicom.conversions, sent by the worker once the DICOM
  // libraries are loaded: the pickers are made from it, never spelled out here.
  let modes = {}; // short name -> {title, inputs: [{role, label, accept, multiple, directory, extensions, kind}]}
  let currentMode = "seg";
  const pickers = document.getElementById("pickers");
  const modeTabs = [...document.querySelectorAll("#modes [data-mode]")];

  function camel(text) {
    return text.replace(/-([a-z])/g, (_, letter) => letter.toUpperCase());
  }

  function sendFiles(role, files, mode = currentMode) {
    if (!files.length) return;
    if (document.body.dataset.appState === "ready") statusLine.textContent = "";
    worker.postMessage({ type: "files", mode, role, files: Array.from(files) });
  }

  function addPicker(mode, picker) {
    const id = `${mode}-${picker.role}`;
    const label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = picker.label + (picker.extensions.length ? ` (${picker.extensions.join(", ")})` : "");
    const input = document.createElement("input");
    input.type = "file";
    input.id = id;
    input.multiple = picker.multiple;
    if (picker.accept) input.accept = picker.accept;
    input.addEventListener("change", () => sendFiles(picker.role, input.files, mode));
    pickers.append(label, input);
    if (picker.directory) {
      const folderLabel = document.createElement("label");
      folderLabel.htmlFor = `${id}-folder`;
      folderLabel.textContent = "…or a whole folder";
      const folder = document.createElement("input");
      folder.type = "file";
      folder.id = `${id}-folder`;
      folder.webkitdirectory = true;
      folder.multiple = true;
      folder.addEventListener("change", () => sendFiles(picker.role, folder.files, mode));
      pickers.append(folderLabel, folder);
    }
  }

  function showPickers() {
    pickers.replaceChildren();
    const mode = modes[currentMode];
    if (!mode) return;
    for (const picker of mode.inputs) addPicker(currentMode, picker);
    dcmqiSampleButton.hidden = !(dcmqiSample && currentMode === "seg");
    sampleNote.textContent = sampleNotes[currentMode] || "";
  }

  function selectMode(mode) {
    currentMode = mode;
    document.body.dataset.mode = mode;
    for (const tab of modeTabs) {
      const selected = tab.dataset.mode === mode;
      tab.setAttribute("aria-selected", String(selected));
      tab.tabIndex = selected ? 0 : -1;
    }
    showPickers();
    worker.postMessage({ type: "mode", mode });
  }
  modeTabs.forEach((tab, index) => {
    tab.addEventListener("click", () => selectMode(tab.dataset.mode));
    // Arrow keys move between tabs, as for any tab list.
    tab.addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (!step) return;
      const next = modeTabs[(index + step + modeTabs.length) % modeTabs.length];
      next.focus();
      selectMode(next.dataset.mode);
    });
  });
  document.body.dataset.mode = currentMode;

  function onConversions(description) {
    if (description.failed) return;
    modes = Object.fromEntries(description.modes.map((mode) => [mode.short_name, mode]));
    for (const tab of modeTabs) if (!modes[tab.dataset.mode]) tab.hidden = true;
    showPickers();
    document.body.dataset.pickers = "ready";
  }

  // A dropped file goes to the current mode's first input whose extensions it has; any
  // other file to the mode's DICOM input.
  function roleOf(file) {
    const name = file.name.toLowerCase();
    const inputs = modes[currentMode] ? modes[currentMode].inputs : [];
    const byName = inputs.find((input) => input.extensions.some((ending) => name.endsWith(ending)));
    if (byName) return byName.role;
    const dicom = inputs.find((input) => input.kind === "dicom");
    return dicom ? dicom.role : null;
  }

  // Dropped folders arrive as directory entries: walk them to plain File objects.
  async function filesOfEntry(entry, prefix = "") {
    if (entry.isFile) {
      const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
      return [prefix ? new File([file], prefix + file.name, { type: file.type }) : file];
    }
    const reader = entry.createReader();
    const files = [];
    for (;;) {
      const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
      if (!batch.length) break;
      for (const child of batch) files.push(...(await filesOfEntry(child, `${prefix}${entry.name}/`)));
    }
    return files;
  }

  const dropZone = document.getElementById("drop-zone");
  for (const type of ["dragenter", "dragover"]) {
    document.addEventListener(type, (event) => {
      event.preventDefault();
      dropZone.classList.add("dragging");
    });
  }
  document.addEventListener("dragleave", (event) => {
    if (event.relatedTarget === null) dropZone.classList.remove("dragging");
  });
  document.addEventListener("drop", async (event) => {
    event.preventDefault();
    dropZone.classList.remove("dragging");
    const entries = [...event.dataTransfer.items].map((item) => item.webkitGetAsEntry && item.webkitGetAsEntry()).filter(Boolean);
    const files = entries.length
      ? (await Promise.all(entries.map((entry) => filesOfEntry(entry)))).flat()
      : [...event.dataTransfer.files];
    const byRole = {};
    for (const file of files) {
      const role = roleOf(file);
      if (role) (byRole[role] = byRole[role] || []).push(file);
    }
    for (const [role, list] of Object.entries(byRole)) sendFiles(role, list);
  });

  // The default sample is made by qidicom.samples in the worker: every build has it.
  const sampleButton = document.getElementById("load-sample");
  const sampleNote = document.querySelector(".samples .note");
  const sampleNotes = {
    seg: "a phantom CT with several organs, its label map and metadata, made in this page",
    pm: "a phantom MR series with an ADC map and its metadata, made in this page",
    sr: "the phantom CT, a SEG of its organs and their measurements, made in this page",
    open: "the phantom CT and a SEG of its organs, made in this page, to open",
  };
  sampleButton.addEventListener("click", () => {
    sampleButton.disabled = true;
    if (document.body.dataset.appState === "ready") statusLine.textContent = "Making the sample data…";
    worker.postMessage({ type: "sample", mode: currentMode });
  });

  // dcmqi's own SEG sample, when the build found it beside the checkout (../shared): a
  // second choice in SEG mode. The build's manifest names its files by SEG input.
  const dcmqiSampleButton = document.getElementById("load-dcmqi-sample");
  const manifestRoles = { series: "series", labelmap: "labelmaps", metadata: "metadata" };
  let dcmqiSample = null;
  fetch("sample/manifest.json")
    .then((response) => (response.ok ? response.json() : { series: [] }))
    .then((manifest) => {
      if (!manifest.series.length) return;
      dcmqiSample = manifest;
      dcmqiSampleButton.hidden = currentMode !== "seg";
      dcmqiSampleButton.title = `Sample data: ${manifest.source}`;
      dcmqiSampleButton.addEventListener("click", async () => {
        for (const [key, role] of Object.entries(manifestRoles)) {
          const files = await Promise.all(
            manifest[key].map(async (path) => {
              const blob = await (await fetch(`sample/${path}`)).blob();
              return new File([blob], path.split("/").pop());
            }),
          );
          sendFiles(role, files, "seg");
        }
      });
    })
    .catch((error) => console.warn("no dcmqi sample in this build", error));

  // ----------------------------------------------------------------------------- copying

  // The editor's "Copy JSON" button: a worker has no clipboard, and this page's policy runs
  // no script made from text (a Bokeh CustomJS), so the page copies the text itself, from
  // the JSON text area of the same editor. Panel draws widgets in shadow roots.
  function deepQueryAll(root, selector) {
    const found = [...root.querySelectorAll(selector)];
    const scopes = [...root.querySelectorAll("*")];
    if (root.shadowRoot) scopes.unshift({ shadowRoot: root.shadowRoot });
    for (const element of scopes) {
      if (element.shadowRoot) found.push(...deepQueryAll(element.shadowRoot, selector));
    }
    return found;
  }
  function parentAcrossShadows(node) {
    return node.parentNode instanceof ShadowRoot ? node.parentNode.host : node.parentNode;
  }
  function editorText(button) {
    for (let node = parentAcrossShadows(button); node && node !== document; node = parentAcrossShadows(node)) {
      const [host] = deepQueryAll(node, ".qi-json-text");
      if (host) {
        const [area] = deepQueryAll(host, "textarea");
        return area ? area.value : null;
      }
    }
    return null;
  }
  document.addEventListener("click", (event) => {
    const button = event.composedPath().find((node) => node.classList && node.classList.contains("qi-copy-json"));
    if (!button) return;
    const text = editorText(button);
    if (text === null) return;
    navigator.clipboard.writeText(text).then(
      () => {
        document.body.dataset.copied = String(text.length);
        statusLine.textContent = "The JSON is on the clipboard.";
      },
      (error) => {
        statusLine.textContent = `The JSON could not be copied (${error.message}): select the text and copy it.`;
      },
    );
  });

  // Offline use: cache every file of the site once the app is up (not before: it would
  // compete with the first start for bandwidth and CPU).
  function registerServiceWorker() {
    if (!("serviceWorker" in navigator)) return;
    navigator.serviceWorker
      .register("sw.js")
      .then(() => navigator.serviceWorker.ready)
      .then(() => (document.body.dataset.offline = "ready"))
      .catch((error) => console.warn("offline mode unavailable:", error));
  }
})();
