// The placement audit: stored decisions searched by tenant, offering, provider, region,
// mode and time, each with its decision points and the rules that fired.

import { api } from "./api.js";
import { h, fill, table, field, errorBox } from "./dom.js";

const FIELDS = [["tenant", "Tenant"], ["offering", "Offering"], ["provider", "Provider"], ["region", "Region"],
  ["request_id", "Request id"], ["since", "Since (RFC 3339)"]];

/** The page. */
export async function show(page) {
  const inputs = Object.fromEntries(FIELDS.map(([k]) => [k, h("input", { id: `search-${k}`, autocomplete: "off" })]));
  const mode = h("select", { id: "search-mode" }, ["", "create", "explain"].map((m) => h("option", { value: m }, m || "any")));
  const errors = h("div");
  const results = h("div");
  const search = h("button", { type: "submit", class: "primary", id: "search-run" }, "Search");
  page.append(
    h("form", { class: "filters", role: "search", onsubmit: (e) => { e.preventDefault(); run(); } },
      FIELDS.map(([k, label]) => field(label, inputs[k])), field("Mode", mode), h("div", {}, search)),
    errors, results);
  async function run() {
    fill(errors);
    const q = new URLSearchParams({ limit: "100" });
    for (const [k, input] of Object.entries(inputs)) if (input.value.trim()) q.set(k, input.value.trim());
    if (mode.value) q.set("mode", mode.value);
    try {
      const { placements } = await api("GET", `/admin/placements?${q}`);
      fill(results, table(`${placements.length} decisions, newest first`,
        ["Placement", "When", "Tenant", "Mode", "Offering", "Chosen", "Rules", "Decision points"],
        placements.map((p) => [p.id, p.created_at, p.tenant, p.mode, p.decision.offering,
          `${p.decision.provider} / ${p.decision.region}`,
          (p.decision.rules || []).map((r) => r.name || JSON.stringify(r)).join(", ") || "—",
          Object.entries(p.decision.params || {}).map(([k, v]) => `${k}=${v.value} (${v.set_by})`).join("; ")])));
    } catch (err) {
      fill(errors, errorBox(err));
    }
  }
  await run();
}
