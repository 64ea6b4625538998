// The bill: cost per day as a chart, the breakdown by provider, department, region and
// tag, every line, and the FOCUS and CSR files to download.

import { api } from "./api.js";
import { h, fill, table, field, errorBox } from "./dom.js";
import { bars } from "./chart.js";

function groupTable(caption, groups, currency) {
  return table(caption, ["Group", `Cost (${currency})`],
    Object.entries(groups || {}).map(([k, v]) => [k, v]));
}

/** The page. */
export async function show(page, _rest, { session }) {
  const period = h("input", { type: "month", id: "bill-period" });
  const tagKey = h("input", { id: "bill-tag", placeholder: "team", autocomplete: "off" });
  const errors = h("div");
  const body = h("div");
  page.append(h("div", { class: "filters" }, field("Period", period), field("Cost by tag key", tagKey)), errors, body);

  async function load() {
    fill(errors);
    const q = period.value ? `period=${encodeURIComponent(period.value)}&` : "";
    let bill;
    let days;
    let regions;
    try {
      [bill, days, regions] = await Promise.all([
        api("GET", `/v1/bill?${q}group_by=day`),
        null,
        api("GET", `/v1/bill?${q}group_by=region`),
      ]);
      days = bill.grouped.groups;
    } catch (err) {
      fill(errors, errorBox(err));
      return;
    }
    if (!period.value) period.value = bill.period;
    const tag = tagKey.value.trim();
    let tagged = null;
    if (tag) {
      try {
        tagged = (await api("GET", `/v1/bill?${q}group_by=${encodeURIComponent("tag:" + tag)}`)).grouped.groups;
      } catch (err) {
        errors.append(errorBox(err));
      }
    }
    const cur = bill.currency;
    const daily = Object.entries(days).filter(([k]) => k !== "(month)").map(([k, v]) => [k, Number(v)]);
    const monthly = days["(month)"];
    const file = (format) => `/v1/bill?${q}format=${format}`;
    fill(body,
      h("p", { class: "total" }, h("strong", {}, `Total ${bill.total} ${cur}`),
        ` for ${bill.period}${bill.finalized ? " (final)" : " so far"}${session.department ? `, department ${session.department}` : ""}.`),
      h("div", { class: "actions" },
        h("a", { href: file("focus"), download: `skyport-${bill.period}-focus.csv`, id: "download-focus" }, "Download FOCUS (CSV)"),
        h("a", { href: file("csr"), download: `skyport-${bill.period}.csr`, id: "download-csr" }, "Download CSR")),
      h("h2", {}, "Cost per day"),
      bars(daily, `Cost per day in ${bill.period}: ${daily.length} days with cost, total ${bill.total} ${cur}`),
      monthly ? h("p", {}, `Charged for the month at once (API requests): ${monthly} ${cur}.`) : null,
      h("details", {}, h("summary", {}, "Cost per day as a table"),
        table("Cost per day", ["Day", `Cost (${cur})`], Object.entries(days).map(([k, v]) => [k, v]))),
      h("h2", {}, "Breakdown"),
      h("div", { class: "grid2" },
        groupTable("By provider", bill.subtotals.providers, cur),
        groupTable("By department", bill.subtotals.departments, cur),
        groupTable("By region", regions.grouped.groups, cur),
        tagged ? groupTable(`By tag ${tag}`, tagged, cur) : null),
      h("h2", {}, "Lines"),
      table(`${bill.lines.length} lines`, ["Resource", "Provider / region", "Description", "Quantity", `Cost (${cur})`, "Tags"],
        bill.lines.map((l) => [l.resource_id || "—", `${l.provider}${l.region ? " / " + l.region : ""}`,
          l.description, `${l.pricing_quantity} ${l.pricing_unit}`, l.cost,
          Object.entries(l.tags || {}).map(([k, v]) => `${k}=${v}`).join(", ") || "—"])));
  }
  period.addEventListener("change", load);
  tagKey.addEventListener("change", load);
  await load();
}
