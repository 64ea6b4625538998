// The console's shell: who is signed in, the navigation, and the pages by URL fragment
// (`#/instances`, `#/order`, `#/instances/{id}`).

import { loadSession, currentSession, signOut } from "./api.js";
import { h, fill, errorBox } from "./dom.js";
import * as instances from "./instances.js";
import * as order from "./order.js";
import * as deployments from "./deployments.js";
import * as orders from "./orders.js";
import * as bill from "./bill.js";
import * as budgets from "./budgets.js";
import * as keys from "./keys.js";
import * as providers from "./providers.js";
import * as tenants from "./tenants.js";
import * as catalog from "./catalog.js";
import * as placements from "./placements.js";
import * as approvals from "./approvals.js";
import * as webhooks from "./webhooks.js";
import * as sla from "./sla.js";

const page = document.getElementById("page");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
const notice = document.getElementById("notice");

/** Tenant pages, in the navigation's order: [fragment, title, module]. */
const TENANT_PAGES = [
  ["instances", "Instances", instances],
  ["order", "Order", order],
  ["deployments", "Deployments", deployments],
  ["orders", "Approvals", orders],
  ["bill", "Bill", bill],
  ["budgets", "Budgets", budgets],
  ["keys", "Access keys", keys],
];

/** Operators' pages (the admin role of an operator tenant). */
const OPERATOR_PAGES = [
  ["providers", "Providers", providers],
  ["tenants", "Tenants and plans", tenants],
  ["catalog", "Catalog", catalog],
  ["placements", "Placement audit", placements],
  ["queue", "Approval queue", approvals],
  ["webhooks", "Webhooks", webhooks],
  ["sla", "Provider SLA", sla],
];

/** The pages `session` may open: the tenant's, and the operators' for an operator (the
 * admin role of an operator tenant); an approver of an operator tenant gets the approval
 * queue alone. The API checks every call whatever is shown here. */
function pagesOf(session) {
  if (session.operator) return [...TENANT_PAGES, ...OPERATOR_PAGES];
  if (session.operator_tenant && (session.roles || []).includes("approver")) {
    return [...TENANT_PAGES, OPERATOR_PAGES.find(([id]) => id === "queue")];
  }
  return TENANT_PAGES;
}

let leaving = null;

/** Shows `text` in the status line (read out by screen readers). */
export function announce(text) {
  notice.textContent = text;
}

function drawChrome(session) {
  const current = (location.hash.slice(2).split("/")[0]) || "instances";
  fill(nav, pagesOf(session).map(([id, title]) =>
    h("a", { href: `#/${id}`, "aria-current": id === current ? "page" : null }, title)));
  fill(who,
    h("span", {}, `${session.subject} · ${session.tenant}${session.department ? " / " + session.department : ""}`),
    session.csrf_token
      ? h("button", { type: "button", class: "link", onclick: async () => { await signOut(); route(); } }, "Sign out")
      : null);
}

async function signedOut() {
  fill(nav);
  fill(who);
  document.title = "Sign in - Skyport";
  fill(page, h("h1", {}, "Sign in"), h("p", {}, "You are not signed in, or your session has ended."));
  let ways = {};
  try {
    ways = await (await fetch("/console/signin-options")).json();
  } catch {
    // The page still says how a development gateway signs in.
  }
  if (ways.oidc) {
    page.append(h("p", {}, h("a", { href: "/console/oidc/login", class: "button primary", id: "sign-in-oidc" },
      "Sign in with your organisation's account")));
  }
  if (ways.dev_links) {
    page.append(h("p", {}, "On this development gateway, open the one-time link that this command prints:"),
      h("pre", {}, "skyport console --tenant demo"));
  }
  if (ways.client_certificates) {
    page.append(h("p", {}, "A browser that presents a client certificate this gateway trusts is signed in by it."));
  }
}

async function route() {
  if (leaving) leaving();
  leaving = null;
  let session;
  try {
    session = currentSession() || (await loadSession());
  } catch (err) {
    // No answer even after `send`'s repeats: say so, rather than stay at "Loading…".
    fill(page, h("h1", {}, "The gateway could not be reached"), errorBox(err),
      h("button", { type: "button", onclick: () => route() }, "Try again"));
    return;
  }
  if (!session) return signedOut();
  drawChrome(session);
  const [name, ...rest] = (location.hash.slice(2) || "instances").split("/");
  const entry = pagesOf(session).find(([id]) => id === name);
  if (!entry) {
    fill(page, h("h1", {}, "Not found"), h("p", {}, "There is no such page."));
    return;
  }
  const [, title, module] = entry;
  document.title = `${title} - Skyport`;
  fill(page, h("h1", {}, title));
  try {
    leaving = (await module.show(page, rest, { announce, session })) || null;
  } catch (err) {
    page.append(errorBox(err));
  }
  page.focus();
}

// The skip link moves the focus to the page's content; the URL fragment is the router's.
document.querySelector("a.skip").addEventListener("click", (event) => {
  event.preventDefault();
  page.focus();
});

// Every module arrived: boot.js's count of reloads for lost modules starts again.
try {
  sessionStorage.removeItem("skyport.console.reloads");
} catch {
  // Without storage boot.js gives up at the first lost module: nothing to clear.
}

window.addEventListener("hashchange", () => { announce(""); route(); });
window.addEventListener("skyport:signed-out", () => { if (leaving) leaving(); leaving = null; signedOut(); });
route();
