// The providers' service level for a month: availability against the target, errors and
// latency per provider and region.

import { api } from "./api.js";
import { h, fill, table, field, errorBox } from "./dom.js";

/** The page. */
export async function show(page) {
  const period = h("input", { type: "month", id: "sla-period" });
  const errors = h("div");
  const body = h("div");
  page.append(h("div", { class: "filters" }, field("Month", period)), errors, body);
  async function load() {
    fill(errors);
    try {
      const q = period.value ? `?period=${encodeURIComponent(period.value)}` : "";
      const report = await api("GET", `/admin/sla${q}`);
      if (!period.value) period.value = report.period;
      fill(body, h("p", {}, `Target: ${report.target}% of observed minutes available.`),
        table(`${report.sites.length} provider regions in ${report.period}`,
          ["Provider / region", "Availability %", "Minutes (available / observed)", "Unavailable minutes allowed", "Error rate", "p50 / p99 ms", "Breached"],
          report.sites.map((s) => [`${s.provider} / ${s.region}`, s.availability, `${s.minutes_available} / ${s.minutes_observed}`,
            String(s.allowed_unavailable_minutes), s.error_rate, `${s.p50_ms ?? "—"} / ${s.p99_ms ?? "—"}`,
            s.breached ? "yes" : "no"])));
    } catch (err) {
      fill(errors, errorBox(err));
    }
  }
  period.addEventListener("change", load);
  await load();
}
