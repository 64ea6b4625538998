// EC2 access keys: make one (its secret shown once, here only), list them, revoke one.

import { api } from "./api.js";
import { h, fill, table, field, errorBox, facts } from "./dom.js";

/** The page. */
export async function show(page, _rest, { announce, session }) {
  const errors = h("div");
  const made = h("div", { "aria-live": "polite" });
  const list = h("div");
  const department = h("input", { id: "key-department", value: session.department || "", readonly: !!session.department });
  const create = h("button", { type: "submit", class: "primary", id: "key-create" }, "Create access key");
  page.append(
    h("p", {}, "Access keys sign requests to the EC2-compatible API (aws ec2, boto3, Ansible)."),
    errors,
    h("form", { class: "stack", onsubmit: async (e) => {
      e.preventDefault();
      fill(errors);
      create.disabled = true;
      try {
        const key = await api("POST", "/v1/keys", department.value ? { department: department.value } : {});
        fill(made, h("section", { class: "panel", "aria-label": "New access key" },
          h("h2", {}, "New access key"),
          h("p", {}, "Copy the secret now: it is shown this once, and never again."),
          facts([["Access key ID", h("span", { class: "secret", id: "new-key-id" }, key.access_key_id)],
            ["Secret access key", h("span", { class: "secret", id: "new-key-secret" }, key.secret_access_key)]])));
        announce(`Access key ${key.access_key_id} created`);
        await load();
      } catch (err) {
        fill(errors, errorBox(err));
      } finally {
        create.disabled = false;
      }
    } }, field("Department (optional)", department), h("div", {}, create)),
    made, list);

  async function load() {
    const { keys } = await api("GET", "/v1/keys");
    fill(list, table(`${keys.length} access keys`, ["Access key ID", "Department", "Created", "Status", "Actions"],
      keys.map((k) => {
        const revoke = k.revoked_at ? null : h("button", { type: "button", class: "danger", "aria-label": `Revoke ${k.access_key_id}` }, "Revoke");
        revoke?.addEventListener("click", async () => {
          if (!window.confirm(`Revoke ${k.access_key_id}? Tools using it stop working at once.`)) return;
          revoke.disabled = true;
          try {
            await api("DELETE", `/v1/keys/${encodeURIComponent(k.access_key_id)}`);
            announce(`Access key ${k.access_key_id} revoked`);
            fill(made);
            await load();
          } catch (err) {
            fill(errors, errorBox(err));
            revoke.disabled = false;
          }
        });
        return [k.access_key_id, k.department || "—", k.created_at, k.revoked_at ? `revoked ${k.revoked_at}` : "active", revoke || "—"];
      })));
  }
  await load();
}
