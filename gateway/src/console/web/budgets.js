// Budgets: each one's month so far, as a burn-down (what is left after each day's
// spend) with the forecast to the month's end, and its thresholds.

import { api } from "./api.js";
import { h, fill, table, facts, errorBox } from "./dom.js";
import { lines } from "./chart.js";

function daysIn(period) {
  const [y, m] = period.split("-").map(Number);
  return new Date(Date.UTC(y, m, 0)).getUTCDate();
}

async function burnDown(budget) {
  const q = budget.department ? `&department=${encodeURIComponent(budget.department)}` : "";
  const bill = await api("GET", `/v1/bill?period=${budget.period}&group_by=day${q}`);
  const groups = bill.grouped.groups;
  const amount = Number(budget.amount);
  const days = daysIn(budget.period);
  let spent = Number(groups["(month)"] || 0);
  const remaining = [[0, amount - spent]];
  const today = new Date().toISOString().slice(0, 10);
  const last = budget.period === today.slice(0, 7) ? Number(today.slice(8, 10)) : days;
  for (let d = 1; d <= last; d++) {
    spent += Number(groups[`${budget.period}-${String(d).padStart(2, "0")}`] || 0);
    remaining.push([d, amount - spent]);
  }
  const forecast = [remaining[remaining.length - 1], [days, amount - Number(budget.forecast)]];
  const top = Math.max(amount, ...remaining.map(([, v]) => v));
  return lines([
    { points: remaining, cls: "spent" },
    { points: forecast, cls: "forecast" },
  ], days, top,
  `Burn-down of ${budget.name}: ${budget.remaining} ${budget.currency} left at the forecast of ${budget.forecast} against ${budget.amount}`,
  [[0, `${budget.period}-01`], [days, `${budget.period}-${days}`]]);
}

/** The page. */
export async function show(page) {
  const { budgets } = await api("GET", "/v1/budgets");
  if (!budgets.length) {
    page.append(h("p", {}, "No budget covers you."));
    return;
  }
  for (const b of budgets) {
    const chart = h("div");
    page.append(h("section", { "aria-label": `Budget ${b.name}` },
      h("h2", {}, `${b.name}${b.department ? ` (department ${b.department})` : ""}`),
      facts([
        ["Month", b.period], ["Amount", `${b.amount} ${b.currency}`], ["Spent", b.spent],
        ["Committed to the month's end", b.committed], ["Forecast", b.forecast],
        ["Remaining at the forecast", b.remaining], ["Mode", b.mode],
      ]),
      chart,
      h("p", { class: "legend" }, h("span", {}, "Solid: left after each day's spend"), h("span", {}, "Dashed: the forecast to the month's end")),
      table(`Thresholds of ${b.name}`, ["Threshold", "Amount", "Crossed"],
        (b.thresholds || []).map((t) => [t.threshold, t.amount, t.fired ? "yes" : "no"]))));
    try {
      fill(chart, await burnDown(b));
    } catch (err) {
      fill(chart, errorBox(err));
    }
  }
}
