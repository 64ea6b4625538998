// Tenants and plans: each tenant's departments and limits, and what each plan offers.

import { api } from "./api.js";
import { h, table } from "./dom.js";

/** The page. */
export async function show(page) {
  const [{ tenants }, { plans }] = await Promise.all([api("GET", "/admin/tenants"), api("GET", "/admin/plans")]);
  page.append(
    table(`${tenants.length} tenants`, ["Tenant", "Departments", "Requests per second", "Burst"],
      tenants.map((t) => [t.id, (t.departments || []).join(", ") || "—", String(t.requests_per_second), String(t.burst)])),
    h("h2", {}, "Plans"),
    table(`${Object.keys(plans).length} plans`, ["Plan", "Description", "Offerings", "Regions", "Raw requests"],
      Object.entries(plans).map(([name, p]) => [name, p.description || "—", (p.offerings || []).join(", "),
        (p.regions || []).length ? p.regions.join(", ") : "all", p.raw ? "yes" : "no"])));
}
