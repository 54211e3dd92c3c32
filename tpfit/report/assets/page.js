// tpfit's page: the same view for the local server (`tpfit ui`) and the saved report (`tpfit plan --html`).
// It only shows what the plan JSON holds; every figure comes from `tpfit plan --json` unchanged.
(function () {
  "use strict";
  const DATA = JSON.parse(document.getElementById("tpfit-data").textContent);
  const LIVE = DATA.mode === "live";
  const $ = (id) => document.getElementById(id);
  const WORKLOAD_FIELDS = ["context", "concurrency", "input_tokens", "output_tokens", "objective", "ttft", "tpot"];
  const SEGMENTS = [
    ["weights", "weights_gib", "Weights", "--weights"],
    ["activation", "activation_gib", "Activation peak", "--activation"],
    ["non_torch", "non_torch_gib", "Non-torch", "--non-torch"],
    ["cuda_graph", "cuda_graph_gib", "CUDA graphs", "--graphs"],
    ["kv_cache", "kv_cache_gib", "KV cache", "--kv"],
    ["context", null, "CUDA context (outside budget)", "--context"],
    ["free", "free_gib", "Free while serving", "--free"],
  ];
  const VERDICTS = {
    starts: ["✓ starts", "v-starts", "ok"],
    refused_at_start: ["✗ refused at start", "v-bad", "bad"],
    overflows_at_runtime: ["! out of memory serving", "v-bad", "bad"],
    insufficient_concurrency: ["! too few sequences", "v-warn", "warn"],
    refused: ["✗ refused by rules", "v-bad", "bad"],
    none: ["✗ nothing starts", "v-bad", "bad"],
  };
  const SPEED_COLUMNS = [
    ["ttft_s", "TTFT ms", 1000], ["tpot_s", "TPOT ms", 1000],
    ["request_output_tok_s", "tok/s each", 1], ["total_output_tok_s", "tok/s total", 1],
  ];
  const SPEED_LABELS = {
    ttft_s: "Time to first token", tpot_s: "Time per output token", request_output_tok_s: "Output tokens/s per request",
    total_output_tok_s: "Output tokens/s, all replicas", concurrency: "Concurrent requests",
    running_per_replica: "Running per replica", input_tokens: "Input tokens", output_tokens: "Output tokens",
    bound: "Bound by", step_ms: "Decode step (ms)", calibration: "Figures from",
  };
  let view = null;
  let selected = null;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }
  const plural = (n, word) => (n === 1 ? word : word + "s");
  const gib = (x) => (x === null || x === undefined ? "" : Number(x).toFixed(2));
  const int = (x) => (x === null || x === undefined ? "" : Number(x).toLocaleString("en-US"));
  const layoutName = (l) => `TP${l.tp} PP${l.pp} DP${l.dp}` + (l.ep > 1 ? ` EP${l.ep}` : "");
  function verdictOf(c) {
    if (!c) return "none";
    if (!c.accepted) return "refused";
    return c.memory ? c.memory.verdict : "refused";
  }

  // ---- inputs (live page only) ---------------------------------------------------------------
  function fieldInput(f) {
    const id = "f-" + f.name;
    const hint = f.help + (f.default !== null && f.default !== false ? ` Default: ${f.default}.` : "");
    const common = { id, name: f.name, title: hint, "aria-describedby": "err-" + f.name };
    let input;
    if (f.kind === "bool" && f.off_flag) {
      input = el("select", common, el("option", { value: "", text: "either" }),
        el("option", { value: "true", text: f.flag }), el("option", { value: "false", text: f.off_flag }));
    } else if (f.kind === "bool") {
      input = el("input", { ...common, type: "checkbox", value: "true" });
      return el("div", {}, el("label", { class: "check", for: id }, input, f.flag),
        el("p", { class: "err", id: "err-" + f.name, role: "alert" }));
    } else if (f.kind === "choice") {
      input = el("select", common, el("option", { value: "", text: `default (${f.default ?? "none"})` }),
        ...f.choices.map((c) => el("option", { value: c, text: c })));
    } else {
      const num = f.kind === "int" || f.kind === "float";
      input = el("input", {
        ...common, type: num ? "number" : "text", inputmode: num ? (f.kind === "int" ? "numeric" : "decimal") : null,
        min: f.min, max: f.max, step: f.kind === "float" ? "0.01" : (num ? "1" : null), spellcheck: "false",
        placeholder: f.default !== null && f.default !== false ? String(f.default) : "",
      });
    }
    return el("div", {}, el("label", { for: id, text: f.flag }), input,
      el("p", { class: "err", id: "err-" + f.name, role: "alert" }));
  }

  function buildForm() {
    for (const m of DATA.catalog.models) $("models-list").append(el("option", { value: m.alias, text: m.hf_id }));
    for (const g of DATA.catalog.gpus) $("gpus-list").append(el("option", { value: g.alias, text: g.name }));
    for (const f of DATA.fields) {
      if (f.name === "gpus") continue;
      const box = WORKLOAD_FIELDS.includes(f.name) ? $("workload-fields") : $("flag-fields");
      box.append(fieldInput(f));
    }
    const q = new URLSearchParams(location.search);
    const start = q.toString() ? Object.fromEntries(q) : DATA.example;
    $("f-model").value = start.model || "";
    if (start.host) {
      $("f-gpu-source").value = "host";
    } else {
      const m = /^(?:(\d+)x)?(\d+)x(.+)$/i.exec(start.gpus || "");
      $("f-nodes").value = m && m[1] ? m[1] : "1";
      $("f-count").value = m ? m[2] : "1";
      $("f-gpu").value = m ? m[3] : (start.gpus || "");
    }
    for (const f of DATA.fields) {
      const input = $("f-" + f.name);
      if (!input || !(f.name in start) || !start[f.name]) continue;
      const value = start[f.name];
      if (input.type === "checkbox") input.checked = DATA.true_words.includes(value.toLowerCase());
      else {
        // a spelling the server takes but the list does not hold ("FP8", "yes"): kept, so the URL plans what it
        // says (it was dropped for the default) and the server judges it
        if (input.tagName === "SELECT" && ![...input.options].some((o) => o.value === value)) {
          input.append(el("option", { value, text: value }));
        }
        input.value = value;
      }
      reveal(input);
    }
    syncGpuSource();
    $("inputs").addEventListener("input", schedule);
    $("inputs").addEventListener("change", schedule);
    $("inputs").addEventListener("submit", (e) => { e.preventDefault(); refresh(); });
    $("f-gpu-source").addEventListener("change", syncGpuSource);
    $("f-upload").addEventListener("change", upload);
    $("share-copy").addEventListener("click", () => copy(location.href, "Link copied", () => {
      $("share").textContent = location.href;  // shown, so that it can be selected
      return $("share");
    }));
  }

  // a field set from the URL or named by an error is shown, not left inside the closed flags box
  function reveal(input) {
    const box = input.closest("details");
    if (box) box.open = true;
  }

  function syncGpuSource() {
    $("gpu-pickers").hidden = $("f-gpu-source").value === "host";
  }

  function gpuString() {
    if ($("f-gpu-source").value === "host") return "";
    const gpu = $("f-gpu").value.trim();
    const count = $("f-count").value.trim() || "1";
    const nodes = $("f-nodes").value.trim() || "1";
    if (!gpu) return "";
    return (nodes !== "1" ? nodes + "x" : "") + count + "x" + gpu;
  }

  function query() {
    const q = new URLSearchParams();
    q.set("model", $("f-model").value.trim());
    const gpus = gpuString();
    if (gpus) q.set("gpus", gpus);
    else if ($("f-gpu-source").value === "host") q.set("host", "1");
    for (const f of DATA.fields) {
      const input = $("f-" + f.name);
      if (!input) continue;
      const value = input.type === "checkbox" ? (input.checked ? "true" : "") : input.value.trim();
      if (value) q.set(f.name, value);
    }
    return q;
  }

  let timer = null;
  let inflight = null;
  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(refresh, 250);
  }

  function clearErrors() {
    for (const p of document.querySelectorAll(".err")) p.textContent = "";
    for (const i of document.querySelectorAll("[aria-invalid]")) i.removeAttribute("aria-invalid");
  }

  function showError(err) {
    document.body.dataset.errors = String(Number(document.body.dataset.errors || 0) + 1);
    const field = err.field && $("err-" + err.field) ? err.field : "general";
    $("err-" + field).textContent = err.error;
    const inputs = field === "gpus" ? ["f-gpu", "f-count", "f-nodes"] : ["f-" + field];
    for (const id of inputs) {
      if (!$(id)) continue;
      $(id).setAttribute("aria-invalid", "true");
      reveal($(id));
    }
    // what stays below is the plan of earlier inputs: dimmed and said, not shown as the answer to these
    const shown = view !== null;
    document.body.classList.toggle("stale", shown);
    $("status").textContent = "Not planned: " + err.error + (shown ? " (shown below: the plan of the previous inputs)" : "");
  }

  // A number field holding what the browser cannot read as a number ("1e", "--5") reports an empty value: left
  // out, the page would plan with the option's default and say nothing, so it names the field instead.
  function unreadableNumber() {
    for (const input of document.querySelectorAll("#inputs input[type=number]")) {
      if (!input.validity.badInput) continue;
      const gpus = input.id === "f-count" || input.id === "f-nodes";
      const name = document.querySelector(`label[for="${input.id}"]`).textContent;
      const whole = gpus || input.step === "1";
      return { field: gpus ? "gpus" : input.name,
               error: `${name}: not a number; type ${whole ? "a whole number" : "a number"} (digits${whole ? "" : " and a decimal point"} only)` };
    }
    return null;
  }

  async function refresh() {
    if (inflight) inflight.abort();
    const unreadable = unreadableNumber();
    if (unreadable) {
      clearErrors();
      showError(unreadable);
      return;
    }
    const q = query();
    history.replaceState(null, "", "?" + q.toString());
    $("share").href = location.href;
    if ($("share").textContent.includes("?")) $("share").textContent = location.href;
    inflight = new AbortController();
    document.body.classList.add("busy");
    $("status").textContent = "Planning…";
    try {
      const resp = await fetch("api/view?" + q.toString(), { signal: inflight.signal });
      clearErrors();
      if (resp.status >= 500) {
        showError({ error: serverBug(resp.status) });
        return;
      }
      const body = await resp.json();
      if (!resp.ok) showError(body);
      else { $("status").textContent = ""; render(body); }
    } catch (e) {
      if (e.name === "AbortError") return;
      clearErrors();
      showError({ error: noAnswer(e) });
    } finally {
      document.body.classList.remove("busy");
    }
  }

  async function upload() {
    const file = $("f-upload").files[0];
    if (!file) return;
    clearErrors();
    if (file.size > DATA.upload_limit_bytes) {
      showError({ field: "model", error: `config.json: ${file.size} bytes is more than the ${DATA.upload_limit_bytes} bytes the page accepts` });
      return;
    }
    let resp, body;
    try {  // as refresh() does: a server gone or failing is said beside the field, not left in the console
      resp = await fetch("api/upload?name=" + encodeURIComponent(file.name), { method: "POST", body: await file.text(), headers: { "Content-Type": "application/json" } });
      body = resp.status >= 500 ? { field: "model", error: serverBug(resp.status) } : await resp.json();
    } catch (e) {
      showError({ field: "model", error: noAnswer(e) });
      return;
    }
    if (!resp.ok) { showError(body); return; }
    $("f-model").value = body.model;
    refresh();
  }
  const serverBug = (status) => `tpfit failed on these inputs (HTTP ${status}, a bug: the terminal running \`tpfit ui\` shows the traceback)`;
  const noAnswer = (e) => "the tpfit server did not answer (" + e.message + "); is `tpfit ui` still running?";

  // ---- results ---------------------------------------------------------------------------------
  function render(v) {
    view = v;
    document.body.classList.remove("stale");
    document.body.dataset.renders = String(Number(document.body.dataset.renders || 0) + 1);
    const plan = v.plan;
    $("plan-command").textContent = v.plan_command;
    $("plan-json").href = "data:application/json;charset=utf-8," + encodeURIComponent(JSON.stringify(plan, null, 1));
    $("plan-json").setAttribute("aria-label", "Download this plan as tpfit plan --json writes it (plan.json)");
    document.title = "tpfit: " + plan.model.id;
    const best = plan.recommended === null ? null : plan.candidates[plan.recommended];
    selected = plan.closest;  // the recommended layout, else the one the terminal calls closest (null: none passes)
    const [text, cls] = VERDICTS[verdictOf(best)];
    $("verdict").textContent = text;
    $("verdict").className = "verdict " + cls;
    $("answer").textContent = plan.summary;
    renderLayouts();
    renderSelected();
    renderDeploy();
    renderFacts();
  }

  function renderSelected() {
    const plan = view.plan;
    const c = selected === null ? null : plan.candidates[selected];
    $("mem-layout").textContent = c ? "· " + layoutName(c.layout) + (selected === plan.recommended ? " (recommended)" : "") : "";
    for (const tr of document.querySelectorAll("#layouts tr[data-index]")) {
      const on = Number(tr.dataset.index) === selected;
      tr.classList.toggle("selected", on);
      const b = tr.querySelector("button");
      if (b) b.setAttribute("aria-pressed", on ? "true" : "false");
    }
    renderBars(c);
    renderFlags(c);
    renderSpeed(c);
  }

  function stageRows(c) {
    const l = c.layout;
    const gpus = l.tp * l.pp * l.dp;
    const stages = c.memory.per_stage;
    if (gpus <= 8) {
      return Array.from({ length: gpus }, (_, i) => {
        const stage = Math.floor(i / l.tp) % l.pp;
        return { label: `GPU ${i}` + (l.pp > 1 ? ` · stage ${stage}` : ""), mem: stages[stage] };
      });
    }
    return stages.map((s) => ({ label: `stage ${s.pp_rank} · ${l.tp * l.dp} GPUs`, mem: s }));
  }

  const tip = el("div", { class: "tip", role: "tooltip", hidden: true });
  document.body.append(tip);
  function showTip(e) {
    const seg = e.currentTarget;
    tip.textContent = seg.getAttribute("aria-label");
    tip.hidden = false;
    const r = seg.getBoundingClientRect();
    const x = e.clientX !== undefined && e.type === "mousemove" ? e.clientX : r.left + r.width / 2;
    tip.style.left = Math.max(4, Math.min(window.innerWidth - tip.offsetWidth - 4, x - tip.offsetWidth / 2)) + "px";
    tip.style.top = Math.max(4, r.top - tip.offsetHeight - 6) + "px";
  }
  const hideTip = () => { tip.hidden = true; };

  function renderBars(c) {
    const box = $("bars");
    box.replaceChildren();
    $("legend").replaceChildren();
    if (!c || !c.memory) {
      box.append(el("p", { class: "hint", text: c ? "vLLM refuses this layout before it allocates memory." : "No layout to show." }));
      return;
    }
    const plan = view.plan;
    const total = plan.cluster.memory_gib_per_gpu;
    const inBudget = plan.engine.cudagraphs_in_budget;
    const budget = c.memory.gpu_memory_utilization * total;
    for (const row of stageRows(c)) {
      const m = row.mem;
      const values = {};
      for (const [key, field] of SEGMENTS) if (field) values[key] = m[field];
      const known = SEGMENTS.filter(([k]) => k !== "context").reduce((s, [k]) => s + values[k], 0);
      values.context = Math.max(0, total - known);
      let order = SEGMENTS.map((s) => s[0]);
      if (!inBudget) order = ["weights", "activation", "non_torch", "kv_cache", "cuda_graph", "context", "free"];
      // one keyboard stop per GPU: focus reads (and shows) every part of its bar
      const bar = el("div", { class: "bar", role: "img", tabindex: "0", onfocus: showTip, onblur: hideTip });
      const parts = [];
      for (const key of order) {
        const [, field, name] = SEGMENTS.find((s) => s[0] === key);
        const value = values[key];
        const shown = Math.max(0, value);
        const width = (100 * shown) / total;
        if (width <= 0 && key !== "kv_cache" && key !== "free") continue;
        const label = `${name}: ${gib(value)} GiB` + (value < 0 ? " (short: it does not fit)" : "");
        const seg = el("div", {
          class: "seg " + key, style: `width:${width}%`, "aria-label": label,
          "data-field": field || "context", "data-gib": gib(value),
          onmouseenter: showTip, onmousemove: showTip, onmouseleave: hideTip,
        });
        if (width > 9) seg.textContent = gib(value);
        bar.append(seg);
        parts.push(label);
      }
      bar.setAttribute("aria-label", `${row.label}, ${gib(total)} GiB: ` + parts.join("; "));
      bar.append(el("div", { class: "budget", style: `left:${(100 * budget) / total}%` }));
      box.append(el("div", { class: "bar-row" }, el("div", { class: "bar-label", text: row.label, title: row.label }), bar));
    }
    for (const [key, , name, color] of SEGMENTS) {
      $("legend").append(el("li", { style: `--c:var(${color})`, text: name }));
    }
    $("legend").append(el("li", { class: "budget-key", style: "--c:transparent",
      text: `┆ budget: ${c.memory.gpu_memory_utilization} × ${gib(total)} GiB` + (inBudget ? "" : " (CUDA graphs outside it)") }));
  }

  function whyRow(c, columns) {
    const td = el("td", { class: "why", colspan: columns });
    const add = (strong, text) => { if (text) td.append(el("div", {}, strong ? el("b", { text: strong }) : null, text)); };
    for (const r of c.reasons) {
      add("", r.detail);
      add("vLLM says: ", r.vllm_error);
      add("fix: ", r.fix);
    }
    if (c.memory) {
      for (const r of c.memory.reasons) add("", r);
      add("vLLM says: ", c.memory.vllm_error);
    }
    return td.childNodes.length ? el("tr", { class: "why-row" }, td) : null;
  }

  function renderLayouts() {
    const plan = view.plan;
    const hasSpeed = plan.candidates.some((c) => c.speed);
    const head = ["Layout", "Verdict", "KV tokens", "Max conc.", "Weights GiB/GPU", "KV cache GiB/GPU", "Free GiB/GPU"];
    const numeric = [false, false, true, true, true, true, true];
    const narrow = [false, false, false, false, true, true, true];  // left out on a phone; the bars show them
    if (hasSpeed) {
      for (const [, name] of SPEED_COLUMNS) { head.push(name); numeric.push(true); narrow.push(false); }
      head.push("Bound");
      numeric.push(false);
      narrow.push(true);
    }
    const thead = el("thead", {}, el("tr", {}, ...head.map((h, i) => el("th", { scope: "col", class: (numeric[i] ? "num" : "") + (narrow[i] ? " hide-narrow" : ""), text: h }))));
    const tbody = el("tbody");
    plan.candidates.forEach((c, i) => {
      const v = verdictOf(c);
      const [text, , tag] = VERDICTS[v];
      const m = c.memory;
      const tr = el("tr", { "data-index": i, "data-verdict": v, class: i === plan.recommended ? "recommended" : null });
      tr.append(el("td", {}, el("button", {
        type: "button", class: "pick", "aria-pressed": "false", onclick: () => { selected = i; renderSelected(); },
        "aria-label": `Show memory of ${layoutName(c.layout)}`, text: layoutName(c.layout),
      }), i === plan.recommended ? el("div", { class: "hint", text: "recommended" }) : null));
      tr.append(el("td", {}, el("span", { class: "tag " + tag, text })));
      const cells = [
        ["kv_cache_tokens", m && int(m.kv_cache_tokens)], ["max_concurrency", m && Number(m.max_concurrency).toFixed(2)],
        ["weights_gib", m ? gib(m.weights_gib) : gib(Math.max(...c.weights_gib_per_gpu, 0))],
        ["kv_cache_gib", m && gib(m.kv_cache_gib)], ["free_gib_per_gpu", m && gib(m.free_gib_per_gpu)],
      ];
      for (const [field, value] of cells) {
        tr.append(el("td", { class: field.endsWith("gib") || field.endsWith("gpu") ? "num hide-narrow" : "num", "data-field": field, text: value ?? "" }));
      }
      if (hasSpeed) {
        for (const [key, , scale] of SPEED_COLUMNS) {
          const s = c.speed;
          const value = s && s[key] !== null && s[key] !== undefined ? Number(s[key]) * scale : null;
          tr.append(el("td", { class: "num", "data-field": "speed." + key, text: value === null ? "" : value.toFixed(scale === 1000 ? 1 : 0) }));
        }
        tr.append(el("td", { class: "hide-narrow", "data-field": "speed.bound", text: c.speed ? c.speed.bound : "" }));
      }
      tbody.append(tr);
      const why = whyRow(c, head.length);
      if (why) {
        tr.classList.add("has-why");
        tbody.append(why);
      }
    });
    const refused = plan.candidates.filter((c) => ["refused", "refused_at_start"].includes(verdictOf(c))).length;
    $("show-refused-text").textContent = `Show the ${refused} ${plural(refused, "layout")} vLLM refuses`;
    $("show-refused").checked = plan.candidates.length <= 16;  // a long list starts with what runs
    $("show-refused").parentElement.hidden = refused === 0;
    $("show-refused").onchange = showRefused;
    // a DP layout runs several engines: its KV tokens and concurrency are one engine's, as the answer says
    const perReplica = plan.candidates.some((c) => c.layout.dp > 1) ? "; KV tokens and max conc. per replica" : "";
    $("layouts").replaceChildren(el("caption", { class: "hint", style: "text-align:left", text: `${plan.candidates.length} ${plural(plan.candidates.length, "layout")} for ${plan.cluster.nodes} × ${plan.cluster.gpus_per_node} ${plan.cluster.gpu_name}${perReplica}` }), thead, tbody);
    showRefused();
  }

  function showRefused() {
    const on = $("show-refused").checked;
    for (const tr of document.querySelectorAll("#layouts tr[data-index]")) {
      const hide = !on && ["refused", "refused_at_start"].includes(tr.dataset.verdict);
      tr.hidden = hide;
      if (tr.nextElementSibling && tr.nextElementSibling.classList.contains("why-row")) tr.nextElementSibling.hidden = hide;
    }
  }

  const SERVING = ["starts", "insufficient_concurrency"];
  function renderFlags(c) {
    // a layout vLLM refuses or that runs out of memory has no flags to start it with (the terminal shows none):
    // its figures in the JSON are no command to run, so the table says why instead of listing them
    const v = verdictOf(c);
    const flags = SERVING.includes(v) && c.flags ? c.flags : [];
    let note = null;
    if (!c) note = "No flags: vLLM refuses every layout; the answer above says why.";
    else if (!flags.length) {
      const why = c.memory && c.memory.reasons.length ? c.memory.reasons[0] : (c.reasons[0] || {}).detail;
      note = `No flags for ${layoutName(c.layout)}: ${VERDICTS[v][0].replace(/^\S+ /, "")}` + (why ? ` (${why})` : "") +
        (view.plan.recommended === null ? "; the answer above says what would start." : ".");
    }
    const caption = note ? el("caption", { class: "hint", style: "text-align:left", "data-note": "no-flags", text: note }) : null;
    const thead = el("thead", {}, el("tr", {}, ...["Flag", "Value", "Why", ""].map((h) => el("th", { scope: "col", text: h }))));
    const tbody = el("tbody", {}, ...flags.map((f) => el("tr", { "data-flag": f.flag },
      el("td", {}, el("code", { text: f.flag })), el("td", {}, el("code", { text: f.value ?? "" })),
      el("td", { class: "why", text: f.reason }), el("td", { class: "hint", text: f.optional ? "optional" : "" }))));
    $("flags").replaceChildren(...[caption, thead, tbody].filter(Boolean));
  }

  function renderSpeed(c) {
    const s = c && c.speed;
    $("speed-section").hidden = !s;
    if (!s) return;
    const shown = (v) => (v === null ? "" : typeof v === "object"
      ? Object.entries(v).map(([k, x]) => `${k} ${x}`).join(" · ") : String(v));
    $("speed").replaceChildren(el("caption", { class: "hint", style: "text-align:left", text: "Predicted for " + layoutName(c.layout) }),
      el("tbody", {}, ...Object.entries(s).map(([k, v]) => el("tr", { "data-field": "speed." + k },
        el("th", { scope: "row", text: SPEED_LABELS[k] || k }), el("td", { text: shown(v) + (k.endsWith("_s") && !k.includes("tok") ? " s" : "") })))));
  }

  function renderDeploy() {
    const d = view.deploy;
    const tabs = $("deploy-tabs");
    tabs.replaceChildren();
    const files = [];
    for (const [fmt, byName] of Object.entries(d.formats || {})) {
      for (const [name, text] of Object.entries(byName)) files.push({ fmt, name, text });
    }
    $("deploy-panel").hidden = false;
    // formats tpfit deploy refuses for this plan (a single-node format for a plan across nodes): said, not dropped
    const refused = Object.entries(d.refused || {});
    $("deploy-refused").hidden = !refused.length;
    $("deploy-refused").textContent = refused.length
      ? "Not written for this plan: " + refused.map(([fmt, why]) => `${fmt} (${why.replace(/^--format \S+: /, "")})`).join("; ")
      : "";
    $("deploy-text").parentElement.classList.toggle("prose", !files.length);  // a sentence wraps; a file keeps its lines
    if (!files.length) {
      $("deploy-name").textContent = "";
      $("deploy-text").textContent = d.error || "Nothing to deploy.";
      $("deploy-copy").hidden = $("deploy-download").hidden = true;
      $("deploy-command").textContent = "";
      return;
    }
    $("deploy-copy").hidden = $("deploy-download").hidden = false;
    files.forEach((f, i) => {
      const multi = Object.keys(d.formats[f.fmt]).length > 1;
      tabs.append(el("button", {
        type: "button", role: "tab", id: "tab-" + i, "aria-controls": "deploy-panel", "data-format": f.fmt, "data-file": f.name,
        text: multi ? `${f.fmt}: ${f.name}` : f.fmt, onclick: () => pickTab(files, i), onkeydown: (e) => tabKeys(e, files, i),
      }));
    });
    pickTab(files, 0, false);
  }

  function pickTab(files, i, focus = true) {
    const f = files[i];
    for (const [j, b] of [...$("deploy-tabs").children].entries()) {
      b.setAttribute("aria-selected", j === i ? "true" : "false");
      b.tabIndex = j === i ? 0 : -1;
    }
    if (focus) $("tab-" + i).focus();
    $("deploy-panel").setAttribute("aria-labelledby", "tab-" + i);
    $("deploy-panel").dataset.format = f.fmt;
    $("deploy-name").textContent = f.name;
    $("deploy-text").textContent = f.text;
    $("deploy-download").href = "data:text/plain;charset=utf-8," + encodeURIComponent(f.text);
    $("deploy-download").download = f.name;
    $("deploy-download").setAttribute("aria-label", "Download " + f.name);
    $("deploy-copy").onclick = () => copy(f.text, f.name + " copied", () => $("deploy-text"));
    $("deploy-command").textContent = "The same file from the command line: " + view.deploy.commands[f.fmt];
  }

  function tabKeys(e, files, i) {
    const n = files.length;
    const next = { ArrowRight: (i + 1) % n, ArrowLeft: (i - 1 + n) % n, Home: 0, End: n - 1 }[e.key];
    if (next === undefined) return;
    e.preventDefault();
    pickTab(files, next);
  }

  // holder(): the element showing exactly TEXT, selected for Ctrl+C where the clipboard is refused (a page served
  // to other machines over http, or the permission denied)
  async function copy(text, done, holder) {
    try {
      await navigator.clipboard.writeText(text);
      $("status").textContent = done;
    } catch (e) {
      const range = document.createRange();
      range.selectNodeContents(holder());
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      $("status").textContent = "Selected: press Ctrl+C to copy";
    }
  }

  function renderFacts() {
    const p = view.plan;
    const m = p.model;
    const rows = [
      ["Model", m.id], ["Architecture", `${m.architecture} (${m.model_type})`],
      ["Parameters", (m.params / 1e9).toFixed(2) + " B"],
      ["Layers · heads · KV heads", `${m.num_hidden_layers} · ${m.num_attention_heads} · ${m.num_key_value_heads}`],
      ["Max model length", int(m.max_model_len)], ["Weights dtype", m.quantization || m.dtype],
      ["GPUs", `${p.cluster.nodes} × ${p.cluster.gpus_per_node} ${p.cluster.gpu_name}, ${gib(p.cluster.memory_gib_per_gpu)} GiB each (${p.cluster.source})`],
      ["vLLM", `${p.engine.vllm_version}, default --gpu-memory-utilization ${p.engine.default_gpu_memory_utilization}`],
      ["Rule of thumb", `${gib(p.rule_of_thumb.weights_gib)} GiB weights, ${gib(p.rule_of_thumb.kv_gib_per_request)} GiB KV per request`],
      ["tpfit", p.tpfit_version],
    ];
    for (const n of m.notes) rows.push(["Note", n]);
    $("facts").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
  }

  if (LIVE) {
    buildForm();
    refresh();
  } else {
    document.body.classList.add("report");
    render(DATA.view);
  }
})();
