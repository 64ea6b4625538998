// Webhooks: every subscription, the deliveries that ran out of retries (dead letters)
// with their last error, and a retry for each.

import { api } from "./api.js";
import { h, fill, table, errorBox } from "./dom.js";

/** The page. */
export async function show(page, _rest, { announce }) {
  const errors = h("div");
  const subs = h("div");
  const dead = h("div");
  page.append(errors, subs, h("h2", {}, "Dead letters"), dead);
  async function load() {
    const [{ webhooks: subscriptions }, { deliveries }] = await Promise.all([
      api("GET", "/admin/webhooks"),
      api("GET", "/admin/webhooks/deliveries?status=dead&limit=100"),
    ]);
    fill(subs, table(`${subscriptions.length} subscriptions`, ["Subscription", "Tenant", "URL", "Events", "Created"],
      subscriptions.map((s) => [s.id, s.tenant || "operators", s.url, (s.events || []).join(", "), s.created_at])));
    fill(dead, table(`${deliveries.length} dead letters`, ["Delivery", "Subscription", "Event", "Attempts", "Last error", "Actions"],
      deliveries.map((d) => {
        const retry = h("button", { type: "button", "aria-label": `Retry ${d.id}` }, "Retry");
        retry.addEventListener("click", async () => {
          retry.disabled = true;
          try {
            await api("POST", `/admin/webhooks/deliveries/${encodeURIComponent(d.id)}/retry`);
            announce(`Delivery ${d.id} is back in the outbox`);
            await load();
          } catch (err) {
            fill(errors, errorBox(err));
            retry.disabled = false;
          }
        });
        return [d.id, d.subscription_id, d.event_type || (d.event && d.event.type) || "—", String(d.attempts ?? "—"), d.last_error || "—", retry];
      })));
  }
  await load();
}
