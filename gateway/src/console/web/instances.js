// Instances: the list (filtered, its states kept live), and one instance's page with its
// actions (start, stop, resize, console output, terminate).

import { api } from "./api.js";
import { h, fill, table, field, errorBox, facts, tags } from "./dom.js";

const MOVING = new Set(["pending", "stopping", "shutting-down", "rebooting"]);

function stateCell(state) {
  return h("span", { class: `state state-${state}${MOVING.has(state) ? " busy" : ""}` }, state);
}

/** Runs `action` (a promise) with `button` disabled, showing errors in `where`. */
async function act(button, where, action) {
  button.disabled = true;
  try {
    await action();
  } catch (err) {
    where.prepend(errorBox(err));
  } finally {
    button.disabled = false;
  }
}

function actionButtons(instance, refresh, where, announce) {
  const call = (label, method, path, cls) => {
    const button = h("button", { type: "button", class: cls, "aria-label": `${label} ${instance.name || instance.id}` }, label);
    button.addEventListener("click", () => act(button, where, async () => {
      if (label === "Terminate" && !window.confirm(`Terminate ${instance.name || instance.id}? Its disk is deleted.`)) return;
      try {
        await api(method, path);
        announce(`${label}: ${instance.name || instance.id}`);
      } finally {
        // Also when no answer came: the page shows the state the gateway reports.
        await refresh();
      }
    }));
    return button;
  };
  const id = encodeURIComponent(instance.id);
  return h("div", { class: "actions" },
    instance.state === "stopped" ? call("Start", "POST", `/v1/instances/${id}/start`) : null,
    instance.state === "running" ? call("Stop", "POST", `/v1/instances/${id}/stop`) : null,
    instance.state !== "terminated" && instance.state !== "shutting-down"
      ? call("Terminate", "DELETE", `/v1/instances/${id}`, "danger") : null);
}

/** The page: the list, or one instance when `rest` names it. */
export async function show(page, rest, ctx) {
  return rest[0] ? showOne(page, decodeURIComponent(rest[0]), ctx) : showList(page, ctx);
}

async function showList(page, { announce }) {
  const text = h("input", { type: "search", id: "filter-text", placeholder: "name, id, tag…" });
  const state = h("select", { id: "filter-state" },
    ["", "pending", "running", "stopping", "stopped", "shutting-down", "terminated"].map((s) =>
      h("option", { value: s }, s || "any state")));
  const errors = h("div");
  const list = h("div", { "aria-busy": "true" }, h("p", {}, "Loading…"));
  page.append(
    h("p", {}, h("a", { href: "#/order" }, "Order an instance")),
    h("div", { class: "filters", role: "search" }, field("Filter", text), field("State", state)),
    errors, list);
  let all = [];
  const draw = () => {
    const needle = text.value.trim().toLowerCase();
    const shown = all.filter((i) => (!state.value || i.state === state.value) &&
      (!needle || [i.id, i.name, i.provider, i.region, i.instance_type,
        ...Object.entries(i.tags || {}).map(([k, v]) => `${k}=${v}`)]
        .some((f) => f && String(f).toLowerCase().includes(needle))));
    fill(list, table(`${shown.length} of ${all.length} instances`,
      ["Name", "State", "Type", "Provider / region", "Tags", "Actions"],
      shown.map((i) => [
        h("a", { href: `#/instances/${encodeURIComponent(i.id)}` }, i.name || i.id),
        stateCell(i.state),
        i.instance_type,
        `${i.provider} / ${i.region}`,
        tags(i.tags),
        actionButtons(i, load, errors, announce),
      ])));
    if (list.hasAttribute("aria-busy")) performance.mark("skyport:instances-drawn");
    list.removeAttribute("aria-busy");
  };
  let timer = null;
  async function load() {
    try {
      const pages = [];
      let next = null;
      do {
        const body = await api("GET", `/v1/instances?limit=1000${next ? `&next_token=${encodeURIComponent(next)}` : ""}`);
        pages.push(...body.instances);
        next = body.next_token;
      } while (next);
      all = pages;
      fill(errors);
      draw();
    } catch (err) {
      fill(errors, errorBox(err));
    }
    clearTimeout(timer);
    timer = setTimeout(load, all.some((i) => MOVING.has(i.state)) ? 1500 : 5000);
  }
  text.addEventListener("input", draw);
  state.addEventListener("change", draw);
  await load();
  return () => clearTimeout(timer);
}

async function showOne(page, id, { announce }) {
  const errors = h("div");
  const body = h("div");
  page.append(h("p", {}, h("a", { href: "#/instances" }, "All instances")), errors, body);
  const path = `/v1/instances/${encodeURIComponent(id)}`;
  const types = (await api("GET", "/v1/instance-types")).instance_types;
  let timer = null;
  async function load() {
    let instance;
    try {
      instance = await api("GET", path);
    } catch (err) {
      fill(errors, errorBox(err));
      fill(body);
      return;
    }
    page.querySelector("h1").textContent = instance.name || instance.id;
    const size = h("select", { id: "resize-type" },
      types.map((t) => h("option", { value: t.name, selected: t.name === instance.instance_type },
        `${t.name} (${t.vcpus} vCPU, ${t.memory_mib} MiB)`)));
    const resize = h("button", { type: "submit", disabled: instance.state !== "stopped" }, "Resize");
    const output = h("pre", { class: "console", id: "console-output", hidden: true });
    const showOutput = h("button", { type: "button" }, "Show console output");
    showOutput.addEventListener("click", () => act(showOutput, errors, async () => {
      const out = await api("GET", `${path}/console`);
      output.textContent = out.output || "(no output yet)";
      output.hidden = false;
    }));
    fill(body,
      facts([
        ["ID", instance.id], ["State", stateCell(instance.state)], ["Type", instance.instance_type],
        ["Provider", instance.provider], ["Region", instance.region], ["Image", instance.image],
        ["Private IP", instance.network && instance.network.private_ip],
        ["Department", instance.department], ["Created", instance.created_at],
        ["Lease ends", instance.lease && instance.lease.expires_at], ["Tags", tags(instance.tags)],
      ]),
      h("h2", {}, "Actions"),
      actionButtons(instance, load, errors, announce),
      h("h2", {}, "Resize"),
      h("form", { class: "stack", onsubmit: (e) => {
        e.preventDefault();
        act(resize, errors, async () => {
          await api("PATCH", path, { instance_type: size.value });
          announce(`Resized to ${size.value}`);
          await load();
        });
      } }, field("Instance type", size),
      instance.state === "stopped" ? null : h("p", {}, "Stop the instance to resize it."), h("div", {}, resize)),
      h("h2", {}, "Tags"), tagEditor(instance),
      h("h2", {}, "Console output"), showOutput, output);
    clearTimeout(timer);
    if (MOVING.has(instance.state)) timer = setTimeout(load, 1500);
  }

  function tagEditor(instance) {
    const text = h("textarea", { id: "tags-edit", rows: 4 },
      Object.entries(instance.tags || {}).map(([k, v]) => `${k}=${v}`).join("\n"));
    const save = h("button", { type: "submit", id: "tags-save" }, "Save tags");
    return h("form", { class: "stack", onsubmit: (e) => {
      e.preventDefault();
      act(save, errors, async () => {
        const tags = {};
        for (const [n, raw] of text.value.split("\n").entries()) {
          const line = raw.trim();
          if (!line) continue;
          const at = line.indexOf("=");
          if (at < 1) throw new Error(`Tags, line ${n + 1}: write key=value`);
          tags[line.slice(0, at).trim()] = line.slice(at + 1).trim();
        }
        await api("PUT", `${path}/tags`, { tags });
        announce("Tags saved");
        await load();
      });
    } }, h("label", {}, "Tags (key=value, one per line)", text), h("div", {}, save));
  }
  await load();
  return () => clearTimeout(timer);
}
