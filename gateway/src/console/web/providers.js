// Providers and plugins: each loaded plugin's health (kept live), restarts and version,
// and a reload; the plugins this start refused.

import { api } from "./api.js";
import { h, fill, table, errorBox } from "./dom.js";

/** The page. */
export async function show(page, _rest, { announce }) {
  const errors = h("div");
  const list = h("div");
  page.append(errors, list);
  let timer = null;
  async function load() {
    let body;
    try {
      body = await api("GET", "/admin/plugins");
    } catch (err) {
      fill(errors, errorBox(err));
      return;
    }
    fill(list,
      table(`${body.plugins.length} plugins`, ["Plugin", "Kind", "Health", "Restarts", "Version", "Isolation", "Actions"],
        body.plugins.map((p) => {
          const reload = h("button", { type: "button", "aria-label": `Reload ${p.name}` }, "Reload");
          reload.addEventListener("click", async () => {
            reload.disabled = true;
            try {
              const done = await api("POST", `/admin/plugins/${encodeURIComponent(p.name)}/reload`);
              announce(`${p.name} reloaded${done && done.version ? ": version " + done.version : ""}`);
              await load();
            } catch (err) {
              fill(errors, errorBox(err));
            } finally {
              reload.disabled = false;
            }
          });
          const health = p.health || {};
          return [
            h("span", { class: "plugin-name" }, p.name),
            p.kind,
            h("span", { class: `health ${health.healthy ? "state-running" : "state-stopping"}`, "data-plugin": p.name },
              health.healthy ? "healthy" : `unhealthy${health.reason ? ": " + health.reason : ""}`),
            String(p.restarts ?? 0),
            p.version,
            `${p.isolation}${p.pid ? ` (pid ${p.pid})` : ""}`,
            reload,
          ];
        })),
      body.refused.length
        ? table("Refused at start", ["Plugin", "Reason"], body.refused.map((r) => [r.plugin, r.message]))
        : null);
    fill(errors);
    clearTimeout(timer);
    timer = setTimeout(load, 2000);
  }
  await load();
  return () => clearTimeout(timer);
}
