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
  const response = await fetch("/console/session", { credentials: "same-origin" });
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

/** Calls `method path` with JSON `body`; the JSON answer, or an ApiError. */
export async function api(method, path, body) {
  const headers = { accept: "application/json" };
  if (method !== "GET" && session && session.csrf_token) headers["x-csrf-token"] = session.csrf_token;
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
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
