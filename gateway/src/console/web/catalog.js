// The catalog editor: blueprints, offerings, plans and budgets as the admin API holds
// them, edited as JSON and saved with the API's own validation (its messages shown here).

import { api } from "./api.js";
import { h, fill, field, errorBox } from "./dom.js";

const KINDS = ["offerings", "blueprints", "plans", "budgets"];

/** The page. */
export async function show(page, _rest, { announce }) {
  const kind = h("select", { id: "catalog-kind" }, KINDS.map((k) => h("option", { value: k }, k)));
  const name = h("select", { id: "catalog-name" });
  const newName = h("input", { id: "catalog-new-name", autocomplete: "off" });
  const text = h("textarea", { id: "catalog-body", rows: 14, spellcheck: "false" });
  const errors = h("div");
  const save = h("button", { type: "submit", class: "primary", id: "catalog-save" }, "Save");
  const remove = h("button", { type: "button", class: "danger", id: "catalog-delete" }, "Delete");
  page.append(
    h("div", { class: "filters" }, field("Kind", kind), field("Object", name)),
    errors,
    h("form", { class: "stack", onsubmit: async (e) => {
      e.preventDefault();
      fill(errors);
      let body;
      try {
        body = JSON.parse(text.value);
      } catch (err) {
        fill(errors, errorBox(new Error(`The definition is not JSON: ${err.message}`)));
        return;
      }
      const target = newName.value.trim() || name.value;
      if (!target) {
        fill(errors, errorBox(new Error("Name the object to create.")));
        return;
      }
      save.disabled = true;
      try {
        await api("PUT", `/admin/${kind.value}/${encodeURIComponent(target)}`, body);
        announce(`Saved ${kind.value} ${target}`);
        newName.value = "";
        await loadNames(target);
      } catch (err) {
        fill(errors, errorBox(err));
      } finally {
        save.disabled = false;
      }
    } },
    field("Definition (JSON)", text),
    field("Save as a new object named (optional)", newName),
    h("div", { class: "actions" }, save, remove)));

  remove.addEventListener("click", async () => {
    if (!name.value || !window.confirm(`Delete ${kind.value} ${name.value}?`)) return;
    fill(errors);
    try {
      await api("DELETE", `/admin/${kind.value}/${encodeURIComponent(name.value)}`);
      announce(`Deleted ${kind.value} ${name.value}`);
      await loadNames();
    } catch (err) {
      fill(errors, errorBox(err));
    }
  });

  async function loadOne() {
    if (!name.value) {
      text.value = "";
      return;
    }
    const body = await api("GET", `/admin/${kind.value}/${encodeURIComponent(name.value)}`);
    text.value = JSON.stringify(body, null, 2);
  }

  async function loadNames(select) {
    const all = await api("GET", `/admin/${kind.value}`);
    const names = Object.keys(all[kind.value] || {}).sort();
    fill(name, names.map((n) => h("option", { value: n, selected: n === select }, n)));
    await loadOne();
  }
  kind.addEventListener("change", () => loadNames().catch((err) => fill(errors, errorBox(err))));
  name.addEventListener("change", () => loadOne().catch((err) => fill(errors, errorBox(err))));
  await loadNames();
}
