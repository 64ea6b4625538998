// The console's only way to the gateway: the public API, called with the session's
// cookie, each write carrying the session's CSRF token.

let session = null;

/** An error the API answered with (its problem document's detail). */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** Who is signed in (`GET /console/session`), or null. */
export async function loadSession() {
  const response = await send("/console/session", { credentials: "same-origin" }, true);
  session = response.ok ? await response.json() : null;
  return session;
}

/** The session loaded last. */
export function currentSession() {
  return session;
}

async function problem(response) {
  try {
    const body = await response.json();
    return new ApiError(response.status, body.detail || body.title || response.statusText);
  } catch {
    return new ApiError(response.status, `${response.status} ${response.statusText}`);
  }
}

/** Methods a request can be sent again with, when no answer came (a PUT replaces). */
const REPEATABLE = new Set(["GET", "HEAD", "PUT"]);

const pause = (ms) => new Promise((done) => setTimeout(done, ms));

/** `fetch`, sent again (up to 3 times) when no answer came and sending it again is safe:
 * a browser on the gateway's own host drops requests in flight whenever an address
 * changes on it (ERR_NETWORK_CHANGED), and local VMs' networks come and go there. */
async function send(path, init, repeatable) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fetch(path, init);
    } catch (err) {
      if (!repeatable || attempt >= 3) {
        throw new ApiError(0, repeatable
          ? `The gateway could not be reached (${err.message}).`
          : `The connection was interrupted before the gateway answered (${err.message}); reload to see whether it was done.`);
      }
      await pause(250 * (attempt + 1));
    }
  }
}

/** Calls `method path` with JSON `body`; the JSON answer, or an ApiError. `options.repeatable`
 * marks a POST that changes nothing (an explanation) as safe to send again. */
export async function api(method, path, body, options = {}) {
  const headers = { accept: "application/json" };
  if (method !== "GET" && session && session.csrf_token) headers["x-csrf-token"] = session.csrf_token;
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await send(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  }, REPEATABLE.has(method) || options.repeatable === true);
  if (response.status === 401) {
    session = null;
    window.dispatchEvent(new Event("skyport:signed-out"));
  }
  if (!response.ok) throw await problem(response);
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.text();
}

/** Ends the session. */
export async function signOut() {
  await fetch("/console/signout", {
    method: "POST",
    credentials: "same-origin",
    headers: session && session.csrf_token ? { "x-csrf-token": session.csrf_token } : {},
  });
  session = null;
}
