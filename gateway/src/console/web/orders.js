// Orders that needed approval: the tenant's own, with their status and reason.

import { api } from "./api.js";
import { h, table } from "./dom.js";

/** The page. */
export async function show(page) {
  const { orders } = await api("GET", "/v1/orders");
  page.append(
    h("p", {}, "Orders wait here when their offering or a budget requires an approver's decision."),
    table(`${orders.length} orders`, ["Order", "Offering", "Status", "Reason", "Ordered", "Instance"],
      orders.map((o) => [o.id, o.offering, o.status, o.reason || "—", o.created_at,
        o.instance_id ? h("a", { href: `#/instances/${encodeURIComponent(o.instance_id)}` }, o.instance_id) : "—"])));
}
