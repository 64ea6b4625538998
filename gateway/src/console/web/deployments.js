// Deployments: offerings of several resources, created all or none, and their
// instances' states.

import { api } from "./api.js";
import { h, table } from "./dom.js";

/** The page. */
export async function show(page) {
  const { deployments } = await api("GET", "/v1/deployments");
  page.append(
    h("p", {}, "Offerings of several resources (a primary and a standby, say) are deployed all or none, with the API's POST /v1/deployments."),
    table(`${deployments.length} deployments`, ["Deployment", "Offering", "Status", "Created", "Resources"],
      deployments.map((d) => [d.id, d.offering, d.status, d.created_at,
        (d.resources || []).map((r) => h("div", {},
          `${r.resource}: `,
          h("a", { href: `#/instances/${encodeURIComponent(r.instance)}` }, r.instance),
          ` on ${r.provider} / ${r.region}${r.state ? ` (${r.state})` : ""}`))])));
}
