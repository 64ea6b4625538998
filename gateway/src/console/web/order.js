// Ordering from the catalog: an offering of the tenant's plan and its choices, the price
// and the placement explained before anything is ordered, then the order.

import { api } from "./api.js";
import { h, fill, table, field, errorBox, facts } from "./dom.js";

/** `key=value` lines as a tag map; an Error naming the first bad line. */
function parseTags(text) {
  const tags = {};
  for (const [n, raw] of text.split("\n").entries()) {
    const line = raw.trim();
    if (!line) continue;
    const at = line.indexOf("=");
    if (at < 1) throw new Error(`Tags, line ${n + 1}: write key=value`);
    tags[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return tags;
}

/** The page. */
export async function show(page, _rest, { announce }) {
  const [catalog, types] = await Promise.all([
    api("GET", "/v1/offerings"),
    api("GET", "/v1/instance-types"),
  ]);
  const single = catalog.offerings;
  const several = (name) => (single.find((o) => o.name === name)?.resources.length || 1) > 1;
  if (!single.length) {
    page.append(h("p", {}, "Your plan offers nothing to order here."));
    return;
  }
  const offering = h("select", { id: "order-offering", name: "offering" },
    single.map((o) => h("option", { value: o.name }, `${o.name} — ${o.description || o.blueprint}`)));
  const name = h("input", { id: "order-name", name: "name", autocomplete: "off" });
  const tagsBox = h("textarea", { id: "order-tags", name: "tags", rows: 3, placeholder: "team=web" });
  const choices = h("div", { class: "stack" });
  const errors = h("div");
  const explained = h("section", { "aria-live": "polite", "aria-label": "Price and placement" });
  const check = h("button", { type: "button", id: "order-explain" }, "Show price and placement");
  const submit = h("button", { type: "submit", class: "primary", id: "order-submit", disabled: true }, "Order");
  let controls = {};

  const drawChoices = () => {
    const o = single.find((x) => x.name === offering.value);
    controls = {};
    const params = o.user_params || [];
    if (params.includes("instance_type")) {
      controls.instance_type = h("select", { id: "order-instance-type" }, types.instance_types.map((t) =>
        h("option", { value: t.name, selected: t.name === o.defaults.instance_type },
          `${t.name} (${t.vcpus} vCPU, ${t.memory_mib} MiB)`)));
    }
    if (params.includes("region")) {
      controls.region = h("select", { id: "order-region" }, h("option", { value: "" }, "cheapest"),
        catalog.regions.map((r) => h("option", { value: r }, r)));
    }
    if (params.includes("image")) {
      controls.image = h("input", { id: "order-image", value: o.defaults.image || "" });
    }
    const labels = { instance_type: "Instance type", region: "Region", image: "Image" };
    fill(choices, Object.entries(controls).map(([k, c]) => field(labels[k], c)));
    for (const c of Object.values(controls)) c.addEventListener("change", stale);
  };

  // One order, one token: sent again (the answer lost on the way), it answers with the
  // instance it made instead of making another.
  const clientToken = crypto.randomUUID();

  function request() {
    const body = { offering: offering.value, params: {}, tags: parseTags(tagsBox.value) };
    if (name.value.trim()) body.name = name.value.trim();
    for (const [k, c] of Object.entries(controls)) if (c.value) body.params[k] = c.value;
    return body;
  }

  function stale() {
    submit.disabled = true;
    fill(explained);
  }

  check.addEventListener("click", async () => {
    fill(errors);
    check.disabled = true;
    try {
      const body = request();
      delete body.name;
      delete body.tags;
      delete body.client_token;
      const answer = await api("POST", "/v1/placement/explain", body, { repeatable: true });
      if (answer.resources) {
        showDeployment(answer);
        submit.disabled = false;
        return;
      }
      const d = answer;
      const monthly = (Number(d.price_per_hour ?? d.candidates?.[0]?.price ?? 0) * 730).toFixed(2);
      const price = d.candidates.find((c) => c.provider === d.provider && c.region === d.region);
      fill(explained,
        h("h2", {}, "Price and placement"),
        h("div", { class: "panel" }, facts([
          ["Provider", d.provider], ["Region", d.region],
          ["Price", price ? `${price.price} ${d.currency} per hour (about ${(Number(price.price) * 730).toFixed(2)} per month)` : `about ${monthly} ${d.currency} per month`],
          ["Rules that fired", d.rules.length ? d.rules.map((r) => r.name || JSON.stringify(r)).join(", ") : "none"],
        ])),
        table("Decision points", ["Parameter", "Value", "Set by", "From"],
          Object.entries(d.params).map(([k, p]) => [k, String(p.value), p.set_by, p.source])),
        table("Candidates, cheapest first", ["Provider", "Region", `Price per hour (${d.currency})`],
          d.candidates.map((c) => [c.provider, c.region, c.price])));
      submit.disabled = false;
    } catch (err) {
      fill(errors, errorBox(err));
    } finally {
      check.disabled = false;
    }
  });

  /** The placement of each resource of an offering of several, and their price together. */
  function showDeployment(answer) {
    const chosen = (d) => d.candidates.find((c) => c.provider === d.provider && c.region === d.region);
    const total = answer.resources.reduce((n, d) => n + Number(chosen(d)?.price || 0), 0);
    const currency = answer.resources[0]?.currency || "";
    fill(explained,
      h("h2", {}, "Price and placement"),
      h("div", { class: "panel" }, facts([
        ["Resources", String(answer.resources.length)],
        ["Price", `${total.toFixed(4)} ${currency} per hour together (about ${(total * 730).toFixed(2)} per month)`],
      ])),
      table("Each resource's placement", ["Resource", "Provider", "Region", `Price per hour (${currency})`],
        answer.resources.map((d) => [d.resource, d.provider, d.region, chosen(d)?.price || "—"])));
  }

  const form = h("form", { class: "stack", id: "order-form", onsubmit: async (e) => {
    e.preventDefault();
    fill(errors);
    submit.disabled = true;
    if (several(offering.value)) {
      try {
        const body = request();
        const deployed = await api("POST", "/v1/deployments", body);
        announce(`Deployed ${deployed.offering}: ${deployed.resources.length} instances are booting`);
        location.hash = "#/deployments";
      } catch (err) {
        if (err.status === 0) {
          // No answer came (the VMs' networks appearing can drop it on this host): the
          // deployments page shows whether it was made.
          announce("The connection was interrupted before the gateway answered: your deployments are shown as the gateway has them.");
          location.hash = "#/deployments";
          return;
        }
        fill(errors, errorBox(err));
        submit.disabled = false;
      }
      return;
    }
    try {
      const created = await api("POST", "/v1/instances", { ...request(), client_token: clientToken }, { repeatable: true });
      if (created.order) {
        announce(`Order ${created.order.id} waits for approval${created.order.reason ? ": " + created.order.reason : ""}`);
        location.hash = "#/instances";
      } else {
        announce(`Ordered ${created.name || created.id}: it is booting`);
        location.hash = `#/instances/${encodeURIComponent(created.id)}`;
      }
    } catch (err) {
      fill(errors, errorBox(err));
      submit.disabled = false;
    }
  } },
  field("Offering", offering), choices, field("Name", name), field("Tags (key=value, one per line)", tagsBox),
  h("div", { class: "actions" }, check, submit));
  offering.addEventListener("change", () => { drawChoices(); stale(); });
  tagsBox.addEventListener("input", () => { submit.disabled = submit.disabled; });
  drawChoices();
  page.append(errors, form, explained);
}
