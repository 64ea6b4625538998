// The approval queue: every tenant's orders waiting for a decision, approved or denied
// with a reason (admins, and the approver role of an operator tenant).

import { api } from "./api.js";
import { h, fill, table, errorBox } from "./dom.js";

/** The page. */
export async function show(page, _rest, { announce }) {
  const status = h("select", { id: "queue-status" },
    ["pending_approval", "approved", "denied", "expired", "failed", ""].map((s) => h("option", { value: s }, s || "any")));
  const errors = h("div");
  const list = h("div");
  page.append(h("div", { class: "filters" }, h("label", {}, "Status", status)), errors, list);
  async function decide(order, verdict, button) {
    const reason = window.prompt(`${verdict === "approve" ? "Approve" : "Deny"} order ${order.id}: reason${verdict === "deny" ? " (required)" : " (optional)"}`);
    if (reason === null) return;
    button.disabled = true;
    try {
      await api("POST", `/admin/orders/${encodeURIComponent(order.id)}/${verdict}`, reason ? { reason } : {});
      announce(`Order ${order.id}: ${verdict === "approve" ? "approved" : "denied"}`);
      await load();
    } catch (err) {
      fill(errors, errorBox(err));
      button.disabled = false;
    }
  }
  async function load() {
    const q = status.value ? `?status=${encodeURIComponent(status.value)}` : "";
    const { orders } = await api("GET", `/admin/orders${q}`);
    fill(list, table(`${orders.length} orders`, ["Order", "Tenant", "Ordered by", "Offering", "Status", "Reason", "Decision"],
      orders.map((o) => {
        const pending = o.status === "pending_approval";
        const approve = h("button", { type: "button", "aria-label": `Approve ${o.id}` }, "Approve");
        const deny = h("button", { type: "button", class: "danger", "aria-label": `Deny ${o.id}` }, "Deny");
        approve.addEventListener("click", () => decide(o, "approve", approve));
        deny.addEventListener("click", () => decide(o, "deny", deny));
        return [o.id, `${o.tenant}${o.department ? " / " + o.department : ""}`, o.ordered_by, o.offering, o.status,
          o.reason || "—", pending ? h("div", { class: "actions" }, approve, deny) : (o.decided_by ? `by ${o.decided_by}` : "—")];
      })));
  }
  status.addEventListener("change", () => load().catch((err) => fill(errors, errorBox(err))));
  await load();
}
